"""Compression models: the backbone (transforms.py) plus a latent codec.

:class:`HyperpriorCodec` is the default: a mean-scale hyperprior (Minnen et
al. 2018, without the autoregressive context) made variable-rate with gain
units (Cui et al., CVPR 2021, "Asymmetric gained deep image compression")::

    y = g_a(x) * gain[q]           z = h_a(y) * zgain[q]
    y_hat -> g_s(y_hat * inv_gain[q])    h_s(z_hat * zinv_gain[q]) -> (scales, means)

One gain vector per quality level 1..L, each trained at its own lambda; a
fractional quality interpolates the log-gains of its two neighbours, so any
rate between the levels is reachable with one set of weights.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import coding, transforms
from .context import PASSES, ContextModel, pass_map
from .fast import CachedModule
from .latent_codecs import Y_BOUND, HyperpriorLatentCodec, _y_models, table_part, table_symbols
from .post import PostFilter
from .priors import LEVELS

#: CompressAI zoo lambdas (MSE) for qualities 1..8; loss = bpp + lambda*255^2*MSE.
LAMBDAS_MSE = (0.0018, 0.0035, 0.0067, 0.0130, 0.0250, 0.0483, 0.0932, 0.1800)


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in the weights file."""

    arch: str = "hyperprior"
    N: int = 128
    M: int = 192
    lambdas: tuple = LAMBDAS_MSE
    codebook: int = 256      # vq: entries per codebook (one codebook per stage)
    vq_dim: int = 4          # vq: length of each quantized vector (M is split into M / vq_dim)
    context: bool = False    # binary: checkerboard context model for the bits
    vq_rd: float | tuple = 0.0  # vq: the encoder's rate weight(s) when it picks indices (VQCodec.assign)
    vq_sizes: tuple = ()     # vq: entries in use per stage (the first n of each codebook; empty: all)
    vq_classes: int = 0      # vq with context: energy classes of the stage-conditional prior (0: none)

    @property
    def levels(self) -> int:
        return len(self.lambdas)

    def vq_rd_stages(self) -> tuple:
        """``vq_rd`` as one weight per stage."""
        return tuple(self.vq_rd) if isinstance(self.vq_rd, (tuple, list)) else (self.vq_rd,) * self.levels

    def vq_stage_sizes(self) -> tuple:
        """Entries in use in each stage's codebooks (``vq_sizes``, or all ``codebook``)."""
        return tuple(self.vq_sizes) if self.vq_sizes else (self.codebook,) * self.levels

    def to_json(self) -> str:
        d = asdict(self)
        if not any(self.vq_rd_stages()):   # as files written before it existed
            del d["vq_rd"]
        if not self.vq_sizes:
            del d["vq_sizes"]
        if not self.vq_classes:
            del d["vq_classes"]
        return json.dumps(d, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        d = json.loads(text)
        d["lambdas"] = tuple(d["lambdas"])
        if isinstance(d.get("vq_rd"), list):
            d["vq_rd"] = tuple(d["vq_rd"])
        d["vq_sizes"] = tuple(d.get("vq_sizes", ()))
        return cls(**d)


def pad_to(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Replicate-pad (B, C, H, W) on the right/bottom to multiples of stride."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % stride, (-w) % stride
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def interp_levels(table: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (L, ...) at fractional 1-based levels, interpolated
    linearly between the two neighbours: (B,) -> (B, ...). Below level 1
    the line through levels 1 and 2 is extended (extrapolation)."""
    q = quality.to(table.device, torch.float32) - 1.0
    lo = q.floor().clamp(0, table.shape[0] - 2).long()
    t = (q - lo.float()).clamp(max=1).view(-1, *([1] * (table.dim() - 1)))
    return (1 - t) * table[lo] + t * table[lo + 1]


class TransformCodec(CachedModule):
    """What every codec shares: the backbone g_a / g_s, quality levels with a
    lambda each, and fast inference copies of the transforms.

    Subclasses add a latent codec through four coding verbs, called by
    ``tiling.encode`` / ``tiling.decode``::

        code_side(y, quality) -> (bytes, state)      whole-image side information
        code_tile(state, rect) -> (bytes, y_in)      one tile's latent
        decode_side(bytes, hp, wp, quality) -> state
        decode_tile(state, bytes, rect) -> y_in

    ``y`` is g_a's output, ``y_in`` what g_s receives; ``rect`` a tile in pixels.
    tiling puts the container's coding options in ``state`` (``y_tables``).
    """

    latent_kind = "scalar"
    stride = transforms.STRIDE

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.g_a = transforms.analysis(cfg.N, cfg.M)
        self.g_s = transforms.synthesis(cfg.N, cfg.M)
        #: post-filter on g_s's output (post.py); absent from files without one.
        #: Built without drawing from torch's RNG, so a model's other weights
        #: start as they did before it existed
        with torch.random.fork_rng(devices=[]):
            self.post = PostFilter()

    #: the lowest quality accepted (levels below 1 are extrapolated, untrained)
    min_quality = 1.0

    def check_quality(self, quality: float) -> float:
        q = float(quality)
        if not (self.min_quality <= q <= self.cfg.levels) or math.isnan(q):
            raise ValueError(f"quality must be between {self.min_quality:g} and {self.cfg.levels}, got {quality}")
        return q

    def lmbda(self, quality: torch.Tensor) -> torch.Tensor:
        """The training lambda of (possibly fractional) qualities, log-interpolated."""
        lam = torch.log(torch.tensor(self.cfg.lambdas, device=quality.device))
        return torch.exp(interp_levels(lam, quality))

    def aux_loss(self) -> torch.Tensor:
        return torch.zeros(())

    def update_tables(self) -> None:
        pass

    def _on_device(self, name: str, device) -> nn.Module:
        """A copy of a transform on ``device`` (CUDA: channels-last, bf16 is
        not used: the latents it gives are rounded to integers next)."""
        key = f"{name}@{device}"
        if key not in self._cache:
            import copy
            mod = copy.deepcopy(getattr(self, name)).to(device).eval()
            self._cache[key] = mod.to(memory_format=torch.channels_last)
        return self._cache[key]

    def _fast(self, name: str, dtype: torch.dtype = torch.float32) -> nn.Module:
        """Inference copies of g_a / g_s (fast.py) in ``dtype``, built on first use."""
        key = name if dtype == torch.float32 else f"{name}:{dtype}"
        if key not in self._cache:
            from .fast import accelerate
            self._cache[key] = accelerate(getattr(self, name)).to(dtype)
        return self._cache[key]

    def _two_way(self, name: str, dtype: torch.dtype = torch.float32):
        """``_fast(name, dtype)`` run as two halves per layer (fast.TwoWay)."""
        key = f"{name}:{dtype}:two-way"
        if key not in self._cache:
            from .fast import TwoWay
            self._cache[key] = TwoWay(self._fast(name, dtype))
        return self._cache[key]

    @property
    def has_post(self) -> bool:
        return self.post.present

    def post_filter(self, x: torch.Tensor, quality: float, split: str = "rows", views: int = 1) -> torch.Tensor:
        """Coding: the post-filter on g_s's output ``x`` (in x's dtype, exact
        on any thread count); ``split``: as tiling._synthesize -- "rows": on
        x's top and bottom halves (cut where g_s's are), "channels": layer by
        layer on halves of the channels. ``views`` (rows only): the mean of
        the filter's outputs on the first ``views`` of post.VIEWS, each cut
        in rows as the picture is, summed in that order in float32 (and
        returned in float32)."""
        from .fast import accelerate, run_rows, run_two_way, TwoWay
        from .post import VIEWS
        key = f"post:{x.dtype}"
        if key not in self._cache:
            self._cache[key] = accelerate(self.post.body).to(x.dtype)
        if split == "rows":
            def one(v):
                return run_rows(lambda part: self.post.run(self._cache[key], part, quality), v,
                                16 * (v.shape[2] // 32), self.post.margin)
            if views == 1:
                return one(x)
            acc = None
            for to, back in VIEWS[:views]:
                out = back(one(to(x))).float()
                acc = out if acc is None else acc.add_(out)
            return acc.mul_(1.0 / views)
        if views != 1:
            raise ValueError("post-filter views need the row split")
        if key + ":two-way" not in self._cache:
            self._cache[key + ":two-way"] = TwoWay(self._cache[key])
        return self.post.run(lambda inp: run_two_way(self._cache[key + ":two-way"], inp), x, quality)


def y_slice(r):
    """The latent positions (at 1/16 scale) of a pixel rectangle (t, l, h, w)."""
    t, l, h, w = r
    return (slice(None), slice(None), slice(t // 16, (t + h) // 16), slice(l // 16, (l + w) // 16))


class HyperpriorCodec(TransformCodec):
    latent_kind = "scalar"
    #: gain units extend below level 1 by extrapolation (log-gains and
    #: lambda continue the line through levels 1 and 2): coarser
    #: quantization for lower rates than any trained level (down to about
    #: 0.1 bpp on Kodak at quality -1)
    min_quality = -1.0

    def __init__(self, cfg: ModelConfig = ModelConfig()) -> None:
        super().__init__(cfg)
        N, M, L = cfg.N, cfg.M, cfg.levels
        self.latent = HyperpriorLatentCodec(
            transforms.hyper_analysis(N, M), transforms.hyper_synthesis(N, M), N)
        # Log-gains; a larger lambda gets a finer quantizer (gain ~ sqrt(lambda)).
        init = torch.tensor([0.5 * math.log(l / cfg.lambdas[L // 2]) for l in cfg.lambdas])
        self.log_gain = nn.Parameter(init[:, None].repeat(1, M))
        self.log_inv_gain = nn.Parameter(-init[:, None].repeat(1, M))
        self.log_zgain = nn.Parameter(torch.zeros(L, N))
        self.log_zinv_gain = nn.Parameter(torch.zeros(L, N))
        #: channel and checkerboard context for y (context.py); absent from
        #: files without one, which code y under the hyperprior alone
        self.context = ContextModel(M)

    @property
    def has_context(self) -> bool:
        return self.context.ready

    def gains(self, quality: torch.Tensor) -> dict:
        """quality (B,) float in [1, L] -> four (B, C, 1, 1) gain tensors,
        log-gains interpolated between the neighbouring levels."""
        def g(p):
            return torch.exp(interp_levels(p, quality))[:, :, None, None]

        return {"y": g(self.log_gain), "y_inv": g(self.log_inv_gain),
                "z": g(self.log_zgain), "z_inv": g(self.log_zinv_gain)}

    # --------------------------------------------------------------- training
    def forward(self, x: torch.Tensor, quality: torch.Tensor, post: bool = False) -> dict:
        """``post``: the picture passes the post-filter too, as the decoder's
        does (training it with the codec, ``aecodec train --post``); without
        it, g_s's output (what the anomaly features and the heads were made on)."""
        g = self.gains(quality)
        y = self.g_a(x) * g["y"]                                  # (B, M, H/16, W/16)
        out = self.latent(y, g["z"], g["z_inv"])
        out["x_hat"] = self.g_s(out["y_hat"] * g["y_inv"])        # (B, 3, H, W)
        if post:
            out["x_hat"] = self.post(out["x_hat"], quality)
        return out

    def aux_loss(self) -> torch.Tensor:
        return self.latent.z.entropy_bottleneck.loss()

    def update_tables(self) -> None:
        self.latent.update_tables()
        self.build_integer_hs()

    @torch.no_grad()
    def build_integer_hs(self, ys: list | None = None, margin: float = 1.0) -> None:
        """(Re)build the integer h_s (integer.py) from the activation ranges of
        h_s at every level from the lowest quality to the highest, on the side
        latents of ``ys`` (g_a outputs of calibration images), or without
        data on latents z drawn from the model's own side prior (fixed seed).
        Against float64 h_s, on training images, the default model's rate
        grew by 0.01-0.09 % calibrated on images, 0.03-0.13 % without data."""
        levels = torch.arange(self.min_quality, self.cfg.levels + 1, dtype=torch.float32)
        inputs = []
        for q in levels.tolist():
            g = self._single_gains(q)
            if ys:
                zs = [self.latent.z.compress(self.latent.h_a(y * g["y"]) * g["z"])[1] for y in ys]
            else:
                zs = [self._prior_sample()]
            inputs += [z.double() * g["z_inv"].double() for z in zs]
        self.latent.hs_int.build(self.latent.h_s, inputs, margin)
        self._cache.clear()
        self.latent._cache.clear()

    def _prior_sample(self, samples: int = 4, size: int = 24, seed: int = 0) -> torch.Tensor:
        pmfs, offset = self.latent.z._tables()
        rng = np.random.default_rng(seed)
        z = torch.stack([torch.from_numpy(rng.choice(len(p), size=(samples, size, size), p=p / p.sum()) + o)
                         for p, o in zip(pmfs, offset)], 1).double()
        return z + self.latent.z._medians().view(1, -1, 1, 1)

    # ------------------------------------------------------------- inference
    def _single_gains(self, quality: float) -> dict:
        return self.gains(torch.tensor([self.check_quality(quality)]))

    def code_side(self, y: torch.Tensor, quality: float):
        """Gain y (in place), code z = h_a(y) as the side stream."""
        g = self._single_gains(quality)
        y *= g["y"]
        z = self.latent.h_a(y) * g["z"]
        z_bytes, z_hat = self.latent.z.compress(z)
        return z_bytes, {"g": g, "z_hat": z_hat, "y": y}

    def code_tile(self, state, r):
        scales, means = self._tile_params(state, r)
        y = state["y"][y_slice(r)]
        if state.get("y_context"):
            data, y_hat = self._code_passes(y, scales, means)
        else:
            data, y_hat = self.latent.y.compress(y, scales, means, self._y_coding(state))
        return data, (y_hat * state["g"]["y_inv"].double()).float()

    @staticmethod
    def _y_coding(state) -> str:
        return "tables" if state["y_tables"] else "gaussian"

    def decode_side(self, data: bytes, hp: int, wp: int, quality: float):
        g = self._single_gains(quality)
        z_hat = self.latent.z.decompress(data, (self.cfg.N, hp // 64, wp // 64))
        return {"g": g, "z_hat": z_hat}

    def decode_tile(self, state, data: bytes, r):
        scales, means = self._tile_params(state, r)
        if state.get("y_context"):
            y_hat = self._decode_passes(data, scales, means)
        else:
            y_hat = self.latent.y.decompress(data, scales, means, self._y_coding(state))
        return (y_hat * state["g"]["y_inv"].double()).float()

    # ------------------------------------------------ y under the context model
    def _passes(self, scales, means, code):
        """Run the context model's passes over one tile's latent (context.py):
        ``code(p, sel, idx, mu)`` codes or decodes pass p's elements (``sel``,
        a (M, h, w) mask) under scale indexes ``idx`` (int32) and means ``mu``
        (float64) and returns their y_hat; the next pass's parameters come from
        the y_hat so far. -> the tile's y_hat (float64)."""
        passes = pass_map(*means.shape[1:])
        t = torch.from_numpy(self.latent.y.table.index(scales).astype(np.int64)).view(means.shape)
        y_hat = torch.zeros_like(means)
        context = self.context.exact_passes(means, t.double())
        for p in range(PASSES):
            sel = passes == p
            if p == 0 or not self.context.uses(p):
                idx, mu = t[0][sel], means[0][sel]
            else:
                dt, dmu = context(y_hat, passes, p)
                idx = (t.double() + dt).round_().clamp_(0, LEVELS - 1).long()[0][sel]
                mu = (means + dmu)[0][sel]
            y_hat[0][sel] = code(p, sel, idx.numpy().astype(np.int32), mu)
        return y_hat

    def _code_passes(self, y, scales, means):
        """-> (one stream of all passes, y_hat)."""
        parts = []

        def code(p, sel, idx, mu):
            sym = self.latent.y.symbols(y[0][sel], mu)
            parts.append(table_part(sym.numpy().astype(np.int32), idx))
            return sym + mu

        y_hat = self._passes(scales, means, code)
        return coding.encode_grouped_parts(parts, _y_models()[0], 2 * Y_BOUND + 1), y_hat

    def _decode_passes(self, data, scales, means):
        models, halves = _y_models()
        stream = coding.grouped_parts_decoder(data, models, 2 * halves + 1, 2 * Y_BOUND + 1)

        def code(p, sel, idx, mu):
            sym = table_symbols(*stream(idx), idx)
            return torch.from_numpy(sym).to(torch.float64) + mu

        return self._passes(scales, means, code)

    def _tile_params(self, state, r, margin: int = 2):
        """h_s (float64) on the tile's z plus ``margin`` positions of context
        -> the tile's (scales, means)."""
        z_hat = state["z_hat"]
        t, l, h, w = (v // 64 for v in r)
        hz, wz = z_hat.shape[-2:]
        t0, t1 = max(0, t - margin), min(hz, t + h + margin)
        l0, l1 = max(0, l - margin), min(wz, l + w + margin)
        scales, means = self.latent._params64(z_hat[:, :, t0:t1, l0:l1], state["g"]["z_inv"])
        crop = (slice(None), slice(None), slice((t - t0) * 4, (t - t0 + h) * 4),
                slice((l - l0) * 4, (l - l0 + w) * 4))
        return scales[crop], means[crop]


class VQCodec(TransformCodec):
    """VQ-VAE codec: g_a -> residual VQ (quantizers.ResidualVQ) -> g_s.

    Quality n (1..S, rounded) uses the first n stages; stage s uses the first
    ``cfg.vq_sizes[s]`` entries of its codebooks (all by default; see
    :meth:`resize`). The indices are coded
    by constriction under a factorized categorical prior, one pmf per
    (stage, group), frozen to an integer table (``pmf_int``, counts out of
    2^16) before coding. With ``cfg.context`` a checkerboard context model
    codes the anchors ((i + j) even) under that prior and every other index
    under a copy mixture (a neighbour often repeats in smooth regions)::

        p(i) = (1 - a) * pmf[s, g](i) + a * (anchor neighbours equal to i) / (their number)

    with ``a = a[s, g, k]``, k the largest number of neighbours that agree on
    one index (0-4: where all four agree, copying is likelier than where
    they differ). ``a`` (``copy_int``, out of 2^16) is fitted by EM on
    training images (training/refit.py); files with one weight per (s, g)
    (shape (S, G)) still read. Training itself uses the factorized prior
    (and, with ``cfg.vq_rd``, picks indices by rate and error under it).

    With ``cfg.vq_classes`` C as well, the pmf of stage s > 1 depends on how
    much error stage s - 1 left at the position: each entry k of each
    stage's codebooks has the mean squared error the encoder leaves after
    picking it (``energy_int``, fixed point, fitted on training images);
    the sum over the position's groups, bucketed by ``class_edges[s]``,
    picks one of C pmfs (``pmf_class_int``); stage 1's non-anchors pick
    theirs from their anchor neighbours' sums (:meth:`stage_energy`), its
    anchors keep the factorized pmf -- in flat regions, where
    little is left, the small entries are the likely ones. Everything is
    integer until the pmf, so encoder and decoder agree exactly. The
    indices are then coded stage after stage (anchors, then the others),
    since each stage's classes need the one before it.
    """

    latent_kind = "vq"
    soft_rate = 0.0   # training only (TrainConfig.vq_soft_rate): tau of ResidualVQ's soft bits; 0: off

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        from .quantizers import ResidualVQ
        self.vq = ResidualVQ(cfg.M, cfg.vq_dim, cfg.codebook, cfg.levels, sizes=cfg.vq_stage_sizes())
        self.groups = cfg.M // cfg.vq_dim
        self.prior_logits = nn.Parameter(torch.zeros(cfg.levels, self.groups, cfg.codebook))
        self.register_buffer("pmf_int", torch.ones(cfg.levels, self.groups, cfg.codebook, dtype=torch.int32))
        if cfg.context:
            self.register_buffer("copy_int", torch.zeros(cfg.levels, self.groups, 5, dtype=torch.int32))
        if cfg.vq_classes:
            if not cfg.context:
                raise ValueError("vq_classes needs the context model (cfg.context)")
            C = cfg.vq_classes
            self.register_buffer("energy_int", torch.zeros(cfg.levels, self.groups, cfg.codebook, dtype=torch.int32))
            self.register_buffer("class_edges", torch.zeros(cfg.levels, C - 1, dtype=torch.int64))
            self.register_buffer("pmf_class_int", torch.ones(cfg.levels, self.groups, C, cfg.codebook,
                                                             dtype=torch.int32))

    def stages(self, quality) -> torch.Tensor:
        q = torch.as_tensor(quality, dtype=torch.float32)
        return q.round().clamp(1, self.cfg.levels).long()

    def forward(self, x, quality):
        y = self.g_a(x)
        n = self.stages(quality).to(x.device)
        logp = F.log_softmax(self.prior_logits, -1)           # (S, G, K)
        soft = (self.soft_rate, -logp.detach() / math.log(2)) if self.training and self.soft_rate else None
        y_hat, syms, aux, soft_bits = self.vq(y, n, self.rate_cost(logp), soft)  # syms (S, B, G, H, W)
        s_idx = torch.arange(self.cfg.levels, device=x.device)[:, None, None, None, None]
        g_idx = torch.arange(self.groups, device=x.device)[None, None, :, None, None]
        lp = logp[s_idx, g_idx, syms]                          # (S, B, G, H, W)
        if soft_bits is not None:  # the hard index's bits, the soft assignment's gradient
            soft_lp = -soft_bits * math.log(2)
            lp = lp + (soft_lp - soft_lp.detach())
        used = (s_idx[:, :, 0] < n[None, :, None, None]).to(lp.dtype)[:, :, None]
        lik = torch.exp(lp * used).permute(1, 0, 2, 3, 4)      # unused stages cost nothing
        return {"x_hat": self.g_s(y_hat), "likelihoods": {"vq": lik}, "aux": aux}

    def rate_cost(self, logp=None, rd: tuple | None = None):
        """With a rate weight (``rd``, one per stage; None: ``cfg.vq_rd``),
        the cost per entry (S, G, K) the encoder adds to the squared error
        when it picks an index: the weight x the entry's bits under the
        factorized prior (``logp``: log-probabilities, default from
        ``prior_logits``). None without one. Training uses it, so that the
        synthesis learns from the indices the encoder (:meth:`assign`, which
        also weighs the context model's bits) will pick."""
        rd = self.cfg.vq_rd_stages() if rd is None else rd
        if not any(rd):
            return None
        logp = F.log_softmax(self.prior_logits, -1) if logp is None else logp
        return torch.tensor(rd, device=logp.device, dtype=logp.dtype)[:, None, None] * -logp.detach() / math.log(2)

    def _in_use(self) -> torch.Tensor:
        """(S, 1, K) True for the entries each stage uses (``cfg.vq_sizes``)."""
        sizes = torch.tensor(self.vq.sizes)
        return (torch.arange(self.cfg.codebook)[None, :] < sizes[:, None])[:, None, :]

    def update_tables(self) -> None:
        p = torch.softmax(self.prior_logits.detach().double(), -1)
        self.pmf_int.copy_((p * 65536).round().clamp_min(1).to(torch.int32) * self._in_use())

    @torch.no_grad()
    def set_prior(self, counts: torch.Tensor, smoothing: float = 0.5) -> torch.Tensor:
        """The factorized prior from symbol counts (S, G, K), each plus
        ``smoothing``; coding tables rebuilt. -> the probabilities (float64)."""
        c = counts.double() + smoothing
        p = c / c.sum(-1, keepdim=True)
        self.prior_logits.data.copy_(p.log().float())
        self.update_tables()
        return p

    def table_probs(self) -> torch.Tensor:
        """The coding tables as probabilities (S, G, K), float64 (0 past a
        stage's size)."""
        pmf = self.pmf_int.double() * self._in_use()
        return pmf / pmf.sum(-1, keepdim=True)

    def _pmfs(self, n, start: int = 0):
        """The coding pmfs of stages start..n-1, one per (stage, group), in
        that order, each over the stage's entries in use."""
        p = self.table_probs()
        return [p[s, g, :self.vq.sizes[s]].numpy() for s in range(start, n) for g in range(self.groups)]

    @torch.no_grad()
    def resize(self, sizes) -> None:
        """Use the first ``sizes[s]`` entries of stage s's codebooks. Each
        codebook is first sorted by its entry's probability (most probable
        first; the prior moves with it), so a smaller size keeps the entries
        the encoder picks most; a larger one brings unused entries back in
        (refit.design_codebooks revives them). The context model's copy
        weights do not depend on the order."""
        sizes = self.vq.checked_sizes(sizes)
        order = torch.sort(self.table_probs(), stable=True, dim=-1, descending=True).indices     # (S, G, K)
        for t in (self.vq.codebooks, self.prior_logits):
            t.data.copy_(torch.gather(t.data, 2, order[..., None].expand_as(t) if t.dim() == 4 else order))
        self.vq.idle.zero_()
        self.cfg = replace(self.cfg, vq_sizes=sizes if sizes != (self.cfg.codebook,) * self.cfg.levels else ())
        self.vq.sizes = self.cfg.vq_stage_sizes()
        self.update_tables()

    def copy_probs(self, grid: np.ndarray, s: int, g: int, rest: np.ndarray, base=None) -> np.ndarray:
        """Probability rows (n_rest, stage s's size) of the non-anchor indices of stage s,
        group g, from the anchors' indices in ``grid`` (h, w); ``base``: the
        rows the copy term mixes with (default: the factorized pmf)."""
        pf = self._pmfs(s + 1, s)[g][None, :] if base is None else base
        nb = neighbour_indices(grid, rest)
        table = self.copy_int[s, g].numpy().astype(np.float64) / 65536.0
        a = (table[agreement(nb)] if table.ndim else np.full(len(nb), float(table)))[:, None]
        counts = np.zeros((len(nb), pf.shape[-1]))
        for j in range(4):
            ok = nb[:, j] >= 0
            np.add.at(counts, (np.nonzero(ok)[0], nb[ok, j]), 1.0)
        m = (nb >= 0).sum(1)
        return (1 - a) * pf + a * counts / np.maximum(m, 1)[:, None]

    def stage_energy(self, s: int, known: np.ndarray) -> np.ndarray:
        """(h, w) int64: what picks stage s's energy class at each position.
        s >= 1: from stage s - 1's indices ``known`` (G, h, w), the sum over
        the groups of their entries' ``energy_int`` (the error the encoder
        leaves after them). Stage 1 (s = 0): ``known`` holds its anchors'
        indices; each other position takes 4 x the mean (floored) of that
        sum over its anchor neighbours."""
        table = self.energy_int[max(s - 1, 0)].numpy().astype(np.int64)
        e = sum(table[g][known[g]] for g in range(self.groups))
        if s:
            return e
        h, w = e.shape
        anchor = checkerboard(h, w).numpy()
        pe = np.pad(np.where(anchor, e, 0), 1)
        pa = np.pad(anchor.astype(np.int64), 1)
        views = ((2, 1), (0, 1), (1, 2), (1, 0))   # below, above, right, left
        return (4 * sum(pe[i:i + h, j:j + w] for i, j in views)) // np.maximum(sum(pa[i:i + h, j:j + w] for i, j in views), 1)

    def stage_classes(self, s: int, known: np.ndarray) -> np.ndarray:
        """(h, w) energy class of every position of stage s: how many of
        ``class_edges[s]`` its :meth:`stage_energy` reaches (integer
        arithmetic only); stage 1's anchors get -1 (the factorized pmf)."""
        cls = np.searchsorted(self.class_edges[s].numpy(), self.stage_energy(s, known), side="right")
        return np.where(checkerboard(*cls.shape).numpy(), -1, cls) if s == 0 else cls

    def class_pmfs(self, s: int) -> np.ndarray:
        """(G, C + 1, stage s's size) float64: stage s's pmf per group, the
        factorized one first (class -1), then one per class."""
        k = self.vq.sizes[s]
        pmf = torch.cat([self.pmf_int[s, :, None, :k], self.pmf_class_int[s, :, :, :k]], 1).double()
        return (pmf / pmf.sum(-1, keepdim=True)).numpy()

    def base_rows(self, s: int, known) -> list:
        """Per group, the (h*w, stage s's size) pmf rows of stage s's indices
        before the copy term, by energy class (:meth:`stage_classes`)."""
        pc = self.class_pmfs(s)
        cls = self.stage_classes(s, known).reshape(-1) + 1
        return [pc[g][cls] for g in range(self.groups)]

    def _class_parts(self, s: int, prev, anchor: np.ndarray):
        """With energy classes, how stage s is coded: its anchors as rows,
        one per (group, class) that occurs, each under its class pmf ->
        (pmfs, positions: per row, which anchors (in raster order) it
        holds), and a function of stage s's grids (G, h, w; anchors filled)
        giving its other indices' probability rows (copy mixtures)."""
        pc = self.class_pmfs(s)
        cls = self.stage_classes(s, prev) if s else None   # stage 1's need its anchors (rest below)
        ca = cls[anchor] if s else np.full(int(anchor.sum()), -1)
        pmfs, positions = [], []
        for g in range(self.groups):
            for c in np.unique(ca).tolist():
                pmfs.append(pc[g, c + 1])
                positions.append((g, np.nonzero(ca == c)[0]))

        def rest(grids):
            c = (cls if s else self.stage_classes(0, grids))[~anchor] + 1
            return np.concatenate([self.copy_probs(grids[g], s, g, ~anchor, pc[g][c]) for g in range(self.groups)])
        return pmfs, positions, rest

    @torch.no_grad()
    def assign(self, y, n: int, rd: float | tuple | None = None) -> torch.Tensor:
        """The indices the encoder codes for y (B, M, h, w) with the first n
        stages -> (n, B, G, h, w). With rate weight ``rd`` (None:
        ``cfg.vq_rd``; one number, or one per stage) > 0, entropy-constrained
        VQ (Chou, Lookabaugh and Gray 1989): each index minimises ||residual - entry||^2 + rd * bits, with
        the bits the coder will spend on it -- under the factorized prior at
        the checkerboard's anchors, and under the copy mixture given the
        anchors just chosen elsewhere -- stage after stage (greedy). 0: the
        nearest entries. The decoder only looks the indices up, so this is
        the encoder's choice alone; the prior is refitted for the choice it
        makes (training/refit.py)."""
        rds = self.cfg.vq_rd_stages() if rd is None else replace(self.cfg, vq_rd=rd).vq_rd_stages()
        if not self.cfg.context or not any(rds[:n]):  # the factorized cost is one per entry: the quantizer's own search
            return self.vq(y, torch.tensor([n]), self.rate_cost(self.table_probs().log().float(), rds))[1][:n]
        vq = self.vq
        b, _, h, w = y.shape
        anchor = checkerboard(h, w).reshape(-1)
        out = torch.zeros(n, b, self.groups, h * w, dtype=torch.long)
        for i in range(b):
            residual, _ = vq._vectors(y[i:i + 1])                       # (G, h*w, d)
            for s in range(n):
                book = vq.book(s)
                dist = (residual.pow(2).sum(-1, keepdim=True) - 2 * residual @ book.transpose(1, 2)
                        + book.pow(2).sum(-1)[:, None, :])               # (G, h*w, K)
                classes = bool(self.cfg.vq_classes)
                base = (self.base_rows(s, out[s - 1, i].view(-1, h, w).numpy()) if classes and s
                        else [p[None, :] for p in self._pmfs(s + 1, s)])   # stage 1's anchors: factorized
                rd = rds[s]
                for g in range(self.groups):
                    bits = torch.from_numpy(-np.log2(base[g])).to(dist).expand(h * w, -1)
                    out[s, i, g, anchor] = (dist[g, anchor] + rd * bits[anchor]).argmin(-1)
                if classes and s == 0:   # stage 1's others: classes from all groups' anchors
                    base = self.base_rows(0, out[0, i].view(-1, h, w).numpy())
                for g in range(self.groups):
                    grid = out[s, i, g].view(h, w).numpy()
                    rest_base = base[g][(~anchor).numpy()] if classes else None
                    p = self.copy_probs(grid, s, g, ~anchor.view(h, w).numpy(), rest_base)
                    out[s, i, g, ~anchor] = (dist[g, ~anchor] + rd * torch.from_numpy(-np.log2(p)).to(dist)).argmin(-1)
                residual = residual - vq._pick(book, out[s, i])
        return out.view(n, b, self.groups, h, w)

    def code_side(self, y, quality):
        return b"", {"y": y, "n": int(self.stages(quality))}

    def code_tile(self, state, r):
        from . import coding
        n = state["n"]
        yt = state["y"][y_slice(r)]
        syms = self.assign(yt, n)
        y_hat = self.vq.lookup(syms, n)
        if not self.cfg.context:
            rows = [syms[s, 0, g].reshape(-1).numpy() for s in range(n) for g in range(self.groups)]
            return coding.encode_categorical_rows(rows, self._pmfs(n)), y_hat
        h, w = syms.shape[-2:]
        anchor = checkerboard(h, w).numpy()
        if self.cfg.vq_classes:
            return self._encode_classes(syms[:, 0].numpy(), anchor), y_hat
        grids = [syms[s, 0, g].numpy() for s in range(n) for g in range(self.groups)]
        rows = [gr[anchor] for gr in grids]
        rest_syms = np.concatenate([gr[~anchor] for gr in grids])
        return coding.encode_rows_then_categorical(rows, self._pmfs(n), rest_syms, self._rest_probs(grids, anchor)), y_hat

    def _encode_classes(self, syms: np.ndarray, anchor: np.ndarray) -> bytes:
        """syms (n, G, h, w) coded stage after stage under the energy classes."""
        from . import coding
        parts = []
        for s in range(len(syms)):
            pmfs, positions, rest = self._class_parts(s, syms[s - 1] if s else None, anchor)
            anchors = syms[s][:, anchor]
            parts += [("rows", [anchors[g][i] for g, i in positions], pmfs),
                      ("categorical", syms[s][:, ~anchor].reshape(-1), rest(syms[s]))]
        return coding.encode_rounds(parts)

    def _decode_classes(self, data: bytes, n: int, h: int, w: int) -> np.ndarray:
        """Inverse of :meth:`_encode_classes` -> (n, G, h, w)."""
        from . import coding
        anchor = checkerboard(h, w).numpy()
        grids = np.zeros((n, self.groups, h, w), np.int64)
        step = {"part": 0}

        def next_round(previous):
            i = step["part"]
            step["part"] += 1
            s = i // 2
            if i % 2:          # the anchors of stage s were just read
                anchors = np.zeros((self.groups, int(anchor.sum())), np.int64)
                for (g, pos), row in zip(step["positions"], previous):
                    anchors[g, pos] = row
                grids[s][:, anchor] = anchors
                return "categorical", step["rest"](grids[s])
            if i:              # the others of stage s - 1
                grids[s - 1][:, ~anchor] = previous.reshape(self.groups, -1)
            if s == n:
                return None
            pmfs, step["positions"], step["rest"] = self._class_parts(s, grids[s - 1] if s else None, anchor)
            return "rows", [len(pos) for _, pos in step["positions"]], pmfs

        coding.decode_rounds(data, next_round)
        return grids

    def _rest_probs(self, grids, anchor: np.ndarray) -> np.ndarray:
        """The probability rows of every non-anchor index of ``grids`` (one
        (h, w) grid per (stage, group), in that order), for one batched
        categorical: rows of stages with fewer entries in use are padded with
        zeros (never coded symbols; constriction still gives them its
        smallest probability, a loss of ~1e-4 bits per index)."""
        k = self.cfg.codebook
        parts = [self.copy_probs(gr, i // self.groups, i % self.groups, ~anchor) for i, gr in enumerate(grids)]
        return np.concatenate([np.pad(p, ((0, 0), (0, k - p.shape[1]))) for p in parts])

    def decode_side(self, data, hp, wp, quality):
        if data:
            raise ValueError("unexpected side stream for a VQ file")
        return {"n": int(self.stages(quality))}

    def decode_tile(self, state, data, r):
        from . import coding
        n = state["n"]
        h, w = r[2] // 16, r[3] // 16
        if not self.cfg.context:
            rows = coding.decode_categorical_rows(data, [h * w] * (n * self.groups), self._pmfs(n))
            syms = torch.from_numpy(np.stack(rows).astype(np.int64)).view(n, 1, self.groups, h, w)
            return self.vq.lookup(syms, n)
        if self.cfg.vq_classes:
            return self.vq.lookup(torch.from_numpy(self._decode_classes(data, n, h, w))[:, None], n)
        anchor = checkerboard(h, w).numpy()
        grids = np.zeros((n * self.groups, h, w), np.int64)
        k = int(anchor.sum())

        def probs_of(rows):
            for i, row in enumerate(rows):
                grids[i][anchor] = row
            return self._rest_probs(grids, anchor)

        _, rest = coding.decode_rows_then_categorical(data, [k] * (n * self.groups), self._pmfs(n), probs_of)
        grids[:, ~anchor] = rest.reshape(n * self.groups, -1)
        syms = torch.from_numpy(grids).view(n, 1, self.groups, h, w)
        return self.vq.lookup(syms, n)


CONTEXT_STATES = 5


def neighbour_indices(grid: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(n, 4) the indices in ``grid`` (h, w) below, above, right of and left
    of each position where ``rest`` is true (row-major order); -1 outside."""
    rr, cc = np.nonzero(rest)
    h, w = grid.shape
    nb = np.full((len(rr), 4), -1, np.int64)
    for j, (dh, dw) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1))):
        r2, c2 = rr + dh, cc + dw
        ok = (r2 >= 0) & (r2 < h) & (c2 >= 0) & (c2 < w)
        nb[ok, j] = grid[r2[ok], c2[ok]]
    return nb


def agreement(nb: np.ndarray) -> np.ndarray:
    """(n, 4) neighbour indices (-1: none) -> (n,) the largest number of
    them equal to one index (0 where there are none)."""
    valid = nb >= 0
    same = (nb[:, :, None] == nb[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    return same.sum(2).max(1)


def checkerboard(h: int, w: int) -> torch.Tensor:
    """(h, w) bool: the anchor positions ((i + j) even) of a latent grid."""
    i = torch.arange(h)[:, None]
    j = torch.arange(w)[None, :]
    return (i + j) % 2 == 0


def context_state(bits: torch.Tensor) -> torch.Tensor:
    """bits (B, C, h, w) 0/1 -> (B, C, h, w) context state 0..4 of every
    position from its four neighbours in the same channel: round(4 * ones /
    neighbours inside the grid). At a non-anchor position all four
    neighbours are anchors, so the decoder knows them already."""
    b = bits.float()
    ones = torch.zeros_like(b)
    avail = torch.zeros_like(b)
    one = torch.ones_like(b)
    for dh, dw in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        sh = torch.roll(b, (dh, dw), (2, 3))
        valid = torch.roll(one, (dh, dw), (2, 3))
        if dh == 1:
            valid[:, :, 0] = 0
        elif dh == -1:
            valid[:, :, -1] = 0
        elif dw == 1:
            valid[:, :, :, 0] = 0
        else:
            valid[:, :, :, -1] = 0
        ones += sh * valid
        avail += valid
    return torch.round(4 * ones / avail.clamp_min(1)).long()


class BinaryCodec(TransformCodec):
    """Binary codec: g_a -> sign bits (quantizers.BinaryQuantizer) -> g_s.

    Quality q in [1, L] keeps the first round(q / L * M) latent channels
    (trained nested, so fractional qualities work). The bits are coded by
    constriction under a Bernoulli model frozen to integer tables (out of
    2^16), so a predictable bit costs less than one bit:

    * factorized: one P(1) per channel (``p_one_int``);
    * ``cfg.context``: a checkerboard context model (He et al. 2021 for the
      two-pass split): anchors ((i + j) even) with P(1) per channel
      (``p_one_int``), then every other bit with P(1 | channel, state),
      the state counting the ones among its four anchor neighbours
      (``p_ctx_int``, (M, 5)). The tables are maximum-likelihood counts on
      training images (training/refit.py).
    """

    latent_kind = "binary"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        from .quantizers import BinaryQuantizer
        self.binarize = BinaryQuantizer()
        self.prior_logits = nn.Parameter(torch.zeros(cfg.M))
        self.register_buffer("p_one_int", torch.full((cfg.M,), 32768, dtype=torch.int32))
        if cfg.context:
            self.register_buffer("p_ctx_int", torch.full((cfg.M, CONTEXT_STATES), 32768, dtype=torch.int32))

    def keep(self, quality) -> torch.Tensor:
        q = torch.as_tensor(quality, dtype=torch.float32)
        return (q / self.cfg.levels * self.cfg.M).round().clamp(1, self.cfg.M).long()

    def forward(self, x, quality):
        y = self.g_a(x)
        keep = self.keep(quality).to(x.device)
        b, bits = self.binarize(y, keep)
        p = torch.sigmoid(self.prior_logits)[None, :, None, None].expand(bits.shape)
        if self.cfg.context:  # the frozen context tables: what coding will pay
            h, w = bits.shape[-2:]
            ctx = self.p_ctx_int.float()[torch.arange(self.cfg.M, device=x.device)[:, None, None],
                                         context_state(bits)] / 65536
            anchor = self.p_one_int.float()[None, :, None, None] / 65536
            p = torch.where(checkerboard(h, w).to(x.device), anchor, ctx)
        lik = torch.where(bits.bool(), p, 1 - p)
        used = (torch.arange(self.cfg.M, device=x.device)[None, :] < keep[:, None])[:, :, None, None]
        lik = torch.where(used, lik, torch.ones_like(lik))
        return {"x_hat": self.g_s(b), "likelihoods": {"bits": lik}}

    def update_tables(self) -> None:
        if self.cfg.context:
            return  # counted on training images (training/refit.py), not learned by gradient
        p = torch.sigmoid(self.prior_logits.detach().double())
        self.p_one_int.copy_((p * 65536).round().clamp(1, 65535).to(torch.int32))

    def code_side(self, y, quality):
        return b"", {"y": y, "keep": int(self.keep(quality))}

    def _p_anchor(self, keep, n_per_channel):
        p = self.p_one_int[:keep].double().numpy() / 65536.0
        return np.repeat(p, n_per_channel)

    def _p_rest(self, bits_full: torch.Tensor, keep, rest):
        """P(1) of the non-anchor bits from the anchors' bits (B=1)."""
        state = context_state(bits_full)[0, :keep][:, rest]             # (keep, n_rest)
        table = self.p_ctx_int[:keep].double().numpy() / 65536.0
        return table[np.arange(keep)[:, None], state.numpy()].reshape(-1)

    def code_tile(self, state, r):
        from . import coding
        keep = state["keep"]
        yt = state["y"][y_slice(r)]
        b, bits = self.binarize(yt, torch.tensor([keep]))
        h, w = yt.shape[-2:]
        kept = bits[0, :keep]
        if not self.cfg.context:
            data = coding.encode_bernoulli(kept.reshape(-1).numpy(), self._p_anchor(keep, h * w))
            return data, b
        anchor = checkerboard(h, w)
        first, second = kept[:, anchor].reshape(-1), kept[:, ~anchor].reshape(-1)
        p1 = self._p_anchor(keep, int(anchor.sum()))
        p2 = self._p_rest(bits, keep, ~anchor)
        data = coding.encode_bernoulli(torch.cat([first, second]).numpy(), np.concatenate([p1, p2]))
        return data, b

    def decode_side(self, data, hp, wp, quality):
        if data:
            raise ValueError("unexpected side stream for a binary file")
        return {"keep": int(self.keep(quality))}

    def decode_tile(self, state, data, r):
        from . import coding
        keep = state["keep"]
        h, w = r[2] // 16, r[3] // 16
        bits = torch.zeros(1, self.cfg.M, h, w, dtype=torch.int64)
        if not self.cfg.context:
            flat = coding.decode_bernoulli(data, self._p_anchor(keep, h * w))
            bits[0, :keep] = torch.from_numpy(flat.astype(np.int64)).view(keep, h, w)
        else:
            anchor = checkerboard(h, w)

            def p_rest(first):
                bits[0, :keep, anchor] = torch.from_numpy(first.astype(np.int64)).view(keep, -1)
                return self._p_rest(bits, keep, ~anchor)

            _, second = coding.decode_bernoulli_two_pass(data, self._p_anchor(keep, int(anchor.sum())), p_rest)
            bits[0, :keep, ~anchor] = torch.from_numpy(second.astype(np.int64)).view(keep, -1)
        b = torch.zeros(1, self.cfg.M, h, w)
        b[0, :keep] = bits[0, :keep].float() * 2 - 1
        return b


class BinarizedHyperpriorCodec(HyperpriorCodec):
    """A binary latent on the scalar codec's backbone: the quantized latent
    round(y - mean) is binarized -- is it zero, its sign, then one bit per
    threshold, |.| > 1, > 2, ... (a thermometer code; each bit thresholds the
    latent) -- and every bit is coded by constriction under a Bernoulli
    probability that the hyperprior gives it (latent_codecs.encode_binarized:
    the exact conditional probabilities of the scalar codec's tables, so a
    predictable bit costs a small fraction of a bit and the rate matches the
    scalar coding). Reads the default model's weights file (registry: an
    architecture override), so nothing is trained or stored twice."""

    latent_kind = "binary"

    @staticmethod
    def _y_coding(state) -> str:
        return "bits"


ARCHS = {"hyperprior": HyperpriorCodec, "vq": VQCodec, "binary": BinaryCodec,
         "binarized-hyperprior": BinarizedHyperpriorCodec}


def build(cfg: ModelConfig) -> nn.Module:
    try:
        return ARCHS[cfg.arch](cfg)
    except KeyError:
        raise ValueError(f"unknown architecture {cfg.arch!r}; known: {', '.join(ARCHS)}") from None
