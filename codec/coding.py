"""Entropy coding: the only module that imports constriction.

Every function takes integer symbols and probability parameters that come
from fixed tables (never raw network outputs), so an encoder and a decoder
that load the same weights build bit-identical fixed-point models.
All streams use constriction's ANS coder (a stack: the encoder encodes in
reverse so the decoder reads forward) and are returned as ``bytes`` whose
length is a multiple of 4 (constriction's 32-bit words).
"""

from __future__ import annotations

import numpy as np
import constriction

_stream = constriction.stream
_model = _stream.model


class CodingError(ValueError):
    """A stream could not be decoded (it is corrupt or belongs to another model)."""


def _words(data: bytes) -> np.ndarray:
    if len(data) % 4:
        raise CodingError("entropy-coded stream length is not a multiple of 4 bytes")
    return np.frombuffer(data, dtype="<u4").astype(np.uint32)


def _finish(coder) -> bytes:
    return coder.get_compressed().astype("<u4").tobytes()


def encode_gaussian(symbols: np.ndarray, stds: np.ndarray, bound: int) -> bytes:
    """Code integer ``symbols`` in [-bound, bound] under zero-mean quantized
    Gaussians with per-symbol standard deviations ``stds`` (float64, taken
    from a fixed scale table)."""
    family = _model.QuantizedGaussian(-bound, bound)
    coder = _stream.stack.AnsCoder()
    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    stds = np.ascontiguousarray(stds, dtype=np.float64)
    coder.encode_reverse(symbols, family, np.zeros_like(stds), stds)
    return _finish(coder)


def decode_gaussian(data: bytes, stds: np.ndarray, bound: int) -> np.ndarray:
    """Inverse of :func:`encode_gaussian`; returns int32 symbols."""
    family = _model.QuantizedGaussian(-bound, bound)
    coder = _stream.stack.AnsCoder(_words(data))
    stds = np.ascontiguousarray(stds, dtype=np.float64)
    try:
        return coder.decode(family, np.zeros_like(stds), stds).astype(np.int32)
    except Exception as exc:  # constriction raises plain errors on bad data
        raise CodingError(f"corrupt entropy-coded stream ({exc})") from None


def _grouping(groups: np.ndarray, n_groups: int):
    """-> (positions sorted by group, raster order within one; each group's start and end)."""
    small = groups.astype(np.uint8 if n_groups <= 256 else np.uint16)  # numpy radix-sorts these
    order = np.argsort(small, kind="stable")
    counts = np.bincount(small, minlength=n_groups)
    ends = np.cumsum(counts)
    return order, ends - counts, ends


def _encode_grouped_into(coder, symbols, groups, models, escape_values, escape_size) -> None:
    if len(escape_values):  # a stack: encoded first, decoded last
        coder.encode_reverse(np.ascontiguousarray(escape_values, dtype=np.int32), _model.Uniform(escape_size))
    symbols = np.ascontiguousarray(symbols, dtype=np.int32)
    order, starts, ends = _grouping(groups, len(models))
    for g in reversed(range(len(models))):
        if ends[g] > starts[g]:
            coder.encode_reverse(symbols[order[starts[g]:ends[g]]], models[g])


def _decode_grouped_from(coder, groups, models, escapes, escape_size) -> tuple[np.ndarray, np.ndarray]:
    out = np.empty(len(groups), np.int32)
    order, starts, ends = _grouping(groups, len(models))
    try:
        for g in range(len(models)):
            if ends[g] > starts[g]:
                out[order[starts[g]:ends[g]]] = coder.decode(models[g], int(ends[g] - starts[g]))
        n_esc = int(np.count_nonzero(out == escapes[groups]))
        values = (np.asarray(coder.decode(_model.Uniform(escape_size), n_esc), dtype=np.int32)
                  if n_esc else np.zeros(0, np.int32))
    except Exception as exc:
        raise CodingError(f"corrupt entropy-coded stream ({exc})") from None
    return out, values


def encode_grouped(symbols: np.ndarray, groups: np.ndarray, models: list, escapes: np.ndarray,
                   escape_values: np.ndarray, escape_size: int) -> bytes:
    """Code ``symbols[i]`` under ``models[groups[i]]`` (constriction models,
    e.g. from :func:`categorical_models`), the symbols of one group after
    another, so each group is one vectorised call under one fixed model;
    then ``escape_values`` (uniform over ``0..escape_size-1``), one for
    each symbol equal to its group's escape entry ``escapes[group]``."""
    return encode_grouped_parts([(symbols, groups, escape_values)], models, escape_size)


