"""Restoration autoencoder: denoising and masked (BERT-style) inpainting.

One network, trained as a denoising autoencoder in the broad sense of
Vincent et al. 2008: clean training crops are corrupted on the fly -- additive
Gaussian noise with sigma uniform in [0, 50] (of 255), and on half of the
crops random square holes (the image counterpart of BERT's masked tokens,
Devlin et al. 2019; He et al. 2022 for images) -- and the target is the clean
crop. The network is told the noise level and where the holes are::

    input (5, H, W) = [x * known (3), known (1), sigma/50 (1)]
      -> ResidualBlockWithStride x3 (down to H/8)        (Cheng et al. 2020)
      -> ResidualBlockUpsample x3 with skips (U-Net, Ronneberger 2015)
      -> x + residual                     (DnCNN, Zhang et al. 2017)

Built from the backbone's layers (CompressAI's residual blocks with GDN).
Large images run in overlapping tiles, so memory stays bounded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import _compressai  # noqa: F401  (light import of compressai; see there)
from compressai.layers import ResidualBlock, ResidualBlockUpsample, ResidualBlockWithStride, conv3x3

from .views import SYMMETRIES, turn, turn_back

SIGMA_MAX = 50.0
NAME = "restore"


@dataclass(frozen=True)
class RestoreConfig:
    widths: tuple = (32, 64, 128, 192)


class RestoreNet(nn.Module):
    def __init__(self, cfg: RestoreConfig = RestoreConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.widths
        self.inp = nn.Sequential(conv3x3(5, w[0]), nn.LeakyReLU(inplace=True), ResidualBlock(w[0], w[0]))
        self.down = nn.ModuleList(ResidualBlockWithStride(w[i], w[i + 1]) for i in range(len(w) - 1))
        self.mid = ResidualBlock(w[-1], w[-1])
        self.up = nn.ModuleList(ResidualBlockUpsample(w[i + 1], w[i]) for i in range(len(w) - 1))
        self.fuse = nn.ModuleList(ResidualBlock(w[i], w[i]) for i in range(len(w) - 1))
        self.out = conv3x3(w[0], 3)

    @property
    def stride(self) -> int:
        return 2 ** (len(self.cfg.widths) - 1)

    def forward(self, x, known, sigma):
        """x (B,3,H,W) in [0,1], known (B,1,H,W) 1 where the pixel is given,
        sigma (B,) noise std on the 0..255 scale -> clean estimate (B,3,H,W)."""
        s = (sigma.view(-1, 1, 1, 1) / SIGMA_MAX).expand_as(known)
        x_in = x * known
        h = self.inp(torch.cat([x_in - 0.5 * known, known, s], 1))
        skips = []
        for down in self.down:
            skips.append(h)
            h = down(h)
        h = self.mid(h)
        for i in reversed(range(len(self.up))):
            h = self.fuse[i](self.up[i](h) + skips[i])
        return x_in + (1 - known) * 0.5 + self.out(h)


def corrupt(x: torch.Tensor, gen: torch.Generator, p_noise: float = 0.8, p_mask: float = 0.5,
            holes=(16, 32)) -> tuple:
    """Training corruption of clean crops x (B,3,S,S) -> (noisy, known, sigma).

    Noise: with probability ``p_noise`` sigma ~ U[0, 50], else 0; the noisy
    crop is then clipped to 0..1 and rounded to 8 bits, as every image the
    denoiser is given is (unclipped noise trains a net that is biased near
    black and white: on Kodak at sigma 50 it lost 0.95 dB to the clipping
    before this was trained in). Masks: with
    probability ``p_mask`` one to four square holes of a side in ``holes``."""
    b, _, h, w = x.shape
    u = torch.rand(b, 2, generator=gen)
    sigma = torch.where(u[:, 0] < p_noise, torch.rand(b, generator=gen) * SIGMA_MAX, torch.zeros(b))
    noisy = x + torch.randn(x.shape, generator=gen) * (sigma / 255.0).view(-1, 1, 1, 1)
    noisy = (noisy.clamp(0, 1) * 255).round() / 255  # what a noisy 8-bit file holds
    known = torch.ones(b, 1, h, w)
    for i in range(b):
        if u[i, 1] >= p_mask:
            continue
        for _ in range(int(torch.randint(1, 5, (1,), generator=gen))):
            side = holes[int(torch.randint(len(holes), (1,), generator=gen))]
            t = int(torch.randint(0, h - side + 1, (1,), generator=gen))
            l_ = int(torch.randint(0, w - side + 1, (1,), generator=gen))
            known[i, :, t:t + side, l_:l_ + side] = 0
    return noisy, known, sigma


def restore_loss(net, x, gen):
    """Training loss (training/heads.py): MSE on corrupted crops; also the
    PSNR of the whole crop and of the holes alone."""
    noisy, known, sigma = corrupt(x, gen)
    x_hat = net(noisy, known, sigma)
    mse = (x_hat - x).pow(2).mean()
    hole = 1 - known
    hole_mse = ((x_hat - x).pow(2) * hole).sum() / (3 * hole.sum()).clamp_min(1)
    return mse, {"psnr": -10 * torch.log10(mse.detach()).item(),
                 "hole_psnr": -10 * torch.log10(hole_mse.detach().clamp_min(1e-10)).item()}


def estimate_sigma(rgb: np.ndarray) -> float:
    """Noise std (0..255) of an (H, W, 3) image by Immerkaer's method
    ("Fast noise variance estimation", CVIU 1996): the response to a
    Laplacian-difference mask that cancels smooth image structure,
    sigma = sqrt(pi/2) * mean|I * N| / 6, averaged over the channels."""
    a = rgb.astype(np.float64)
    if min(a.shape[:2]) < 3:
        return 0.0
    k = (a[:-2, :-2] - 2 * a[:-2, 1:-1] + a[:-2, 2:]
         - 2 * a[1:-1, :-2] + 4 * a[1:-1, 1:-1] - 2 * a[1:-1, 2:]
         + a[2:, :-2] - 2 * a[2:, 1:-1] + a[2:, 2:])
    return float(math.sqrt(math.pi / 2) * np.abs(k).mean() / 6.0)


@torch.no_grad()
def run(net: RestoreNet, rgb: np.ndarray, known: np.ndarray, sigma: float,
        tile: int = 512, margin: int = 32, ensemble: int = 1) -> np.ndarray:
    """Restore an (H, W, 3) uint8 image -> uint8, in overlapping tiles of
    ``tile`` px with ``margin`` px of context on each side. ``ensemble`` n
    (1, 2, 4 or 8): the mean of the restorations of the image's first n
    symmetries (views.SYMMETRIES), each turned back (a self-ensemble, as in Timofte et
    al., CVPR 2016; n times the time)."""
    if ensemble not in (1, 2, 4, 8):
        raise ValueError(f"ensemble must be 1, 2, 4 or 8, got {ensemble!r}")
    acc = np.zeros(rgb.shape, np.float32)
    for k, flip in SYMMETRIES[:ensemble]:
        out = _run_float(net, np.ascontiguousarray(turn(rgb, k, flip)), np.ascontiguousarray(turn(known, k, flip)),
                         sigma, tile, margin)
        acc += turn_back(out, k, flip)
    return (acc / ensemble * 255).round().astype(np.uint8)


def _run_float(net, rgb, known, sigma, tile, margin) -> np.ndarray:
    """:func:`run` for one orientation -> (H, W, 3) float32 in [0, 1]."""
    h, w = rgb.shape[:2]
    x = torch.from_numpy(np.array(rgb, np.float32)).permute(2, 0, 1)[None] / 255.0
    k = torch.from_numpy(known.astype(np.float32))[None, None]
    out = torch.empty_like(x)
    s = torch.tensor([float(sigma)])
    st = net.stride
    for top in range(0, h, tile):
        for left in range(0, w, tile):
            t0, l0 = max(0, top - margin), max(0, left - margin)
            t1, l1 = min(h, top + tile + margin), min(w, left + tile + margin)
            xt, kt = x[..., t0:t1, l0:l1], k[..., t0:t1, l0:l1]
            ph, pw = (-xt.shape[-2]) % st, (-xt.shape[-1]) % st
            xt = F.pad(xt, (0, pw, 0, ph), mode="replicate")
            kt = F.pad(kt, (0, pw, 0, ph), value=1.0)
            y = net(xt, kt, s)
            bh, bw = min(tile, h - top), min(tile, w - left)
            out[..., top:top + bh, left:left + bw] = y[..., top - t0:top - t0 + bh, left - l0:left - l0 + bw]
    return out[0].clamp(0, 1).permute(1, 2, 0).numpy()


def load(path=None) -> RestoreNet:
    from .store import shipped
    return shipped(NAME, NAME, RestoreConfig, RestoreNet, path)


def denoise(image, sigma="auto", weights=None, max_pixels=None, ensemble: int = 1) -> "io.Picture":  # noqa: F821
    """Denoise an image; ``sigma`` on the 0..255 scale or "auto" (estimated);
    ``ensemble``: 1, 2, 4 or 8 turned copies averaged (see :func:`run`).
    -> ``io.Picture`` (alpha kept as it was)."""
    from .. import io
    pic = io.load(image, max_pixels=max_pixels)
    s = estimate_sigma(pic.rgb) if sigma in (None, "auto") else float(sigma)
    if not 0 <= s <= 2 * SIGMA_MAX:
        raise ValueError(f"sigma must be between 0 and {2 * SIGMA_MAX:g}, got {s:g}")
    rgb = run(load(weights), pic.rgb, np.ones(pic.rgb.shape[:2], bool), s, ensemble=ensemble)
    return io.Picture(rgb, pic.alpha, pic.mode, 8)


def inpaint(image, mask, weights=None, max_pixels=None) -> "io.Picture":  # noqa: F821
    """Fill the holes of an image: ``mask`` (path, PIL image or array of the
    image's size) is non-zero where pixels are missing. -> ``io.Picture``;
    pixels outside the mask are returned unchanged."""
    from .. import io
    pic = io.load(image, max_pixels=max_pixels)
    hole = mask_array(mask, pic.height, pic.width)
    rgb = run(load(weights), pic.rgb, ~hole, 0.0)
    rgb = np.where(hole[..., None], rgb, pic.rgb)
    return io.Picture(rgb, pic.alpha, pic.mode, 8)


def mask_array(mask, height: int, width: int) -> np.ndarray:
    """A mask (path, PIL image or array) -> (H, W) bool, True = missing."""
    from .. import io
    if isinstance(mask, np.ndarray) and mask.ndim == 2:
        m = mask
    else:
        m = io.load(mask).rgb.max(2)
    if m.shape != (height, width):
        raise io.ImageError(f"mask is {m.shape[1]}x{m.shape[0]} but the image is {width}x{height}")
    return m.astype(bool) if m.dtype == bool else m > 0
