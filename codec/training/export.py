"""Checkpoint -> shipped weights: safetensors (fp16) with training facts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .. import weights
from ..models import ModelConfig, build
from . import checkpoint


def wall_hours(log: Path) -> float | None:
    """Training wall time in hours from a run's log.csv (the time column
    restarts at each resume: add up the segments)."""
    if not log.exists():
        return None
    total, prev = 0.0, 0.0
    for r in csv.DictReader(log.open()):
        t = float(r["time"])
        if t < prev:
            total += prev
        prev = t
    return round((total + prev) / 3600, 2)


def export(ckpt_path, out_path, model_id: str, hardware: str = "") -> dict:
    """Write the model of a training checkpoint as a weights file and return
    the training facts stored in its metadata (steps, data, wall time)."""
    ckpt_path = Path(ckpt_path)
    st = checkpoint.load(ckpt_path)
    cfg = ModelConfig.from_json(st["model_config"])
    net = build(cfg)
    weights.load_state(net, st["model"]).eval()
    tc = json.loads(st["train_config"])
    wall = wall_hours(ckpt_path.parent / "log.csv")
    meta = {"steps": int(st["step"]), "train_data": tc["data"], "crop": tc["crop"],
            "batch": tc["batch"], "lr": tc["lr"], "decay_at": tc["decay_at"],
            "decay_factor": tc.get("decay_factor", 0.1),
            "train_hours": wall, "hardware": hardware, "checkpoint": ckpt_path.name}
    if tc.get("freeze"):
        meta["frozen"] = list(tc["freeze"])
    if tc.get("post"):  # the post-filter trained with the transforms, not on its own after them
        meta["post_with_codec"] = True
    if tc.get("vq_soft_rate"):
        meta["vq_soft_rate"] = tc["vq_soft_rate"]
    if tc.get("init"):  # where the run started, and how that start was made (if its file says)
        meta["init_from"] = Path(tc["init"]).name
        if Path(tc["init"]).exists():
            before = json.loads(weights.file_metadata(tc["init"]).get("meta", "{}"))
            if before.get("init"):
                meta["init"] = before["init"]
            if before.get("steps"):  # the training (and refits) this run continued
                meta["before"] = before
    weights.save(net, out_path, model_id, meta)
    return meta
