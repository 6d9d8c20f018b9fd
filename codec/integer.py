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

The context model's network (``IntegerNet``) quantizes its input too and
may hold *wide* layers. A layer with many inputs (over ``WIDE_TAPS``; the
context model's first, 3 x 3 over ~480 channels) would get only a few levels
per weight under one 2^24 budget per output (most of its small weights would
round to zero), so a wide layer has the budget per group of ``GROUP`` input
channels instead: each group's sums are integers below 2^24, exact in
float32 in any order, and the groups' sums are added in float64 (integers
below 2^53: exact too). Whether a layer is wide is read off its weights
(some output's ``sum |weight| * ACT_MAX`` reaches 2^24), so a layer built
under the single budget computes exactly as before.

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
#: input channels per group of a wide layer (each group's sums below 2^24, the groups added in float64)
GROUP = 64
#: IntegerNet builds a layer with more inputs per output than this wide
WIDE_TAPS = 1024


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


def quantize_layer(conv: nn.Module, weight: torch.Tensor, act: torch.Tensor,
                   wide: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer weights and per-output scales of one layer whose input is
    quantized with per-channel steps ``act``: ``sum |weight| * ACT_MAX`` stays
    below 2^24 for every output, so the layer's sums are exact in float32;
    ``wide``: below 2^24 over each group of ``GROUP`` input channels instead.
    -> (int16 weights, float32 scales)."""
    w = weight.detach().double()
    out = _out_dim(conv)
    w = w * _per_channel(act.double(), 1 - out)       # fold the input scale in
    w = w.transpose(0, 1) if out else w               # outputs first
    groups = _groups(w.shape[1]) if wide else [slice(None)]
    budget = (EXACT - 1) // ACT_MAX
    scale = torch.stack([w[:, g].abs().sum(dim=(1, 2, 3)) / (budget - w[0, g].numel())
                         for g in groups]).amax(0).clamp_min(1e-30).float()
    wq = torch.round(w / scale.double().view(-1, 1, 1, 1))
    assert all((wq[:, g].abs().sum(dim=(1, 2, 3)) * ACT_MAX < EXACT).all() for g in groups) and budget < 2 ** 15
    wq = wq.transpose(0, 1) if out else wq
    return wq.to(torch.int16), scale                  # |w| <= the budget < 2^15


def _groups(channels: int) -> list[slice]:
    """A wide layer's groups of input channels."""
    return [slice(g, min(g + GROUP, channels)) for g in range(0, channels, GROUP)]


def is_wide(weight: torch.Tensor) -> bool:
    """Does some output's sum over all of this integer layer's inputs reach
    2^24 (a wide layer, summed group by group), or are all its sums exact in
    float32 at once? (A convolution's weight: outputs along dim 0.)"""
    return bool((weight.abs().sum(dim=(1, 2, 3), dtype=torch.int64) * ACT_MAX >= EXACT).any())


def grouped_conv(conv: nn.Module, a: torch.Tensor, weight: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """A wide layer's integer sums over its inputs ``ids`` (indexes into the
    layer's input channels; ``a`` holds those inputs, ``weight`` is the whole
    layer's): a float32 convolution per group of ``GROUP`` channels, the
    groups' sums added in float64."""
    group = ids // GROUP
    acc = None
    for g in group.unique().tolist():
        sel = torch.nonzero(group == g)[:, 0]
        part = _conv(conv, a[:, sel], weight[:, ids[sel]]).double()
        acc = part if acc is None else acc + part
    return acc


def act_steps(peak: torch.Tensor, margin: float) -> torch.Tensor:
    """Per-channel quantization steps of activations that reach ``peak`` (fp32, as used)."""
    return (peak * margin / ACT_MAX).clamp_min(1e-12).float()


def integer_layer(conv: nn.Module, a: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor,
                  bias: torch.Tensor, wide: bool = False) -> torch.Tensor:
    """One integer layer: quantized activations ``a`` (float32 holding
    integers) -> ``acc * scale + bias`` (float32; the same on every platform;
    float64 for a ``wide`` layer)."""
    acc = grouped_conv(conv, a, weight, torch.arange(a.shape[1])) if wide else _conv(conv, a, weight)
    return affine(acc, scale, bias)


def affine(acc: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``acc * scale + bias`` per output channel: two IEEE-rounded operations,
    float32 for a layer's sums in float32 (as ever), float64 for a wide layer's."""
    return acc * scale.to(acc.dtype).view(1, -1, 1, 1) + bias.to(acc.dtype).view(1, -1, 1, 1)


def quantize_input(x: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """``clamp(round(x / act), -A, A)`` per channel (float32 holding integers);
    a float64 ``x`` is divided in float64."""
    step = act.double() if x.dtype == torch.float64 else act
    return torch.round(x / step.view(1, -1, 1, 1)).float().clamp_(-ACT_MAX, ACT_MAX)


class IntegerBuffers(nn.Module):
    """Buffers of integer layers, empty until built: a model trained
    before them (or not built yet) simply has none, loads without them and
    saves none."""

    NAMES: tuple = ()

    def __init__(self, layers: range) -> None:
        super().__init__()
        self._float = {}  # float32 copies of the integer weights, for the convolutions
        self._wide = {}   # layer -> is it wide (read off its weights)
        for k in layers:
            for name in self.NAMES:
                self.register_buffer(f"{name}{k}", torch.empty(0))

    @property
    def ready(self) -> bool:
        return next(iter(self._buffers.values())).numel() > 0

    def clear(self) -> None:
        self._float.clear()
        self._wide.clear()
        for name in self._buffers:
            self._buffers[name] = torch.empty(0)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        self._float.clear()
        self._wide.clear()
        for name in list(self._buffers):
            t = state_dict.get(prefix + name)
            self._buffers[name] = torch.empty(0) if t is None else t.detach().clone()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.ready:
            super()._save_to_state_dict(destination, prefix, keep_vars)

    def _weight(self, k: int) -> torch.Tensor:
        if k not in self._float:
            self._float[k] = getattr(self, f"weight{k}").float()
        return self._float[k]


def _peaks(layers: list[nn.Module], inputs: list[torch.Tensor]) -> list:
    """Per-channel peak |activation| entering each (conv) layer of a
    (conv, LeakyReLU)* conv chain, in float64; entry 0 is the input's."""
    h64 = [copy.deepcopy(m).double().eval() for m in layers]
    peak = [None] * ((len(layers) + 1) // 2)
    for x in inputs:
        x = x.double()
        m = x.abs().amax(dim=(0, 2, 3))
        peak[0] = m if peak[0] is None else torch.maximum(peak[0], m)
        for i, layer in enumerate(h64):
            x = layer(x)
            if isinstance(layer, nn.LeakyReLU):
                m = x.abs().amax(dim=(0, 2, 3))
                k = i // 2 + 1
                peak[k] = m if peak[k] is None else torch.maximum(peak[k], m)
    return peak


class IntegerHyperSynthesis(IntegerBuffers):
    """Buffers of the integer layers (empty until :meth:`build`); the float
    layers and biases stay in h_s itself."""

    NAMES = ("act", "weight", "scale")

    def __init__(self, layers: int) -> None:
        super().__init__(range(1, layers))
        self.layers = layers

    @torch.no_grad()
    def build(self, h_s: nn.Sequential, inputs: list[torch.Tensor], margin: float = 1.0) -> None:
        """Quantize from h_s's float weights; ``inputs``: h_s inputs (float64)
        whose activation ranges (times ``margin``) set each layer's ``act``."""
        convs = check_structure(h_s)
        peak = _peaks(list(h_s), inputs)
        self._float.clear()
        self._wide.clear()
        for k in range(1, len(convs)):
            act = act_steps(peak[k], margin)
            wq, scale = quantize_layer(convs[k], convs[k].weight, act)
            setattr(self, f"act{k}", act)
            setattr(self, f"weight{k}", wq)
            setattr(self, f"scale{k}", scale)

    @torch.no_grad()
    def forward(self, h_s: nn.Sequential, x64: torch.Tensor, first) -> torch.Tensor:
        """h_s(x64) -> float64; ``first(x)`` runs the float64 first layer."""
        convs = check_structure(h_s)
        slope = [a.negative_slope for a in list(h_s)[1::2]]
        x = F.leaky_relu(first(x64), slope[0])
        for k in range(1, len(convs)):
            a = quantize_input(x, getattr(self, f"act{k}"))
            x = integer_layer(convs[k], a, self._weight(k), getattr(self, f"scale{k}"), convs[k].bias.detach())
            if k < len(convs) - 1:
                x = F.leaky_relu(x, slope[k])
        return x.double()


class IntegerNet(IntegerBuffers):
    """A (conv, LeakyReLU)* conv network run on integers from its input on:
    the input too is quantized per channel (``act0``), so no layer sums
    floats. Holds its own biases; the float network it came from is only
    needed to :meth:`build` it."""

    NAMES = ("act", "weight", "scale", "bias")

    def __init__(self, layers: int) -> None:
        super().__init__(range(layers))
        self.layers = layers

    def wide(self, k: int) -> bool:
        """Is layer k a wide one (integer.py)?"""
        if k not in self._wide:
            self._wide[k] = is_wide(getattr(self, f"weight{k}"))
        return self._wide[k]

    @torch.no_grad()
    def build(self, net: nn.Sequential, inputs: list[torch.Tensor], margin: float = 1.0,
              wide_taps: int | None = WIDE_TAPS) -> None:
        """Quantize ``net`` (convolutions, not transposed): a layer with more
        than ``wide_taps`` inputs per output is built wide (a float32 budget
        per group of ``GROUP`` input channels), the others under one budget
        per output (None: every layer, as context models before wide layers)."""
        convs = check_structure(net)
        if len(convs) != self.layers:
            raise ValueError(f"integer net has {self.layers} layers, the float one {len(convs)}")
        if any(isinstance(c, nn.ConvTranspose2d) for c in convs):
            raise ValueError("IntegerNet takes convolutions, not transposed ones")
        peak = _peaks(list(net), inputs)
        self._float.clear()
        self._wide.clear()
        for k, conv in enumerate(convs):
            act = act_steps(peak[k], margin)
            wide = wide_taps is not None and conv.weight[0].numel() > wide_taps
            wq, scale = quantize_layer(conv, conv.weight, act, wide)
            setattr(self, f"act{k}", act)
            setattr(self, f"weight{k}", wq)
            setattr(self, f"scale{k}", scale)
            setattr(self, f"bias{k}", conv.bias.detach().float().clone())

    @torch.no_grad()
    def forward(self, x64: torch.Tensor, convs: list[nn.Module], slope: float = 0.01) -> torch.Tensor:
        """-> float64 output; ``convs``: layers with the float net's geometry
        (kernel, stride, padding; their weights are not read)."""
        return self.after_first(self.first_sum(x64, convs[0]), convs, slope)

    def first_sum(self, x64: torch.Tensor, conv: nn.Module, channels=slice(None)) -> torch.Tensor:
        """The first layer's integer sums over the input ``channels`` only (a
        slice or an index tensor; float32 holding integers, float64 for a wide
        layer). Sums over disjoint channel sets add up exactly to the whole
        layer's: every partial sum is an integer float32 holds exactly (a wide
        layer's, group by group, and the groups' in float64), and channels
        whose input is all zero add nothing."""
        a = quantize_input(x64, self.act0[channels])
        if self.wide(0):
            return grouped_conv(conv, a, self._weight(0), torch.arange(self.weight0.shape[1])[channels])
        return _conv(conv, a, self._weight(0)[:, channels])

    def after_first(self, acc: torch.Tensor, convs: list[nn.Module], slope: float = 0.01,
                    outputs=slice(None)) -> torch.Tensor:
        """The rest of the network from the first layer's integer sums ->
        float64; ``outputs``: only these output channels of the last layer
        (each output's sum is its own, so the others need not be computed)."""
        x = affine(acc, self.scale0, self.bias0)
        for k in range(1, self.layers):
            x = F.leaky_relu(x, slope)
            a = quantize_input(x, getattr(self, f"act{k}"))
            rows = outputs if k == self.layers - 1 else slice(None)
            x = integer_layer(convs[k], a, self._weight(k)[rows], getattr(self, f"scale{k}")[rows],
                              getattr(self, f"bias{k}")[rows], self.wide(k))
        return x.double()
