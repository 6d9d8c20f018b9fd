"""Weights files of the heads (restore, vae): safetensors, fp16, with the
head's config dataclass as JSON in the metadata, like the codecs' files
(weights.py). A file rebuilds its head alone; loading unpickles nothing.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..registry import WEIGHTS_DIR
from ..weights import file_metadata


def config_from_json(cls, text: str):
    d = json.loads(text)
    known = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items() if k in known})


def save_head(net: torch.nn.Module, path, kind: str, meta: dict | None = None) -> Path:
    path = Path(path)
    tensors = {k: (v.detach().cpu().half() if v.is_floating_point() else v.detach().cpu()).contiguous()
               for k, v in net.state_dict().items()}
    metadata = {"kind": kind, "config": json.dumps(asdict(net.cfg)),
                "meta": json.dumps(meta or {}, sort_keys=True)}
    from ..weights import write_safetensors
    return write_safetensors(tensors, path, metadata)


def load_head(path, kind: str, cls_config, cls_net) -> torch.nn.Module:
    """A head's weights file -> the network in eval mode, fp32."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{kind} weights not found: {path}")
    md = file_metadata(path)
    if md.get("kind") != kind:
        raise ValueError(f"{path}: not a {kind} weights file")
    net = cls_net(config_from_json(cls_config, md["config"]))
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in load_file(str(path)).items()}
    net.load_state_dict(state)
    net.meta = json.loads(md.get("meta", "{}"))
    return net.eval()


@functools.lru_cache(maxsize=4)
def _cached(path: str, mtime: float, kind: str, cls_config, cls_net):
    return load_head(path, kind, cls_config, cls_net)


def shipped(name: str, kind: str, cls_config, cls_net, path=None):
    """The shipped head ``codec/weights/<name>.safetensors`` (or ``path``), cached."""
    p = Path(path) if path else WEIGHTS_DIR / f"{name}.safetensors"
    if not p.exists():
        raise FileNotFoundError(f"{kind} weights are not installed ({p})")
    p = p.resolve()
    return _cached(str(p), p.stat().st_mtime, kind, cls_config, cls_net)
