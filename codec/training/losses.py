"""Rate-distortion losses. Models return dicts; the loss reads only
``x_hat`` and ``likelihoods``, so it works for any model."""

from __future__ import annotations

import math

import torch


def bits_per_pixel(likelihoods: dict, num_pixels: int) -> torch.Tensor:
    """Per-sample bpp (B,) from a dict of likelihood tensors (B, ...)."""
    total = 0.0
    for lik in likelihoods.values():
        total = total + (-torch.log2(lik)).flatten(1).sum(1)
    return total / num_pixels


def rd_loss(out: dict, x: torch.Tensor, lmbda: torch.Tensor) -> dict:
    """loss = mean_b( bpp_b + lambda_b * 255^2 * MSE_b ), MSE on [0, 1] images."""
    n, _, h, w = x.shape
    bpp = bits_per_pixel(out["likelihoods"], h * w)
    mse = (out["x_hat"].float() - x).pow(2).flatten(1).mean(1)
    loss = (bpp + lmbda * 255.0 ** 2 * mse).mean()
    psnr = -10 * torch.log10(mse.detach().clamp_min(1e-10))
    return {"loss": loss, "bpp": bpp.detach().mean(), "mse": mse.detach().mean(),
            "psnr": psnr.mean()}


def psnr(mse: float) -> float:
    return 10 * math.log10(1.0 / max(mse, 1e-12))
