"""Training speed of the default architecture: steps/s and megapixels/s.

    python benchmarks/train_speed.py [--batch 16] [--crop 256] [--steps 5] [--cuda-only] [--json out.json]

Runs the real training step (codec.training.loop.train_step) on random
crops: on CPU with 1 and 2 threads, in float32 and, where the CPU has native
bfloat16 (AVX512-BF16 or AMX), in bf16 autocast with channels-last
(``aecodec train --bf16``); and on CUDA (bf16 autocast, channels-last, fused
Adam; --compile adds torch.compile) when present.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from codec.models import ModelConfig, build
from codec.training.loop import TrainConfig, _optimizers, train_step


def measure(device: str, threads: int, batch: int, crop: int, steps: int, compile_: bool, cfg,
            bf16: bool = False) -> dict:
    torch.set_num_threads(threads)
    model = build(cfg).to(device)
    bf16 = bf16 or device == "cuda"
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    opt, aux_opt = _optimizers(model, TrainConfig(device=device))
    fwd = torch.compile(model) if compile_ else model
    x = torch.rand(batch, 3, crop, crop, device=device)
    q = torch.randint(1, cfg.levels + 1, (batch,), device=device).float()
    for _ in range(2):  # warm-up (and compilation)
        train_step(model, fwd, opt, aux_opt, x, q, 1.0, bf16=bf16)
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        train_step(model, fwd, opt, aux_opt, x, q, 1.0, bf16=bf16)
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    return {"device": device, "threads": threads, "batch": batch, "crop": crop, "compile": compile_, "bf16": bf16,
            "steps_per_s": round(1 / dt, 3), "megapixels_per_s": round(batch * crop * crop / dt / 1e6, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--gpu-batch", type=int, default=16)
    ap.add_argument("--gpu-crop", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--N", type=int, default=96)
    ap.add_argument("--M", type=int, default=160)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--cuda-only", action="store_true", help="Skip the CPU rows.")
    ap.add_argument("--json", default="benchmarks/results/train_speed.json")
    a = ap.parse_args()
    cfg = ModelConfig(N=a.N, M=a.M)
    from codec.tiling import native_bf16
    cpu_modes = (False, True) if native_bf16() else (False,)  # emulated bf16: slower, not timed
    rows = [] if a.cuda_only else [measure("cpu", t, a.batch, a.crop, a.steps, False, cfg, bf16)
                                   for bf16 in cpu_modes for t in (1, 2)]
    if torch.cuda.is_available():
        rows.append(measure("cuda", 1, a.gpu_batch, a.gpu_crop, a.steps * 10, False, cfg))
        if a.compile:
            rows.append(measure("cuda", 1, a.gpu_batch, a.gpu_crop, a.steps * 10, True, cfg))
    print(f"{'device':6} {'thr':>3} {'batch':>5} {'crop':>4} {'compile':>7} {'bf16':>5} {'steps/s':>8} {'MP/s':>7}")
    for r in rows:
        print(f"{r['device']:6} {r['threads']:>3} {r['batch']:>5} {r['crop']:>4} {str(r['compile']):>7} "
              f"{str(r['bf16']):>5} "
              f"{r['steps_per_s']:>8.3f} {r['megapixels_per_s']:>7.3f}")
    from pathlib import Path
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    from kodak_eval.run import machine
    out.write_text(json.dumps({"machine": machine(),
                               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                               "model": json.loads(cfg.to_json()), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
