"""Latent codecs: quantizer + prior + coder, with three verbs.

As in CompressAI's ``latent_codecs``: ``forward`` (training: the quantized
latent the decoder sees and likelihoods for the rate), ``compress`` (byte
strings *and* the latent the decoder will reconstruct) and ``decompress``.
A hyperprior codec nests a Gaussian ``y`` codec under a factorized ``z``
codec (Ballé et al. 2018; Minnen et al. 2018)::

    y --h_a--> z --[factorized z codec]--> z_hat --h_s--> (scales, means)
    y --------------[Gaussian y codec | scales, means]----> y_hat

Mixed quantization during training: additive noise for the likelihoods,
straight-through rounding for the latent passed on to the decoder.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import torch
from torch import nn

from . import _compressai  # noqa: F401  (light import of compressai; see there)
from compressai.entropy_models import EntropyBottleneck, GaussianConditional
from compressai.ops import quantize_ste

from . import coding
from .fast import CachedModule, TwoWay, run_two_way
from .integer import IntegerHyperSynthesis, check_structure
from .priors import (SCALES_MIN, ScaleTable, binarization_tables, factorized_pmfs, gaussian_tables,
                     table_halves)

#: Symbols of y are clamped to [-Y_BOUND, Y_BOUND]; the encoder's
#: reconstruction uses the clamped value, so decoding stays exact.
Y_BOUND = 4095


def fp32(t: torch.Tensor):
    """A context that turns autocast off on ``t``'s device."""
    return torch.autocast(t.device.type, enabled=False)


