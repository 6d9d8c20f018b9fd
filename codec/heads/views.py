"""The image's eight symmetries (quarter turns, then a left-right flip or
not), used to look at an image several ways and average: the restoration
head's self-ensemble (restore.run) and the defect head's views
(defect.probability). Works on numpy arrays and torch tensors alike."""

from __future__ import annotations

import numpy as np
import torch

#: (k, flip): turned by k x 90 degrees, then flipped left-right or not; in
#: the order they are used, so the first 2 and 4 are the ones that keep the
#: image's shape (no quarter turn)
SYMMETRIES = ((0, False), (0, True), (2, False), (2, True), (1, False), (1, True), (3, False), (3, True))


def _lib(a):
    return torch if isinstance(a, torch.Tensor) else np


def turn(a, k: int, flip: bool, axes=(0, 1)):
    """``a`` seen in symmetry (k, flip); ``axes``: its (row, column) axes."""
    lib = _lib(a)
    a = lib.rot90(a, k, axes)
    return lib.flip(a, (axes[1],)) if flip else a


def turn_back(a, k: int, flip: bool, axes=(0, 1)):
    """The inverse of :func:`turn`."""
    lib = _lib(a)
    return lib.rot90(lib.flip(a, (axes[1],)) if flip else a, -k, axes)
