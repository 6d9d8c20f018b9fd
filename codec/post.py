"""A post-filter: a small network that corrects the synthesis transform's output.

g_s of an undertrained (or small) model leaves errors a little network can
learn to remove -- in-loop filters do the same job in classical codecs. It
works at half resolution on the space-to-depth rearrangement of the
picture, with the quality level as an extra input plane, and adds what it
predicts to the picture::

    x_hat (3, H, W) -> pixel-unshuffle (12, H/2, W/2) + quality plane
        -> conv 3x3 -> ReLU -> (conv 3x3 -> ReLU) x L -> conv 3x3 (12)
        -> pixel-shuffle -> + x_hat

Its last layer starts at zero, so an untrained filter changes nothing; a
trained one can be deepened (``deepened``: identity layers added, the same
output) and trained on. It is trained on its own, after the codec
(training/post.py: the transforms and latents fixed, loss the relative
squared error, so every quality counts alike), and is run by encoder and
decoder alike, each convolution single-threaded (fast.run_rows, or
fast.TwoWay for earlier files), so decoding stays exact on any thread count.

A weights file without ``post.*`` tensors has no filter (``present`` False,
nothing saved); files coded with one say so in the container's flags, and
files coded without one decode without it.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

PREFIX = "post."
#: the quality plane's value: (quality - CENTRE) / SPREAD (about -1 to 1 over -1..8)
CENTRE, SPREAD = 3.5, 4.5


def _t(x):
    return x.transpose(-1, -2)


#: The views a coder may average the filter over (flags bits 5-6: the first
#: 1, 2, 4 or 8 of these), as (to the view, back) pairs on (B, C, H, W): the
#: picture, its transpose, its left-right and top-bottom mirrors, then the
#: rest of the square's symmetries. The filter was trained on the picture and
#: its transpose alike, so each view gives a slightly different estimate, and
#: their mean is a better one (on the validation crops of the default model:
#: +0.03 to +0.10 dB with two views, +0.04 to +0.14 dB with four).
VIEWS = (
    (lambda x: x, lambda x: x),
    (_t, _t),
    (lambda x: x.flip(-1), lambda x: x.flip(-1)),
    (lambda x: x.flip(-2), lambda x: x.flip(-2)),
    (lambda x: x.flip(-2, -1), lambda x: x.flip(-2, -1)),
    (lambda x: x.rot90(1, (-2, -1)), lambda x: x.rot90(-1, (-2, -1))),
    (lambda x: x.rot90(-1, (-2, -1)), lambda x: x.rot90(1, (-2, -1))),
    (lambda x: _t(x.flip(-2, -1)), lambda x: _t(x).flip(-2, -1)),
)
VIEW_COUNTS = (1, 2, 4, 8)


def check_views(views) -> int:
    """``views`` as a count of post.VIEWS (1, 2, 4 or 8), else ValueError."""
    import operator
    try:
        n = None if isinstance(views, bool) else operator.index(views)
    except TypeError:
        n = None
    if n not in VIEW_COUNTS:
        raise ValueError(f"post-filter views must be one of {', '.join(map(str, VIEW_COUNTS))}, got {views!r}")
    return n


class PostFilter(nn.Module):
    def __init__(self, width: int = 64, layers: int = 3) -> None:
        super().__init__()
        convs = [nn.Conv2d(13, width, 3, padding=1)]
        convs += [nn.Conv2d(width, width, 3, padding=1) for _ in range(layers)]
        convs.append(nn.Conv2d(width, 12, 3, padding=1))
        body = []
        for c in convs:
            body += [c, nn.ReLU(inplace=True)]
        self.body = nn.Sequential(*body[:-1])
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)
        self.present = False
        # trained on its own (training/post.py), not with the codec: frozen unless enabled
        self.body.requires_grad_(False)

    @property
    def width(self) -> int:
        return self.body[0].out_channels

    @property
    def layers(self) -> int:
        return len(self.body) // 2 - 1

    def deepened(self, layers: int) -> "PostFilter":
        """The same filter with ``layers`` hidden layers: the new ones, put
        before the last convolution, start as the identity (a ReLU'd input
        passes a Dirac convolution and a ReLU unchanged), so the deeper filter
        computes what this one does and training goes on from there."""
        if layers < self.layers:
            raise ValueError(f"cannot deepen a {self.layers}-layer filter to {layers} layers")
        deep = PostFilter(self.width, layers)
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        new = [m for m in deep.body if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for src, dst in zip(convs, new[:len(convs) - 1] + [new[-1]]):
                dst.weight.copy_(src.weight)
                dst.bias.copy_(src.bias)
            for dst in new[len(convs) - 1:-1]:
                nn.init.dirac_(dst.weight)
                nn.init.zeros_(dst.bias)
        deep.present = self.present
        deep.body.requires_grad_(self.body[0].weight.requires_grad)
        return deep

    def widened(self, width: int, gen: torch.Generator | None = None) -> "PostFilter":
        """The same filter with ``width`` channels per hidden layer. Each new
        channel reads the layer below through small random weights and is
        read by the layer above through zero weights, so the wider filter
        computes exactly what this one does, while the new channels carry
        activations and gradients from the first step (zero on both sides,
        they would stay dead)."""
        if width < self.width:
            raise ValueError(f"cannot narrow a width-{self.width} filter to {width}")
        wide = PostFilter(width, self.layers)
        convs = [m for m in self.body if isinstance(m, nn.Conv2d)]
        new = [m for m in wide.body if isinstance(m, nn.Conv2d)]
        with torch.no_grad():
            for src, dst in zip(convs, new):
                o, c = src.weight.shape[:2]
                # new outputs read every input through small random weights (fan-in scaled) ...
                std = 0.1 * (2.0 / (dst.weight.shape[1] * 9)) ** 0.5
                dst.weight.copy_(torch.randn(dst.weight.shape, generator=gen) * std)
                dst.bias.zero_()
                dst.weight[:o, c:] = 0  # ... old outputs (all of the last layer's) read no new input
                dst.weight[:o, :c] = src.weight
                dst.bias[:o] = src.bias
        wide.present = self.present
        wide.body.requires_grad_(self.body[0].weight.requires_grad)
        return wide

    def enable(self) -> None:
        """Start a post-filter (training): an untrained one changes nothing."""
        self.present = True
        self.body.requires_grad_(True)

    @staticmethod
    def _input(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        u = F.pixel_unshuffle(x, 2)
        plane = ((quality.to(x.dtype) - CENTRE) / SPREAD).reshape(-1, 1, 1, 1)
        return torch.cat([u, plane.expand(u.shape[0], 1, *u.shape[-2:])], 1)

    def forward(self, x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
        """x (B, 3, H, W) (H, W even), quality (B,) -> the filtered picture."""
        return x + F.pixel_shuffle(self.body(self._input(x, quality)), 2)

    @property
    def margin(self) -> int:
        """Rows of context an output row needs: each 3x3 convolution at half
        resolution reaches one half-resolution row (two rows) further."""
        return 2 * (self.layers + 2)

    def run(self, body, x: torch.Tensor, quality: float) -> torch.Tensor:
        """Coding: ``forward`` with ``body`` (the body's convolutions, e.g.
        fast.accelerate of it in x's dtype, run as the caller chooses) on
        the channels-last input."""
        q = torch.tensor([quality], dtype=torch.float32)
        inp = self._input(x, q).contiguous(memory_format=torch.channels_last)
        return x + F.pixel_shuffle(body(inp), 2)

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):
        if not self.present:
            return OrderedDict() if destination is None else destination
        return super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)

    def _load_from_state_dict(self, state_dict, prefix, *args):
        w0 = state_dict.get(prefix + "body.0.weight")
        self.present = w0 is not None
        if self.present:
            n = sum(1 for k in state_dict if k.startswith(prefix + "body.") and k.endswith(".weight"))
            if (w0.shape[0], n - 2) != (self.width, self.layers):
                self.body = PostFilter(w0.shape[0], n - 2).body.requires_grad_(self.body[0].weight.requires_grad)
        else:  # a file without a filter (every file before it) loads too
            for name, t in self.body.state_dict(prefix=prefix + "body.").items():
                state_dict[name] = t
        super()._load_from_state_dict(state_dict, prefix, *args)
