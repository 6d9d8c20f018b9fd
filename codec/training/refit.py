"""Maximum-likelihood refits of the discrete codecs' priors, by counting.

With the transforms fixed, the best static prior for a latent symbol is its
frequency on training data (smoothed); gradient training of the prior's
logits converges to the same place, slowly. These refits run the trained
g_a over the training images (never Kodak) and count:

* VQ: each (stage, group)'s index frequencies -> ``prior_logits``;
* binary: P(1) per channel at the checkerboard anchors and P(1 | channel,
  context state) elsewhere (models.BinaryCodec with ``context``).
"""

from __future__ import annotations

import torch

from .. import tiling
from ..models import CONTEXT_STATES, BinaryCodec, VQCodec, agreement, checkerboard, context_state, neighbour_indices
from .data import list_images, load_uint8, split


def _latents(net, folders, scales=(1.0, 0.5), every: int = 1):
    """g_a of every training image (train split only; with ``every`` n, of
    every n-th), at a few scales."""
    import torch.nn.functional as F
    train, _ = split(list_images(folders))
    for p in train[::every]:
        x = load_uint8(p)[None].float()
        for s in scales:
            xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True)
            rgb = xs[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            yield tiling.analyse(net, rgb, tiling.DEFAULT_TILE)


@torch.no_grad()
def refit_vq_prior(net: VQCodec, folders, smoothing: float = 0.5, every: int = 1) -> dict:
    S, G, K = net.cfg.levels, net.groups, net.cfg.codebook
    counts = torch.zeros((S, G, K), dtype=torch.float64)
    for y in _latents(net, folders, every=every):
        syms = net.assign(y, S)                                          # (S, 1, G, h, w)
        for s in range(S):
            for g in range(G):
                counts[s, g] += torch.bincount(syms[s, 0, g].reshape(-1), minlength=K).double()
    p = net.set_prior(counts, smoothing)
    ent = float(-(p * p.log2()).sum(-1).mean())
    return {"mean_entropy_bits_per_index": ent}


@torch.no_grad()
def fit_binary_context(net: BinaryCodec, folders, smoothing: float = 0.5) -> dict:
    if not net.cfg.context:
        raise ValueError("the binary model was built without a context model (cfg.context)")
    M = net.cfg.M
    a_ones = torch.full((M,), smoothing, dtype=torch.float64)
    a_all = torch.full((M,), 2 * smoothing, dtype=torch.float64)
    c_ones = torch.full((M, CONTEXT_STATES), smoothing, dtype=torch.float64)
    c_all = torch.full((M, CONTEXT_STATES), 2 * smoothing, dtype=torch.float64)
    for y in _latents(net, folders):
        bits = (y >= 0).long()                                           # (1, M, h, w)
        anchor = checkerboard(*bits.shape[-2:])
        a_ones += bits[0][:, anchor].sum(1).double()
        a_all += int(anchor.sum())
        state = context_state(bits)[0][:, ~anchor]                      # (M, n)
        rest = bits[0][:, ~anchor]
        for k in range(CONTEXT_STATES):
            sel = (state == k).double()
            c_ones[:, k] += (rest.double() * sel).sum(1)
            c_all[:, k] += sel.sum(1)
    pa, pc = a_ones / a_all, c_ones / c_all
    net.p_one_int.copy_((pa * 65536).round().clamp(1, 65535).to(torch.int32))
    net.p_ctx_int.copy_((pc * 65536).round().clamp(1, 65535).to(torch.int32))

    def h(p):
        return -(p * torch.log2(p) + (1 - p) * torch.log2(1 - p))
    anchor_bits = float(h(pa).mean())
    ctx_bits = float((h(pc) * c_all).sum() / c_all.sum())
    return {"anchor_bits_per_bit": anchor_bits, "context_bits_per_bit": ctx_bits,
            "factorized_bits_per_bit": anchor_bits}


@torch.no_grad()
def fit_vq_context(net: VQCodec, folders, iterations: int = 30, every: int = 1) -> dict:
    """EM for each (stage, group)'s copy weight a of the checkerboard
    context model (models.VQCodec), with the factorized pmfs as they are.
    -> mean bits per non-anchor index under the factorized prior and under
    the context model, on the training images."""
    import numpy as np
    if not net.cfg.context:
        raise ValueError("the VQ model was built without a context model (cfg.context)")
    S, G = net.cfg.levels, net.groups
    pf_all, q_all, k_all = ([[[] for _ in range(G)] for _ in range(S)] for _ in range(3))
    for y in _latents(net, folders, every=every):
        syms = net.assign(y, S)
        h, w = syms.shape[-2:]
        rest = ~checkerboard(h, w).numpy()
        for s in range(S):
            pmf = net._pmfs(s + 1)
            for g in range(G):
                grid = syms[s, 0, g].numpy()
                sym = grid[rest]
                nb = neighbour_indices(grid, rest)  # the copy term alone: share of neighbours equal to sym
                q = (nb == sym[:, None]).sum(1) / np.maximum((nb >= 0).sum(1), 1)
                pf_all[s][g].append(pmf[s * G + g][sym])
                q_all[s][g].append(q)
                k_all[s][g].append(agreement(nb))
    before = after = count = 0.0
    copy = torch.zeros(S, G, 5, dtype=torch.int32)   # one weight per agreement count (0: no neighbours)
    for s in range(S):
        for g in range(G):
            pf, q, ks = (np.concatenate(x[s][g]) for x in (pf_all, q_all, k_all))
            for k in range(1, 5):
                sel = ks == k
                if not sel.any():
                    continue
                a = 0.5
                for _ in range(iterations):
                    a = float(np.mean(a * q[sel] / ((1 - a) * pf[sel] + a * q[sel])))
                a = min(max(a, 1 / 65536), 1 - 1 / 65536)
                copy[s, g, k] = int(round(a * 65536))
            a = copy[s, g].numpy()[ks] / 65536.0
            before += float(-np.log2(pf).sum())
            after += float(-np.log2((1 - a) * pf + a * q).sum())
            count += len(pf)
    net.copy_int = copy
    return {"factorized_bits_per_index": before / count, "context_bits_per_index": after / count}


@torch.no_grad()
def stage_slopes(net: VQCodec, folders, every: int = 8) -> tuple:
    """For each VQ stage, the squared error it removes per bit it costs,
    with the nearest entries, on the training images: mean drop of
    ||residual||^2 per vector over the mean code length of its index under
    the factorized prior. Later stages remove less per bit; a rate weight
    proportional to these (``refit --rd-relative``) weighs each stage
    against its own exchange rate."""
    S = net.cfg.levels
    drop = torch.zeros(S, dtype=torch.float64)
    bits = torch.zeros(S, dtype=torch.float64)
    logp = -torch.log2(net.pmf_int.double() / net.pmf_int.double().sum(-1, keepdim=True))   # (S, G, K)
    for y in _latents(net, folders, every=every):
        syms = net.vq(y, torch.tensor([S]))[1]                              # (S, 1, G, h, w)
        before = y
        for s in range(S):
            after = y - net.vq.lookup(syms[:s + 1], s + 1)
            drop[s] += float(before.pow(2).sum() - after.pow(2).sum())
            bits[s] += float(logp[s].gather(1, syms[s, 0].reshape(net.groups, -1)).sum())
            before = after
    return tuple(float(f"{float(d / b):.6g}") for d, b in zip(drop, bits))


def refit_vq(net: VQCodec, folders, rounds: int = 1, every: int = 1) -> dict:
    """The VQ prior (and the context model's copy weights, if it has one)
    refitted ``rounds`` times. With a rate weight (``cfg.vq_rd``) the
    encoder's choice of indices depends on the prior, so each round counts
    the indices chosen under the previous round's prior (the alternation of
    entropy-constrained VQ design, Chou et al. 1989); ``every`` n: every
    n-th image in all rounds but the last. -> the last round's figures,
    with the mean bits per index of each round."""
    history = []
    for r in range(rounds):
        n = 1 if r == rounds - 1 else every
        res = refit_vq_prior(net, folders, every=n)
        if net.cfg.context:
            res.update(fit_vq_context(net, folders, every=n))
        history.append(round(res.get("context_bits_per_index", res["mean_entropy_bits_per_index"]), 4))
    res["rd"] = list(net.cfg.vq_rd) if isinstance(net.cfg.vq_rd, tuple) else net.cfg.vq_rd
    if rounds > 1:
        res["bits_per_index_by_round"] = history
    return res


def with_context(net):
    """A copy of a factorized binary or VQ model with its context model added."""
    from dataclasses import replace

    from ..models import build
    new = build(replace(net.cfg, context=True))
    state = {k: v for k, v in net.state_dict().items()}
    for name in ("p_ctx_int", "copy_int"):
        if hasattr(new, name):
            state[name] = getattr(new, name)
    new.load_state_dict(state)
    return new.eval()

