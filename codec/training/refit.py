"""Maximum-likelihood refits of the discrete codecs' priors, by counting.

With the transforms fixed, the best static prior for a latent symbol is its
frequency on training data (smoothed); gradient training of the prior's
logits converges to the same place, slowly. These refits run the trained
g_a over the training images (never Kodak) and count:

* VQ: each (stage, group)'s index frequencies -> ``prior_logits``;
* binary: P(1) per channel at the checkerboard anchors and P(1 | channel,
  context state) elsewhere (models.BinaryCodec with ``context``).

:func:`design_codebooks` also moves the VQ codebooks (entropy-constrained
Lloyd iterations). Every fit takes image folders, or the latents of
:func:`training_latents` so that several fits run g_a once.
"""

from __future__ import annotations

import torch

from .. import tiling
from ..models import CONTEXT_STATES, BinaryCodec, VQCodec, agreement, checkerboard, context_state, neighbour_indices
from .data import list_images, load_uint8, split


class Latents(list):
    """g_a of training images (a list of (1, M, h, w) tensors), computed once."""


#: the scales each training image is seen at
SCALES = (1.0, 0.5)


def _latents(net, folders, every: int = 1):
    """g_a of every training image (train split only; with ``every`` n, of
    every n-th), at each of ``SCALES``."""
    import torch.nn.functional as F
    train, _ = split(list_images(folders))
    for p in train[::every]:
        x = load_uint8(p)[None].float()
        for s in SCALES:
            xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", antialias=True)
            rgb = xs[0].round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            yield tiling.analyse(net, rgb, tiling.DEFAULT_TILE)


@torch.no_grad()
def training_latents(net, folders, every: int = 1) -> Latents:
    """The latents every fit below would compute from ``folders``, kept.
    (Valid while g_a is unchanged: the fits here never change it.)"""
    return Latents(_latents(net, folders, every=every))


