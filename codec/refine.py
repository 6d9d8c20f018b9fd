"""Encoder-side latent refinement: spend encoding time to save bits.

The analysis transform is amortised inference: one pass guesses the latent
that minimises rate + lambda * distortion for any image. For one given
image, a few steps of gradient descent on that same objective -- through the
real quantizer (rounding, with straight-through gradients), the hyperprior's
rate model and the synthesis transform -- find a better latent (Campos et
al. 2019, "Content adaptive optimization for neural image compression";
Yang, Bamler & Mandt 2020, "Improving inference for neural image
compression"). The less trained the analysis transform, the more there is
to gain. Only the encoder changes: a refined file decodes with any aecodec.

Scalar latents are refined with stochastic Gumbel annealing (SGA, Yang et
al. 2020): each element of y - mean is rounded down or up at random, the
choice relaxed by a Gumbel-softmax whose logits -atanh(distance to the
integer) / tau favour the nearer integer, and tau anneals from 0.5 towards
0 over the steps, so the objective moves from a smooth relaxation to the
coder's hard rounding. Straight-through rounding (the gradient at the
rounded point, what this module did before) barely moves the objective: on a
256 x 384 crop of kodim05 with the default model, 100 straight-through steps
(lr 0.003) ended above the start at qualities 2 and 6, while SGA (lr 0.01)
lowered it by 1.7 % and 3.1 % in 20 steps and by 2.8 % and 4.8 % in 100.
A model with a context model (context.py) codes y pass by pass, each
pass rounded around means and costed under scales that the passes before
correct; the objective follows it (the float network, the scale index
continuous), so the latent is refined for the rounding and the rate the
coder will use, not the hyperprior's alone. The iterate kept is the best under the hard
objective (checked every ``CHECK_EVERY`` steps and at the end, from the
start), so refinement never makes a file worse by its own measure.

VQ latents refine the same way: the residual VQ's rate-weighted search picks
the indices, the synthesis sees their entries with straight-through
gradients, and the rate is the indices' bits under the factorized prior; the
encoder then codes the best iterate as always (under the context model). The
indices change only where the latent crosses a cell boundary, so the step is
larger (``LR_VQ``).

Large images are refined window by window (``WINDOW`` pixels plus the
transforms' context margin), so memory stays bounded like the rest of the
encoder.
"""

from __future__ import annotations

import math

import torch

from . import _compressai  # noqa: F401
from compressai.ops import quantize_ste

from .context import LOG0, PASSES, STEP, pass_map, symbol_bits
from .priors import LEVELS, SCALES_MAX, SCALES_MIN
from .tiling import G_MARGIN, _grow, _to_tensor, _window, native_bf16, padded_size, rects

WINDOW = 1024
#: Adam's step for scalar latents at lambda <= LAMBDA_REF, in quantization bins
#: (the gained latent); above it the step grows as (lambda / LAMBDA_REF) ** LR_POWER
LR = 0.01
LAMBDA_REF, LR_POWER = 0.013, 0.7
LR_VQ = 0.01
#: SGA's temperature: TAU0 * exp(-TAU_DECAY * step / steps), at least TAU_MIN
TAU0, TAU_DECAY, TAU_MIN = 0.5, 6.0, 0.02
CHECK_EVERY = 4


def sga_round(v: torch.Tensor, tau: float, gen: torch.Generator) -> torch.Tensor:
    """Stochastic Gumbel-annealed rounding of ``v`` (differentiable): floor
    or ceil, relaxed, the nearer favoured more the smaller ``tau``."""
    lo = torch.floor(v)
    r = (v - lo).clamp(1e-5, 1 - 1e-5)
    logits = torch.stack([-torch.atanh(r), -torch.atanh(1 - r)]) / tau
    u = torch.rand(logits.shape, generator=gen).clamp_(1e-10, 1 - 1e-10)
    w = torch.softmax(logits - torch.log(-torch.log(u)), 0)
    return lo + w[1]