def _np_int(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().reshape(-1).numpy().astype(np.int32)


@functools.lru_cache(maxsize=1)
def _y_models():
    """The constriction models of the shipped integer y tables, and their half-widths."""
    return coding.categorical_models(list(gaussian_tables())), table_halves()


def encode_binarized(sym: np.ndarray, idx: np.ndarray) -> tuple[bytes, int]:
    """Symbols as binary decisions, each coded under its exact conditional
    probability from the integer y tables (priors.binarization_tables):
    is it nonzero; its sign; then, round m = 1, 2, ..., is |symbol| > m
    (a thermometer code: each bit thresholds the latent); past its table's
    support an escape and the rest of the magnitude. -> (bytes, raw bit count)."""
    nonzero, more = binarization_tables()
    halves = table_halves()[idx]
    mag = np.abs(sym)
    nz = np.flatnonzero(mag)
    rounds = [("bits", mag > 0, nonzero[idx]), ("bits", sym[nz] < 0, np.full(len(nz), 0.5))]
    active, m, escaped = nz, 1, []
    while active.size:
        cont = mag[active] > m
        rounds.append(("bits", cont, more[idx[active], m]))
        edge = halves[active] == m
        escaped.append(active[cont & edge])
        active, m = active[cont & ~edge], m + 1
    esc = np.concatenate(escaped) if escaped else np.zeros(0, np.int64)
    rounds.append(("uniform", mag[esc] - halves[esc] - 1, Y_BOUND))
    raw = sum(len(r[1]) for r in rounds[:-1]) + 12 * len(esc)
    return coding.encode_rounds(rounds), raw


def decode_binarized(data: bytes, idx: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_binarized` -> int32 symbols."""
    nonzero, more = binarization_tables()
    halves = table_halves()[idx]
    mag = np.zeros(len(idx), np.int32)
    st = {"step": 0, "escaped": []}

    def next_round(prev):
        step = st["step"]
        st["step"] += 1
        if step == 0:
            return "bits", nonzero[idx]
        if step == 1:
            st["nz"] = np.flatnonzero(prev)
            return "bits", np.full(len(st["nz"]), 0.5)
        if step == 2:
            st["negative"], st["active"], st["m"] = st["nz"][prev == 1], st["nz"], 1
        elif "esc" in st:                                    # the escaped magnitudes came
            mag[st["esc"]] = halves[st["esc"]] + 1 + prev
            return None
        else:                                                # a round of "|symbol| > m" bits
            active, m, cont = st["active"], st["m"], prev == 1
            mag[active[~cont]] = m
            edge = halves[active] == m
            st["escaped"].append(active[cont & edge])
            st["active"], st["m"] = active[cont & ~edge], m + 1
        if st["active"].size:
            return "bits", more[idx[st["active"]], st["m"]]
        st["esc"] = np.concatenate(st["escaped"]) if st["escaped"] else np.zeros(0, np.int64)
        return "uniform", len(st["esc"]), Y_BOUND

    coding.decode_rounds(data, next_round)
    sym = mag.copy()
    if "negative" in st:
        sym[st["negative"]] *= -1
    return sym


class GaussianLatentCodec(nn.Module):
    """y coded as round(y - mean) under N(0, table[index(scale)]).

    Three codings of the symbols (the container's flags and the model's
    latent kind say which a file uses):

    * "tables" (the default): the symbols are grouped by scale index and
      each group is coded in one call under its fixed integer pmf
      (priors.gaussian_tables; symbols beyond the table's cover as an escape
      and then their value) -- about 8x faster to decode than
    * "gaussian": constriction's QuantizedGaussian evaluated for each
      symbol's standard deviation (files of aecodec 0.1);
    * "bits": the same probabilities as binary decisions (encode_binarized).
    """

    def __init__(self) -> None:
        super().__init__()
        self.gaussian = GaussianConditional(None, scale_bound=SCALES_MIN)
        self.table = ScaleTable()

    def forward(self, y, scales, means):
        _, likelihoods = self.gaussian(y, scales, means)
        y_hat = quantize_ste(y - means) + means
        return y_hat, likelihoods

    @torch.no_grad()
    def compress(self, y, scales, means, scheme: str = "tables"):
        """-> (bytes, y_hat). ``scales`` and ``means`` must be float64 from a
        deterministic hyper-decoder; y_hat is what decompress returns.
        ``scheme``: "tables", "gaussian" or "bits" (see the class)."""
        return self.compress_indexed(y, self.table.index(scales), means, scheme)

    @torch.no_grad()
    def decompress(self, data, scales, means, scheme: str = "tables"):
        return self.decompress_indexed(data, self.table.index(scales), means, scheme)

    @staticmethod
    def symbols(y, means) -> torch.Tensor:
        """The integer symbols (float64) of y under ``means``: round(y - mean), clamped."""
        return torch.round(y.double() - means).clamp_(-Y_BOUND, Y_BOUND)

    @torch.no_grad()
    def compress_indexed(self, y, idx: np.ndarray, means, scheme: str = "tables"):
        """:meth:`compress` with the scale table indexes given (int32, one per element)."""
        sym = self.symbols(y, means)
        s = _np_int(sym)
        if scheme == "gaussian":
            data = coding.encode_gaussian(s, self.table.stds(idx), Y_BOUND)
        elif scheme == "bits":
            data = encode_binarized(s, idx)[0]
        else:
            data = coding.encode_grouped_parts([table_part(s, idx)], _y_models()[0], 2 * Y_BOUND + 1)
        return data, sym + means

    @torch.no_grad()
    def decompress_indexed(self, data, idx: np.ndarray, means, scheme: str = "tables"):
        if scheme == "gaussian":
            sym = coding.decode_gaussian(data, self.table.stds(idx), Y_BOUND)
        elif scheme == "bits":
            sym = decode_binarized(data, idx)
        else:
            models, halves = _y_models()
            sym = table_symbols(*coding.decode_grouped(data, idx, models, 2 * halves + 1, 2 * Y_BOUND + 1), idx)
        return torch.from_numpy(sym).to(torch.float64).reshape(means.shape) + means


def table_part(s: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int symbols and their scale indexes -> a part for coding.encode_grouped
    under the y tables: (table entries, groups, escape values); a symbol
    beyond its table's support is the escape entry, then its value."""
    h = _y_models()[1][idx]
    esc = np.abs(s) > h
    return np.where(esc, 2 * h + 1, s + h), idx, s[esc] + Y_BOUND


def table_symbols(entries: np.ndarray, values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Inverse of :func:`table_part`: decoded table entries and escape values -> int32 symbols."""
    h = _y_models()[1][idx]
    esc = entries == 2 * h + 1
    sym = entries - h
    sym[esc] = values - Y_BOUND
    return sym


class FactorizedLatentCodec(nn.Module):
    """z coded per channel under a learned non-parametric density
    (Ballé et al. 2018, CompressAI ``EntropyBottleneck``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.entropy_bottleneck = EntropyBottleneck(channels)
        self._pmfs = None

    def forward(self, z):
        _, likelihoods = self.entropy_bottleneck(z)
        medians = self.entropy_bottleneck._get_medians()
        z_hat = quantize_ste(z - medians) + medians
        return z_hat, likelihoods

    def update_tables(self) -> None:
        """Rebuild the integer CDF tables from the learned density (after
        training; the tables are buffers saved with the weights). The
        quantiles that bound the tables are first found exactly by bisection
        (CompressAI PR #231) rather than trusted to the auxiliary loss."""
        self.entropy_bottleneck._update_quantiles()
        self.entropy_bottleneck.update(force=True)
        self._pmfs = None

    def _tables(self):
        if self._pmfs is None:
            self._pmfs = factorized_pmfs(self.entropy_bottleneck)
        return self._pmfs

    def _medians(self):
        return self.entropy_bottleneck._get_medians().detach().double()

    @torch.no_grad()
    def compress(self, z):
        pmfs, offset = self._tables()
        sym = torch.round(z.double() - self._medians())  # (1, C, h, w)
        low = torch.from_numpy(offset).double().view(1, -1, 1, 1)
        high = low + torch.tensor([len(p) - 1 for p in pmfs], dtype=torch.float64).view(1, -1, 1, 1)
        sym = torch.maximum(torch.minimum(sym, high), low)
        idx = (sym - low)[0].reshape(sym.shape[1], -1).numpy().astype(np.int32)
        data = coding.encode_categorical_rows(list(idx), pmfs)
        return data, sym + self._medians()

    @torch.no_grad()
    def decompress(self, data, shape):
        pmfs, offset = self._tables()
        c, h, w = shape
        rows = coding.decode_categorical_rows(data, [h * w] * c, pmfs)
        idx = torch.from_numpy(np.stack(rows)).double().view(1, c, h, w)
        low = torch.from_numpy(offset).double().view(1, -1, 1, 1)
        return idx + low + self._medians()

    def _load_from_state_dict(self, *args, **kwargs):
        self._pmfs = None
        super()._load_from_state_dict(*args, **kwargs)


class HyperpriorLatentCodec(CachedModule):
    """Mean-scale hyperprior: a Gaussian y codec conditioned on a factorized
    z codec through h_a / h_s. ``z_gain`` / ``z_inv_gain`` (optional, shape
    (B, N, 1, 1)) are the hyper gain units of a variable-rate model.

    Exact decoding: the decoder runs h_s on the decoded z_hat so that its
    scale indexes match the encoder's (which ran the same path) whatever
    the thread count: with the integer layers of ``hs_int`` where the model
    has them (integer.py: integer sums, exact in any order), else in float64, each
    convolution single-threaded (fast.TwoWay: two halves of the output
    channels, on a second thread when there is one).
    """

    def __init__(self, h_a: nn.Module, h_s: nn.Module, N: int) -> None:
        super().__init__()
        self.h_a = h_a
        self.h_s = h_s
        self.z = FactorizedLatentCodec(N)
        self.y = GaussianLatentCodec()
        self.hs_int = IntegerHyperSynthesis(len(check_structure(h_s)))

    def train(self, mode: bool = True):
        if mode:  # training moves h_s away from its integer version (rebuilt by update_tables)
            self.hs_int.clear()
        return super().train(mode)

    @staticmethod
    def _gain(t, g):
        return t if g is None else t * g

    def forward(self, y, z_gain=None, z_inv_gain=None):
        z = self._gain(self.h_a(y), z_gain)
        with fp32(z):  # likelihoods stay fp32 under mixed precision
            z_hat, z_lik = self.z(z.float())
        params = self.h_s(self._gain(z_hat, z_inv_gain))
        with fp32(y):
            scales, means = params.float().chunk(2, 1)
            y_hat, y_lik = self.y(y.float(), scales, means)
        return {"y_hat": y_hat, "likelihoods": {"y": y_lik, "z": z_lik}}

    def _params64(self, z_hat, z_inv_gain):
        """-> float64 (scales, means), the same on every decoder."""
        g = None if z_inv_gain is None else z_inv_gain.double()
        x = self._gain(z_hat.double(), g)
        with torch.inference_mode():
            if self.hs_int.ready:
                if "h_s1" not in self._cache:  # the first layer in float64
                    self._cache["h_s1"] = TwoWay(nn.Sequential(copy.deepcopy(self.h_s[0]).double().eval()))
                params = self.hs_int(self.h_s, x, lambda t: run_two_way(self._cache["h_s1"], t))
            else:
                if "h_s64" not in self._cache:
                    self._cache["h_s64"] = TwoWay(copy.deepcopy(self.h_s).double().eval())
                params = run_two_way(self._cache["h_s64"], x)
        return params.chunk(2, 1)

    @torch.no_grad()
    def compress(self, y, z_gain=None, z_inv_gain=None):
        """-> ([z_bytes, y_bytes], y_hat float64, z spatial shape)."""
        z = self._gain(self.h_a(y), z_gain)
        z_bytes, z_hat = self.z.compress(z)
        scales, means = self._params64(z_hat, z_inv_gain)
        y_bytes, y_hat = self.y.compress(y, scales, means)
        return [z_bytes, y_bytes], y_hat

    @torch.no_grad()
    def decompress(self, strings, z_shape, z_inv_gain=None):
        z_hat = self.z.decompress(strings[0], z_shape)
        scales, means = self._params64(z_hat, z_inv_gain)
        return self.y.decompress(strings[1], scales, means)

    def update_tables(self) -> None:
        self.z.update_tables()
        self._cache.clear()
