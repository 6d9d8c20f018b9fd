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

import functools
import math
from pathlib import Path

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
        bounds = torch.from_numpy(self.table[:-1].copy())
        inf = torch.tensor([math.inf], dtype=torch.float64)
        self._above = torch.cat([bounds, inf])    # _above[i]: largest scale of index i
        self._below = torch.cat([-inf, bounds])   # _below[i]: largest scale of index i - 1
        self._log0 = math.log(SCALES_MIN)
        self._step = (math.log(SCALES_MAX) - self._log0) / (LEVELS - 1)

    def index(self, scales: torch.Tensor) -> np.ndarray:
        """float64 scales -> int indexes in [0, LEVELS): first entry >= scale
        (``torch.bucketize`` over the table, computed as a logarithm's guess
        that exact comparisons with the table then correct by one step)."""
        s = torch.nan_to_num(scales.detach().to(torch.float64).reshape(-1), nan=SCALES_MAX)
        guess = ((s.clamp(SCALES_MIN, SCALES_MAX).log() - self._log0) / self._step).ceil_()
        i = guess.clamp_(0, LEVELS - 1).long()
        i += (s > self._above[i]).long()
        i -= (s <= self._below[i]).long()
        return i.numpy().astype(np.int32)

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


# ---------------------------------------------------------------- y tables
#: Fixed-point precision of the y tables (constriction's default ANS coder
#: models probabilities with 24 bits).
PRECISION = 24
#: A table covers the symbols within COVER standard deviations (at least
#: MIN_HALF either side of zero); a symbol outside is coded as the table's
#: escape entry followed by its value under a uniform model.
COVER, MIN_HALF = 8, 2
TABLES_FILE = Path(__file__).parent / "data" / "gaussian_tables.npz"


def table_halves() -> np.ndarray:
    """Half-width of each scale table entry's support (int64, LEVELS)."""
    return np.maximum(MIN_HALF, np.ceil(COVER * scale_table())).astype(np.int64)


def make_gaussian_tables() -> list[np.ndarray]:
    """Integer pmfs, one per scale table entry: counts (summing to
    2^PRECISION, each at least 1) of the symbols -half..half of a zero-mean
    Gaussian quantized to the integers, then of the escape (the two tails).
    Computed once (scripts/gaussian_tables.py) and shipped in TABLES_FILE, so
    encoders and decoders on any platform read the same integers instead of
    recomputing erfc, whose last bit differs between C libraries."""
    total = 1 << PRECISION
    out = []
    for std, half in zip(scale_table(), table_halves()):
        edges = [(x + 0.5) / (std * math.sqrt(2.0)) for x in range(-half - 1, half + 1)]
        cdf = np.array([0.5 * math.erfc(-e) for e in edges])   # P(X < x + 1/2)
        p = np.append(np.diff(cdf), 2.0 * cdf[0])               # symbols, then both tails
        counts = 1 + np.floor(p * (total - len(p))).astype(np.int64)   # each at least 1
        counts[half] += total - counts.sum()                   # zero (the mode) takes the slack
        out.append(counts)
    return out


@functools.lru_cache(maxsize=1)
def gaussian_tables() -> tuple[np.ndarray, ...]:
    with np.load(TABLES_FILE) as f:
        tables = tuple(f[f"t{i:02d}"].astype(np.int64) for i in range(LEVELS))
    if [len(t) for t in tables] != list(2 * table_halves() + 2):
        raise RuntimeError(f"{TABLES_FILE} does not match this version's scale table")
    return tables


@functools.lru_cache(maxsize=1)
def binarization_tables() -> tuple[np.ndarray, np.ndarray]:
    """The y tables read as binary decisions (a binarized latent; see
    latent_codecs.encode_binarized): for each scale index i,
    ``nonzero[i]`` = P(symbol != 0) and ``more[i, m]`` = P(|symbol| > m given
    |symbol| >= m) for m = 1..half[i] (beyond the support: the escape).
    Ratios of the integer tables' sums, so the same float64 everywhere."""
    tables = gaussian_tables()
    halves = table_halves()
    nonzero = np.empty(LEVELS)
    more = np.zeros((LEVELS, int(halves.max()) + 1))
    for i, (c, h) in enumerate(zip(tables, halves)):
        total = int(c.sum())
        nonzero[i] = (total - int(c[h])) / total
        mass = c[h + 1:2 * h + 1] + c[h - 1::-1]                # count of |symbol| = m, m = 1..h
        # tail[m - 1] = count of |symbol| >= m (m = 1..h), escape included; then the escape alone
        tail = np.append(np.cumsum(mass[::-1])[::-1] + int(c[-1]), int(c[-1]))
        more[i, 1:h + 1] = tail[1:] / tail[:-1]
    return nonzero, more