def decode_grouped(data: bytes, groups: np.ndarray, models: list, escapes: np.ndarray,
                   escape_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_grouped` -> (symbols, escape values)."""
    return _decode_grouped_from(_stream.stack.AnsCoder(_words(data)), groups, models, escapes, escape_size)


def encode_grouped_parts(parts: list[tuple], models: list, escape_size: int) -> bytes:
    """Several parts ``(symbols, groups, escape_values)`` as
    :func:`encode_grouped` codes one, in one stream, in the order a decoder
    reads them (a later part's groups may depend on the earlier parts)."""
    coder = _stream.stack.AnsCoder()
    for symbols, groups, escape_values in reversed(parts):  # a stack: the last encoded is read first
        _encode_grouped_into(coder, symbols, groups, models, escape_values, escape_size)
    return _finish(coder)


def grouped_parts_decoder(data: bytes, models: list, escapes: np.ndarray, escape_size: int):
    """Inverse of :func:`encode_grouped_parts`: -> ``next_part(groups)``,
    which decodes the next part under its groups (known only once the
    parts before it are decoded) -> (symbols, escape values)."""
    coder = _stream.stack.AnsCoder(_words(data))

    def next_part(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _decode_grouped_from(coder, groups, models, escapes, escape_size)

    return next_part


def encode_rounds(rounds: list[tuple]) -> bytes:
    """One stream of several parts, in the order a decoder reads them:
    ``("bits", bits, p_one)`` (0/1 under per-bit Bernoulli probabilities),
    ``("uniform", values, size)`` (each in ``0..size-1``) or
    ``("categorical", symbols, probs)`` (``symbols[i]`` under the row
    ``probs[i]``) or ``("rows", [symbols], [pmf])`` (each array of symbols
    i.i.d. under its pmf). Each part (each array of a "rows" part) is one
    vectorised call."""
    coder = _stream.stack.AnsCoder()
    for kind, symbols, param in reversed(rounds):  # a stack: the last encoded is read first
        if kind == "rows":
            for sym, pmf in reversed(list(zip(symbols, param))):
                model = _model.Categorical(np.asarray(pmf, dtype=np.float64), perfect=False)
                coder.encode_reverse(np.ascontiguousarray(sym, dtype=np.int32), model)
            continue
        if not len(symbols):
            continue
        symbols = np.ascontiguousarray(symbols, dtype=np.int32)
        if kind == "bits":
            coder.encode_reverse(symbols, _model.Bernoulli(perfect=False), np.ascontiguousarray(param, dtype=np.float64))
        elif kind == "categorical":
            coder.encode_reverse(symbols, _model.Categorical(perfect=False), np.ascontiguousarray(param, dtype=np.float64))
        else:
            coder.encode_reverse(symbols, _model.Uniform(int(param)))
    return _finish(coder)


def decode_rounds(data: bytes, next_round) -> None:
    """Inverse of :func:`encode_rounds` for parts that depend on what was
    decoded before: ``next_round(previous) -> ("bits", p_one)``,
    ``("categorical", probs)``, ``("rows", [count], [pmf])``,
    ``("uniform", count, size)`` or None (done); ``previous`` is the last
    part's symbols (a list of arrays for "rows"; None at the start)."""
    coder = _stream.stack.AnsCoder(_words(data))
    previous = None
    while (part := next_round(previous)) is not None:
        try:
            if part[0] == "rows":
                previous = [np.asarray(coder.decode(_model.Categorical(np.asarray(pmf, dtype=np.float64),
                                                                       perfect=False), int(n)), dtype=np.int32)
                            for n, pmf in zip(part[1], part[2])]
            elif part[0] in ("bits", "categorical"):
                p = np.ascontiguousarray(part[1], dtype=np.float64)
                family = _model.Bernoulli(perfect=False) if part[0] == "bits" else _model.Categorical(perfect=False)
                previous = (np.asarray(coder.decode(family, p), dtype=np.int32)
                            if len(p) else np.zeros(0, np.int32))
            else:
                n = int(part[1])
                previous = (np.asarray(coder.decode(_model.Uniform(int(part[2])), n), dtype=np.int32)
                            if n else np.zeros(0, np.int32))
        except Exception as exc:  # constriction raises plain errors on bad data
            raise CodingError(f"corrupt entropy-coded stream ({exc})") from None


def categorical_models(counts: list[np.ndarray]) -> list:
    """Fixed constriction models from integer pmfs (built from the same
    integers, so identical on every platform)."""
    return [_model.Categorical(np.asarray(c, dtype=np.float64) / float(c.sum()), perfect=False)
            for c in counts]


def encode_categorical_rows(symbols: list[np.ndarray], pmfs: list[np.ndarray]) -> bytes:
    """Code several groups of symbols, group ``i`` i.i.d. under ``pmfs[i]``
    (symbols ``0..len(pmfs[i])-1``). Used for per-channel factorized priors."""
    coder = _stream.stack.AnsCoder()
    for sym, pmf in reversed(list(zip(symbols, pmfs))):
        model = _model.Categorical(np.asarray(pmf, dtype=np.float64), perfect=False)
        coder.encode_reverse(np.ascontiguousarray(sym, dtype=np.int32), model)
    return _finish(coder)


def decode_categorical_rows(data: bytes, counts: list[int], pmfs: list[np.ndarray]) -> list[np.ndarray]:
    """Inverse of :func:`encode_categorical_rows`."""
    coder = _stream.stack.AnsCoder(_words(data))
    out = []
    try:
        for n, pmf in zip(counts, pmfs):
            model = _model.Categorical(np.asarray(pmf, dtype=np.float64), perfect=False)
            out.append(np.asarray(coder.decode(model, n), dtype=np.int32))
    except Exception as exc:
        raise CodingError(f"corrupt entropy-coded stream ({exc})") from None
    return out


def _encode_each(family, symbols: np.ndarray, params: np.ndarray) -> bytes:
    """Code ``symbols[i]`` under ``family`` with the i-th of ``params`` (float64 from a table)."""
    coder = _stream.stack.AnsCoder()
    coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), family,
                         np.ascontiguousarray(params, dtype=np.float64))
    return _finish(coder)


def _decode_each(family, data: bytes, params: np.ndarray) -> np.ndarray:
    coder = _stream.stack.AnsCoder(_words(data))
    try:
        return np.asarray(coder.decode(family, np.ascontiguousarray(params, dtype=np.float64)), dtype=np.int32)
    except Exception as exc:
        raise CodingError(f"corrupt entropy-coded stream ({exc})") from None


def encode_categorical(symbols: np.ndarray, probs: np.ndarray) -> bytes:
    """Code ``symbols[i]`` under the row ``probs[i]`` (shape (n, K))."""
    return _encode_each(_model.Categorical(perfect=False), symbols, probs)


def decode_categorical(data: bytes, probs: np.ndarray) -> np.ndarray:
    return _decode_each(_model.Categorical(perfect=False), data, probs)


def encode_bernoulli(bits: np.ndarray, p_one: np.ndarray) -> bytes:
    """Code 0/1 ``bits`` with per-bit probabilities of a one (float64 from a table)."""
    return _encode_each(_model.Bernoulli(perfect=False), bits, p_one)


def decode_bernoulli(data: bytes, p_one: np.ndarray) -> np.ndarray:
    return _decode_each(_model.Bernoulli(perfect=False), data, p_one)


def decode_bernoulli_two_pass(data: bytes, p_first: np.ndarray, p_second_of) -> tuple[np.ndarray, np.ndarray]:
    """Decode a stream written by ``encode_bernoulli(concat(first, second), ...)``
    whose second part's probabilities depend on the first part's bits:
    ``p_second_of(first_bits) -> p_second`` (a checkerboard context model)."""
    coder = _stream.stack.AnsCoder(_words(data))
    family = _model.Bernoulli(perfect=False)
    try:
        first = np.asarray(coder.decode(family, np.ascontiguousarray(p_first, dtype=np.float64)), dtype=np.int32)
        p2 = np.ascontiguousarray(p_second_of(first), dtype=np.float64)
        second = np.asarray(coder.decode(family, p2), dtype=np.int32)
    except CodingError:
        raise
    except Exception as exc:
        raise CodingError(f"corrupt entropy-coded stream ({exc})") from None
    return first, second


def encode_rows_then_categorical(rows: list[np.ndarray], pmfs: list[np.ndarray], symbols: np.ndarray,
                                 probs: np.ndarray) -> bytes:
    """One stream: groups of symbols under shared pmfs (as
    :func:`encode_categorical_rows`), then ``symbols[i]`` under its own row
    ``probs[i]``, which the decoder may compute from the first part (a
    checkerboard context model)."""
    coder = _stream.stack.AnsCoder()
    if len(symbols):  # a stack: what is encoded first is decoded last
        coder.encode_reverse(np.ascontiguousarray(symbols, dtype=np.int32), _model.Categorical(perfect=False),
                             np.ascontiguousarray(probs, dtype=np.float64))
    for sym, pmf in reversed(list(zip(rows, pmfs))):
        model = _model.Categorical(np.asarray(pmf, dtype=np.float64), perfect=False)
        coder.encode_reverse(np.ascontiguousarray(sym, dtype=np.int32), model)
    return _finish(coder)


def decode_rows_then_categorical(data: bytes, counts: list[int], pmfs: list[np.ndarray], probs_of):
    """Inverse of :func:`encode_rows_then_categorical`; ``probs_of(rows)``
    gives the second part's probability rows. -> (rows, symbols)."""
    coder = _stream.stack.AnsCoder(_words(data))
    try:
        rows = []
        for n, pmf in zip(counts, pmfs):
            model = _model.Categorical(np.asarray(pmf, dtype=np.float64), perfect=False)
            rows.append(np.asarray(coder.decode(model, n), dtype=np.int32))
        probs = np.ascontiguousarray(probs_of(rows), dtype=np.float64)
        symbols = (np.asarray(coder.decode(_model.Categorical(perfect=False), probs), dtype=np.int32)
                   if len(probs) else np.zeros(0, np.int32))
    except CodingError:
        raise
    except Exception as exc:
        raise CodingError(f"corrupt entropy-coded stream ({exc})") from None
    return rows, symbols
