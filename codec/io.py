"""Images in and out: file / PIL / array <-> uint8 arrays <-> float tensors.

Everything a user may hand us becomes a :class:`Picture`: 8-bit RGB colour
plus an optional 8-bit alpha plane and the mode to give back (RGB, L, RGBA
or LA). Palette, CMYK and other modes become RGB; 16-bit input is reduced to
8 bits with a warning; EXIF orientation is applied. No torch here.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # we apply our own limit, with a clear message


class ImageError(ValueError):
    """Input that is not a usable image; the message says why."""


@dataclass
class Picture:
    rgb: np.ndarray            # (H, W, 3) uint8
    alpha: np.ndarray | None   # (H, W) uint8 or None
    mode: str                  # RGB, L, RGBA or LA: what decoding gives back
    bit_depth: int = 8

    @property
    def width(self) -> int:
        return self.rgb.shape[1]

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    def to_pil(self) -> Image.Image:
        return to_pil(self.rgb, self.alpha, self.mode)


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None, mode: str) -> Image.Image:
    """Colour + alpha arrays -> a PIL image of ``mode``."""
    im = Image.fromarray(np.ascontiguousarray(rgb), "RGB")
    if mode in ("L", "LA"):
        im = im.convert("L")
    if mode in ("RGBA", "LA"):
        im.putalpha(Image.fromarray(alpha, "L"))
    return im


def _reduce16(a: np.ndarray) -> np.ndarray:
    warnings.warn("16-bit image reduced to 8 bits per sample", stacklevel=3)
    return ((a.astype(np.uint32) + 128) // 257).clip(0, 255).astype(np.uint8)


def from_array(a: np.ndarray) -> Picture:
    a = np.asarray(a)
    depth = 16 if a.dtype == np.uint16 else 8
    if a.dtype == np.uint16:
        a = _reduce16(a)
    elif a.dtype != np.uint8:
        raise ImageError(f"array images must be uint8 or uint16, got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 2:
        return Picture(np.repeat(a[:, :, None], 3, 2), None, "L", depth)
    if a.ndim == 3 and a.shape[2] == 2:
        return Picture(np.repeat(a[:, :, :1], 3, 2), a[:, :, 1].copy(), "LA", depth)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        alpha = a[:, :, 3].copy() if a.shape[2] == 4 else None
        return Picture(np.ascontiguousarray(a[:, :, :3]), alpha, "RGBA" if alpha is not None else "RGB", depth)
    raise ImageError(f"array of shape {a.shape} is not an image (want HxW, HxWx3 or HxWx4)")


def from_pil(im: Image.Image) -> Picture:
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # broken EXIF must not stop us
        pass
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im)
        if mode == "I" and a.max(initial=0) <= 255:
            a = a.astype(np.uint8)
        else:
            a = np.clip(a, 0, 65535).astype(np.uint16)
        return from_array(a)
    if mode == "F":
        return from_array(np.clip(np.asarray(im), 0, 255).round().astype(np.uint8))
    if mode == "1":
        im = im.convert("L")
    elif mode in ("P", "PA"):
        im = im.convert("RGBA" if ("transparency" in im.info or mode == "PA") else "RGB")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in mode else "RGB")
    return from_array(np.asarray(im))


def load(src, max_pixels: int | None = None) -> Picture:
    """A path, bytes, PIL image or array -> Picture. Raises ImageError."""
    if isinstance(src, Picture):
        return src
    if isinstance(src, np.ndarray):
        pic = from_array(src)
    elif isinstance(src, Image.Image):
        pic = from_pil(src)
    else:
        if isinstance(src, (bytes, bytearray)):
            fp, name = io.BytesIO(src), "<bytes>"
        else:
            path = Path(src)
            if not path.exists():
                raise ImageError(f"{path}: no such file")
            if path.is_dir():
                raise ImageError(f"{path}: is a directory")
            fp, name = path, str(path)
        try:
            with Image.open(fp) as im:
                if max_pixels is not None and im.width * im.height > max_pixels:
                    raise ImageError(f"{name}: {im.width}x{im.height} is over the limit of "
                                     f"{max_pixels} pixels; pass --max-pixels to raise it")
                im.load()
                pic = from_pil(im)
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image file Pillow can read") from None
        except (OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, ImageError):
                raise
            raise ImageError(f"{name}: cannot read image ({exc})") from None
    if pic.width < 1 or pic.height < 1:
        raise ImageError("image is empty")
    if max_pixels is not None and pic.width * pic.height > max_pixels:
        raise ImageError(f"image {pic.width}x{pic.height} is over the limit of {max_pixels} pixels; "
                         f"pass --max-pixels to raise it")
    return pic


def png_bytes(plane: np.ndarray) -> bytes:
    """Lossless PNG of one 8-bit plane (used for alpha inside .aec)."""
    buf = io.BytesIO()
    Image.fromarray(plane, "L").save(buf, "PNG", optimize=True)
    return buf.getvalue()


def png_plane(data: bytes, width: int, height: int) -> np.ndarray:
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "PNG" or im.mode != "L" or im.size != (width, height):
                raise ImageError("alpha plane does not match the image")
            return np.asarray(im).copy()
    except (OSError, SyntaxError) as exc:
        raise ImageError(f"alpha plane is corrupt ({exc})") from None


def psnr(a: np.ndarray, b: np.ndarray, rows: int = 256) -> float:
    """PSNR in dB between two uint8 arrays (inf when equal), summed in
    blocks of rows so a large image needs no full-size float copies."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    total = 0
    for i in range(0, a.shape[0], rows):
        d = a[i:i + rows].astype(np.int32) - b[i:i + rows].astype(np.int32)
        total += int(np.square(d, dtype=np.int64).sum())
    mse = total / a.size
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))
