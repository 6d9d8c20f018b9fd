"""Compact resumable checkpoints: a training checkpoint split into
safetensors files that each stay under a size cap (the GPU machine returns
files of at most 16 MiB). Weights are stored in fp16 and Adam's moments in
bf16, so a resume from a compact checkpoint continues the run closely but
not bit for bit (the full checkpoints in the run folder are exact)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

CAP = 15 * 2**20


def _shards(tensors: dict, cap: int):
    shard, size = {}, 0
    for k, t in tensors.items():
        n = t.numel() * t.element_size()
        if shard and size + n > cap:
            yield shard
            shard, size = {}, 0
        shard[k] = t
        size += n
    if shard:
        yield shard


def save_compact(st: dict, folder, cap: int = CAP) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors, meta = {}, {}
    for k, t in st["model"].items():
        tensors[f"model/{k}"] = t.half() if t.is_floating_point() else t
    for name in ("opt", "aux_opt"):
        o = st[name]
        if not o:  # a model without an auxiliary optimizer
            continue
        meta[name] = {"param_groups": o["param_groups"], "steps": {}}
        for pid, s in o["state"].items():
            for k, t in s.items():
                if k == "step":
                    meta[name]["steps"][str(pid)] = float(t)
                else:
                    tensors[f"{name}/{pid}/{k}"] = t.to(torch.bfloat16)
    tensors["rng/torch"] = st["torch_rng"]
    for i, g in enumerate(st.get("gens", [st["gen"]])):
        tensors[f"rng/gen{i}"] = g
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta.update(step=int(st["step"]), model_config=st["model_config"], train_config=st["train_config"])
    paths = []
    for i, shard in enumerate(_shards(tensors, cap)):
        p = folder / f"part-{i:02d}.safetensors"
        save_file(shard, str(p))
        paths.append(p)
    (folder / "state.json").write_text(json.dumps(meta))
    return paths


def load_compact(folder) -> dict:
    """-> a checkpoint dict that :func:`codec.training.loop.train` resumes from."""
    folder = Path(folder)
    meta = json.loads((folder / "state.json").read_text())
    tensors = {}
    for p in sorted(folder.glob("part-*.safetensors")):
        tensors.update(load_file(str(p)))
    st = {"model": {k[6:]: (v.float() if v.is_floating_point() else v)
                    for k, v in tensors.items() if k.startswith("model/")},
          "step": meta["step"], "model_config": meta["model_config"],
          "train_config": meta["train_config"], "torch_rng": tensors["rng/torch"]}
    gens = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng/gen"))]
    st["gens"], st["gen"] = gens, gens[0]
    for name in ("opt", "aux_opt"):
        if name not in meta:
            st[name] = {}
            continue
        state = {}
        for k, v in tensors.items():
            if k.startswith(name + "/"):
                _, pid, key = k.split("/")
                state.setdefault(int(pid), {})[key] = v.float()
        for pid, step in meta[name]["steps"].items():
            state.setdefault(int(pid), {})["step"] = torch.tensor(step)
        st[name] = {"state": state, "param_groups": meta[name]["param_groups"]}
    return st