def objective(net, y, x, valid, quality: torch.Tensor, bf16: bool = False, tau: float | None = None,
              gen: torch.Generator | None = None):
    """(loss, bpp estimate, mse) of gained latent ``y`` for image ``x``
    (both windows), with rounding in the forward pass as the coder does it
    (``tau`` given: y's rounding relaxed by :func:`sga_round`, drawing from ``gen``);
    ``valid``: (1, 1, H, W) mask of real pixels (not edge padding).
    ``bf16``: run the synthesis under bfloat16 autocast (twice as fast where
    the CPU has bfloat16; the same files to within a few bytes on Kodak);
    the rate terms stay in float32."""
    if net.latent_kind == "vq":
        return _vq_objective(net, y, x, valid, quality, bf16)
    g = net.gains(quality)
    lat = net.latent
    eb, gc = lat.z.entropy_bottleneck, lat.y.gaussian
    z = lat.h_a(y) * g["z"]
    med = eb._get_medians()
    z_hat = quantize_ste(z - med) + med
    c = z_hat.shape[1]
    z_lik = eb._likelihood(z_hat.permute(1, 0, 2, 3).reshape(c, 1, -1))[0]
    scales, means = lat.h_s(z_hat * g["z_inv"]).chunk(2, 1)
    bits = -torch.log2(eb.likelihood_lower_bound(z_lik)).sum()
    if getattr(net, "has_context", False):
        y_hat, y_bits = _context_y(net.context, y, scales, means, tau, gen)
        bits = bits + y_bits
    else:
        y_hat = (quantize_ste(y - means) if tau is None else sga_round(y - means, tau, gen)) + means
        y_lik = gc._likelihood(y_hat, gc.lower_bound_scale(scales), means)
        bits = bits - torch.log2(gc.likelihood_lower_bound(y_lik)).sum()
    return _rd(net, y_hat * g["y_inv"], bits, x, valid, quality, bf16)


def _context_y(ctx, y, scales, means, tau, gen):
    """y_hat and its bits as the coder makes them under the context model:
    pass by pass, each rounding y around its own means (the hyperprior's,
    corrected by the float network from what the passes before decoded) and
    costing it under its own scale index -- continuous here (the coder
    rounds it), so the rate has gradients through the scales too."""
    idx = (scales.clamp(SCALES_MIN, SCALES_MAX).log() - LOG0) / STEP
    t = idx.detach().ceil().clamp(0, LEVELS - 1)          # the coder's index, the network's input
    passes = pass_map(*y.shape[1:], y.device)
    y_hat, bits = torch.zeros_like(y), y.new_zeros(())
    for p in range(PASSES):
        mu, ip = means, idx
        if p and ctx.uses(p):
            dt, dmu = ctx(ctx.inputs(y_hat, passes, p, means, t), p)
            mu, ip = means + dmu, idx + dt
        v = y - mu
        s = quantize_ste(v) if tau is None else sga_round(v, tau, gen)
        sel = passes == p
        y_hat = torch.where(sel, s + mu, y_hat)
        bits = bits + (symbol_bits(s, ip.clamp(0, LEVELS - 1)) * sel).sum()
    return y_hat, bits


