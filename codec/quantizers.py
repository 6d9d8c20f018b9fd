"""Discrete quantizers for the latent: residual vector quantization and
binarisation. Each returns the quantized tensor the decoder sees (with
straight-through gradients), the integer symbols, and its auxiliary loss;
decoding from the symbols gives exactly the eval-mode output (tested).
"""

from __future__ import annotations

import torch
from torch import nn


class ResidualVQ(nn.Module):
    """Residual vector quantization (VQ-VAE, van den Oord et al. 2017;
    residual stages as in SoundStream, Zeghidour et al. 2021).

    y (B, M, H, W) is cut into vectors of ``dim`` channels at every position
    (G = M / dim groups). Stage s replaces the residual left by stages < s
    with its nearest entry of codebook s (K entries). Using the first n
    stages gives n * G * log2(K) raw bits per position: one model, several
    rates. Training: straight-through estimator, codebook and commitment
    losses, codebooks initialised from the first batch's residuals, and
    dead entries (unused for ``revive_after`` batches) re-seeded from
    residuals of the current batch.
    """

    def __init__(self, channels: int, dim: int, codebook: int, stages: int,
                 beta: float = 0.25, revive_after: int = 50) -> None:
        super().__init__()
        if channels % dim:
            raise ValueError(f"latent channels {channels} must be a multiple of vq_dim {dim}")
        self.dim, self.k, self.stages, self.beta = dim, codebook, stages, beta
        self.codebooks = nn.Parameter(torch.randn(stages, codebook, dim) * 0.1)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("idle", torch.zeros(stages, codebook))
        self.revive_after = revive_after

    def _vectors(self, y):  # (B, M, H, W) -> (B*G*H*W, dim), and the layout to undo it
        b, m, h, w = y.shape
        v = y.reshape(b, m // self.dim, self.dim, h, w).permute(0, 1, 3, 4, 2).reshape(-1, self.dim)
        return v, (b, m // self.dim, h, w)

    def _tensor(self, v, shape):
        b, g, h, w = shape
        return v.reshape(b, g, h, w, self.dim).permute(0, 1, 4, 2, 3).reshape(b, g * self.dim, h, w)

    @staticmethod
    def _nearest(r, book):
        d = r.pow(2).sum(1, keepdim=True) - 2 * r @ book.t() + book.pow(2).sum(1)[None]
        return d.argmin(1)

    def forward(self, y, stages: torch.Tensor):
        """y (B, M, H, W); stages (B,) ints in 1..S: how many stages each
        sample uses. -> (y_hat with straight-through gradients, symbols
        (S, B, G, H, W) int64, auxiliary loss)."""
        v, shape = self._vectors(y)
        if self.training and not bool(self.initialised):
            self._init_from(v.detach())
        per = shape[1] * shape[2] * shape[3]
        use = (torch.arange(self.stages, device=y.device)[:, None] < stages[None, :])  # (S, B)
        residual, q_total, aux = v, torch.zeros_like(v), v.new_zeros(())
        syms = []
        for s in range(self.stages):
            book = self.codebooks[s]
            idx = self._nearest(residual.detach(), book.detach())
            q = book[idx]
            mask = use[s].repeat_interleave(per)[:, None].to(v.dtype)
            aux = aux + ((q - residual.detach()).pow(2) * mask).mean() + \
                self.beta * ((residual - q.detach()).pow(2) * mask).mean()
            q_total = q_total + q * mask
            residual = residual - q.detach()
            syms.append(idx.view(*shape))
            if self.training:
                self._track(s, idx, use[s].repeat_interleave(per), residual.detach() + q.detach())
        y_hat = self._tensor(q_total, shape)
        y_hat = y_hat + (y - y.detach()) if self.training else y_hat  # straight through
        return y_hat, torch.stack(syms), aux

    @torch.no_grad()
    def _init_from(self, v):
        residual = v
        for s in range(self.stages):
            pick = torch.randint(len(residual), (self.k,))
            self.codebooks[s].copy_(residual[pick])
            residual = residual - self.codebooks[s][self._nearest(residual, self.codebooks[s])]
        self.initialised.fill_(True)

    @torch.no_grad()
    def _track(self, s, idx, active, residual_in):
        used = torch.bincount(idx[active], minlength=self.k) > 0
        self.idle[s] = torch.where(used, torch.zeros_like(self.idle[s]), self.idle[s] + 1)
        dead = torch.nonzero(self.idle[s] >= self.revive_after).flatten()
        if len(dead) and active.any():
            pool = residual_in[active]
            self.codebooks[s][dead] = pool[torch.randint(len(pool), (len(dead),))]
            self.idle[s][dead] = 0

    def lookup(self, syms: torch.Tensor, n: int) -> torch.Tensor:
        """Symbols of the first n stages (n, 1, G, H, W) -> y_hat (1, M, H, W)."""
        _, b, g, h, w = syms.shape
        v = sum(self.codebooks[s][syms[s].reshape(-1)] for s in range(n))
        return self._tensor(v, (b, g, h, w))


class BinaryQuantizer(nn.Module):
    """y -> bits: b = sign(y) in {-1, +1} with the straight-through gradient
    of tanh (Toderici et al. 2016). Channels past the quality's share are
    zeroed (nested, so the first channels carry the most)."""

    def forward(self, y, keep: torch.Tensor):
        """keep (B,) number of channels used. -> (b (B, M, H, W), bits 0/1)."""
        soft = torch.tanh(y)
        hard = torch.where(y >= 0, torch.ones_like(y), -torch.ones_like(y))
        b = soft + (hard - soft).detach() if self.training else hard
        mask = (torch.arange(y.shape[1], device=y.device)[None, :] < keep[:, None]).to(y.dtype)
        return b * mask[:, :, None, None], (hard > 0).to(torch.int64)
