"""Inference-only rewrites of the backbone's layers, for speed on CPU.

* :class:`SubPixelConv` -- a stride-2 5x5 transposed convolution with few
  output channels (the last layer of g_s) rewritten
  as a 3x3 convolution to 4x the channels followed by a pixel shuffle
  (the four output phases of the transposed convolution; Shi et al. 2016).
  The same linear map, but CPU convolution kernels are much faster than
  transposed ones.
* :class:`FrozenGDN` -- GDN / inverse GDN with its reparametrised beta and
  gamma computed once instead of at every call.

Encoder and decoder both run these rewritten modules, so decoding stays
bit-exact; against the training-time modules they differ only by float
rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import _compressai  # noqa: F401  (light import of compressai; see there)
from compressai.layers import GDN


class CachedModule(nn.Module):
    """A module that keeps inference-only derived objects (float64 or fast
    copies of its layers) in ``self._cache``: a plain dict, so they are not
    submodules and not in the state dict; emptied whenever the weights may
    change (``train()``, loading a state dict)."""

    def __init__(self) -> None:
        super().__init__()
        self._cache = {}

    def train(self, mode: bool = True):
        self._cache.clear()
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs):
        self._cache.clear()
        super()._load_from_state_dict(*args, **kwargs)


class SubPixelConv(nn.Module):
    def __init__(self, deconv: nn.ConvTranspose2d) -> None:
        super().__init__()
        assert deconv.stride == (2, 2) and deconv.kernel_size == (5, 5)
        assert deconv.padding == (2, 2) and deconv.output_padding == (1, 1)
        w = deconv.weight.detach()                       # (Cin, Cout, 5, 5)
        cin, cout = w.shape[:2]
        k = torch.zeros(cout, 2, 2, cin, 3, 3, dtype=w.dtype)
        for a in range(2):
            for b in range(2):
                for dh in (-1, 0, 1):
                    th = -2 * dh + a + 2
                    if th > 4:
                        continue
                    for dw in (-1, 0, 1):
                        tw = -2 * dw + b + 2
                        if tw > 4:
                            continue
                        k[:, a, b, :, dh + 1, dw + 1] = w[:, :, th, tw].t()
        self.register_buffer("weight", k.reshape(cout * 4, cin, 3, 3).contiguous())
        bias = deconv.bias.detach() if deconv.bias is not None else torch.zeros(cout)
        self.register_buffer("bias", bias.repeat_interleave(4))

    def forward(self, x):
        return F.pixel_shuffle(F.conv2d(x, self.weight, self.bias, padding=1), 2)


class FrozenGDN(nn.Module):
    def __init__(self, gdn: GDN) -> None:
        super().__init__()
        c = gdn.beta.shape[0]
        with torch.no_grad():
            self.register_buffer("beta", gdn.beta_reparam(gdn.beta).detach().clone())
            self.register_buffer("gamma", gdn.gamma_reparam(gdn.gamma).detach().reshape(c, c, 1, 1).clone())
        self.inverse = gdn.inverse

    def forward(self, x):
        norm = F.conv2d(x * x, self.gamma, self.beta)
        norm = norm.sqrt_() if self.inverse else norm.rsqrt_()
        return norm.mul_(x)


def accelerate(seq: nn.Sequential) -> nn.Sequential:
    """A copy of a transform with layers replaced by their fast forms, in
    channels-last layout. Measured on this CPU: channels-last transposed
    convolutions win for wide outputs, the sub-pixel form wins for the final
    few-channel one (2.5x), frozen GDN saves about a fifth."""
    layers = []
    for layer in seq:
        if isinstance(layer, nn.ConvTranspose2d) and layer.stride == (2, 2) \
                and layer.kernel_size == (5, 5) and layer.out_channels <= 16:
            layers.append(SubPixelConv(layer))
        elif isinstance(layer, GDN):
            layers.append(FrozenGDN(layer))
        else:
            import copy
            layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)
