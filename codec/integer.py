"""An integer hyper-synthesis: h_s evaluated so that every platform gets the
same bits (Ballé, Johnston & Minnen 2019, "Integer networks for data
compression"; post-training, as He et al. 2022).

The decoder must reproduce the encoder's scale indexes exactly. Float
convolutions do not promise that: their summation order depends on the
library, the instruction set and the thread count. Here the first layer runs
in float64, single-threaded (the input is the small side latent), and every
later convolution runs on integers:

* the activations entering layer k are quantized per channel,
  ``a = clamp(round(x / act[k]), -A, A)`` with ``A = ACT_MAX``;
* the layer's weights, with ``act[k]`` folded in, are integers ``weight[k]``
  with a scale ``scale[k]`` per output channel, chosen so that
  ``sum |weight| * A < 2^24`` for every output;
* so every partial sum of the convolution is an integer below 2^24, exact in
  float32 whatever the order: oneDNN may sum in any order, on any number of
  threads, and the result is the same integer;
* the output is ``acc * scale[k] + bias`` (two IEEE-rounded float32 operations,
  the same everywhere), then the activation function.

Against float64 h_s the default model's rate grows by 0.01-0.09 %
(scripts/integerize.py prints it) and h_s runs about twice as fast.

The quantization is computed once, from the model's float weights and the
activation ranges seen on calibration latents (the side latents of training
images: scripts/integerize.py; without data, latents sampled from the
model's own side prior, as ``aecodec export`` does), and stored with the
weights as int16 and float32 buffers.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

#: largest magnitude of a quantized activation
ACT_MAX = 1023
#: every partial sum of an integer convolution stays below this (float32 is exact up to 2^24)
EXACT = 2 ** 24


def _conv(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    if isinstance(layer, nn.ConvTranspose2d):
        return F.conv_transpose2d(x, weight, None, layer.stride, layer.padding, layer.output_padding)
    return F.conv2d(x, weight, None, layer.stride, layer.padding)


def _out_dim(layer: nn.Module) -> int:
    return 1 if isinstance(layer, nn.ConvTranspose2d) else 0


def _per_channel(t: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * 4
    shape[dim] = -1
    return t.view(shape)


def check_structure(h_s: nn.Sequential) -> list[nn.Module]:
    """The convolutions of an h_s made of (transposed) convolutions, each but
    the last followed by a LeakyReLU."""
    convs = list(h_s)[0::2]
    acts = list(h_s)[1::2]
    if not (len(convs) == len(acts) + 1 and all(isinstance(c, (nn.Conv2d, nn.ConvTranspose2d)) for c in convs)
            and all(isinstance(a, nn.LeakyReLU) for a in acts) and all(c.groups == 1 for c in convs)):
        raise ValueError("integer h_s needs (conv, LeakyReLU)* conv")
    return convs


class IntegerHyperSynthesis(nn.Module):
    """Buffers of the integer layers (empty until :meth:`build`); the float
    layers and biases stay in h_s itself."""

    def __init__(self, layers: int) -> None:
        super().__init__()
        self.layers = layers
        self._float = {}  # float32 copies of the integer weights, for the convolutions
        for k in range(1, layers):
            for name in ("act", "weight", "scale"):
                self.register_buffer(f"{name}{k}", torch.empty(0))

    @property
    def ready(self) -> bool:
        return self.weight1.numel() > 0

    def clear(self) -> None:
        self._float.clear()
        for name in self._buffers:
            self._buffers[name] = torch.empty(0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # a model without them (trained before, or not built yet) simply has none
        self._float.clear()
        for name in list(self._buffers):
            t = state_dict.get(prefix + name)
            self._buffers[name] = torch.empty(0) if t is None else t.detach().clone()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.ready:
            super()._save_to_state_dict(destination, prefix, keep_vars)

    @torch.no_grad()
    def build(self, h_s: nn.Sequential, inputs: list[torch.Tensor], margin: float = 1.0) -> None:
        """Quantize from h_s's float weights; ``inputs``: h_s inputs (float64)
        whose activation ranges (times ``margin``) set each layer's ``act``."""
        convs = check_structure(h_s)
        h64 = [copy.deepcopy(m).double().eval() for m in h_s]
        peak = [None] * len(convs)
        for x in inputs:
            x = x.double()
            for i, layer in enumerate(h64):
                x = layer(x)
                if isinstance(layer, nn.LeakyReLU):
                    m = x.abs().amax(dim=(0, 2, 3))
                    k = i // 2 + 1
                    peak[k] = m if peak[k] is None else torch.maximum(peak[k], m)
        for k in range(1, len(convs)):
            conv = convs[k]
            # fp32 values stored as they are used
            act = (peak[k] * margin / ACT_MAX).clamp_min(1e-12).float()
            w = conv.weight.detach().double()
            out = _out_dim(conv)
            w = w * _per_channel(act.double(), 1 - out)       # fold the input scale in
            sums = tuple(d for d in range(4) if d != out)
            l1 = w.abs().sum(dim=sums)
            budget = (EXACT - 1) // ACT_MAX
            taps = w.numel() // w.shape[out]
            scale = (l1 / (budget - taps)).clamp_min(1e-30).float()
            wq = torch.round(w / _per_channel(scale.double(), out))
            assert ((wq.abs().sum(dim=sums) * ACT_MAX) < EXACT).all() and budget < 2 ** 15
            self._float.clear()
            setattr(self, f"act{k}", act)
            setattr(self, f"weight{k}", wq.to(torch.int16))  # |w| <= the budget < 2^15
            setattr(self, f"scale{k}", scale)

    @torch.no_grad()
    def forward(self, h_s: nn.Sequential, x64: torch.Tensor, first) -> torch.Tensor:
        """h_s(x64) -> float64; ``first(x)`` runs the float64 first layer."""
        convs = check_structure(h_s)
        slope = [a.negative_slope for a in list(h_s)[1::2]]
        x = F.leaky_relu(first(x64), slope[0])
        for k in range(1, len(convs)):
            act = getattr(self, f"act{k}")
            a = torch.round(x.float() / act.view(1, -1, 1, 1)) if k > 1 else \
                torch.round(x / act.double().view(1, -1, 1, 1)).float()
            a.clamp_(-ACT_MAX, ACT_MAX)
            if k not in self._float:
                self._float[k] = getattr(self, f"weight{k}").float()
            acc = _conv(convs[k], a, self._float[k])
            x = acc * getattr(self, f"scale{k}").view(1, -1, 1, 1) + convs[k].bias.detach().float().view(1, -1, 1, 1)
            if k < len(convs) - 1:
                x = F.leaky_relu(x, slope[k])
        return x.double()

