"""A channel and checkerboard context model for the scalar latent.

The mean-scale hyperprior codes every element of y under a Gaussian whose
mean and scale come from the side latent z alone. Elements already decoded
say more (Minnen & Singh 2020, channel-conditional; He et al. 2021,
checkerboard; both at once as in ELIC, He et al. 2022). Here y's channels
are split into ``SLICES`` slices and each slice's positions into the
checkerboard's anchors ((i + j) even) and the rest, giving four passes::

    pass 0: slice 0, anchors      under the hyperprior (mean, scale index t)
    pass 1: slice 0, the rest     | a network of what is decoded so far
    pass 2: slice 1, anchors      | corrects the hyperprior's parameters:
    pass 3: slice 1, the rest     |   t' = round(t + dt), mean' = mean + dmean

One network serves passes 1-3 (an output head each): its input is y_hat where already decoded
(zero elsewhere), one plane per slice saying which of its positions are
known, and the hyperprior's means and scale indexes; its last layer starts
at zero, so an untrained model codes exactly like the hyperprior. The
transforms are not changed: it is trained on the rate alone, with g_a, h_a
and h_s fixed (training/context.py), which is cheap enough for a CPU.

Exact decoding: the decoder runs the same network on the same inputs, as
integer layers (integer.IntegerNet: integer sums, exact in any order on any
platform; the input is quantized too; the first layer a wide one, exact
per group of 64 input channels, since under a single float32 budget its
~4,300 weights per output keep only a few levels each, which cost 40 % of
the bits the network saves at quality -1); the scale index it gives is
rounded to an integer and the mean added in float64.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .integer import WIDE_TAPS, IntegerNet
from .priors import LEVELS, SCALES_MAX, SCALES_MIN

SLICES = 2
PASSES = 2 * SLICES
#: natural-log step of the scale table (priors.scale_table): index t is std exp(LOG0 + STEP * t)
LOG0 = math.log(SCALES_MIN)
STEP = (math.log(SCALES_MAX) - LOG0) / (LEVELS - 1)


def pass_map(M: int, h: int, w: int, device=None) -> torch.Tensor:
    """(M, h, w) long: the pass (0..PASSES-1) that codes each element of y."""
    i = torch.arange(h, device=device)[:, None]
    j = torch.arange(w, device=device)[None, :]
    rest = ((i + j) % 2).expand(M, h, w)
    sl = (torch.arange(M, device=device) * SLICES // M)[:, None, None]
    return 2 * sl + rest


def std_of_index(t: torch.Tensor) -> torch.Tensor:
    """A (fractional) scale index -> its standard deviation (training)."""
    return torch.exp(LOG0 + STEP * t).clamp(SCALES_MIN, SCALES_MAX)


def _phi(x):
    return 0.5 * torch.erfc(-x * (1 / math.sqrt(2)))


def symbol_bits(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """-log2 of the probability of integer symbols ``s`` under N(0, std_of_index(t))
    (training and refinement: t may be fractional)."""
    std = std_of_index(t)
    p = _phi((s + 0.5) / std) - _phi((s - 0.5) / std)
    return -torch.log2(p.clamp_min(1e-9))


class ContextModel(nn.Module):
    """The network of passes 1..PASSES-1 (see the module docstring)::

        [y_hat known (M), known planes (SLICES), means (M), t / 8 (M)]
          -> conv k x k -> LeakyReLU -> conv 1x1 -> LeakyReLU -> conv 1x1 -> [dt (M), dmean (M)] per pass

    A model whose weights file has no context model has ``present`` False
    (and saves nothing); ``int`` holds the integer layers the coder uses.
    """

    def __init__(self, M: int, hidden: int = 192, kernel: int = 3) -> None:
        super().__init__()
        self.M = M
        cin = 2 * M + M + SLICES
        self.net = nn.Sequential(nn.Conv2d(cin, hidden, kernel, padding=kernel // 2), nn.LeakyReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.LeakyReLU(),
                                 nn.Conv2d(hidden, 2 * M * (PASSES - 1), 1))   # an output head per pass
        with torch.no_grad():  # the hyperprior's inputs start as a 1x1 convolution would (PyTorch's init)
            w = self.net[0].weight[:, M + SLICES:]
            bound = 1 / math.sqrt(2 * M)
            w.zero_()[:, :, kernel // 2, kernel // 2].uniform_(-bound, bound)
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)
        self.int = IntegerNet(3)
        #: which of passes 1.. use the network (0: coded under the hyperprior
        #: alone; set where the network did not save bits on validation crops)
        self.register_buffer("passes_on", torch.ones(PASSES - 1, dtype=torch.int32))
        self.present = False
        # trained on its own (training/context.py), not with the codec: frozen unless enabled
        self.net.requires_grad_(False)

    def uses(self, p: int) -> bool:
        """Does pass ``p`` (1..) code under the network's corrections?"""
        return bool(self.passes_on[p - 1])

    @property
    def ready(self) -> bool:
        """Has integer layers to code with."""
        return self.present and self.int.ready

    def enable(self) -> None:
        """Start a context model (training): an untrained one changes nothing."""
        self.present = True
        self.net.requires_grad_(True)

    @staticmethod
    def inputs(y_hat: torch.Tensor, passes: torch.Tensor, p: int, means: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
        """The network's input for pass ``p``: y_hat (B, M, h, w) where pass < p."""
        known = (passes < p).to(y_hat.dtype)                           # (M, h, w)
        planes = torch.stack([known[s * known.shape[0] // SLICES] for s in range(SLICES)])
        B = y_hat.shape[0]
        return torch.cat([y_hat * known, planes.expand(B, -1, -1, -1), means, t / 8], 1)

    def _rows(self, p: int) -> slice:
        """The output channels of pass p's head."""
        return slice(2 * self.M * (p - 1), 2 * self.M * p)

    def _head(self, out: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        return out[:, self._rows(p)].chunk(2, 1)

    def forward(self, x: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Training: float network, pass p's head -> (dt, dmean)."""
        return self._head(self.net(x), p)

    @torch.no_grad()
    def exact(self, x64: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Coding: the integer layers, pass p's head -> float64 (dt, dmean), the same on every platform."""
        return self._head(self.int(x64, list(self.net)[0::2]), p)

    @torch.no_grad()
    def exact_passes(self, means: torch.Tensor, t: torch.Tensor):
        """:meth:`exact` for the passes of one latent, faster: the first
        layer's sums over the hyperprior's inputs (the same in every pass)
        are computed once and added to each pass's sums over y_hat -- the same
        integers, so the same bits. -> ``run(y_hat, passes, p) -> (dt, dmean)``."""
        convs = list(self.net)[0::2]
        M, k = self.M, self.M + SLICES                            # y_hat and the known planes come first
        fixed = self.int.first_sum(torch.cat([means, t / 8], 1), convs[0], slice(k, None))
        slice_of = torch.arange(M) * SLICES // M

        def run(y_hat, passes, p):
            x = self.inputs(y_hat, passes, p, means, t)[:, :k]
            # the y_hat channels of slices with nothing decoded yet are all zero: skip them
            started = torch.tensor([bool((passes[s * M // SLICES] < p).any()) for s in range(SLICES)])
            chans = torch.cat([torch.nonzero(started[slice_of])[:, 0], torch.arange(M, k)])
            acc = self.int.first_sum(x[:, chans], convs[0], chans) + fixed
            return self.int.after_first(acc, convs, outputs=self._rows(p)).chunk(2, 1)

        return run

    @torch.no_grad()
    def build_integer(self, inputs: list[torch.Tensor], margin: float = 1.0,
                      wide_taps: int | None = WIDE_TAPS) -> None:
        """Quantize the trained network (integer.IntegerNet) from activation
        ranges seen on ``inputs`` (network inputs of calibration images); the
        first layer, with thousands of inputs per output, is built wide."""
        self.int.build(self.net, inputs, margin, wide_taps)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        if not self.present:
            return OrderedDict() if destination is None else destination
        return super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        w0 = state_dict.get(prefix + "net.0.weight")
        self.present = w0 is not None
        on = state_dict.get(prefix + "passes_on")
        self.passes_on = torch.ones(PASSES - 1, dtype=torch.int32) if on is None else on.detach().clone().int()
        if self.present and w0.shape != self.net[0].weight.shape:  # another width or kernel
            self.net = ContextModel(self.M, w0.shape[0], w0.shape[-1]).net
        if not self.present:  # a file without a context model (every file before it) loads too
            for name, t in self.net.state_dict(prefix=prefix + "net.").items():
                state_dict[name] = t
