"""Compare weights files on held-out training images (never Kodak).

    python benchmarks/validate.py BASE.safetensors|ID OTHER.safetensors|ID ... [--every 2] [--qualities 1,2,4,6]

Before a retrained or refitted file replaces a shipped one, it should beat it
on images no training step saw and that are not the evaluation set: the
validation split that training holds out (``training.data.split``: every
20th image of the training folders), every ``--every``-th of them. Each file
codes every image at every quality (float32 synthesis, so the figures do not
depend on the CPU's bf16 support); per quality the mean bpp and PSNR, then,
for each file after the first, its rate at the base's PSNR (the base's
log-rate interpolated monotonically in PSNR; % against the base, negative:
fewer bits) and the BD-rate against the base. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy.interpolate import PchipInterpolator

from codec import io, pipeline
from codec.training.data import list_images, split
from kodak_eval.bdrate import bd_rate
from kodak_eval.run import psnr

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared/data/train"


def curve(model, paths, qualities, effort: int = 0) -> dict:
    """Mean bpp and PSNR per quality of ``model`` on ``paths``."""
    lm = pipeline.load_model(model)
    qs = qualities or list(range(math.ceil(lm.net.min_quality), lm.config.levels + 1))
    pics = [io.load(str(p)) for p in paths]
    bpp, db = [], []
    t0 = time.perf_counter()
    for q in qs:
        rows = []
        for pic in pics:
            r = pipeline.encode(pic, float(q), lm, precision="fp32", effort=effort)
            rows.append((8 * len(r.data) / (pic.width * pic.height), psnr(r.picture.rgb, pic.rgb)))
        bpp.append(float(np.mean([b for b, _ in rows])))
        db.append(float(np.mean([d for _, d in rows])))
    return {"model": str(model), "weights": lm.weights_hash.hex(), "qualities": [float(q) for q in qs],
            "bpp": bpp, "psnr": db, "seconds": time.perf_counter() - t0}


def rate_at_equal_psnr(base: dict, other: dict) -> list:
    """% rate of each of ``other``'s points against ``base``'s curve at the
    same PSNR (None outside the base's PSNR range)."""
    order = np.argsort(base["psnr"])
    p = np.asarray(base["psnr"])[order]
    f = PchipInterpolator(p, np.log(np.asarray(base["bpp"])[order]))
    return [None if not p[0] <= d <= p[-1] else float((b / math.exp(f(d)) - 1) * 100)
            for b, d in zip(other["bpp"], other["psnr"])]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("models", nargs="+", help="weights files or model ids; the first is the base")
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="training folder whose validation split is used")
    ap.add_argument("--every", type=int, default=2, help="every n-th image of the validation split")
    ap.add_argument("--qualities", help="comma-separated (default: every integer quality of each model)")
    ap.add_argument("--effort", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/validate.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    paths = split(list_images([args.data]))[1][::args.every]
    qs = [float(q) for q in args.qualities.split(",")] if args.qualities else None
    curves = []
    for m in args.models:
        c = curve(m, paths, qs, args.effort)
        curves.append(c)
        print(f"{m} (weights {c['weights']}, {c['seconds']:.0f} s)")
        for q, b, d in zip(c["qualities"], c["bpp"], c["psnr"]):
            print(f"  q{q:g}: {b:.4f} bpp  {d:.3f} dB")
    base = curves[0]
    for c in curves[1:]:
        c["rate_vs_base_pct"] = rate_at_equal_psnr(base, c)
        c["bd_rate_vs_base_pct"] = bd_rate(base["bpp"], base["psnr"], c["bpp"], c["psnr"])
        rel = ", ".join(f"q{q:g} {'—' if r is None else f'{r:+.1f} %'}"
                        for q, r in zip(c["qualities"], c["rate_vs_base_pct"]))
        bd = c["bd_rate_vs_base_pct"]
        print(f"{c['model']} vs {base['model']}: rate at equal PSNR {rel}; "
              f"BD-rate {'—' if bd is None else f'{bd:+.2f} %'}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"images": [str(p) for p in paths], "effort": args.effort, "curves": curves}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
