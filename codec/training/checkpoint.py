"""Resumable checkpoints that load with ``torch.load(weights_only=True)``.

A checkpoint holds only tensors, numbers, strings and lists/dicts of them:
model and optimizer state, step, the data generator's state and torch's RNG
state, and the model config as JSON. Written atomically (temp + rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

PATTERN = "ckpt-{step:08d}.pt"


def save(folder: Path, state: dict, keep: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PATTERN.format(step=state["step"])
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(folder.glob("ckpt-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest(folder: Path) -> Path | None:
    """The newest full checkpoint in a run folder, else a compact one
    (``compact/state.json``, see compact.py), else None."""
    found = sorted(Path(folder).glob("ckpt-*.pt"))
    if found:
        return found[-1]
    compact = Path(folder) / "compact"
    return compact if (compact / "state.json").exists() else None


def load(path: Path) -> dict:
    path = Path(path)
    if path.is_dir():
        from .compact import load_compact
        return load_compact(path)
    return torch.load(path, map_location="cpu", weights_only=True)
