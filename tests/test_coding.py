import numpy as np
import pytest

from codec import coding
from codec.priors import scale_table


def test_gaussian_round_trip_and_rate_near_entropy():
    rng = np.random.default_rng(0)
    stds = scale_table()[rng.integers(0, 64, 20000)]
    sym = np.clip(np.round(rng.normal(0, stds)), -4095, 4095).astype(np.int32)
    data = coding.encode_gaussian(sym, stds, 4095)
    assert np.array_equal(coding.decode_gaussian(data, stds, 4095), sym)
    # ideal cost under the same (discretised) Gaussians, from the CDF
    from math import erf, sqrt
    cdf = np.vectorize(lambda v: 0.5 * (1 + erf(v / sqrt(2))))
    p = cdf((sym + 0.5) / stds) - cdf((sym - 0.5) / stds)
    ideal_bits = -np.log2(np.maximum(p, 1e-12)).sum()
    assert len(data) * 8 <= ideal_bits * 1.02 + 64


def test_categorical_rows_round_trip():
    rng = np.random.default_rng(1)
    pmfs = [rng.random(k) + 0.01 for k in (2, 5, 17)]
    syms = [rng.integers(0, len(p), n).astype(np.int32) for p, n in zip(pmfs, (10, 0, 300))]
    data = coding.encode_categorical_rows(syms, pmfs)
    out = coding.decode_categorical_rows(data, [10, 0, 300], pmfs)
    assert all(np.array_equal(a, b) for a, b in zip(out, syms))


def test_categorical_per_symbol_round_trip():
    rng = np.random.default_rng(2)
    probs = rng.random((500, 8))
    sym = rng.integers(0, 8, 500).astype(np.int32)
    data = coding.encode_categorical(sym, probs)
    assert np.array_equal(coding.decode_categorical(data, probs), sym)


def test_predictable_bits_cost_less_than_one_bit_each():
    rng = np.random.default_rng(3)
    p = np.full(8000, 0.05)
    bits = (rng.random(8000) < p).astype(np.int32)
    data = coding.encode_bernoulli(bits, p)
    assert np.array_equal(coding.decode_bernoulli(data, p), bits)
    assert len(data) * 8 < 0.4 * len(bits)


def test_stream_of_odd_length_is_rejected():
    with pytest.raises(coding.CodingError):
        coding.decode_gaussian(b"abc", np.ones(3), 10)
