"""The loop that trains a part added to a fixed codec (the context model,
training/context.py; the post-filter, training/post.py).

Both train one small module on a bank of crops made once through the codec,
which does not change: Adam with a step-decayed learning rate, a checkpoint
every few minutes and on Ctrl-C / SIGTERM (``ckpt.pt``, loadable with
``torch.load(weights_only=True)``: the part, the optimizer, the bank
sampler's generator, the step and the wall time so far), ``--resume``
continuing exactly, and a validation row in ``log.csv`` every
``validate_every`` steps. What differs -- the bank, one step's loss, the
validation figures -- comes in as functions.
"""

from __future__ import annotations

import ast
import csv
import os
import platform
import time
import uuid
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path, PurePath
from typing import Callable

import torch

from .loop import _Stop


def hardware(device="cpu") -> str:
    """Where a part was trained, for its model card."""
    if torch.device(device).type == "cuda":
        return f"one {torch.cuda.get_device_name(torch.device(device))}"
    n = torch.get_num_threads()
    return f"{os.cpu_count()}-core {platform.machine()} CPU, {n} torch thread{'s' if n > 1 else ''}"


def to_cpu(obj):
    """An optimizer state with every tensor on the CPU (checkpoints load anywhere)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_cpu(v) for v in obj]
    return obj


def plain(obj):
    """``obj`` with every path a string (a config readable by ast.literal_eval)."""
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    return obj


def lr_at(cfg, step: int) -> float:
    """``cfg.lr`` times ``cfg.decay`` for each of ``cfg.decay_at`` passed."""
    return cfg.lr * cfg.decay ** sum(step >= d for d in cfg.decay_at)


def train_minutes(cfg) -> float | None:
    """Wall time of the run in ``cfg.out``, from its log (the last validation row)."""
    try:
        rows = list(csv.reader(open(Path(cfg.out) / "log.csv")))
        return round(float(rows[-1][1]) / 60, 1)
    except (OSError, IndexError, ValueError):
        return None


@dataclass(frozen=True)
class Record:
    """What a part's run did, read back from its run folder (so a checkpoint
    installed later, or elsewhere, reports the run, not the installer)."""
    steps: int
    hardware: str | None     # where it trained (parts.hardware at the time)
    minutes: float | None    # wall time, from the log
    run_id: str | None = None  # the run's own id, kept across --resume (None: a run of older code)


def checkpoint(cfg) -> dict:
    """The run in ``cfg.out``'s checkpoint (see :func:`fit`), on the CPU."""
    return torch.load(Path(cfg.out) / "ckpt.pt", weights_only=True, map_location="cpu")


# where a run's files are, not how it trained: an install keeps its own
KEEP_ON_INSTALL = ("out", "device", "pack")


def trained_config(cfg):
    """``cfg`` as the run in ``cfg.out`` last trained (its checkpoint's
    config), the locations in KEEP_ON_INSTALL kept: an install loads and
    reports the run's settings, not the installing command line's. Refuses a
    run made for another model (``key``: the weights hash its bank was
    coded with)."""
    saved = ast.literal_eval(checkpoint(cfg)["config"])
    names = {f.name for f in fields(cfg)} - set(KEEP_ON_INSTALL)
    run = replace(cfg, **{k: v for k, v in saved.items() if k in names})
    if getattr(cfg, "key", "") and run.key != cfg.key:
        raise ValueError(f"the run in {cfg.out} was trained for another weights file "
                         f"(hash {run.key[:16]}, this one {cfg.key[:16]})")
    return run


def record(cfg) -> Record:
    """The :class:`Record` of the run in ``cfg.out`` (its ckpt.pt and log.csv)."""
    d = checkpoint(cfg)
    return Record(int(d["step"]), d.get("hardware"), train_minutes(cfg), d.get("run_id"))


def fit(cfg, part: torch.nn.Module, key: str, opt: torch.optim.Optimizer, gen: torch.Generator,
        step: Callable[[], None], validate: Callable[[], dict], describe: Callable[[dict], str],
        resume: bool = False, minutes: float | None = None, device="cpu", log=print) -> int:
    """Train ``part`` (saved under ``key`` in the checkpoint) for ``cfg.steps``
    steps, or until ``minutes`` pass or a signal comes. ``step()``: one
    optimizer step (the learning rate is set before it); ``validate()``: the
    figures logged (``describe`` words them). ``gen``: the generator the
    steps draw from, checkpointed with the part. -> the step reached."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    done, elapsed = 0, 0.0
    run_id = uuid.uuid4().hex[:12]   # a new run; a resumed one keeps its id
    ckpt = out / "ckpt.pt"
    if resume and ckpt.exists():
        d = torch.load(ckpt, weights_only=True, map_location=device)
        part.load_state_dict(d[key])
        opt.load_state_dict(d["opt"])
        gen.set_state(d["rng"].cpu())
        done, elapsed = int(d["step"]), float(d.get("elapsed", 0.0))
        run_id = d.get("run_id", run_id)
        log(f"resumed at step {done}")

    def save():
        tmp = ckpt.with_suffix(".tmp")
        torch.save({key: {k: v.cpu() for k, v in part.state_dict().items()}, "opt": to_cpu(opt.state_dict()),
                    "rng": gen.get_state(), "step": done, "elapsed": elapsed + time.time() - t_start,
                    "config": str(plain(asdict(cfg))), "hardware": hardware(device), "run_id": run_id}, tmp)
        tmp.replace(ckpt)

    with open(out / "log.csv", "a", newline="") as logf, _Stop() as stop:  # a signal: checkpoint, then return
        writer = csv.writer(logf)
        t_save = t_start = time.time()
        while done < cfg.steps and not stop.flag:
            if minutes is not None and time.time() - t_start > 60 * minutes:
                break
            for grp in opt.param_groups:
                grp["lr"] = lr_at(cfg, done)
            step()
            done += 1
            if done % cfg.validate_every == 0 or done == cfg.steps:
                ev = validate()
                writer.writerow([done, round(elapsed + time.time() - t_start, 1), *(f"{v:.4f}" for v in ev.values())])
                logf.flush()
                log(f"step {done}: {describe(ev)}")
            if time.time() - t_save > cfg.checkpoint_s:
                save()
                t_save = time.time()
        save()
    return done
