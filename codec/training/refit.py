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


def _latents(net, folders, scales=(1.0, 0.5)):
    """g_a of every training image (train split only), at a few scales."""
    import torch.nn.functional as F
    train, _ = split(list_images(folders))
    for p in train:
        x = load_uint8(p)[None].float()
        for s in scales:
            xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True)
            rgb = xs[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            yield tiling.analyse(net, rgb, tiling.DEFAULT_TILE)


@torch.no_grad()
def refit_vq_prior(net: VQCodec, folders, smoothing: float = 0.5) -> dict:
    S, G, K = net.cfg.levels, net.groups, net.cfg.codebook
    counts = torch.zeros((S, G, K), dtype=torch.float64)
    for y in _latents(net, folders):
        _, syms, _ = net.vq(y, torch.tensor([S]))                        # (S, 1, G, h, w)
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
def fit_vq_context(net: VQCodec, folders, iterations: int = 30) -> dict:
    """EM for each (stage, group)'s copy weight a of the checkerboard
    context model (models.VQCodec), with the factorized pmfs as they are.
    -> mean bits per non-anchor index under the factorized prior and under
    the context model, on the training images."""
    import numpy as np
    if not net.cfg.context:
        raise ValueError("the VQ model was built without a context model (cfg.context)")
    S, G = net.cfg.levels, net.groups
    pf_all, q_all, k_all = ([[[] for _ in range(G)] for _ in range(S)] for _ in range(3))
    for y in _latents(net, folders):
        _, syms, _ = net.vq(y, torch.tensor([S]))
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

