"""Generating digits: a VAE and an adversarial autoencoder (AAE).

* VAE (Kingma & Welling 2014): Gaussian posterior, reparameterisation, KL to
  N(0, I) weighted by beta; sample by decoding z ~ N(0, I).
* AAE (Makhzani et al. 2016): a deterministic encoder; a discriminator on
  the code tells prior samples from codes, and the encoder learns to fool
  it, so the codes fill the chosen prior p(z): a standard Gaussian, or a
  mixture with one component per digit class (10 components), which shapes
  the code space into clusters. Sample by decoding z ~ p(z).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import mlp


@dataclass
class GenConfig:
    dim: int = 8
    hidden: int = 256
    steps: int = 6000
    batch: int = 128
    lr: float = 1e-3
    beta: float = 1.0          # VAE
    prior: str = "gaussian"    # AAE: "gaussian" or "mixture"
    adv: float = 0.02          # AAE: weight of fooling the discriminator (x 64 pixels)
    seed: int = 0


class Prior:
    """p(z): N(0, I), or a 10-component mixture with means of norm 4 on a
    fixed random frame and std 0.5."""

    def __init__(self, kind: str, dim: int, seed: int = 0) -> None:
        self.kind, self.dim = kind, dim
        g = torch.Generator().manual_seed(seed + 1234)
        means = torch.randn(10, dim, generator=g)
        self.means = 4 * means / means.norm(dim=1, keepdim=True)

    def sample(self, n: int, gen: torch.Generator) -> torch.Tensor:
        z = torch.randn(n, self.dim, generator=gen)
        if self.kind == "gaussian":
            return z
        comp = torch.randint(10, (n,), generator=gen)
        return self.means[comp] + 0.5 * z


class VAE(nn.Module):
    def __init__(self, cfg: GenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc = mlp(64, cfg.hidden, cfg.hidden, 2 * cfg.dim)
        self.dec = mlp(cfg.dim, cfg.hidden, cfg.hidden, 64)

    def decode(self, z):
        return torch.sigmoid(self.dec(z))

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator):
        return self.decode(torch.randn(n, self.cfg.dim, generator=gen))

    def neg_elbo(self, x, gen=None):
        """Per-sample negative ELBO in nats (Bernoulli likelihood on [0, 1] pixels)."""
        mu, logvar = self.enc(x).chunk(2, 1)
        eps = torch.randn(mu.shape, generator=gen)
        z = mu + (0.5 * logvar).exp() * eps
        logits = self.dec(z)
        rec = F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(1)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1)
        return rec, kl


def train_vae(x: torch.Tensor, cfg: GenConfig) -> VAE:
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = VAE(cfg)
    opt = torch.optim.Adam(model.parameters(), cfg.lr)
    for _ in range(cfg.steps):
        xb = x[torch.randint(len(x), (cfg.batch,), generator=gen)]
        rec, kl = model.neg_elbo(xb, gen)
        loss = (rec + cfg.beta * kl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


class AAE(nn.Module):
    def __init__(self, cfg: GenConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.enc = mlp(64, cfg.hidden, cfg.hidden, cfg.dim)
        self.dec = mlp(cfg.dim, cfg.hidden, cfg.hidden, 64)
        self.disc = mlp(cfg.dim, 128, 128, 1)
        self.prior = Prior(cfg.prior, cfg.dim, cfg.seed)

    def decode(self, z):
        return torch.sigmoid(self.dec(z))

    @torch.no_grad()
    def sample(self, n: int, gen: torch.Generator):
        return self.decode(self.prior.sample(n, gen))


def train_aae(x: torch.Tensor, cfg: GenConfig) -> AAE:
    """Alternate: reconstruction; discriminator (prior = 1, codes = 0); encoder
    fools the discriminator."""
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    model = AAE(cfg)
    ae_opt = torch.optim.Adam(list(model.enc.parameters()) + list(model.dec.parameters()), cfg.lr)
    d_opt = torch.optim.Adam(model.disc.parameters(), cfg.lr / 2)
    ones, zeros = torch.ones(cfg.batch, 1), torch.zeros(cfg.batch, 1)
    for _ in range(cfg.steps):
        xb = x[torch.randint(len(x), (cfg.batch,), generator=gen)]
        z = model.enc(xb)
        rec = F.binary_cross_entropy_with_logits(model.dec(z), xb, reduction="sum") / len(xb)
        fool = F.binary_cross_entropy_with_logits(model.disc(z), ones)
        ae_opt.zero_grad()
        (rec + cfg.adv * 64 * fool).backward()
        ae_opt.step()
        real = model.prior.sample(cfg.batch, gen)
        d_loss = F.binary_cross_entropy_with_logits(model.disc(real), ones) + \
            F.binary_cross_entropy_with_logits(model.disc(z.detach()), zeros)
        d_opt.zero_grad()
        d_loss.backward()
        d_opt.step()
    return model.eval()
