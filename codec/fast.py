"""Inference-only rewrites of the backbone's layers, for speed on CPU.

* :class:`SubPixelConv` -- a stride-2 5x5 transposed convolution with few
  output channels (the last layer of g_s) rewritten
  as a 3x3 convolution to 4x the channels followed by a pixel shuffle
  (the four output phases of the transposed convolution; Shi et al. 2016).
  The same linear map, but CPU convolution kernels are much faster than
  transposed ones.
* :class:`FrozenGDN` -- GDN / inverse GDN with its reparametrised beta and
  gamma computed once instead of at every call.

* :func:`run_rows` -- a whole transform run on two overlapping parts of
  its input's rows, one per thread, each single-threaded, with no step
  between layers: the synthesis of files with ``FLAG_ROWS`` (g_s, then the
  post-filter). The cut is a function of the input's shape alone and the
  overlap covers the receptive field, so the pixels do not depend on the
  number of threads -- only the wall time does.
* :class:`TwoWay` -- a transform evaluated layer by layer as two halves,
  which two threads compute at once: halves of the output channels for
  (transposed) convolutions, halves of the rows for GDN and the final
  sub-pixel convolution (few channels; the row split also computes x*x only
  once). The split is the same on any thread count (with one thread the
  halves run one after the other), and each half runs single-threaded. The
  synthesis of files without ``FLAG_ROWS`` and the float64 h_s use it; for
  the synthesis it is about a fifth slower than :func:`run_rows` (a step
  and a copy after every layer, and convolutions of half the width).

Encoder and decoder both run these rewritten modules, so decoding stays
bit-exact; against the training-time modules they differ only by float
rounding.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

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
            layers.append(copy.deepcopy(layer))
    return nn.Sequential(*layers).eval().to(memory_format=torch.channels_last)


def _halves(n: int) -> list[slice]:
    return [slice(0, n // 2), slice(n // 2, n)]


class _SplitConv:
    """A (transposed) convolution as two convolutions over halves of its output channels."""

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.transposed = isinstance(layer, nn.ConvTranspose2d)
        out_dim = 1 if self.transposed else 0
        n = layer.weight.shape[out_dim]
        self.parts = [(layer.weight.detach().narrow(out_dim, s.start, s.stop - s.start).contiguous(),
                       None if layer.bias is None else layer.bias.detach()[s].contiguous()) for s in _halves(n)]

    def part(self, i: int, x):
        w, b = self.parts[i]
        L = self.layer
        if self.transposed:
            return F.conv_transpose2d(x, w, b, L.stride, L.padding, L.output_padding, L.groups, L.dilation)
        return F.conv2d(x, w, b, L.stride, L.padding, L.dilation, L.groups)

    def join(self, parts):
        return torch.cat(parts, 1)


class _RowsSubPixel:
    """The sub-pixel convolution as its top and bottom halves of rows (its
    few output channels make a channel split slow), each computed from its
    input rows plus the one neighbouring row it needs, then cropped."""

    def __init__(self, layer: SubPixelConv) -> None:
        self.weight, self.bias = layer.weight, layer.bias

    def part(self, i: int, x):
        h = x.shape[2] // 2
        if i == 0:
            return F.conv2d(x[:, :, :h + 1], self.weight, self.bias, padding=1)[:, :, :h]
        return F.conv2d(x[:, :, max(h - 1, 0):], self.weight, self.bias, padding=1)[:, :, min(h, 1):]

    def join(self, parts):
        return F.pixel_shuffle(torch.cat(parts, 2), 2)


class _RowsGDN:
    """GDN (a per-pixel map) as its top and bottom halves of rows."""

    def __init__(self, layer: FrozenGDN) -> None:
        self.layer = layer

    def part(self, i: int, x):
        h = x.shape[2] // 2
        return self.layer(x[:, :, :h] if i == 0 else x[:, :, h:])

    def join(self, parts):
        return torch.cat(parts, 2)


def _split(layer: nn.Module):
    if isinstance(layer, (nn.Conv2d, nn.ConvTranspose2d)):
        return _SplitConv(layer)
    if isinstance(layer, SubPixelConv):
        return _RowsSubPixel(layer)
    if isinstance(layer, FrozenGDN):
        return _RowsGDN(layer)
    return None


_POOL: ThreadPoolExecutor | None = None


def _single_threaded_worker() -> None:
    torch.set_num_threads(1)


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(1, thread_name_prefix="aecodec-half", initializer=_single_threaded_worker)
    return _POOL


class TwoWay:
    """Runs an accelerated transform as two halves per layer (see the module
    docstring). Call it on one thread's worth of intra-op parallelism:
    ``parallel=True`` puts the second half on a worker thread."""

    def __init__(self, seq: nn.Sequential) -> None:
        self.stages = [(layer, _split(layer)) for layer in seq]

    def __call__(self, x, parallel: bool = False):
        for layer, split in self.stages:
            if split is None:
                x = layer(x)
            else:
                x = split.join(_both(lambda i: split.part(i, x), parallel))
        return x


def _both(part, parallel: bool) -> list:
    """[part(0), part(1)]: part 1 on the worker thread meanwhile when
    ``parallel``, else one after the other."""
    if not parallel:
        return [part(0), part(1)]
    other = _pool().submit(_in_inference, part, 1)
    first = part(0)
    return [first, other.result()]


@contextmanager
def _single_threaded():
    """torch single-threaded inside; yields the caller's thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def run_two_way(tw: TwoWay, x):
    """``tw(x)`` with every convolution single-threaded -- the result does
    not depend on the thread count -- using a second thread when the caller
    allows two or more."""
    with _single_threaded() as threads:
        return tw(x, parallel=threads >= 2)


def _in_inference(fn, *args):
    with torch.inference_mode():
        return fn(*args)


def run_rows(fn, x: torch.Tensor, cut: int, margin: int, scale: int = 1) -> torch.Tensor:
    """``fn`` (a map from ``x``'s rows to ``scale`` times as many output
    rows, whose output row depends on input rows less than ``margin`` away)
    on two parts of ``x``'s rows: above ``cut`` and from ``cut`` on, each
    with ``margin`` rows of the other as context, cropped and joined. Each
    part runs single-threaded -- side by side when the caller allows two or
    more threads, else one after the other -- so the result depends on
    ``x``, ``cut`` and ``margin`` only, never on the thread count. A cut at
    either end runs ``fn`` once on the whole."""
    height = x.shape[2]

    def part(i: int):
        a, b = (0, min(cut + margin, height)) if i == 0 else (max(cut - margin, 0), height)
        y = fn(x[:, :, a:b].contiguous(memory_format=torch.channels_last))
        return y[:, :, :scale * (cut - a)] if i == 0 else y[:, :, scale * (cut - a):]
    with _single_threaded() as threads:
        if cut <= 0 or cut >= height:
            return fn(x)
        return torch.cat(_both(part, threads >= 2), 2)
