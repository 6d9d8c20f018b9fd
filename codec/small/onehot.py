"""An autoencoder whose code is one-hot: it classifies without labels.

Encoder -> K logits + a small style code; the decoder sees the one-hot
sample (straight-through Gumbel-softmax, temperature annealed 1 -> 0.3) and
the style. The style is squashed and noised so it cannot carry the class;
with K codes the decoder must spend the one-hot on what varies most, the
digit. Two extra terms keep every code in use (batch marginal close to
uniform) and make the code invariant to small affine distortions (the
cluster of a distorted digit is trained towards the original's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import augment, mlp


@dataclass
class OneHotConfig:
    k: int = 10
    style: int = 2
    hidden: int = 256
    steps: int = 6000
    batch: int = 256
    lr: float = 1e-3
    balance: float = 10.0
    sharpness: float = 0.5
    invariance: float = 3.0
    adversary: float = 0.0   # > 0: a style critic tries to read the code from the style
    seed: int = 0


class OneHotAE(nn.Module):
    def __init__(self, cfg: OneHotConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc = mlp(64, cfg.hidden, cfg.hidden, cfg.k + cfg.style)
        self.dec = mlp(cfg.k + cfg.style, cfg.hidden, cfg.hidden, 64)
        # predicts the one-hot code from the style; the encoder learns to defeat it
        self.critic = mlp(cfg.style, 64, 64, cfg.k) if cfg.adversary > 0 else None

    def encode(self, x):
        h = self.enc(x)
        return h[:, :self.cfg.k], torch.tanh(h[:, self.cfg.k:])

    def decode(self, code, style):
        return torch.sigmoid(self.dec(torch.cat([code, style], 1)))

    @torch.no_grad()
    def cluster(self, x) -> torch.Tensor:
        return self.encode(x)[0].argmax(1)

    @torch.no_grad()
    def prototypes(self) -> torch.Tensor:
        """The decoded image of each one-hot code (style at zero)."""
        eye = torch.eye(self.cfg.k)
        return self.decode(eye, torch.zeros(self.cfg.k, self.cfg.style))


def train_onehot(x: torch.Tensor, cfg: OneHotConfig) -> tuple[OneHotAE, float]:
    """-> (model, final unsupervised loss)."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = OneHotAE(cfg)
    ae_params = list(model.enc.parameters()) + list(model.dec.parameters())
    opt = torch.optim.Adam(ae_params, cfg.lr)
    critic_opt = torch.optim.Adam(model.critic.parameters(), cfg.lr) if model.critic else None
    k = cfg.k
    ema = None
    for step in range(cfg.steps):
        xb = x[torch.randint(len(x), (cfg.batch,), generator=gen)]
        tau = max(0.3, math.exp(-3 * step / cfg.steps))
        logits, style = model.encode(xb)
        code = F.gumbel_softmax(logits, tau=tau, hard=True)
        style = style + 0.1 * torch.randn(style.shape, generator=gen)
        rec = F.mse_loss(model.decode(code, style), xb, reduction="sum") / len(xb)
        p = F.softmax(logits, 1)
        marginal = p.mean(0)
        balance = (marginal * torch.log(marginal * k + 1e-9)).sum()
        sharp = -(p * torch.log(p + 1e-9)).sum(1).mean()
        p_aug = F.softmax(model.encode(augment(xb, gen))[0], 1)
        invariance = -(p.detach() * torch.log(p_aug + 1e-9)).sum(1).mean()
        loss = rec + cfg.balance * balance + cfg.sharpness * sharp + cfg.invariance * invariance
        if model.critic is not None:
            target = logits.argmax(1).detach()
            # the critic learns to read the code from the style ...
            critic_loss = F.cross_entropy(model.critic(style.detach()), target)
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            # ... and the encoder makes its best guess uniform
            guess = F.log_softmax(model.critic(style), 1)
            loss = loss - cfg.adversary * guess.mean(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema = loss.item() if ema is None else 0.99 * ema + 0.01 * loss.item()
    return model.eval(), ema
