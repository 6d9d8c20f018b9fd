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


def _y_tables():
    from codec import priors
    return coding.categorical_models(list(priors.gaussian_tables())), priors.table_halves()


def test_grouped_round_trip_with_escapes():
    models, halves = _y_tables()
    rng = np.random.default_rng(3)
    groups = rng.integers(0, 64, 5000).astype(np.int32)
    sym = np.clip(np.round(rng.normal(0, scale_table()[groups])), -4095, 4095).astype(np.int32)
    sym[::97] = rng.integers(-4095, 4096, len(sym[::97]))   # far outside most tables
    h = halves[groups]
    esc = np.abs(sym) > h
    assert esc.sum() > 20
    data = coding.encode_grouped(np.where(esc, 2 * h + 1, sym + h), groups, models, 2 * halves + 1,
                                 sym[esc] + 4095, 8191)
    out, values = coding.decode_grouped(data, groups, models, 2 * halves + 1, 8191)
    assert np.array_equal(out == 2 * h + 1, esc)
    assert np.array_equal(values, sym[esc] + 4095)
    assert np.array_equal(out[~esc] - h[~esc], sym[~esc])


def test_grouped_coding_costs_what_the_per_symbol_gaussians_cost():
    models, halves = _y_tables()
    rng = np.random.default_rng(4)
    groups = rng.integers(0, 40, 30000).astype(np.int32)
    stds = scale_table()[groups]
    sym = np.round(rng.normal(0, stds)).astype(np.int32)
    h = halves[groups]
    assert not (np.abs(sym) > h).any()
    grouped = coding.encode_grouped(sym + h, groups, models, 2 * halves + 1, np.zeros(0, np.int32), 8191)
    per_symbol = coding.encode_gaussian(sym, stds, 4095)
    assert abs(len(grouped) / len(per_symbol) - 1) < 0.01


def test_grouped_stream_from_elsewhere_gives_a_coding_error_or_symbols_in_range():
    """Garbage decodes to garbage (the container's CRCs catch it), never to
    another exception or symbols outside the tables."""
    models, halves = _y_tables()
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 64, 300).astype(np.int32)
    for n in (0, 1, 3, 50):
        data = rng.integers(0, 256, 4 * n, dtype=np.uint8).tobytes()
        try:
            out, values = coding.decode_grouped(data, groups, models, 2 * halves + 1, 8191)
        except coding.CodingError:
            continue
        assert len(out) == 300 and (out >= 0).all() and (out <= 2 * halves[groups] + 1).all()
        assert len(values) == np.count_nonzero(out == 2 * halves[groups] + 1) and (values < 8191).all()
    with pytest.raises(coding.CodingError, match="multiple of 4"):
        coding.decode_grouped(b"\x01\x02\x03", groups, models, 2 * halves + 1, 8191)


def test_rounds_round_trip_where_each_part_depends_on_the_last():
    rng = np.random.default_rng(6)
    first = rng.integers(0, 2, 400)
    p1 = rng.random(400) * 0.8 + 0.1
    second = rng.integers(0, 2, int(first.sum()))
    values = rng.integers(0, 1000, 7)
    data = coding.encode_rounds([("bits", first, p1), ("bits", second, np.full(len(second), 0.3)),
                                 ("bits", [], []), ("uniform", values, 1000)])
    got = []

    def next_round(prev):
        got.append(prev)
        return [("bits", p1), ("bits", np.full(int(prev.sum()) if prev is not None else 0, 0.3)),
                ("bits", np.zeros(0)), ("uniform", 7, 1000), None][len(got) - 1]
    coding.decode_rounds(data, next_round)
    assert np.array_equal(got[1], first) and np.array_equal(got[2], second) and np.array_equal(got[4], values)
