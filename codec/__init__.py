"""aecodec: a learned image codec on one autoencoder backbone.

Public API (torch is imported only when a function needs it)::

    import codec
    data = codec.compress("photo.png", quality=4)      # -> bytes (.aec)
    image = codec.decompress(data)                     # -> PIL.Image
    codec.read_header(data)                            # -> container.Header
    net = codec.load_model("hyperprior-vr")            # -> LoadedModel

Importing ``codec`` also registers the Pillow plugin, so
``PIL.Image.open("x.aec")`` and ``image.save("x.aec", quality=4)`` work.
"""

from __future__ import annotations

from . import pil_plugin as _pil_plugin  # noqa: F401  (registers the plugin)
from .container import DEFAULT_MAX_PIXELS, ContainerError, Header
from .io import ImageError
from .registry import DEFAULT_MODEL, MODELS

__all__ = ["compress", "decompress", "encode", "decode", "read_header", "load_model", "embed",
           "ContainerError", "ImageError", "Header", "MODELS", "DEFAULT_MODEL"]
__version__ = "0.1.0"


def compress(image, quality: float = 4, model=None, max_pixels=DEFAULT_MAX_PIXELS) -> bytes:
    """Image (path, bytes, PIL image or uint8/uint16 array) -> .aec bytes.

    ``quality`` runs from 1 (smallest file) to 8 (best); fractional values
    are allowed by the variable-rate default model."""
    from .pipeline import encode as _encode
    return _encode(image, quality=quality, model=model, max_pixels=max_pixels).data


def encode(image, quality: float = 4, model=None, max_pixels=DEFAULT_MAX_PIXELS, tile: int = 1024):
    """Like :func:`compress` but returns an ``EncodeResult`` with the exact
    decoded picture, its PSNR and the bpp. ``tile``: tile side in pixels
    (a multiple of 64; 0 codes the whole image at once)."""
    from .pipeline import encode as _encode
    return _encode(image, quality=quality, model=model, max_pixels=max_pixels, tile=tile)


def decompress(data: bytes, model=None, max_pixels=DEFAULT_MAX_PIXELS):
    """.aec bytes -> PIL image (mode RGB, L, RGBA or LA, as compressed)."""
    return decode(data, model=model, max_pixels=max_pixels).to_pil()


def decode(data: bytes, model=None, max_pixels=DEFAULT_MAX_PIXELS):
    """.aec bytes -> ``io.Picture`` (uint8 arrays)."""
    from .pipeline import decode as _decode
    return _decode(data, model=model, max_pixels=max_pixels)


def read_header(data: bytes, max_pixels=None) -> Header:
    from .container import parse_header
    return parse_header(data, max_pixels=max_pixels)[0]


def embed(image, model=None, pooled: bool = True):
    """The latent of an image under the codec's analysis transform: a
    (M, H/16, W/16) array, or pooled to a fixed 2M vector (channel means and
    standard deviations)."""
    from .heads.embed import embed as _embed
    return _embed(image, model=model, pooled=pooled)


def load_model(name=None, quality=None):
    """Load a shipped model by id (or a .safetensors path). ``quality`` is
    accepted for API symmetry and checked against the model's range."""
    from .pipeline import load_model as _load
    lm = _load(name)
    if quality is not None:
        lm.net.check_quality(quality)
    return lm
