"""Training the context model (codec/context.py) on the rate alone.

g_a, the gains, h_a and h_s stay as trained, so y, z and the hyperprior's
parameters of a crop do not change: g_a runs once over a bank of training
crops (its output, before the gains, is kept as fp16), and each step draws
crops from the bank, a quality per crop in [min_quality, L] and a pass
1..PASSES-1, and minimises the bits of that pass's elements::

    s = round(y - mean')       (mean' = mean + dmean; straight-through in s)
    bits = -log2 P(s),  P = Phi((s + 1/2) / std) - Phi((s - 1/2) / std),  std = std_of_index(t + dt)

which is the coded cost itself, not the additive-noise proxy (the proxy
overstates the cost of the small scales that dominate y, and a model that
only corrects the hyperprior's parameters learns the wrong thing from it).
Each crop's bits are divided by what the hyperprior alone would spend on
the same elements, so every quality counts alike. Adam, checkpoints every
few minutes (weights_only loadable), resumable; validation on the held-out
split (never Kodak). ``device`` "cuda" runs the bank, the steps and the
validation on the GPU (scripts/gpu_burst.sh); the integer layers are built
on the CPU. ``install`` builds the integer network and writes a
weights file: the input file's tensors unchanged plus the context model's.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..context import LOG0, PASSES, STEP, ContextModel, pass_map, symbol_bits
from ..priors import LEVELS, SCALES_MAX, SCALES_MIN
from . import parts
from .data import CropSampler, list_images, load_uint8, split



@dataclass
class ContextConfig:
    data: tuple = ("../shared/data/train",)
    out: str = "runs/context"
    steps: int = 20000
    batch: int = 16
    lr: float = 1e-3
    decay_at: tuple = (14000, 18000)
    decay: float = 0.3
    hidden: int = 192
    kernel: int = 3
    crop: int = 256
    crops_per_image: int = 8
    seed: int = 0
    checkpoint_s: float = 180.0
    validate_every: int = 1000
    device: str = "cpu"
    pack: str = ""                   # a crop pack (training/pack.py) instead of the image folders
    init: bool = False               # start from the weights file's own context model (continue its training)


@torch.no_grad()
def latent_bank(net, sampler: CropSampler, count: int, seed: int, batch: int = 8) -> torch.Tensor:
    """g_a (before the gains) of ``count`` random crops of ``sampler``'s
    images -> fp16 (n, M, h, w), on the CPU (g_a runs where ``net`` is)."""
    gen = torch.Generator().manual_seed(seed)
    dev = next(net.parameters()).device
    out = []
    for _ in range(-(-count // batch)):
        out.append(net.g_a(sampler.sample(batch, gen).to(dev)).half().cpu())
    return torch.cat(out)


def hyper(net, f: torch.Tensor, q: torch.Tensor):
    """Bank entries and qualities -> (y, means, scale index t), as the coder
    computes them (float32 here; the coder uses the integer h_s)."""
    g = net.gains(q)
    y = f.float() * g["y"]
    z = net.latent.h_a(y) * g["z"]
    med = net.latent.z.entropy_bottleneck._get_medians()
    z_hat = torch.round(z - med) + med
    scales, means = net.latent.h_s(z_hat * g["z_inv"]).chunk(2, 1)
    t = ((scales.clamp(SCALES_MIN, SCALES_MAX).log() - LOG0) / STEP).ceil().clamp(0, LEVELS - 1)
    return y, means, t


def pass_bits(net, ctx: ContextModel, f, q, p: int, straight_through: bool = True, view=None):
    """Bits per crop of pass ``p``'s elements under the context model and
    under the hyperprior alone; ``view``: :func:`hyper_view` of (f, q), if
    already computed."""
    y, means, t, passes, y_hat = view or hyper_view(net, f, q)
    dt, dmean = ctx(ctx.inputs(y_hat, passes, p, means, t), p)
    v = y - (means + dmean)
    s = v + (torch.round(v) - v).detach() if straight_through else torch.round(v)
    sel = (passes == p).float()
    ours = (symbol_bits(s, t + dt) * sel).sum((1, 2, 3))
    base = (symbol_bits(torch.round(y - means), t) * sel).sum((1, 2, 3))
    return ours, base


def hyper_view(net, f, q):
    """:func:`hyper` plus the pass map and y_hat under the hyperprior's
    means (what the passes before a pass decoded; the others are masked)."""
    y, means, t = hyper(net, f, q)
    return y, means, t, pass_map(y.shape[1], *y.shape[-2:], y.device), torch.round(y - means) + means


@torch.no_grad()
def pass_table(net, ctx, bank, qualities=(-1.0, 1.0, 4.0, 8.0), chunk: int = 32) -> dict:
    """Per quality: the hyperprior's y bits on ``bank``, and per pass 1..
    the bits the context model saves there (negative: it saves)."""
    out = {}
    for q in qualities:
        total, saved = 0.0, [0.0] * (PASSES - 1)
        dev = next(ctx.parameters()).device
        for i in range(0, len(bank), chunk):
            f = bank[i:i + chunk].to(dev)
            qq = torch.full((len(f),), q, device=dev)
            view = hyper_view(net, f, qq)
            y, means, t = view[:3]
            total += float(symbol_bits(torch.round(y - means), t).sum())
            for p in range(1, PASSES):
                ours, base = pass_bits(net, ctx, f, qq, p, straight_through=False, view=view)
                saved[p - 1] += float((ours - base).sum())
        out[f"q{q:g}"] = {"bits": total, "saved": saved}
    return out


def evaluate(net, ctx, bank, qualities=(-1.0, 1.0, 4.0, 8.0), table: dict | None = None) -> dict:
    """Per quality: y bits saved by the context model (the passes it uses),
    in % of the hyperprior's y bits (``table``: a :func:`pass_table` of bank)."""
    table = table or pass_table(net, ctx, bank, qualities)
    return {q: 100.0 * sum(s for p, s in enumerate(r["saved"], 1) if ctx.uses(p)) / r["bits"]
            for q, r in table.items()}


