"""Compression models: the backbone (transforms.py) plus a latent codec.

:class:`HyperpriorCodec` is the default: a mean-scale hyperprior (Minnen et
al. 2018, without the autoregressive context) made variable-rate with gain
units (Cui et al., CVPR 2021, "Asymmetric gained deep image compression")::

    y = g_a(x) * gain[q]           z = h_a(y) * zgain[q]
    y_hat -> g_s(y_hat * inv_gain[q])    h_s(z_hat * zinv_gain[q]) -> (scales, means)

One gain vector per quality level 1..L, each trained at its own lambda; a
fractional quality interpolates the log-gains of its two neighbours, so any
rate between the levels is reachable with one set of weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from . import transforms
from .latent_codecs import HyperpriorLatentCodec

#: CompressAI zoo lambdas (MSE) for qualities 1..8; loss = bpp + lambda*255^2*MSE.
LAMBDAS_MSE = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in the weights file."""

    arch: str = "hyperprior"
    N: int = 128
    M: int = 192
    lambdas: tuple = LAMBDAS_MSE

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["lambdas"] = tuple(d["lambdas"])
        return cls(**d)


def pad_to(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the right/bottom to multiples of stride."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


class HyperpriorCodec(nn.Module):
    latent_kind = "scalar"
    stride = transforms.STRIDE


    def __init__(self, cfg: ModelConfig = ModelConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        N, M, L = cfg.N, cfg.M, cfg.levels
        self.g_a = transforms.analysis(N, M)
        self.g_s = transforms.synthesis(N, M)
        self.latent = HyperpriorLatentCodec(
            transforms.hyper_analysis(N, M), transforms.hyper_synthesis(N, M), N)
        # Log-gains; a larger lambda gets a finer quantizer (gain ~ sqrt(lambda)).
        init = torch.tensor([0.5 * math.log(l / cfg.lambdas[L // 2]) for l in cfg.lambdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))
        self.log_zgain = nn.Parameter(torch.zeros(L, N))
        self.log_zinv_gain = nn.Parameter(torch.zeros(L, N))
        self._cache = {}  # inference copies of the transforms; not in the state dict

    # ------------------------------------------------------------------ gains
    def check_quality(self, quality: float) -> float:
        q = float(quality)
        if not (1.0 <= q <= self.cfg.levels) or math.isnan(q):
            raise ValueError(f"quality must be between 1 and {self.cfg.levels}, got {quality}")
        return q

    def gains(self, quality: torch.Tensor) -> dict:
        """quality (B,) float in [1, L] -> four (B, C, 1, 1) gain tensors."""
        q = quality.to(self.log_gain.device, torch.float32) - 1.0
        lo = q.floor().clamp(0, self.cfg.levels - 2).long()
        t = (q - lo.float()).clamp(0, 1)[:, None]

        def interp(p):
            return torch.exp((1 - t) * p[lo] + t * p[lo + 1])[:, :, None, None]

        return {"y": interp(self.log_gain), "y_inv": interp(self.log_inv_gain),
                "z": interp(self.log_zgain), "z_inv": interp(self.log_zinv_gain)}

    def lmbda(self, quality: torch.Tensor) -> torch.Tensor:
        """The training lambda of (possibly fractional) qualities, log-interpolated."""
        lam = torch.log(torch.tensor(self.cfg.lambdas, device=quality.device))
        q = quality.float() - 1.0
        lo = q.floor().clamp(0, self.cfg.levels - 2).long()
        t = (q - lo.float()).clamp(0, 1)
        return torch.exp((1 - t) * lam[lo] + t * lam[lo + 1])

    # --------------------------------------------------------------- training
    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> dict:
        g = self.gains(quality)
        y = self.g_a(x) * g["y"]                                  # (B, M, H/16, W/16)
        out = self.latent(y, g["z"], g["z_inv"])
        out["x_hat"] = self.g_s(out["y_hat"] * g["y_inv"])        # (B, 3, H, W)
        return out

    def aux_loss(self) -> torch.Tensor:
        return self.latent.z.entropy_bottleneck.loss()

    def update_tables(self) -> None:
        self.latent.update_tables()

    # ------------------------------------------------------------- inference
    def _single_gains(self, quality: float) -> dict:
        return self.gains(torch.tensor([self.check_quality(quality)]))

    def _fast(self, name: str) -> nn.Module:
        """Inference copies of g_a / g_s (fast.py), built on first use."""
        if name not in self._cache:
            from .fast import accelerate
            self._cache[name] = accelerate(getattr(self, name))
        return self._cache[name]

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)

    @torch.inference_mode()
    def compress_tensor(self, x: torch.Tensor, quality: float):
        """x (1, 3, H, W) in [0, 1], H and W multiples of ``stride``.
        -> (list of byte strings, x_hat (1, 3, H, W) float32 that
        :meth:`decompress_tensor` reproduces exactly)."""
        g = self._single_gains(quality)
        y = self._fast("g_a")(x.contiguous(memory_format=torch.channels_last)) * g["y"]
        y = y.contiguous()
        strings, y_hat = self.latent.compress(y, g["z"], g["z_inv"])
        return strings, self._synthesize(y_hat, g)

    @torch.inference_mode()
    def decompress_tensor(self, strings, height: int, width: int, quality: float):
        g = self._single_gains(quality)
        z_shape = (self.cfg.N, height // self.stride, width // self.stride)
        y_hat = self.latent.decompress(strings, z_shape, g["z_inv"])
        return self._synthesize(y_hat, g)

    def _synthesize(self, y_hat: torch.Tensor, g: dict) -> torch.Tensor:
        y_in = (y_hat * g["y_inv"].double()).float().contiguous(memory_format=torch.channels_last)
        return self._fast("g_s")(y_in).clamp_(0, 1).contiguous()


ARCHS = {"hyperprior": HyperpriorCodec}


def build(cfg: ModelConfig) -> nn.Module:
    try:
        return ARCHS[cfg.arch](cfg)
    except KeyError:
        raise ValueError(f"unknown architecture {cfg.arch!r}; known: {', '.join(ARCHS)}") from None
