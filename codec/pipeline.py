"""Encode and decode: the one path from pixels to .aec bytes and back.

    picture -> tiling.encode (g_a per tile, the model's side and tile
            streams, g_s per tile) -> container.pack              (encode)
    container.unpack -> tiling.decode -> crop -> picture           (decode)

The encoder returns the exact picture the decoder will produce; the header
carries a CRC32 of it, and the decoder checks it, so a platform whose
arithmetic differs is reported instead of silently giving other pixels.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import container, io, registry, tiling, weights
from .container import ContainerError, Header
from .post import check_views

#: post-filter views an encode averages unless told otherwise (post.VIEWS)
DEFAULT_POST_VIEWS = 2


class DecodeError(ValueError):
    """A file that parses but cannot be decoded with the model at hand."""


@dataclass
class EncodeResult:
    data: bytes
    picture: io.Picture      # exactly what decode() will return
    psnr: float              # of the colour (or grey) planes, vs the input
    bpp: float
    header: Header


@functools.lru_cache(maxsize=8)
def _load_cached(path: str, mtime: float, arch: str | None = None, model_id: str | None = None) -> weights.LoadedModel:
    return weights.load(path, arch, model_id)


def load_model(model=None) -> weights.LoadedModel:
    """None -> the default model; a registry id; or a .safetensors path."""
    if isinstance(model, weights.LoadedModel):
        return model
    model = model or registry.DEFAULT_MODEL
    path = Path(model)
    arch = model_id = None
    if not (path.suffix == ".safetensors" and path.exists()):
        entry = registry.get(str(model))
        path = entry.path
        if not path.exists():
            raise FileNotFoundError(f"weights of model {entry.id!r} are not installed ({path})")
        if entry.arch:
            arch, model_id = entry.arch, entry.id
    path = path.resolve()
    return _load_cached(str(path), path.stat().st_mtime, arch, model_id)


def _quality(q) -> float:
    try:
        v = float(np.float32(q))
    except (TypeError, ValueError):
        v = math.nan
    if isinstance(q, (bool, np.bool_)) or not math.isfinite(v):
        raise ValueError(f"quality must be a number, got {q!r}")
    return v


def encode(image, quality: float = 4, model=None,
           max_pixels: int | None = container.DEFAULT_MAX_PIXELS,
           tile: int = tiling.DEFAULT_TILE, device=None, precision: str | None = None,
           effort: int = 0, post_views: int | None = None) -> EncodeResult:
    """Image -> .aec bytes and the exact picture decode() will return.
    ``tile``: tile side in pixels (a multiple of 64; 0 for one tile).
    ``device``: where the analysis transform runs ("cpu" or "cuda").
    ``precision``: synthesis arithmetic, "fp32" or "bf16"; None: bf16 where
    the CPU does bfloat16 natively and the model has no post-filter, else
    fp32 (tiling.default_precision; recorded in the file's flags).
    ``effort``: steps of encoder-side latent refinement (scalar and VQ
    codecs; about 0.7 s per step per megapixel on 2 CPU cores; the decoder is unchanged).
    ``post_views``: how many views of the picture (post.VIEWS: 1, 2, 4 or 8)
    the post-filter of a model with one averages, encoder and decoder alike
    (more: higher PSNR at the same bits, slower decoding); None:
    DEFAULT_POST_VIEWS."""
    if tile < 0 or tile % 64 or tile // 64 > 65535:
        raise ValueError(f"tile must be a multiple of 64 pixels, got {tile}")
    tiling.check_precision(precision)   # a bad value is refused before the model loads
    lm = load_model(model)
    precision = tiling.check_precision(precision, lm.net)
    if not isinstance(effort, int) or effort < 0:
        raise ValueError(f"effort must be a whole number of steps >= 0, got {effort!r}")
    post = lm.net.has_post
    views = DEFAULT_POST_VIEWS if post_views is None else check_views(post_views)
    if post_views is not None and views > 1 and not post:
        raise ValueError(f"post_views: model {lm.model_id!r} has no post-filter")
    post_views = views if post else 1
    if effort and lm.net.latent_kind not in ("scalar", "vq"):
        raise ValueError(f"effort (latent refinement) needs a scalar or VQ latent; "
                         f"{lm.model_id!r} has a {lm.net.latent_kind} latent")
    pic = io.load(image, max_pixels=max_pixels)
    q = _quality(quality)
    lm.net.check_quality(q)
    y_tables = lm.net.latent_kind == "scalar"
    y_context = y_tables and getattr(lm.net, "has_context", False)
    strings, recon = tiling.encode(lm.net, pic.rgb, q, tile, device, precision, effort, y_tables, y_context,
                                   post, split="rows", post_views=post_views)
    rgb = recon[:pic.height, :pic.width]
    if pic.alpha is not None:
        strings = strings + [io.png_bytes(pic.alpha)]
    header = Header(width=pic.width, height=pic.height, mode=pic.mode, model=lm.model_id,
                    weights=lm.hash_for(y_context, post), quality=q, latent_kind=lm.net.latent_kind,
                    bit_depth=pic.bit_depth, recon_crc=tiling.crc_rows(rgb),
                    tile=tile // 64, stream_lengths=[len(b) for b in strings],
                    flags=((container.FLAG_BF16 if precision == "bf16" else 0)
                           | (container.FLAG_Y_TABLES if y_tables else 0)
                           | (container.FLAG_Y_CONTEXT if y_context else 0)
                           | (container.FLAG_POST if post else 0)
                           | container.FLAG_ROWS | container.views_flags(post_views)))
    data = container.pack(header, strings)
    recon = io.Picture(rgb, pic.alpha, pic.mode)
    if pic.mode in ("L", "LA"):
        err = io.psnr(np.asarray(recon.to_pil().convert("L")), pic.rgb[:, :, 0])
    else:
        err = io.psnr(rgb, pic.rgb)
    return EncodeResult(data, recon, err, 8 * len(data) / (pic.width * pic.height), header)


def check_model(header: Header, lm: weights.LoadedModel) -> None:
    context, post = header.context, header.post
    if header.model != lm.model_id or header.weights != lm.hash_for(context, post):
        raise DecodeError(
            f"file was made by model {header.model!r} (weights {header.weights.hex()}) but the "
            f"model given is {lm.model_id!r} (weights {lm.hash_for(context, post).hex()}); decode it with "
            f"the model that wrote it")
    if context and not (header.latent_kind == "scalar" and getattr(lm.net, "has_context", False)):
        raise DecodeError(f"file is coded with a context model, which model {lm.model_id!r} does not have")
    if post and not lm.net.has_post:
        raise DecodeError(f"file is coded with a post-filter, which model {lm.model_id!r} does not have")
    if header.latent_kind != lm.net.latent_kind:
        raise DecodeError(f"file has a {header.latent_kind} latent, model {lm.model_id!r} "
                          f"codes {lm.net.latent_kind}")


def decode(data: bytes, model=None, max_pixels: int | None = container.DEFAULT_MAX_PIXELS,
           region: tuple[int, int, int, int] | None = None) -> io.Picture:
    """.aec bytes -> Picture. ``region`` (left, top, width, height) decodes
    only the tiles that region needs and returns just that part."""
    header, streams = container.unpack(bytes(data), max_pixels=max_pixels)
    if model is None:
        if header.model not in registry.MODELS:
            raise DecodeError(f"file was made by model {header.model!r}, which this aecodec does "
                              f"not ship; pass its weights with --model")
        model = header.model
    lm = load_model(model)
    check_model(header, lm)
    lm.net.check_quality(header.quality)
    has_alpha = header.mode in ("RGBA", "LA")
    if len(streams) < 2 + has_alpha:
        raise ContainerError(f"file has {len(streams)} streams, too few for its image")
    box = None
    if region is not None:
        left, top, w, h = region
        if w < 1 or h < 1 or left < 0 or top < 0 or left + w > header.width or top + h > header.height:
            raise ValueError(f"region {left},{top},{w},{h} is not inside the "
                             f"{header.width}x{header.height} image")
        box = (top, left, h, w)
    hp, wp = tiling.padded_size(lm.net, header.height, header.width)
    latent = streams[:len(streams) - has_alpha]
    try:
        recon = tiling.decode(lm.net, latent, hp, wp, header.quality, header.tile * 64,
                              header.height, header.width, region=box, precision=header.precision,
                              y_tables=bool(header.flags & container.FLAG_Y_TABLES), y_context=header.context,
                              post=header.post, split=header.split, post_views=header.post_views)
    except tiling.TileError as exc:
        raise DecodeError(str(exc)) from None
    except RuntimeError as exc:
        raise DecodeError(f"cannot decode the latent ({exc})") from None
    rgb = recon[:header.height, :header.width]
    if box is None and tiling.crc_rows(rgb) != header.recon_crc:
        raise DecodeError("decoded pixels differ from the encoder's reconstruction (checksum "
                          "mismatch): the file is corrupt or was made on a platform whose "
                          "arithmetic differs")
    alpha = io.png_plane(streams[-1], header.width, header.height) if has_alpha else None
    if box is not None:
        top, left, h, w = box
        rgb = np.ascontiguousarray(rgb[top:top + h, left:left + w])
        alpha = None if alpha is None else np.ascontiguousarray(alpha[top:top + h, left:left + w])
    return io.Picture(rgb, alpha, header.mode)


def encode_target(image, target_bpp: float | None = None, target_psnr: float | None = None,
                  model=None, max_pixels: int | None = container.DEFAULT_MAX_PIXELS,
                  iterations: int = 7, tile: int = tiling.DEFAULT_TILE, device=None,
                  precision: str | None = None, effort: int = 0, post_views: int | None = None) -> EncodeResult:
    """Bisect the (continuous) quality for the largest file within
    ``target_bpp``, or the smallest file reaching ``target_psnr``. Rate and
    PSNR grow with quality; if no quality meets the target, the closest end
    of the range is returned, with a UserWarning saying so."""
    if (target_bpp is None) == (target_psnr is None):
        raise ValueError("give exactly one of target_bpp and target_psnr")
    lm = load_model(model)
    pic = io.load(image, max_pixels=max_pixels)
    lo, hi = lm.net.min_quality, float(lm.net.cfg.levels)

    def ok(r):
        return r.bpp <= target_bpp if target_bpp is not None else r.psnr >= target_psnr

    # the end that must meet the target if any quality does, then the other
    first, second = (lo, hi) if target_bpp is not None else (hi, lo)
    best = encode(pic, first, lm, max_pixels, tile, device, precision, effort, post_views)
    if not ok(best):
        warnings.warn(f"no quality reaches {target_bpp:g} bpp: the lowest ({lo:g}) gives {best.bpp:.4f} bpp"
                      if target_bpp is not None else
                      f"no quality reaches {target_psnr:g} dB: the highest ({hi:g}) gives {best.psnr:.2f} dB")
        return best
    other = encode(pic, second, lm, max_pixels, tile, device, precision, effort, post_views)
    if ok(other):
        return other
    for _ in range(iterations):
        mid = (lo + hi) / 2
        r = encode(pic, mid, lm, max_pixels, tile, device, precision, effort, post_views)
        if ok(r):
            best = r
            lo, hi = (mid, hi) if target_bpp is not None else (lo, mid)
        else:
            lo, hi = (lo, mid) if target_bpp is not None else (mid, hi)
    return best
