"""Weights files: safetensors with the model config in the metadata.

Floating-point tensors are stored as fp16, except the entropy bottleneck's
(its density and quantiles are small and set the coding tables), which stay
fp32. Integer buffers (the coding tables) are stored as they are. Loading
never unpickles anything.
"""

from __future__ import annotations

import hashlib
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .models import ModelConfig, build

_KEEP_FP32 = ("latent.z.", "latent.hs_int.", "context.int.")


@dataclass
class LoadedModel:
    net: torch.nn.Module
    model_id: str
    weights_hash: bytes      # 8 bytes, written into every .aec header
    config: ModelConfig
    meta: dict
    path: Path
    #: the hash of the tensors a file coded without the context model needs
    #: (all but ``context.*``): what files written before the context model
    #: existed carry, and what such files still carry
    base_hash: bytes = b""
    #: hashes of the tensors a file coded with / without the context model
    #: and the post-filter needs: {(context, post): hash}. A file carries the
    #: hash of what it uses, so files written before a part was added still
    #: decode (and a file that used a part does not decode without it)
    hashes: dict = dataclasses.field(default_factory=dict)

    def hash_for(self, context: bool, post: bool = False) -> bytes:
        if self.hashes:
            return self.hashes[(bool(context), bool(post))]
        return self.weights_hash if context else (self.base_hash or self.weights_hash)


def content_hash(tensors: dict, config_json: str) -> bytes:
    """First 8 bytes of a SHA-256 over the config and the tensors in name
    order (safetensors does not fix its header's key order, so the file's
    own bytes are not a stable identity)."""
    h = hashlib.sha256(config_json.encode())
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.digest()[:8]


def file_metadata(path) -> dict:
    """The string metadata of a safetensors file (its header only)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        return fh.metadata() or {}


def file_hash(path) -> bytes:
    return content_hash(load_file(str(path)), file_metadata(path).get("config", ""))


#: tensors of the context model (context.py), added to a weights file after training
CONTEXT_PREFIX = "context."


#: tensors of the post-filter (post.py), added to a weights file after training
POST_PREFIX = "post."


def base_tensors(tensors: dict, context: bool = False, post: bool = False) -> dict:
    """The tensors a file coded with(out) the context model and post-filter needs."""
    drop = (() if context else (CONTEXT_PREFIX,)) + (() if post else (POST_PREFIX,))
    return {k: v for k, v in tensors.items() if not k.startswith(drop)} if drop else tensors


def part_hashes(tensors: dict, config_json: str) -> dict:
    """{(context, post): content_hash of what such a file needs}."""
    return {(c, p): content_hash(base_tensors(tensors, c, p), config_json)
            for c in (False, True) for p in (False, True)}


#: tensors built from a trained model rather than trained with it (the
#: context model and the post-filter, trained on their own; the integer
#: h_s, calibrated): stale
#: once the transforms train on, so training from a weights file drops them
DERIVED_PREFIXES = (CONTEXT_PREFIX, "latent.hs_int.", POST_PREFIX)


def trainable_state(state: dict, post: bool = False) -> dict:
    """``state`` without its derived tensors (``post``: the post-filter kept,
    to train on with the transforms: ``aecodec train --post``)."""
    drop = tuple(p for p in DERIVED_PREFIXES if not (post and p == POST_PREFIX))
    return {k: v for k, v in state.items() if not k.startswith(drop)}


def save(model: torch.nn.Module, path, model_id: str, meta: dict | None = None) -> Path:
    """Write ``model`` (coding tables rebuilt first) to ``path``."""
    path = Path(path)
    model.update_tables()
    tensors = stored(model.state_dict())
    metadata = {"config": model.cfg.to_json(), "model_id": model_id,
                "meta": json.dumps(meta or {}, sort_keys=True)}
    return write_safetensors(tensors, path, metadata)


def stored(state: dict) -> dict:
    """Tensors as a weights file stores them: floats as fp16 but those of ``_KEEP_FP32``."""
    out = {}
    for name, t in state.items():
        t = t.detach().cpu().contiguous()
        out[name] = t.half() if t.is_floating_point() and not name.startswith(_KEEP_FP32) else t
    return out


def write_safetensors(tensors: dict, path, metadata: dict) -> Path:
    """Write a safetensors file atomically (temporary file, then rename)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.chmod(0o644)
    tmp.replace(path)
    return path


def _resize_buffers(model: torch.nn.Module, state: dict) -> None:
    """Coding-table buffers change size with training; match the file's."""
    for name, t in state.items():
        mod_name, _, attr = name.rpartition(".")
        try:
            mod = model.get_submodule(mod_name)
        except AttributeError:  # a layer the file has and the model makes when loading (a deeper post-filter)
            continue
        buf = mod._buffers.get(attr)
        if buf is not None and buf.shape != t.shape:
            mod._buffers[attr] = torch.empty_like(t)


#: buffers that are constants of the architecture, not learned (CompressAI's
#: lower bounds and reparametrization pedestals): an fp16 file rounds some of
#: them to 0 (a likelihood bound of 1e-9 among them, which lets -log2 reach
#: infinity in training), so the model keeps its own values
_CONSTANTS = ("lower_bound.bound", ".pedestal", ".scale_bound")


def load_state(model: torch.nn.Module, state: dict) -> torch.nn.Module:
    """``model.load_state_dict(state)`` with the coding-table buffers resized
    and the architecture's constant buffers kept."""
    own = model.state_dict()
    state = {k: (own[k] if k.endswith(_CONSTANTS) and k in own else v) for k, v in state.items()}
    _resize_buffers(model, state)
    model.load_state_dict(state)
    return model


def load(path, arch: str | None = None, model_id: str | None = None) -> LoadedModel:
    """A weights file -> its model; ``arch`` / ``model_id`` read it as
    another architecture under another id (registry entries that share a file)."""
    path = Path(path)
    metadata = file_metadata(path)
    if "config" not in metadata:
        raise ValueError(f"{path}: not an aecodec weights file (no config in its metadata)")
    cfg = ModelConfig.from_json(metadata["config"])
    if arch:
        cfg = dataclasses.replace(cfg, arch=arch)
    state = load_file(str(path))
    hashes = part_hashes(state, metadata["config"])
    net = build(cfg)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    load_state(net, state).eval()
    return LoadedModel(net, model_id or metadata.get("model_id", path.stem), hashes[(True, True)], cfg,
                       json.loads(metadata.get("meta", "{}")), path, hashes[(False, False)], hashes)
