"""Probability models for latents: the tables the coder reads.

Two families, both indexed by integers before they reach the coder
(tensorflow-compression's "indexed" entropy models):

* :class:`ScaleTable` -- a zero-mean Gaussian whose standard deviation is one
  of ``LEVELS`` fixed log-spaced values; the hyper-decoder's scale output is
  mapped to the index of the first table value that is not smaller.
* factorized pmfs -- one probability vector per channel, computed once from a
  CompressAI ``EntropyBottleneck`` and stored with the weights.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SCALES_MIN, SCALES_MAX, LEVELS = 0.11, 256.0, 64


def scale_table() -> np.ndarray:
    """The fixed table of Gaussian standard deviations (float64)."""
    return np.exp(np.linspace(math.log(SCALES_MIN), math.log(SCALES_MAX), LEVELS))


class ScaleTable:
    """Maps predicted scales to table indexes and indexes to coder stds."""

    def __init__(self) -> None:
        self.table = scale_table()
        self._bounds = torch.from_numpy(self.table[:-1].copy())

    def index(self, scales: torch.Tensor) -> np.ndarray:
        """float64 scales -> int indexes in [0, LEVELS): first entry >= scale."""
        s = scales.detach().to(torch.float64).reshape(-1)
        return torch.bucketize(s, self._bounds, right=False).numpy().astype(np.int32)

    def stds(self, indexes: np.ndarray) -> np.ndarray:
        return self.table[indexes]


def factorized_pmfs(entropy_bottleneck) -> tuple[list[np.ndarray], np.ndarray]:
    """Per-channel pmfs of a CompressAI EntropyBottleneck and their offsets.

    Built from the bottleneck's integer CDF buffers (``update(force=True)``
    must have run), so the float64 pmfs are exact and identical everywhere.
    The overflow bin is dropped: symbols outside the support are clamped.
    """
    cdf = entropy_bottleneck._quantized_cdf.cpu().numpy().astype(np.int64)
    length = entropy_bottleneck._cdf_length.cpu().numpy().astype(np.int64)
    offset = entropy_bottleneck._offset.cpu().numpy().astype(np.int64)
    pmfs = []
    for c in range(cdf.shape[0]):
        pmf = np.diff(cdf[c, : length[c]]).astype(np.float64)[:-1]
        pmfs.append(np.maximum(pmf, 1.0) / 65536.0)
    return pmfs, offset
