"""Start a VQ codec from a trained hyperprior model.

The VQ codec shares the backbone (g_a, g_s) with the scalar hyperprior; what
differs is the quantizer and its prior. :func:`vq_from_hyperprior` copies the
transforms, folds the gain of one quality level into g_a's last convolution
(so g_s sees latents on the scale it was trained on: y * gain * inv_gain),
fits the residual codebooks by k-means on latents of training crops, and sets
the factorized prior to the symbol frequencies. Training can then fine-tune
the synthesis alone (``aecodec train --init ... --freeze g_a,vq,prior_logits``)
and ``aecodec refit --context`` adds the checkerboard context model.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..models import HyperpriorCodec, VQCodec, build


@torch.no_grad()
def vq_from_hyperprior(hp: HyperpriorCodec, crops, codebook: int = 1024, vq_dim: int = 40,
                       stages: int = 6, quality: int = 4, gen: torch.Generator | None = None) -> tuple[VQCodec, dict]:
    """-> (VQ model, facts): ``crops`` is an iterable of (B, 3, H, W) batches in [0, 1]."""
    if not isinstance(hp, HyperpriorCodec):
        raise ValueError("the source model must be a hyperprior model")
    cfg = replace(hp.cfg, arch="vq", lambdas=hp.cfg.lambdas[:stages], codebook=codebook,
                  vq_dim=vq_dim, context=False)
    if len(cfg.lambdas) < stages:
        raise ValueError(f"the source model has {len(hp.cfg.lambdas)} levels, fewer than {stages} stages")
    net = build(cfg)
    net.g_a.load_state_dict(hp.g_a.state_dict())
    net.g_s.load_state_dict(hp.g_s.state_dict())
    if quality not in range(1, hp.cfg.levels + 1):
        raise ValueError(f"quality must be a trained level, 1 to {hp.cfg.levels}, got {quality}")
    scale = torch.exp(hp.log_gain[quality - 1] + hp.log_inv_gain[quality - 1])
    last = net.g_a[-1]
    last.weight.mul_(scale[:, None, None, None])
    last.bias.mul_(scale)
    y = torch.cat([net.g_a(x) for x in crops])
    counts = net.vq.kmeans_init(y, gen=gen)
    p = net.set_prior(counts)
    bits = -(counts / counts.sum(-1, keepdim=True) * torch.log2(p)).sum(-1).mean(1)
    return net.eval(), {"vectors_per_group": int(counts[0, 0].sum()), "codebook_usage": float((counts > 0).float().mean()),
                        "bits_per_index": [round(float(b), 3) for b in bits], "gain_of_quality": quality}