def choose_passes(net, ctx, bank, table: dict | None = None) -> dict:
    """Switch off each pass whose network does not save bits on ``bank`` (the
    validation crops), averaged over the qualities in % -> the per-pass figures."""
    table = table or pass_table(net, ctx, bank)
    per_pass = {}
    for p in range(1, PASSES):
        pct = {q: 100.0 * r["saved"][p - 1] / r["bits"] for q, r in table.items()}
        ctx.passes_on[p - 1] = int(sum(pct.values()) < 0)
        per_pass[f"pass{p}"] = {q: round(v, 3) for q, v in pct.items()}
    return per_pass


def _g_a_key(net) -> str:
    """Which analysis transform a bank was made with."""
    import hashlib
    h = hashlib.sha256()
    for t in net.g_a.state_dict().values():
        h.update(t.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


def _banks(net, cc: ContextConfig, log):
    """The latent banks of ``cc.out`` (made once per analysis transform and settings)."""
    path = Path(cc.out) / "bank.pt"
    source = f"pack {Path(cc.pack).name} {Path(cc.pack).stat().st_size}" if cc.pack else str(sorted(cc.data))
    key = f"{_g_a_key(net)} {cc.crop} {cc.crops_per_image} {cc.seed} {source}"
    if path.exists():
        d = torch.load(path, weights_only=True)
        if d.get("key", key) == key:   # a bank without a key: made by the first runs, by this model
            return d["train"], d["val"]
        log("latent bank of another model or settings: making a new one")
    t0 = time.time()
    dev = next(net.parameters()).device
    if cc.pack:  # its images (on the device) and its validation crops (192 px)
        from .pack import PackSampler
        sampler = PackSampler(cc.pack, cc.crop, dev)
        train = latent_bank(net, sampler, len(sampler.images) * cc.crops_per_image, cc.seed)
        with torch.no_grad():
            val = torch.cat([net.g_a(v).half().cpu() for v in sampler.val])
    else:
        train_paths, val_paths = split(list_images(cc.data))
        train = latent_bank(net, CropSampler([load_uint8(p) for p in train_paths], cc.crop),
                            len(train_paths) * cc.crops_per_image, cc.seed)
        val = latent_bank(net, CropSampler([load_uint8(p) for p in val_paths], cc.crop),
                          len(val_paths) * cc.crops_per_image, cc.seed + 1)
    log(f"latent bank: {len(train)} train / {len(val)} validation crops in {time.time() - t0:.0f} s")
    torch.save({"train": train, "val": val, "key": key}, path)
    return train, val


def train(net, cc: ContextConfig, resume: bool = False, minutes: float | None = None, log=print) -> ContextModel:
    """Train a context model for ``net`` (a HyperpriorCodec, left unchanged);
    -> the trained ContextModel (float). Resumes from ``cc.out``/ckpt.pt."""
    Path(cc.out).mkdir(parents=True, exist_ok=True)
    net.eval()
    for prm in net.parameters():
        prm.requires_grad_(False)
    with torch.random.fork_rng():  # the same start for the same seed
        torch.manual_seed(cc.seed)
        ctx = ContextModel(net.cfg.M, cc.hidden, cc.kernel)
    ctx.enable()
    if cc.init:  # checked before the bank is made (minutes)
        if not net.context.present:
            raise ValueError("--init: the weights file has no context model to continue")
        if net.context.net[0].weight.shape != ctx.net[0].weight.shape:
            raise ValueError(f"--init: the file's context model (width {net.context.net[0].weight.shape[0]}, "
                             f"kernel {net.context.net[0].weight.shape[-1]}) is not width {cc.hidden}, kernel {cc.kernel}")
        ctx.net.load_state_dict(net.context.net.state_dict())
    dev = torch.device(cc.device)
    net.to(dev)
    train_bank, val_bank = _banks(net, cc, log)
    train_bank = train_bank.to(dev)
    ctx.to(dev)
    opt = torch.optim.Adam(ctx.net.parameters(), lr=cc.lr)
    gen = torch.Generator().manual_seed(cc.seed)
    lo, hi = net.min_quality, float(net.cfg.levels)
    parts.fit(
        cc, ctx.net, "ctx", opt, gen, lambda: _step(net, ctx, opt, cc, train_bank, gen, lo, hi),
        lambda: evaluate(net, ctx, val_bank),
        lambda ev: "y bits vs the hyperprior (validation) " + " ".join(f"{k} {v:+.2f}%" for k, v in ev.items()),
        resume, minutes, dev, log)
    net.cpu()
    return ctx.cpu()


def _step(net, ctx, opt, cc, train_bank, gen, lo: float, hi: float) -> None:
    """One Adam step on a random batch, quality per crop and pass."""
    idx = torch.randint(len(train_bank), (cc.batch,), generator=gen)
    f = train_bank[idx.to(train_bank.device)]
    if float(torch.rand((), generator=gen)) < 0.5:
        f = f.flip(-1)
    q = (lo + (hi - lo) * torch.rand(cc.batch, generator=gen)).to(train_bank.device)
    p = int(torch.randint(1, PASSES, (1,), generator=gen))
    ours, base = pass_bits(net, ctx, f, q, p)
    loss = (ours / base.clamp_min(200.0)).mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


@torch.no_grad()
def calibration_inputs(net, ctx: ContextModel, bank: torch.Tensor, chunk: int = 16) -> list[torch.Tensor]:
    """Network inputs of every pass at every level from min_quality to L, in float64."""
    inputs = []
    levels = torch.arange(net.min_quality, net.cfg.levels + 1)
    for q in levels.tolist():
        f = bank[:chunk]
        _, means, t, passes, y_hat = hyper_view(net, f, torch.full((len(f),), q))
        for p in range(1, PASSES):
            inputs.append(ctx.inputs(y_hat.double(), passes, p, means.double(), t.double()))
    return inputs


def load_checkpoint(net, cc: ContextConfig) -> ContextModel:
    ctx = ContextModel(net.cfg.M, cc.hidden, cc.kernel)
    ctx.enable()
    ctx.net.load_state_dict(parts.checkpoint(cc)["ctx"])
    return ctx


def install(weights_path, net, ctx: ContextModel, cc: ContextConfig, out_path, calibration: int = 16) -> dict:
    """Build ``ctx``'s integer layers (calibrated on training crops of the
    bank) and write ``out_path``: the tensors of ``weights_path`` unchanged
    (so files coded without the context keep their weights hash) plus the
    context model's, under ``context.``. -> what was written."""
    from safetensors.torch import load_file

    from .. import weights
    train_bank, val_bank = _banks(net, cc, print)
    table = pass_table(net, ctx, val_bank)
    per_pass = choose_passes(net, ctx, val_bank, table)
    ctx.build_integer(calibration_inputs(net, ctx, train_bank[:calibration]))
    tensors = weights.base_tensors(load_file(str(weights_path)), context=False, post=True)
    tensors.update(weights.stored(ctx.state_dict(prefix=weights.CONTEXT_PREFIX)))
    metadata = dict(weights.file_metadata(weights_path))
    meta = json.loads(metadata.get("meta", "{}"))
    before = meta.get("context") if cc.init else None
    meta.pop("integer_context", None)  # a rebuild of the old network's integer layers (scripts/integerize.py)
    rec = parts.record(cc)
    meta["context"] = {"steps": rec.steps, "hidden": cc.hidden, "kernel": cc.kernel,
                       "validation_y_bits_percent": {k: round(v, 3) for k, v in evaluate(net, ctx, val_bank, table=table).items()},
                       "validation_per_pass_percent": per_pass, "passes_on": ctx.passes_on.tolist(),
                       "train_minutes": rec.minutes, "hardware": rec.hardware,
                       "data": list(cc.data), "crop": cc.crop, "crops_per_image": cc.crops_per_image,
                       "batch": cc.batch, "lr": cc.lr, "decay_at": list(cc.decay_at),
                       "calibration_crops": calibration}
    if before:  # the context model this run continued, and its own history
        meta["context"]["before"] = before
    metadata["meta"] = json.dumps(meta, sort_keys=True)
    weights.write_safetensors(tensors, out_path, metadata)
    return {"file": str(out_path), "context_tensors": sum(k.startswith(weights.CONTEXT_PREFIX) for k in tensors),
            "weights_hash": weights.file_hash(out_path).hex()}


def run(weights_path, data, out: str, steps: int = ContextConfig.steps, decay_at: tuple | None = None,
        lr: float = ContextConfig.lr, minutes: float | None = None, resume: bool = False,
        output=None, install_only: bool = False, log=print, **config) -> dict:
    """Train (or, ``install_only``, take ``out``'s checkpoint) and, with
    ``output``, install: what ``aecodec train-context`` and
    scripts/train_context.py run. ``decay_at`` None: 70 % and 90 % of ``steps``."""
    from .. import weights
    decay = tuple(decay_at) if decay_at else (int(0.7 * steps), int(0.9 * steps))
    cc = ContextConfig(data=tuple(data), out=str(out), steps=steps, lr=lr, decay_at=decay, **config)
    net = weights.load(weights_path).net
    if install_only:
        cc = parts.trained_config(cc)
    ctx = load_checkpoint(net, cc) if install_only else train(net, cc, resume=resume, minutes=minutes, log=log)
    report = {"steps": parts.record(cc).steps, "checkpoint": str(Path(out) / "ckpt.pt")}
    if output:
        report.update(install(weights_path, net, ctx, cc, output))
    return report
