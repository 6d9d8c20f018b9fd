"""Tiled coding: any image size in bounded memory, and region decoding.

The padded image is cut into ``tile``-pixel squares (a multiple of 64). Each
transform runs per tile on the tile plus a margin wider than its receptive
field, and the margin is cropped off, so the latents match whole-image
processing up to float rounding -- no seams:

* g_a: tile + 64 px of context -> its part of y;
* h_a runs on the whole y (it is 16x smaller than the image); z is coded as
  one stream;
* h_s: z around the tile (+2 z positions) -> the tile's means and scales;
  the tile's y is coded as its own stream, so any tile decodes alone;
* g_s: the tile's y plus 4 latent positions of context -> the tile's pixels.

Streams: ``[z, tile_crcs, y_0, ..., y_{n-1}]``. ``tile_crcs`` holds a CRC32 of
each tile's reconstructed pixels, so a region decode is checked too.
Encoder and decoder cut the same tiles, so decoding stays bit-exact.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
import torch

from .models import y_slice

G_MARGIN = 64      # pixels of context for g_a and g_s (4 latent positions)
DEFAULT_TILE = 1024
#: arithmetic of the synthesis transform; the container's flags record it
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
#: how the synthesis is cut in two for two threads (_synthesize); the container's FLAG_ROWS records it
SPLITS = ("rows", "channels")
#: latent rows of context each row part of a tile gets under split "rows":
#: g_s's receptive field reaches 1 + 1/2 + 1/4 + 1/8 latent rows (four
#: stride-2 5x5 transposed convolutions), so 2 give it all
ROWS_MARGIN = 2


def native_bf16() -> bool:
    """Whether the CPU has native bfloat16 dot products (AVX512-BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def default_precision(net=None) -> str:
    """The synthesis arithmetic a file gets unless asked: bf16 where the CPU
    has native bfloat16 (2-3x faster synthesis; emulated it would be slower)
    and ``net`` has no post-filter, else fp32. Without a filter bf16 was
    within 0.01 dB of fp32 on Kodak; through the default model's filter
    (measured when it had ten layers) its error grows with the rate:
    -0.005 dB at quality -1 to -0.078 dB at quality 8, BD-rate +0.82 %
    (kodak_eval --precision bf16 against fp32, same bits)."""
    if net is not None and getattr(net, "has_post", False):
        return "fp32"
    return "bf16" if native_bf16() else "fp32"


def check_precision(precision, net=None) -> str:
    """``precision``, or where it is None the default for ``net`` on this CPU."""
    precision = precision or default_precision(net)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision


def rects(height: int, width: int, tile: int) -> list[tuple[int, int, int, int]]:
    """(top, left, h, w) of each tile in raster order; ``tile`` 0: one tile."""
    if tile <= 0:
        return [(0, 0, height, width)]
    return [(t, l, min(tile, height - t), min(tile, width - l))
            for t in range(0, height, tile) for l in range(0, width, tile)]


def _grow(a: int, b: int, m: int, hi: int) -> tuple[int, int]:
    return max(0, a - m), min(hi, b + m)


def _to_tensor(rgb: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(np.array(rgb)).permute(2, 0, 1)[None].float().div_(255.0)
    return x.contiguous(memory_format=torch.channels_last)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    x = x[0].mul(255.0).round_().clamp_(0, 255).to(torch.uint8)
    return x.permute(1, 2, 0).contiguous().numpy()


def crc_rows(a: np.ndarray, crc: int = 0) -> int:
    """CRC32 of a (rows, cols, 3) uint8 array's pixels in row-major order,
    row by row (a cropped view is not contiguous; this avoids copying it)."""
    for row in a:
        crc = zlib.crc32(np.ascontiguousarray(row), crc)
    return crc


def _tile_crc(recon: np.ndarray, r, height: int, width: int) -> int:
    t, l, h, w = r
    return crc_rows(recon[t:min(t + h, height), l:min(l + w, width)])


def _window(rgb: np.ndarray, t0, t1, l0, l1) -> np.ndarray:
    """rgb[t0:t1, l0:l1] of the image replicate-padded beyond its edges."""
    h, w = rgb.shape[:2]
    part = rgb[t0:min(t1, h), l0:min(l1, w)]
    ph, pw = t1 - t0 - part.shape[0], l1 - l0 - part.shape[1]
    return np.pad(part, ((0, ph), (0, pw), (0, 0)), mode="edge") if ph or pw else part


def padded_size(net, height: int, width: int) -> tuple[int, int]:
    s = net.stride
    return -(-height // s) * s, -(-width // s) * s


def check_device(device) -> torch.device:
    """A torch device for the analysis transform; a clear error when absent."""
    try:
        dev = torch.device(device or "cpu")
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda, got {device!r}")
    return dev


@torch.inference_mode()
def analyse(net, rgb: np.ndarray, tile: int, device=None) -> torch.Tensor:
    """g_a tile by tile: (H, W, 3) uint8 -> y (1, M, Hp/16, Wp/16), before gains.

    ``device`` "cuda" runs g_a on the GPU. Only the analysis may move: the
    encoder decides the latents, which are then coded exactly; the synthesis,
    whose pixels every decoder must reproduce bit for bit, stays on the CPU."""
    hp, wp = padded_size(net, *rgb.shape[:2])
    dev = check_device(device)
    g_a = net._fast("g_a") if dev.type == "cpu" else net._on_device("g_a", dev)
    y = torch.empty(1, net.cfg.M, hp // 16, wp // 16)
    for t, l, h, w in rects(hp, wp, tile):
        t0, t1 = _grow(t, t + h, G_MARGIN, hp)
        l0, l1 = _grow(l, l + w, G_MARGIN, wp)
        yt = g_a(_to_tensor(_window(rgb, t0, t1, l0, l1)).to(dev)).float().cpu()
        y[:, :, t // 16:(t + h) // 16, l // 16:(l + w) // 16] = \
            yt[:, :, (t - t0) // 16:(t - t0 + h) // 16, (l - l0) // 16:(l - l0 + w) // 16]
    return y


@torch.inference_mode()
def encode(net, rgb: np.ndarray, quality: float, tile: int, device=None, precision: str = "fp32",
           effort: int = 0, y_tables: bool = True, y_context: bool = False, post: bool = False,
           split: str = "rows", post_views: int = 1):
    """rgb: (H, W, 3) uint8; it is replicate-padded to the model's stride
    tile by tile. -> (streams, reconstruction (Hp, Wp, 3) uint8).
    ``precision``: the synthesis arithmetic (PRECISIONS); the decoder must use the same.
    ``effort``: steps of encoder-side latent refinement (refine.py; 0: none).
    ``y_tables``: a scalar latent's symbols coded grouped under the integer
    tables (latent_codecs.GaussianLatentCodec; the container's flag);
    ``y_context``: and in passes under the model's context model (context.py);
    ``post``: the model's post-filter runs on g_s's output (post.py),
    averaged over ``post_views`` views (post.VIEWS);
    ``split``: how the synthesis uses two threads (_synthesize)."""
    height, width = rgb.shape[:2]
    hp, wp = padded_size(net, height, width)
    side, tiles, y_in = coded_latent(net, rgb, quality, tile, device, effort, y_tables, y_context)
    recon = _synthesize(net, y_in, (hp, wp), tile, precision=precision, post=quality if post else None,
                        split=split, post_views=post_views)
    crcs = [_tile_crc(recon, r, height, width) for r in rects(hp, wp, tile)]
    return [side, struct.pack(f"<{len(crcs)}I", *crcs)] + tiles, recon


def coded_latent(net, rgb: np.ndarray, quality: float, tile: int, device=None, effort: int = 0,
                 y_tables: bool = True, y_context: bool = False):
    """The latent half of :func:`encode` -> (side bytes, tile bytes, y_in):
    y_in is what g_s receives, exactly as the decoder rebuilds it."""
    hp, wp = padded_size(net, *rgb.shape[:2])
    y = analyse(net, rgb, tile, device)
    if effort:
        from .refine import refine
        y = refine(net, rgb, y, quality, effort)
    side, state = net.code_side(y, quality)
    state["y_tables"], state["y_context"] = y_tables, y_context
    tiles = []
    for r in rects(hp, wp, tile):
        # a tile reads only its own part of y, so what g_s will see
        # replaces it in place (one latent-sized array, not two)
        data, y_in = net.code_tile(state, r)
        state["y"][y_slice(r)] = y_in
        tiles.append(data)
    return side, tiles, state.pop("y")


@torch.inference_mode()
def synthesis_output(net, rgb: np.ndarray, quality: float, y_context: bool = False) -> torch.Tensor:
    """(1, 3, Hp, Wp) float32: g_s's output (before clamping and any
    post-filter) for the latent a one-tile fp32 encode codes -- what the
    post-filter sees when decoding (training/post.py)."""
    y_in = coded_latent(net, rgb, quality, 0, y_tables=net.latent_kind == "scalar", y_context=y_context)[2]
    hp, wp = (16 * n for n in y_in.shape[-2:])
    return _g_s_tile(net, y_in, (0, 0, hp, wp), torch.float32)[0].float()


def _g_s_tile(net, y_in, rect, dtype, split: str = "rows"):
    """g_s on the tile ``rect`` (top, left, h, w in pixels) plus G_MARGIN px
    of context -> (output with the context, the tile's (top, left) within
    it). ``split`` (see :func:`_synthesize`): "rows" or "channels"."""
    from .fast import run_rows, run_two_way
    t, l, h, w = rect
    t0, t1 = _grow(t, t + h, G_MARGIN, 16 * y_in.shape[2])
    l0, l1 = _grow(l, l + w, G_MARGIN, 16 * y_in.shape[3])
    yt = y_in[:, :, t0 // 16:t1 // 16, l0 // 16:l1 // 16].to(dtype).contiguous(memory_format=torch.channels_last)
    if split == "rows":
        x = run_rows(net._fast("g_s", dtype), yt, yt.shape[2] // 2, ROWS_MARGIN, 16)
    else:
        x = run_two_way(net._two_way("g_s", dtype), yt)
    return x, (t - t0, l - l0)


def _synthesize(net, y_in, shape, tile, only=None, precision: str = "fp32", post: float | None = None,
                split: str = "rows", post_views: int = 1):
    """g_s tile by tile (with context) -> (Hp, Wp, 3) uint8; ``only``: the
    indexes of the tiles to produce (others stay zero); ``precision``: fp32
    or bf16 arithmetic (weights and activations; oneDNN accumulates in fp32);
    ``post``: None, or the quality to run the model's post-filter at on each
    tile's g_s output (with its context, like g_s), averaged over
    ``post_views`` views of it (models.post_filter).

    Every convolution runs single-threaded: oneDNN may sum in another order
    with more threads, which moves a pixel across a rounding boundary now
    and then, and the decoder must reproduce the encoder's pixels on any
    thread count. To use a second core anyway, the work is cut in two the
    same way on any thread count, and the two parts run one after the other
    on one thread and side by side on two. ``split`` (the container's
    FLAG_ROWS) says how: "rows" -- g_s, then the post-filter, each whole on
    the tile's top and bottom halves with enough rows of context
    (fast.run_rows); "channels" (earlier files) -- every layer as two halves
    of its output channels (fast.TwoWay)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    dtype = PRECISIONS[precision]
    hp, wp = shape[:2]
    out = np.zeros((hp, wp, 3), np.uint8)
    for i, (t, l, h, w) in enumerate(rects(hp, wp, tile)):
        if only is not None and i not in only:
            continue
        xt, (dt, dl) = _g_s_tile(net, y_in, (t, l, h, w), dtype, split)
        if post is not None:
            xt = net.post_filter(xt, post, split, post_views)
        xt = xt.float().clamp_(0, 1)
        out[t:t + h, l:l + w] = _to_uint8(xt[:, :, dt:dt + h, dl:dl + w])
    return out


class TileError(ValueError):
    pass


@torch.inference_mode()
def decode(net, streams, hp: int, wp: int, quality: float, tile: int, height: int, width: int,
           region=None, precision: str = "fp32", y_tables: bool = True, y_context: bool = False,
           post: bool = False, split: str = "rows", post_views: int = 1) -> np.ndarray:
    """-> (Hp, Wp, 3) uint8 reconstruction. ``region`` (top, left, h, w):
    decode only the tiles needed for it (the rest of the array stays zero);
    ``precision``, ``y_tables``, ``y_context``, ``post``, ``split``,
    ``post_views``: the synthesis arithmetic, latent coding, post-filtering,
    thread split and post-filter views the encoder used."""
    all_rects = rects(hp, wp, tile)
    if len(streams) != 2 + len(all_rects):
        raise TileError(f"file has {len(streams)} latent streams, its tiling needs {2 + len(all_rects)}")
    if len(streams[1]) != 4 * len(all_rects):
        raise TileError("tile checksum table is corrupt")
    crcs = struct.unpack(f"<{len(all_rects)}I", streams[1])
    state = net.decode_side(streams[0], hp, wp, quality)
    state["y_tables"], state["y_context"] = y_tables, y_context
    out_tiles = set(range(len(all_rects)))
    y_tiles = out_tiles
    if region is not None:
        out_tiles = {i for i, r in enumerate(all_rects) if _overlap(r, region)}
        need = [_grown(all_rects[i], hp, wp) for i in out_tiles]
        y_tiles = {i for i, r in enumerate(all_rects) if any(_overlap(r, n) for n in need)}
    y_in = torch.zeros(1, net.cfg.M, hp // 16, wp // 16)
    for i in sorted(y_tiles):
        r = all_rects[i]
        y_in[y_slice(r)] = net.decode_tile(state, streams[2 + i], r)
    recon = _synthesize(net, y_in, (hp, wp), tile, only=out_tiles, precision=precision,
                        post=quality if post else None, split=split, post_views=post_views)
    for i in out_tiles:
        if _tile_crc(recon, all_rects[i], height, width) != crcs[i]:
            raise TileError(f"decoded tile {i} differs from the encoder's reconstruction (checksum "
                            f"mismatch): the file is corrupt or was made on a platform whose "
                            f"arithmetic differs")
    return recon


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def _grown(r, hp, wp):
    t0, t1 = _grow(r[0], r[0] + r[2], G_MARGIN, hp)
    l0, l1 = _grow(r[1], r[1] + r[3], G_MARGIN, wp)
    return (t0, l0, t1 - t0, l1 - l0)
