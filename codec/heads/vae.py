"""VAE on the codec's backbone: the decoder as a generator.

Kingma & Welling 2014 with the codec's transforms::

    x --g_a--> (mu, log var) (2M, H/16, W/16)   q(y|x) = N(mu, var)
    y = mu + sigma * eps                          (reparameterisation)
    y --g_s--> (m, log s) (6, H, W)               p(x|y): discretized logistic
                                                  per sub-pixel, 256 bins (Salimans 2017)
    loss = -log p(x|y) + beta * KL(q(y|x) || N(0, I))

With beta = 1 the loss is the negative ELBO, an upper bound on the code
length of x; divided by 3HW ln 2 it is bits per dimension. Sampling decodes
y ~ N(0, I); interpolation decodes the line between two posterior means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import transforms

NAME = "vae"
HALF_BIN = 0.5 / 255.0


@dataclass(frozen=True)
class VAEConfig:
    N: int = 64
    M: int = 32
    beta: float = 1.0


class ImageVAE(nn.Module):
    stride = 16

    def __init__(self, cfg: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = transforms.analysis(cfg.N, 2 * cfg.M)
        self.g_s = transforms.synthesis(cfg.N, cfg.M, out_ch=6)

    def posterior(self, x):
        mu, logvar = self.g_a(x * 2 - 1).chunk(2, 1)
        return mu, logvar.clamp(-12, 6)

    def decode(self, y):
        """-> (mean in [0,1], log scale) of p(x|y), each (B,3,H,W)."""
        m, log_s = self.g_s(y).chunk(2, 1)
        return torch.sigmoid(m), log_s.clamp(-7, 2)

    def forward(self, x, sample: bool = True) -> dict:
        mu, logvar = self.posterior(x)
        y = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu) if sample else mu
        mean, log_s = self.decode(y)
        nll = -discretized_logistic_logp(x, mean, log_s).flatten(1).sum(1)     # nats (B,)
        kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).flatten(1).sum(1)   # nats (B,)
        dims = x[0].numel() * math.log(2)
        return {"x_hat": mean, "nll_bpd": nll / dims, "kl_bpd": kl / dims}

    @torch.no_grad()
    def sample(self, n: int, size: int, gen: torch.Generator, temperature: float = 1.0) -> torch.Tensor:
        s = size // self.stride
        y = torch.randn(n, self.cfg.M, s, s, generator=gen) * temperature
        return self.decode(y)[0]


def discretized_logistic_logp(x, mean, log_s):
    """log P(x) of 8-bit values x in [0, 1] under a logistic of ``mean`` and
    scale exp(log_s), integrated over each value's bin; the end bins take
    the tails."""
    inv_s = torch.exp(-log_s)
    c = x - mean
    plus, minus = inv_s * (c + HALF_BIN), inv_s * (c - HALF_BIN)
    log_cdf_plus = -F.softplus(-plus)            # log sigmoid(plus): x = 0
    log_one_minus_cdf_minus = -F.softplus(minus)  # log (1 - sigmoid(minus)): x = 1
    diff = torch.sigmoid(plus) - torch.sigmoid(minus)
    mid = inv_s * c
    log_pdf_mid = mid - log_s - 2 * F.softplus(mid) + math.log(2 * HALF_BIN)
    inner = torch.where(diff > 1e-5, torch.log(diff.clamp_min(1e-12)), log_pdf_mid)
    return torch.where(x < HALF_BIN, log_cdf_plus,
                       torch.where(x > 1 - HALF_BIN, log_one_minus_cdf_minus, inner))


def vae_loss(net, x, gen):
    out = net(x)
    loss = (out["nll_bpd"] + net.cfg.beta * out["kl_bpd"]).mean()
    mse = (out["x_hat"] - x).pow(2).mean()
    return loss, {"bpd": (out["nll_bpd"] + out["kl_bpd"]).mean().item(),
                  "kl_bpd": out["kl_bpd"].mean().item(), "psnr": -10 * torch.log10(mse.detach()).item()}


def load(path=None) -> ImageVAE:
    from .store import shipped
    return shipped(NAME, NAME, VAEConfig, ImageVAE, path)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [0, 1] -> (B, H, W, 3) uint8."""
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def grid(images: np.ndarray, cols: int, pad: int = 2) -> np.ndarray:
    """(n, h, w, 3) uint8 -> one picture, ``cols`` per row, white gaps."""
    n, h, w, _ = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = im
    return out


def sample_grid(n: int = 16, seed: int = 0, size: int = 64, temperature: float = 1.0, weights=None) -> np.ndarray:
    net = load(weights)
    gen = torch.Generator().manual_seed(seed)
    x = net.sample(n, size, gen, temperature)
    return grid(to_uint8(x), cols=int(math.ceil(math.sqrt(n))))


def square(image, size: int) -> torch.Tensor:
    """An image -> its centre square resized to size^2, (1, 3, size, size)."""
    from .. import io
    from PIL import Image
    pic = io.load(image)
    h, w = pic.rgb.shape[:2]
    s = min(h, w)
    t, l_ = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(pic.rgb[t:t + s, l_:l_ + s]).resize((size, size), Image.LANCZOS)
    return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)[None].float() / 255.0


@torch.no_grad()
def interpolate(a, b, steps: int = 8, size: int = 128, weights=None) -> np.ndarray:
    """Decode the line between the posterior means of two images (centre
    squares at ``size``); -> a strip: A, the interpolants, B."""
    net = load(weights)
    if size % net.stride:
        raise ValueError(f"size must be a multiple of {net.stride}")
    xa, xb = square(a, size), square(b, size)
    ma, mb = net.posterior(xa)[0], net.posterior(xb)[0]
    t = torch.linspace(0, 1, steps).view(-1, 1, 1, 1)
    x = net.decode((1 - t) * ma + t * mb)[0]
    frames = torch.cat([xa, x, xb])
    return grid(to_uint8(frames), cols=steps + 2)


@torch.no_grad()
def negative_elbo_bpd(net: ImageVAE, x: torch.Tensor, samples: int = 1, seed: int = 0) -> float:
    """Mean negative ELBO in bits per dimension of crops x (B,3,H,W)."""
    torch.manual_seed(seed)
    tot = 0.0
    for _ in range(samples):
        out = net(x)
        tot += float((out["nll_bpd"] + out["kl_bpd"]).mean())
    return tot / samples
