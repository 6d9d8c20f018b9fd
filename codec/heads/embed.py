"""Latent embeddings: the analysis transform g_a as a dimension reduction.

``embed`` returns y = g_a(x) (M channels at 1/16 of the resolution), or,
pooled, a fixed-length 2M vector: the mean and standard deviation of each
latent channel over the image, comparable between images of any size.
"""

from __future__ import annotations

import numpy as np

from .. import io, tiling
from ..pipeline import load_model


def embed(image, model=None, pooled: bool = True, max_pixels=None) -> np.ndarray:
    lm = load_model(model)
    pic = io.load(image, max_pixels=max_pixels)
    y = tiling.analyse(lm.net, pic.rgb, tiling.DEFAULT_TILE)
    h, w = -(-pic.height // 16), -(-pic.width // 16)
    y = y[0, :, :h, :w].double()
    if not pooled:
        return y.float().numpy()
    flat = y.reshape(y.shape[0], -1)
    return np.concatenate([flat.mean(1).numpy(), flat.std(1, unbiased=False).numpy()]).astype(np.float32)
