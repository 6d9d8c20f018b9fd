"""Bjøntegaard delta rate (VCEG-M33): the average bitrate difference, in %,
between two rate-distortion curves over their common quality interval,
from cubic fits of log-rate as a function of PSNR."""

from __future__ import annotations

import numpy as np


def bd_rate(rate_a, psnr_a, rate_b, psnr_b) -> float | None:
    """Rate change of curve B against anchor A in percent (negative: B saves
    bits). None when the curves do not overlap or have fewer than 4 points."""
    ra, pa, rb, pb = map(lambda v: np.asarray(v, dtype=np.float64), (rate_a, psnr_a, rate_b, psnr_b))
    if min(len(ra), len(rb)) < 4:
        return None
    lo, hi = max(pa.min(), pb.min()), min(pa.max(), pb.max())
    if hi <= lo:
        return None
    fa = np.polyint(np.polyfit(pa, np.log(ra), 3))
    fb = np.polyint(np.polyfit(pb, np.log(rb), 3))
    ia = np.polyval(fa, hi) - np.polyval(fa, lo)
    ib = np.polyval(fb, hi) - np.polyval(fb, lo)
    return float((np.exp((ib - ia) / (hi - lo)) - 1) * 100)