def _each(net, source, every: int = 1):
    """The latents of ``source``: folders (computed now) or :class:`Latents`
    (every n-th image: the scales of one image are neighbours, so this takes
    every n-th group of ``len(SCALES)``)."""
    if isinstance(source, Latents):
        return [y for i, y in enumerate(source) if (i // len(SCALES)) % every == 0]
    return _latents(net, source, every=every)


@torch.no_grad()
def refit_vq_prior(net: VQCodec, folders, smoothing: float = 0.5, every: int = 1) -> dict:
    S, G, K = net.cfg.levels, net.groups, net.cfg.codebook
    counts = torch.zeros((S, G, K), dtype=torch.float64)
    for y in _each(net, folders, every):
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
    for y in _each(net, folders):
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
    if not net.cfg.context:
        raise ValueError("the VQ model was built without a context model (cfg.context)")
    S, G = net.cfg.levels, net.groups
    pf_all, q_all, k_all = ([[[] for _ in range(G)] for _ in range(S)] for _ in range(3))
    for y in _each(net, folders, every):
        syms = net.assign(y, S)
        h, w = syms.shape[-2:]
        rest = ~checkerboard(h, w).numpy()
        for s in range(S):
            pmf = net._pmfs(s + 1, s)
            for g in range(G):
                grid = syms[s, 0, g].numpy()
                sym = grid[rest]
                q, ks = _copy_share(grid, rest, sym)
                pf_all[s][g].append(pmf[g][sym])
                q_all[s][g].append(q)
                k_all[s][g].append(ks)
    copy, before, after = _fit_copy(pf_all, q_all, k_all, iterations)
    net.copy_int = copy
    return {"factorized_bits_per_index": before, "context_bits_per_index": after}


def _fit_copy(pf_all, q_all, k_all, iterations: int = 30):
    """EM for the copy weights, one per (stage, group, agreement count),
    from each non-anchor index's base probability ``pf``, share of
    neighbours equal to it ``q`` and agreement count ``k`` (lists per
    stage, per group, of arrays). -> (copy_int (S, G, 5), mean bits per
    index under the base and under the mixture)."""
    import numpy as np
    S, G = len(pf_all), len(pf_all[0])
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
    return copy, before / count, after / count


def _copy_share(grid, rest, sym):
    """Per non-anchor index ``sym`` of ``grid``: the share of its anchor
    neighbours equal to it, and their agreement count."""
    import numpy as np
    nb = neighbour_indices(grid, rest)
    return (nb == sym[:, None]).sum(1) / np.maximum((nb >= 0).sum(1), 1), agreement(nb)


@torch.no_grad()
def fit_vq_classes(net: VQCodec, folders, every: int = 1, strength: float = 200.0, smoothing: float = 0.5) -> dict:
    """All of a VQ model's prior with energy classes (``cfg.vq_classes``),
    from the indices its encoder picks now on training latents: the
    factorized pmfs; each entry's mean squared error left after it
    (``energy_int``, x1024); per stage, the class edges at the quantiles of
    what picks the class (``VQCodec.stage_energy``; equal shares of
    positions; stage 1: of its non-anchors); the class pmfs (counts
    plus ``strength`` x the factorized pmf: a class seen little stays close
    to it); and the copy weights over them. -> mean bits per index under
    the factorized prior and under the whole model."""
    import numpy as np
    S, G, K, C = net.cfg.levels, net.groups, net.cfg.codebook, net.cfg.vq_classes
    data = []
    for y in _each(net, folders, every):
        syms = net.assign(y, S)                                          # (S, 1, G, h, w)
        residual, _ = net.vq._vectors(y)                                 # (G, h*w, d)
        err = []
        for s in range(S):
            residual = residual - net.vq._pick(net.vq.book(s), syms[s, 0].reshape(G, -1))
            err.append(residual.pow(2).sum(-1))
        data.append((syms[:, 0].numpy(), torch.stack(err).view(S, G, *syms.shape[-2:]).numpy()))
    counts = torch.zeros((S, G, K), dtype=torch.float64)
    num, den = np.zeros((S, G, K)), np.zeros((S, G, K))
    for syms, err in data:
        for s in range(S):
            for g in range(G):
                k = syms[s, g].reshape(-1)
                counts[s, g] += torch.from_numpy(np.bincount(k, minlength=K)).double()
                np.add.at(num[s, g], k, err[s, g].reshape(-1))
                np.add.at(den[s, g], k, 1)
    pf = net.set_prior(counts, smoothing).numpy()
    mean = num.sum(-1, keepdims=True) / np.maximum(den.sum(-1, keepdims=True), 1)
    net.energy_int.copy_(torch.from_numpy(np.round((num + mean) / (den + 1) * 1024)).to(torch.int32))
    edges = torch.zeros(S, C - 1, dtype=torch.int64)
    classes = [[None] * S for _ in data]
    for s in range(S):   # stage 1 by its anchor neighbours, its anchors factorized (class -1)
        known = [syms[s - 1] if s else syms[0] for syms, _ in data]
        e = [net.stage_energy(s, k) for k in known]
        pool = [v[~checkerboard(*v.shape).numpy()] if s == 0 else v.reshape(-1) for v in e]
        edges[s] = torch.from_numpy(np.floor(np.quantile(np.concatenate(pool), np.arange(1, C) / C)).astype(np.int64))
        net.class_edges[s] = edges[s]
        for i, k in enumerate(known):
            classes[i][s] = net.stage_classes(s, k)
    table = torch.zeros(S, G, C, K, dtype=torch.int32)
    in_use = net._in_use().numpy()                                       # (S, 1, K)
    for s in range(S):
        cnt = np.zeros((G, C, K))
        for (syms, _), cls in zip(data, classes):
            c = cls[s].reshape(-1)
            ok = c >= 0
            for g in range(G):
                np.add.at(cnt[g], (c[ok], syms[s, g].reshape(-1)[ok]), 1)
        p = (cnt + strength * pf[s][:, None, :]) / (cnt.sum(-1, keepdims=True) + strength)
        table[s] = torch.from_numpy(np.maximum(np.round(p * 65536), 1) * in_use[s][:, None, :]).to(torch.int32)
    net.pmf_class_int.copy_(table)
    # the copy weights over the class pmfs, and the bits
    pf_all, q_all, k_all = ([[[] for _ in range(G)] for _ in range(S)] for _ in range(3))
    anchor_bits = fact_bits = n_all = 0.0
    for syms, _ in data:
        h, w = syms.shape[-2:]
        anchor = checkerboard(h, w).numpy()
        for s in range(S):
            base = net.base_rows(s, syms[s - 1] if s else syms[0])
            pmf = net._pmfs(s + 1, s)
            for g in range(G):
                k = syms[s, g].reshape(-1)
                pb = base[g][np.arange(h * w), k]
                anchor_bits += float(-np.log2(pb[anchor.reshape(-1)]).sum())
                fact_bits += float(-np.log2(pmf[g][k]).sum())
                n_all += h * w
                sym = syms[s, g][~anchor]
                q, ks = _copy_share(syms[s, g], ~anchor, sym)
                pf_all[s][g].append(pb[~anchor.reshape(-1)])
                q_all[s][g].append(q)
                k_all[s][g].append(ks)
    copy, _, rest_bits = _fit_copy(pf_all, q_all, k_all)
    net.copy_int = copy
    n_rest = sum(len(a) for x in pf_all for y in x for a in y)
    total = (anchor_bits + rest_bits * n_rest) / n_all
    return {"mean_entropy_bits_per_index": float(-(pf * np.log2(pf)).sum(-1).mean()),
            "factorized_bits_per_index": fact_bits / n_all, "context_bits_per_index": total, "classes": C}


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
    logp = -torch.log2(net.table_probs())                                # (S, G, K)
    for y in _each(net, folders, every):
        syms = net.vq(y, torch.tensor([S]))[1]                              # (S, 1, G, h, w)
        before = y
        for s in range(S):
            after = before - net.vq.lookup(syms[s:s + 1], 1, start=s)
            drop[s] += float(before.pow(2).sum() - after.pow(2).sum())
            bits[s] += float(logp[s].gather(1, syms[s, 0].reshape(net.groups, -1)).sum())
            before = after
    return tuple(float(f"{float(d / b):.6g}") for d, b in zip(drop, bits))


@torch.no_grad()
def design_codebooks(net: VQCodec, folders, iterations: int = 8, smoothing: float = 0.5,
                     seed: int = 0, every: int = 1) -> dict:
    """The VQ codebooks redesigned on training latents by entropy-constrained
    Lloyd iterations (Chou, Lookabaugh and Gray 1989), stage after stage on
    the residual the earlier stages leave: assign each vector to the entry
    minimising ||residual - entry||^2 + rd * bits (rd: the stage's
    ``cfg.vq_rd``, bits: -log2 of the entry's probability; rd 0 is plain
    k-means), then move each entry to the mean of its vectors and set the
    probabilities to the counts. An entry nobody picks is revived by
    splitting the cell with the largest squared error: it moves halfway from
    that cell's entry towards one of the cell's vectors, and the two share
    the cell's count. Each iteration lowers the mean error + rd * bits of
    what it assigns (what the encoder minimises), up to the revivals.

    Sets ``codebooks`` and the factorized prior (the context model's copy
    weights are then stale: :func:`refit_vq` refits both). ``folders``:
    image folders or :class:`Latents`; ``every`` n: every n-th image. -> per
    stage: share of entries used, mean squared error per vector and mean
    bits per index before and after (rate-weighted assignment under the
    factorized prior, counted on these latents)."""
    gen = torch.Generator().manual_seed(seed)
    vq, S, G = net.vq, net.cfg.levels, net.groups
    rds = net.cfg.vq_rd_stages()
    residual = torch.cat([vq._vectors(y)[0] for y in _each(net, folders, every)], 1)   # (G, P, d)
    report = []

    def measure(book, p, idx):
        K = book.shape[1]
        err = float((residual - vq._pick(book, idx)).pow(2).sum(-1).mean())
        bits = float(-torch.log2(p.gather(1, idx)).mean())
        used = float(torch.stack([torch.bincount(i, minlength=K) > 0 for i in idx]).double().mean())
        return {k: float(f"{v:.6g}") for k, v in (("used", used), ("mse", err), ("bits", bits))}

    for s in range(S):
        K = vq.sizes[s]
        book = vq.book(s).detach().clone()
        p = net.table_probs()[s, :, :K].float()
        idx = vq._nearest(residual, book, -rds[s] * torch.log2(p))
        before = measure(book, p, idx)
        for _ in range(iterations):
            counts = torch.zeros(G, K)
            for g in range(G):
                n = torch.bincount(idx[g], minlength=K).float()
                sums = torch.zeros_like(book[g]).index_add_(0, idx[g], residual[g])
                book[g] = torch.where(n[:, None] > 0, sums / n.clamp_min(1)[:, None], book[g])
                err = (residual[g] - book[g][idx[g]]).pow(2).sum(-1)
                cell_err = torch.zeros(K, dtype=err.dtype).index_add_(0, idx[g], err)
                dead = torch.nonzero(n == 0).flatten()
                for k, parent in zip(dead.tolist(), cell_err.argsort(descending=True)[:len(dead)].tolist()):
                    members = torch.nonzero(idx[g] == parent).flatten()
                    if len(members) < 2:
                        break
                    v = residual[g, members[torch.randint(len(members), (1,), generator=gen)[0]]]
                    book[g, k] = book[g, parent] + 0.5 * (v - book[g, parent])
                    n[k] = n[parent] = n[parent] / 2
                counts[g] = n
            p = ((counts + smoothing) / (counts + smoothing).sum(-1, keepdim=True))
            idx = vq._nearest(residual, book, -rds[s] * torch.log2(p))
        counts = torch.stack([torch.bincount(i, minlength=K) for i in idx]).double() + smoothing
        p = counts / counts.sum(-1, keepdim=True)
        vq.codebooks.data[s, :, :K] = book
        net.prior_logits.data[s, :, :K] = p.log().float()
        net.prior_logits.data[s, :, K:] = -30.0   # (not in use: never picked or coded)
        report.append({"stage": s + 1, "before": before, "after": measure(book, p.float(), idx)})
        residual = residual - vq._pick(book, idx)
    net.update_tables()
    return {"iterations": iterations, "every": every, "stages": report}


def refit_vq(net: VQCodec, folders, rounds: int = 1, every: int = 1) -> dict:
    """The VQ prior (and the context model's copy weights, if it has one)
    refitted ``rounds`` times. With a rate weight (``cfg.vq_rd``) the
    encoder's choice of indices depends on the prior, so each round counts
    the indices chosen under the previous round's prior (the alternation of
    entropy-constrained VQ design, Chou et al. 1989); ``every`` n: every
    n-th image in all rounds but the last. -> the last round's figures,
    with the mean bits per index of each round."""
    history = []
    if rounds > 1 and not isinstance(folders, Latents):
        folders = training_latents(net, folders)
    for r in range(rounds):
        n = 1 if r == rounds - 1 else every
        if net.cfg.vq_classes:
            res = fit_vq_classes(net, folders, every=n)
        else:
            res = refit_vq_prior(net, folders, every=n)
            if net.cfg.context:
                res.update(fit_vq_context(net, folders, every=n))
        history.append(round(res.get("context_bits_per_index", res["mean_entropy_bits_per_index"]), 4))
    res["rd"] = list(net.cfg.vq_rd) if isinstance(net.cfg.vq_rd, tuple) else net.cfg.vq_rd
    if rounds > 1:
        res["bits_per_index_by_round"] = history
    return res


def with_context(net, classes: int | None = None):
    """A copy of a binary or VQ model with its context model (added if it
    has none; VQ: with ``classes`` energy classes, 0 for none; None: as
    the model's)."""
    from dataclasses import replace

    from ..models import build
    classes = net.cfg.vq_classes if classes is None else classes
    new = build(replace(net.cfg, context=True, vq_classes=classes))
    from ..weights import load_state
    fresh = new.state_dict()
    state = {k: v for k, v in net.state_dict().items() if k in fresh}
    for k, v in fresh.items():   # what the context model adds, or what a new number of classes resizes
        if k not in state or (k in CLASS_TENSORS and state[k].shape != v.shape):
            state[k] = v
    return load_state(new, state).eval()


#: the VQ model's tensors of its energy classes
CLASS_TENSORS = ("energy_int", "class_edges", "pmf_class_int")
