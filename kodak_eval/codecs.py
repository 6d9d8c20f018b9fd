"""Codecs under test. Each is a name, a list of rate settings, and
``encode(image, setting) -> bytes`` / ``decode(bytes) -> uint8 array``,
all through real libraries (Pillow, pillow-heif, pillow-jxl-plugin)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, features


@dataclass
class Codec:
    name: str
    settings: list
    encode: Callable
    decode: Callable
    note: str = ""


def _pil_decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def _pil_encoder(fmt: str, **fixed):
    def enc(im: Image.Image, q) -> bytes:
        buf = io.BytesIO()
        kwargs = dict(fixed)
        if fmt == "JPEG2000":
            kwargs.update(quality_mode="rates", quality_layers=[q], irreversible=True)
        else:
            kwargs["quality"] = q
        im.save(buf, fmt, **kwargs)
        return buf.getvalue()
    return enc


def classical() -> tuple[list[Codec], dict]:
    """The classical codecs this machine can run, and the skipped ones with why."""
    qs = [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95]
    codecs = [
        Codec("JPEG 4:2:0", qs, _pil_encoder("JPEG", subsampling=2, optimize=True), _pil_decode,
              "Pillow/libjpeg-turbo, optimized Huffman"),
        Codec("JPEG 4:4:4", qs, _pil_encoder("JPEG", subsampling=0, optimize=True), _pil_decode,
              "Pillow/libjpeg-turbo, optimized Huffman"),
    ]
    skipped = {}
    if features.check("webp"):
        codecs.append(Codec("WebP", qs, _pil_encoder("WEBP", method=6), _pil_decode, "Pillow/libwebp, method 6"))
    else:
        skipped["WebP"] = "Pillow built without WebP"
    if features.check("avif"):
        codecs.append(Codec("AVIF", [10, 20, 30, 40, 50, 60, 70, 80, 90],
                            _pil_encoder("AVIF", speed=4, subsampling="4:4:4"), _pil_decode,
                            "Pillow/libavif, 4:4:4, speed 4, default tuning"))
    else:
        skipped["AVIF"] = "Pillow built without AVIF"
    if features.check("jpg_2000"):
        codecs.append(Codec("JPEG 2000", [200, 120, 80, 48, 32, 20, 12, 8],
                            _pil_encoder("JPEG2000"), _pil_decode, "Pillow/OpenJPEG, compression ratios"))
    else:
        skipped["JPEG 2000"] = "Pillow built without OpenJPEG"
    try:
        import pillow_jxl  # noqa: F401  (registers JXL with Pillow)
        codecs.append(Codec("JPEG XL", [10, 25, 40, 55, 70, 80, 90, 95],
                            _pil_encoder("JXL", effort=7), _pil_decode, "pillow-jxl-plugin (libjxl), effort 7"))
    except ImportError:
        skipped["JPEG XL"] = "pillow-jxl-plugin not installed"
    try:
        import pillow_heif
        pillow_heif.register_heif_opener()
        if pillow_heif.libheif_info()["encoders"].get("x265"):
            codecs.append(Codec("HEIC", [10, 25, 40, 55, 70, 80, 90, 95],
                                _pil_encoder("HEIF", chroma=444), _pil_decode,
                                "pillow-heif (libheif + x265), 4:4:4"))
        else:
            skipped["HEIC"] = "libheif has no HEVC encoder here"
    except ImportError:
        skipped["HEIC"] = "pillow-heif not installed"
    return codecs, skipped
