"""Training the post-filter (codec/post.py) of a trained codec.

The codec does not change, so what g_s gives for a crop at a quality is
fixed: a bank of training crops is coded once through the real encoder
(tiling.synthesis_output: the latent exactly as the decoder rebuilds it,
context model included), keeping the crop (uint8), g_s's output (fp16) and
the quality (uniform over the model's range). Each step draws crops from
the bank, transposes them at random, and minimises the filtered picture's
squared error divided by the unfiltered one's, so every quality counts
alike (a dB gained is a dB at any rate). Adam, a step decay, checkpoints
every few minutes (weights_only loadable) and on Ctrl-C / SIGTERM,
resumable; validation on the held-out split (never Kodak). ``install``
writes a weights file: the input file's tensors unchanged (files coded
without the filter keep their weights hash) plus the filter's, ``post.*``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..post import PostFilter
from . import parts
from .data import CropSampler, list_images, load_uint8, split

#: qualities of the validation report
VAL_QUALITIES = (-1.0, 1.0, 4.0, 8.0)


@dataclass
class BankConfig:
    """A run that trains part of a fixed codec on a bank of crops coded through it."""
    data: tuple = ("../shared/data/train",)
    out: str = "runs/post"
    crops: int = 4000            # training bank size
    crop: int = 128
    val_crops: int = 48          # per validation quality
    val_crop: int = 192
    steps: int = 6000
    batch: int = 16
    lr: float = 1e-3
    decay_at: tuple = (4800,)
    decay: float = 0.1
    seed: int = 0
    checkpoint_s: float = 180.0
    validate_every: int = 1000
    key: str = ""                # the model's weights hash: a bank belongs to one model


@dataclass
class PostConfig(BankConfig):
    width: int = 64
    layers: int = 3
    init: bool = False           # start from the weights file's own filter (deepened to ``layers``)


def g_s_output(net, rgb, q: float) -> torch.Tensor:
    """What the post-filter sees of a crop (fp16): g_s's output for the coded latent."""
    from ..tiling import synthesis_output
    return synthesis_output(net, rgb, q, getattr(net, "has_context", False))[0].half()


def _bank_of(net, images, count: int, crop: int, gen: torch.Generator, qualities=None, code=g_s_output):
    """``count`` crops -> (x uint8, ``code(net, rgb, quality)``, quality),
    coded through the real encoder."""
    sampler = CropSampler(images, crop)
    lo, hi = net.min_quality, float(net.cfg.levels)
    xs, outs, qs = [], [], []
    for i in range(count):
        x = sampler.sample(1, gen)
        q = float(torch.rand((), generator=gen)) * (hi - lo) + lo if qualities is None else qualities[i]
        q = float(torch.tensor(q, dtype=torch.float32))   # as a header stores it
        rgb = (x[0] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        xs.append(torch.from_numpy(rgb).permute(2, 0, 1))
        outs.append(code(net, rgb, q))
        qs.append(q)
    return torch.stack(xs), torch.stack(outs), torch.tensor(qs)


def banks(net, pc: BankConfig, log=print, code=g_s_output):
    """The run folder's banks of ``code``'s output (made once per model file and settings)."""
    path = Path(pc.out) / "bank.pt"
    key = f"{pc.key} {code.__name__} {pc.crops} {pc.crop} {pc.val_crops} {pc.val_crop} {pc.seed} {sorted(pc.data)}"
    if path.exists():
        d = torch.load(path, weights_only=True)
        if d.get("key") == key:
            return d["train"], d["val"]
        log("bank of another model or settings: making a new one")
    t0 = time.time()
    train_paths, val_paths = split(list_images(pc.data))
    gen = torch.Generator().manual_seed(pc.seed)
    train = _bank_of(net, [load_uint8(p) for p in train_paths], pc.crops, pc.crop, gen, code=code)
    vgen = torch.Generator().manual_seed(pc.seed + 1)
    qs = [q for q in VAL_QUALITIES for _ in range(pc.val_crops)]
    val = _bank_of(net, [load_uint8(p) for p in val_paths], len(qs), pc.val_crop, vgen, qs, code=code)
    log(f"bank: {len(train[0])} train / {len(val[0])} validation crops in {time.time() - t0:.0f} s")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"train": train, "val": val, "key": key}, path)
    return train, val


def _psnr(a, b):
    return 10 * torch.log10(1 / ((a - b) ** 2).mean((1, 2, 3)))


@torch.no_grad()
def evaluate(pf: PostFilter, val) -> dict:
    """Mean PSNR gain (dB) of the filter on the validation bank, per quality."""
    x, out, q = val
    res = {}
    for level in sorted(set(q.tolist())):
        sel = q == level
        xs, o = x[sel].float() / 255, out[sel].float()
        gain = [(_psnr(pf(o[i:i + 16], q[sel][i:i + 16]).clamp(0, 1), xs[i:i + 16])
                 - _psnr(o[i:i + 16].clamp(0, 1), xs[i:i + 16])) for i in range(0, len(xs), 16)]
        res[f"q{level:g}"] = torch.cat(gain).mean().item()
    return res


def _describe(ev: dict) -> str:
    return "validation PSNR gain " + " ".join(f"{k} {v:+.3f} dB" for k, v in ev.items())


