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
           "denoise", "inpaint", "sample", "interpolate", "anomaly_score",
           "ContainerError", "ImageError", "Header", "MODELS", "DEFAULT_MODEL"]
__version__ = "0.1.0"


def compress(image, quality: float = 4, model=None, max_pixels=DEFAULT_MAX_PIXELS, device=None,
             precision=None, effort: int = 0, post_views: int | None = None) -> bytes:
    """Image (path, bytes, PIL image or uint8/uint16 array) -> .aec bytes.

    ``quality`` runs from 1 (smallest file) to 8 (best); fractional values
    are allowed by the variable-rate default model, which also goes down to
    -1 (below 1 its gains are extrapolated: lower rates than any trained level). ``device="cuda"`` runs
    the analysis transform on the GPU (decoding stays exact on the CPU).
    ``precision`` "fp32" or "bf16": the synthesis arithmetic every decoder
    of the file will use; None picks bf16 where the CPU has it natively and
    the model has no post-filter (the default model's files are fp32).
    ``effort``: steps of encoder-side latent refinement (scalar and VQ codecs):
    smaller files at the same quality for more encoding time.
    ``post_views`` (1, 2, 4 or 8; None: the default, 2): how many views of
    the picture (itself, its transpose, its mirror images...) the post-filter
    of a model with one averages, encoder and every decoder alike: more
    views, higher quality at the same size, slower decoding."""
    from .pipeline import encode as _encode
    return _encode(image, quality=quality, model=model, max_pixels=max_pixels, device=device,
                   precision=precision, effort=effort, post_views=post_views).data


def encode(image, quality: float = 4, model=None, max_pixels=DEFAULT_MAX_PIXELS, tile: int = 1024, device=None,
           precision=None, effort: int = 0, post_views: int | None = None):
    """Like :func:`compress` but returns an ``EncodeResult`` with the exact
    decoded picture, its PSNR and the bpp. ``tile``: tile side in pixels
    (a multiple of 64; 0 codes the whole image at once)."""
    from .pipeline import encode as _encode
    return _encode(image, quality=quality, model=model, max_pixels=max_pixels, tile=tile, device=device,
                   precision=precision, effort=effort, post_views=post_views)


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


def denoise(image, sigma="auto", weights=None, ensemble: int = 1):
    """Denoise with the denoising autoencoder; ``sigma``: noise std on the
    0..255 scale or "auto" (estimated); ``ensemble`` 2, 4 or 8: average that
    many turned and flipped copies (slower, a little sharper). -> PIL image."""
    from .heads.restore import denoise as _denoise
    return _denoise(image, sigma=sigma, weights=weights, ensemble=ensemble).to_pil()


def inpaint(image, mask, weights=None):
    """Fill the pixels where ``mask`` (same size) is non-zero, with the
    masked-autoencoder. -> PIL image; other pixels are unchanged."""
    from .heads.restore import inpaint as _inpaint
    return _inpaint(image, mask, weights=weights).to_pil()


def sample(n: int = 16, seed: int = 0, size: int = 64, temperature: float = 1.0):
    """n new images from the VAE's prior, as one grid (PIL image)."""
    from PIL import Image

    from .heads.vae import sample_grid
    return Image.fromarray(sample_grid(n, seed, size, temperature))


def interpolate(a, b, steps: int = 8, size: int = 128):
    """The VAE's latent line from image a to image b, as a strip (PIL image)."""
    from PIL import Image

    from .heads.vae import interpolate as _interp
    return Image.fromarray(_interp(a, b, steps, size))


def anomaly_score(image, kind: str = "rd", quality: float = 4, model=None):
    """How surprising an image is to the codec -> (score, per-pixel heat map);
    see :mod:`codec.heads.anomaly` (and ``aecodec anomaly fit/score``)."""
    from .heads.anomaly import score
    return score(image, kind=kind, model=model, quality=quality)
