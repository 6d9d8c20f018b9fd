"""Training the heads (restore, vae) with the codec's machinery: the same
crops (data.py), checkpoints (checkpoint.py), stop handling, schedule and
CSV log as loop.py, with the loss supplied by the head::

    loss_fn(net, x_clean (B,3,S,S), gen) -> (loss, {"name": float, ...})

``fit`` resumes exactly from the newest checkpoint of ``out``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..heads.restore import restore_loss  # noqa: F401  (the losses live with their heads)
from ..heads.vae import vae_loss  # noqa: F401
from . import checkpoint
from .data import CropSampler, list_images, load_uint8, split
from .loop import _Stop, lr_at


@dataclass
class HeadTrainConfig:
    data: list = field(default_factory=lambda: ["../shared/data/train"])
    out: str = str(Path.home() / ".cache/aecodec/runs/head")
    kind: str = ""                   # restore, vae or defect (recorded for export)
    crop: int = 96
    batch: int = 8
    lr: float = 2e-4
    clip: float = 1.0
    steps: int = 1_000_000
    decay_at: int = 10**9
    decay_factor: float = 0.25
    warmup: int = 0
    init: str = ""                   # start from this head weights file (.safetensors) unless resuming
    max_minutes: float = float("inf")
    ckpt_every_s: float = 300.0
    threads: int = 1
    seed: int = 0
    min_scale: float = 0.5
    log_every: int = 20


def fit(net: torch.nn.Module, loss_fn, tc: HeadTrainConfig, resume: bool = True, log=print) -> Path:
    """Train ``net`` until ``steps`` or ``max_minutes``; -> last checkpoint."""
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    out = Path(tc.out)
    out.mkdir(parents=True, exist_ok=True)
    opt = torch.optim.Adam(net.parameters(), lr=tc.lr)
    head_config = json.dumps(asdict(net.cfg))
    step = 0
    last = checkpoint.latest(out) if resume else None
    if last is not None:
        st = checkpoint.load(last)
        if st["head_config"] != head_config:
            raise ValueError(f"checkpoint {last} was made for another head: {st['head_config']}")
        net.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        gen.set_state(st["gen"])
        torch.set_rng_state(st["torch_rng"])
        step = int(st["step"])
        log(f"resumed from {last} at step {step}")
    elif tc.init:
        init_from(net, tc.init, head_config)
        log(f"starting from {tc.init}")
    (out / "config.json").write_text(json.dumps(asdict(tc), indent=2))
    train_paths, _ = split(list_images(tc.data))
    sampler = CropSampler([load_uint8(p) for p in train_paths], tc.crop, tc.min_scale)

    def save():
        return checkpoint.save(out, {"model": net.state_dict(), "opt": opt.state_dict(),
                                     "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                     "step": step, "head_config": head_config})

    log_path = out / "log.csv"
    new_log = not log_path.exists()
    fh = open(log_path, "a", newline="")
    writer = csv.writer(fh)
    t0 = last_ckpt = time.monotonic()
    saved, names = last, None
    net.train()
    with _Stop() as stop, fh:
        while step < tc.steps:
            for g in opt.param_groups:
                g["lr"] = lr_at(tc, step)
            x = sampler.sample(tc.batch, gen)
            loss, metrics = loss_fn(net, x, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip:
                torch.nn.utils.clip_grad_norm_(net.parameters(), tc.clip)
            opt.step()
            step += 1
            if step % tc.log_every == 0:
                if names is None:
                    names = sorted(metrics)
                    if new_log:
                        writer.writerow(["step", "time", "lr", "loss", *names])
                writer.writerow([step, round(time.monotonic() - t0, 1), lr_at(tc, step),
                                 round(loss.item(), 5), *(round(float(metrics[n]), 4) for n in names)])
                fh.flush()
            over = (time.monotonic() - t0) / 60 >= tc.max_minutes
            if stop.flag or over or time.monotonic() - last_ckpt >= tc.ckpt_every_s:
                saved, last_ckpt = save(), time.monotonic()
                if stop.flag or over:
                    break
        else:
            saved = save()
    net.eval()
    return saved


def init_from(net: torch.nn.Module, path, head_config: str) -> None:
    """Load a head weights file into ``net``; its config must be ``net``'s."""
    from safetensors.torch import load_file

    from ..weights import file_metadata
    md = file_metadata(Path(path))
    if md.get("config") is None or json.loads(md["config"]) != json.loads(head_config):
        raise ValueError(f"{path} is not a weights file of this head (config {md.get('config')})")
    net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()})


def heads() -> dict:
    """kind -> (config class, network class, loss function)."""
    from ..heads.restore import RestoreConfig, RestoreNet
    from ..heads.defect import DefectConfig, DefectNet, defect_loss
    from ..heads.vae import ImageVAE, VAEConfig
    return {"restore": (RestoreConfig, RestoreNet, restore_loss), "vae": (VAEConfig, ImageVAE, vae_loss),
            "defect": (DefectConfig, DefectNet, defect_loss)}


def head_kind(head_config: str) -> str:
    """The head a checkpoint's config JSON belongs to (its fields name it)."""
    import dataclasses
    keys = set(json.loads(head_config))
    for kind, (cfg_cls, _, _) in heads().items():
        if keys == {f.name for f in dataclasses.fields(cfg_cls)}:
            return kind
    raise ValueError(f"checkpoint is for no known head (config fields {sorted(keys)})")


def export_head(ckpt_path, out_path, kind: str = "", hardware: str = "") -> dict:
    """A head's training checkpoint -> its weights file (fp16) with the
    training facts in the metadata. ``kind`` "": read from the checkpoint."""
    from ..heads.store import config_from_json, save_head
    from .export import wall_hours
    ckpt_path = Path(ckpt_path)
    st = checkpoint.load(ckpt_path)
    kind = kind or head_kind(st["head_config"])
    if kind not in heads():
        raise ValueError(f"unknown head kind {kind!r} (known: {', '.join(heads())})")
    cfg_cls, net_cls, _ = heads()[kind]
    net = net_cls(config_from_json(cfg_cls, st["head_config"]))
    net.load_state_dict(st["model"])
    cfg_file = ckpt_path.parent / "config.json"
    tc = json.loads(cfg_file.read_text()) if cfg_file.exists() else {}
    meta = {"steps": int(st["step"]), "train_data": tc.get("data"), "crop": tc.get("crop"),
            "batch": tc.get("batch"), "lr": tc.get("lr"), "decay_at": tc.get("decay_at"),
            "decay_factor": tc.get("decay_factor"), "train_hours": wall_hours(ckpt_path.parent / "log.csv"),
            "hardware": hardware, "checkpoint": ckpt_path.name, "init": tc.get("init") or None}
    if meta["init"] and Path(meta["init"]).exists():  # the training it continued, for the model card
        from ..weights import file_metadata
        meta["before"] = json.loads(file_metadata(Path(meta["init"])).get("meta", "{}"))
    save_head(net.eval(), out_path, kind, meta)
    return meta