def train(net, pc: PostConfig, resume: bool = False, minutes: float | None = None, log=print) -> PostFilter:
    """Train a post-filter for ``net`` (unchanged); resumes from ``pc.out``/ckpt.pt."""
    out = Path(pc.out)
    out.mkdir(parents=True, exist_ok=True)
    net.eval()
    with torch.random.fork_rng():  # the same start for the same seed
        torch.manual_seed(pc.seed)
        pf = PostFilter(pc.width, pc.layers)
    pf.enable()
    if pc.init:  # checked before the bank is made (minutes)
        if not net.post.present:
            raise ValueError("--init: the weights file has no post-filter to continue")
        if net.post.width > pc.width or net.post.layers > pc.layers:
            raise ValueError(f"--init: the file's post-filter (width {net.post.width}, {net.post.layers} layers) "
                             f"is not at most width {pc.width} with at most {pc.layers} layers")
        with torch.random.fork_rng():
            torch.manual_seed(pc.seed + 3)
            pf.load_state_dict(net.post.deepened(pc.layers).widened(pc.width).state_dict())
    (x_bank, o_bank, q_bank), val = banks(net, pc, log)
    if pc.init and not (resume and (out / "ckpt.pt").exists()):  # a resumed run loads its own
        log(f"start (the file's filter): {_describe(evaluate(pf, val))}")
    opt = torch.optim.Adam(pf.parameters(), lr=pc.lr)
    gen = torch.Generator().manual_seed(pc.seed + 2)

    def step():
        idx = torch.randint(len(x_bank), (pc.batch,), generator=gen)
        x, o, q = x_bank[idx].float() / 255, o_bank[idx].float(), q_bank[idx]
        if float(torch.rand((), generator=gen)) < 0.5:
            x, o = x.transpose(-1, -2), o.transpose(-1, -2)
        base = ((o - x) ** 2).mean((1, 2, 3)).clamp_min(1e-8)
        loss = (((pf(o, q) - x) ** 2).mean((1, 2, 3)) / base).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    parts.fit(pc, pf, "post", opt, gen, step, lambda: evaluate(pf, val), _describe, resume, minutes, log=log)
    return pf


def load_checkpoint(pc: PostConfig) -> PostFilter:
    pf = PostFilter(pc.width, pc.layers)
    pf.load_state_dict(parts.checkpoint(pc)["post"])
    pf.present = True
    return pf


def install(weights_path, net, pf: PostFilter, pc: PostConfig, out_path) -> dict:
    """Write ``out_path``: ``weights_path``'s tensors (its filter, if any,
    replaced) plus ``pf``'s under ``post.``, and what was measured in its meta."""
    from safetensors.torch import load_file

    from .. import weights
    _, val = banks(net, pc, print)
    tensors = weights.base_tensors(load_file(str(weights_path)), context=True, post=False)
    tensors.update(weights.stored(pf.state_dict(prefix=weights.POST_PREFIX)))
    metadata = dict(weights.file_metadata(weights_path))
    meta = json.loads(metadata.get("meta", "{}"))
    before = meta.get("post") if pc.init else None
    rec = parts.record(pc)
    meta["post"] = {"steps": rec.steps, "width": pc.width, "layers": pc.layers,
                    "validation_psnr_gain_db": {k: round(v, 3) for k, v in evaluate(pf, val).items()},
                    "train_minutes": rec.minutes, "hardware": rec.hardware, "data": [str(d) for d in pc.data],
                    "crops": pc.crops, "crop": pc.crop, "batch": pc.batch, "seed": pc.seed, "lr": pc.lr,
                    "decay_at": list(pc.decay_at)}
    if before:  # the filter this run continued, and its own history
        meta["post"]["before"] = before
    metadata["meta"] = json.dumps(meta, sort_keys=True)
    weights.write_safetensors(tensors, out_path, metadata)
    return {"file": str(out_path), "post_tensors": sum(k.startswith(weights.POST_PREFIX) for k in tensors),
            "weights_hash": weights.file_hash(out_path).hex(), **meta["post"]["validation_psnr_gain_db"]}


def run(weights_path, data, out: str, steps: int = PostConfig.steps, decay_at: tuple | None = None,
        minutes: float | None = None, resume: bool = False, output=None, install_only: bool = False,
        log=print, **config) -> dict:
    """Train (or, ``install_only``, take ``out``'s checkpoint) and, with
    ``output``, install: what ``aecodec train-post`` runs.
    ``decay_at`` None: 80 % of ``steps``."""
    from .. import weights
    decay = tuple(decay_at) if decay_at else (int(0.8 * steps),)
    lm = weights.load(weights_path)
    for k in ("width", "layers"):   # None: the file's filter's with ``init``, else PostConfig's
        if config.get(k) is None:
            config.pop(k, None)
            if config.get("init") and lm.net.post.present:
                config[k] = getattr(lm.net.post, k)
    pc = PostConfig(data=tuple(data), out=str(out), steps=steps, decay_at=decay,
                    key=lm.hash_for(True, False).hex(), **config)
    if lm.net.latent_kind != "scalar":
        raise ValueError(f"the post-filter is trained for scalar models; {weights_path} has a "
                         f"{lm.net.latent_kind} latent")
    if install_only:
        pc = parts.trained_config(pc)
    pf = load_checkpoint(pc) if install_only else train(lm.net, pc, resume=resume, minutes=minutes, log=log)
    report = {"steps": parts.record(pc).steps, "checkpoint": str(Path(out) / "ckpt.pt")}
    if output:
        report.update(install(weights_path, lm.net, pf, pc, output))
    return report