def _rd(net, y_in, bits, x, valid, quality, bf16):
    """(loss, bpp, mse) of synthesising ``y_in`` at ``bits`` for ``x``."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        x_hat = net.g_s(y_in)
        if net.has_post:  # the decoder's post-filter is part of what the latent is refined for
            x_hat = net.post(x_hat, quality)
        x_hat = x_hat.float()
    n = valid.sum()
    mse = ((x_hat - x) ** 2 * valid).sum() / (3 * n)
    bpp = bits / n
    return bpp + net.lmbda(quality)[0] * 255 ** 2 * mse, bpp, mse


def _vq_objective(net, y, x, valid, quality, bf16):
    """:func:`objective` of a VQ latent: the quantizer's rate-weighted search
    under the factorized prior, entries with straight-through gradients."""
    n = int(net.stages(quality))
    logp = net.table_probs().log().float()                              # (S, G, K)
    syms = net.vq(y.detach(), torch.tensor([n]), net.rate_cost(logp))[1][:n]   # (n, 1, G, h, w)
    y_hat = net.vq.lookup(syms, n) + (y - y.detach())
    g = torch.arange(net.groups)[None, :, None, None]
    bits = -sum(logp[s][g, syms[s]].sum() for s in range(n)) / math.log(2)
    return _rd(net, y_hat, bits, x, valid, quality, bf16)


def step_size(net, quality: torch.Tensor) -> float:
    """Adam's step for a scalar latent at ``quality``: ``LR`` up to the
    default's quality 4 (lambda 0.013), growing with lambda above it. At 20
    steps the best fixed step grew with the rate: on 256 x 384 crops of
    kodim05 / kodim15, 0.01 lowered the objective by 2.9-4.8 % / 3.7-4.1 % at
    qualities -1 and 1 (0.02 and 0.04 did worse, 0.005 about as well) and
    5.2 / 5.4 % at quality 4 (0.02 about the same), but at quality 8 0.01
    gave 7.0 / 5.7 %, 0.04 12.1 / 8.7 % and 0.08 13.0 / 8.9 % (quality 6:
    0.01 6.1 / 5.4 %, 0.03 8.4 / 6.6 %)."""
    ratio = round(float(net.lmbda(quality)[0]) / LAMBDA_REF, 6)  # lambda is stored in float32
    return LR * max(1.0, ratio) ** LR_POWER


def refine(net, rgb, y: torch.Tensor, quality: float, steps: int, lr: float | None = None,
           window: int = WINDOW) -> torch.Tensor:
    """``y`` (1, M, Hp/16, Wp/16) from ``tiling.analyse`` (before gains) ->
    a refined copy: ``steps`` Adam steps per window, keeping the iterate with
    the lowest objective (``lr`` None: :func:`step_size`, or ``LR_VQ`` for VQ)."""
    if steps <= 0:
        return y
    vq = net.latent_kind == "vq"
    height, width = rgb.shape[:2]
    hp, wp = padded_size(net, height, width)
    q = torch.tensor([float(quality)])
    if lr is None:
        lr = LR_VQ if vq else step_size(net, q)
    bf16 = native_bf16()
    parts = []
    with torch.inference_mode(False), torch.enable_grad():
        gain = torch.ones(()) if vq else net.gains(q)["y"].detach()
        for t, l, h, w in rects(hp, wp, window):
            t0, t1 = _grow(t, t + h, G_MARGIN, hp)
            l0, l1 = _grow(l, l + w, G_MARGIN, wp)
            x = _to_tensor(_window(rgb, t0, t1, l0, l1)).contiguous()
            valid = torch.zeros(1, 1, t1 - t0, l1 - l0)
            valid[..., :max(0, min(t1, height) - t0), :max(0, min(l1, width) - l0)] = 1
            var = (y[:, :, t0 // 16:t1 // 16, l0 // 16:l1 // 16].clone() * gain).requires_grad_()
            opt = torch.optim.Adam([var], lr=lr)
            best, best_y = float("inf"), var.detach().clone()
            gen = torch.Generator().manual_seed(0)   # the same image gives the same file
            for step in range(steps + 1):
                if vq:  # the hard objective is the one descended
                    loss, _, _ = objective(net, var, x, valid, q, bf16)
                    hard = loss.item()
                else:
                    hard = None
                    if step % CHECK_EVERY == 0 or step == steps:
                        with torch.no_grad():
                            hard = objective(net, var, x, valid, q, bf16)[0].item()
                    if step < steps:
                        tau = max(TAU0 * math.exp(-TAU_DECAY * step / steps), TAU_MIN)
                        loss = objective(net, var, x, valid, q, bf16, tau, gen)[0]
                if hard is not None and hard < best:
                    best, best_y = hard, var.detach().clone()
                if step == steps:
                    break
                opt.zero_grad(set_to_none=True)
                (grad,) = torch.autograd.grad(loss, [var])
                var.grad = grad
                opt.step()
            keep = (slice(None), slice(None), slice((t - t0) // 16, (t - t0 + h) // 16),
                    slice((l - l0) // 16, (l - l0 + w) // 16))
            parts.append(((slice(None), slice(None), slice(t // 16, (t + h) // 16), slice(l // 16, (l + w) // 16)),
                          (best_y / gain)[keep]))
    out = y.clone()
    for where, part in parts:
        out[where] = part
    return out
