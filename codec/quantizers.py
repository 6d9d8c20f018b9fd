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
    (G = M / dim groups, each with its own codebooks: the groups hold
    different channels). Stage s replaces the residual left by stages < s
    with its nearest entry of codebook (s, g) (K entries). Using the first
    n stages gives n * G * log2(K) raw bits per position: one model, several
    rates. ``sizes``: the entries in use in each stage (the first n of its
    codebooks; None: all K), so that a stage whose indices are coded under a
    steep prior need not carry entries no encoder picks (entropy-constrained
    VQ design prunes them: Chou, Lookabaugh and Gray 1989). Training: straight-through estimator, codebook and commitment
    losses, codebooks initialised from the first batch's residuals (or by
    k-means, :meth:`kmeans_init`), and dead entries (unused for
    ``revive_after`` batches) re-seeded from residuals of the current batch.
    """

    def __init__(self, channels: int, dim: int, codebook: int, stages: int,
                 beta: float = 0.25, revive_after: int = 50, sizes=None) -> None:
        super().__init__()
        if channels % dim:
            raise ValueError(f"latent channels {channels} must be a multiple of vq_dim {dim}")
        self.dim, self.k, self.stages, self.beta = dim, codebook, stages, beta
        self.sizes = self.checked_sizes(sizes) if sizes else (codebook,) * stages
        self.groups = channels // dim
        self.codebooks = nn.Parameter(torch.randn(stages, self.groups, codebook, dim) * 0.1)
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.register_buffer("idle", torch.zeros(stages, self.groups, codebook))
        self.revive_after = revive_after

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Files from before per-group codebooks hold one codebook per stage,
        # shared by every group: the same thing as G equal copies.
        for name, dims in (("codebooks", 3), ("idle", 2)):
            t = state_dict.get(prefix + name)
            if t is not None and t.dim() == dims:
                state_dict[prefix + name] = t.unsqueeze(1).expand(-1, self.groups, *t.shape[1:]).clone()
        if self.idle.shape != (self.stages, self.groups, self.k):  # weights.load resized it to an old file's
            self.idle = torch.zeros(self.stages, self.groups, self.k)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def checked_sizes(self, sizes) -> tuple:
        """``sizes`` as a tuple of ints, one in 1..K per stage (ValueError otherwise)."""
        sizes = tuple(int(k) for k in sizes)
        if len(sizes) != self.stages or not all(1 <= k <= self.k for k in sizes):
            raise ValueError(f"give one codebook size in 1..{self.k} per stage ({self.stages}), got {list(sizes)}")
        return sizes

    def book(self, s: int) -> torch.Tensor:
        """Stage s's codebooks as used: (G, sizes[s], d)."""
        return self.codebooks[s, :, :self.sizes[s]]

    def _vectors(self, y):  # (B, M, H, W) -> (G, B*H*W, dim), and the layout to undo it
        b, m, h, w = y.shape
        v = y.reshape(b, self.groups, self.dim, h, w).permute(1, 0, 3, 4, 2).reshape(self.groups, -1, self.dim)
        return v, (b, h, w)

    def _tensor(self, v, shape):
        b, h, w = shape
        return v.reshape(self.groups, b, h, w, self.dim).permute(1, 0, 4, 2, 3).reshape(b, -1, h, w)

    @staticmethod
    def _nearest(r, book, cost=None, chunk: int = 16384):
        """r (G, P, d), book (G, K, d) -> (G, P) index of the nearest entry;
        with ``cost`` (G, K), of the entry minimising ||r - entry||^2 + cost
        (entropy-constrained VQ: cost = rate weight x the entry's bits)."""
        c = book.pow(2).sum(-1)
        c = (c if cost is None else c + cost)[:, None, :]
        return torch.cat([(c - 2 * r[:, i:i + chunk] @ book.transpose(1, 2)).argmin(-1)
                          for i in range(0, r.shape[1], chunk)], 1)

    @staticmethod
    def _pick(book, idx):
        """book (G, K, d), idx (G, P) -> (G, P, d). (Indexing, not gather:
        its backward does not keep ``book``, which dead-code revival
        changes in place before the backward pass.)"""
        return book[torch.arange(book.shape[0], device=idx.device)[:, None], idx]

    def forward(self, y, stages: torch.Tensor, cost=None, soft=None):
        """y (B, M, H, W); stages (B,) ints in 1..S: how many stages each
        sample uses; ``cost`` (S, G, K): an extra cost per entry in the
        choice of indices (see :meth:`_nearest`; None: the nearest entries).
        -> (y_hat with straight-through gradients, symbols (S, B, G, H, W)
        int64, auxiliary loss, soft bits or None).

        ``soft`` = (tau, bits (S, G, K)): also the expected bits of each
        index under a soft assignment, softmax(-(distance + cost) / t) over
        the stage's entries with t = tau x the batch's mean nearest
        distance (soft-to-hard VQ, Agustsson et al. 2017), (S, B, G, H, W)
        with gradients to y: the hard index's bits have none, so without it
        the encoder never learns what its latent costs."""
        v, shape = self._vectors(y)
        if self.training and not bool(self.initialised):
            self._init_from(v.detach())
        per = shape[1] * shape[2]
        use = (torch.arange(self.stages, device=y.device)[:, None] < stages[None, :])  # (S, B)
        residual, q_total, aux = v, torch.zeros_like(v), v.new_zeros(())
        syms, soft_bits = [], []
        for s in range(self.stages):
            book = self.book(s)
            c = None if cost is None else cost[s, :, :self.sizes[s]]
            idx = self._nearest(residual.detach(), book.detach(), c)
            if soft is not None:
                soft_bits.append(self._soft_bits(residual, book.detach(), soft[0], soft[1][s, :, :self.sizes[s]], c)
                                 .view(self.groups, *shape).transpose(0, 1))
            q = self._pick(book, idx)
            active = use[s].repeat_interleave(per)
            mask = active[None, :, None].to(v.dtype)
            aux = aux + ((q - residual.detach()).pow(2) * mask).mean() + \
                self.beta * ((residual - q.detach()).pow(2) * mask).mean()
            q_total = q_total + q * mask
            residual = residual - q.detach()
            syms.append(idx.view(self.groups, *shape).transpose(0, 1))
            if self.training and self.codebooks.requires_grad:  # (frozen codebooks stay as they are)
                self._track(s, idx, active, residual.detach() + q.detach())
        y_hat = self._tensor(q_total, shape)
        y_hat = y_hat + (y - y.detach()) if self.training else y_hat  # straight through
        return y_hat, torch.stack(syms), aux, torch.stack(soft_bits) if soft is not None else None

    @staticmethod
    def _soft_bits(r, book, tau: float, bits, cost=None):
        """r (G, P, d) with gradients, book (G, K, d), bits and cost (G, K)
        -> (G, P) expected bits under the soft assignment (see :meth:`forward`)."""
        d = (r.pow(2).sum(-1, keepdim=True) - 2 * r @ book.transpose(1, 2) + book.pow(2).sum(-1)[:, None, :])
        score = d if cost is None else d + cost[:, None, :]
        t = tau * d.detach().min(-1).values.mean().clamp_min(1e-8)
        return (torch.softmax(-score / t, -1) * bits[:, None, :]).sum(-1)

    @torch.no_grad()
    def _init_from(self, v):
        residual = v
        for s in range(self.stages):
            pick = torch.randint(residual.shape[1], (self.k,))
            self.codebooks[s].copy_(residual[:, pick])
            residual = residual - self._pick(self.book(s), self._nearest(residual, self.book(s)))
        self.initialised.fill_(True)

    @torch.no_grad()
    def kmeans_init(self, y: torch.Tensor, iters: int = 20, gen: torch.Generator | None = None) -> torch.Tensor:
        """Codebooks by k-means (Lloyd) on the latents ``y`` (B, M, H, W),
        stage after stage on the residual of the stages before. Returns the
        symbol counts (S, G, K) of ``y`` under the new codebooks."""
        residual, _ = self._vectors(y)
        n = residual.shape[1]
        counts = torch.zeros(self.stages, self.groups, self.k)
        for s in range(self.stages):
            k = self.sizes[s]
            book = residual[:, torch.randperm(n, generator=gen)[:k]].clone()
            for _ in range(iters):
                idx = self._nearest(residual, book)
                for g in range(self.groups):
                    sums = torch.zeros_like(book[g]).index_add_(0, idx[g], residual[g])
                    num = torch.bincount(idx[g], minlength=k).to(sums.dtype)
                    reseed = residual[g, torch.randint(n, (k,), generator=gen)]
                    book[g] = torch.where(num[:, None] > 0, sums / num.clamp_min(1)[:, None], reseed)
            idx = self._nearest(residual, book)
            for g in range(self.groups):
                counts[s, g, :k] = torch.bincount(idx[g], minlength=k).float()
            self.codebooks[s, :, :k] = book
            residual = residual - self._pick(book, idx)
        self.initialised.fill_(True)
        return counts

    @torch.no_grad()
    def _track(self, s, idx, active, residual_in):
        k = self.sizes[s]
        for g in range(self.groups):
            used = torch.bincount(idx[g][active], minlength=k) > 0
            self.idle[s, g, :k] = torch.where(used, torch.zeros_like(used, dtype=self.idle.dtype),
                                              self.idle[s, g, :k] + 1)
            dead = torch.nonzero(self.idle[s, g, :k] >= self.revive_after).flatten()
            if len(dead) and active.any():
                pool = residual_in[g][active]
                self.codebooks[s, g][dead] = pool[torch.randint(len(pool), (len(dead),))]
                self.idle[s, g][dead] = 0

    def lookup(self, syms: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
        """Symbols of n stages from ``start`` (n, B, G, H, W) -> their sum of
        entries (B, M, H, W): y_hat when start is 0."""
        _, b, g, h, w = syms.shape
        v = sum(self._pick(self.codebooks[start + s], syms[s].transpose(0, 1).reshape(g, -1)) for s in range(n))
        return self._tensor(v, (b, h, w))


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
