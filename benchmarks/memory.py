"""Peak memory (RSS) and time to encode and decode large images.

    python benchmarks/memory.py [--sizes 1,4,16,64] [--model ID|PATH] [--tile 1024]

Test images are mosaics of the training photos (../shared/data/train/photos),
each photo kept at its own resolution, tiled until the image reaches the
size in megapixels. Encode and decode each run in a fresh process, which
reports its own peak RSS (getrusage), so the figures include torch itself.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT.parent / "shared/data/train/photos"

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from codec import pipeline
mode, src, dst, model, tile = sys.argv[1:6]
lm = pipeline.load_model(model or None)
t0 = time.perf_counter()
if mode == "encode":
    res = pipeline.encode(src, 4, lm, max_pixels=None, tile=int(tile))
    open(dst, "wb").write(res.data)
    extra = {"bytes": len(res.data), "bpp": res.bpp, "psnr": res.psnr}
else:
    pic = pipeline.decode(open(src, "rb").read(), lm, max_pixels=None)
    extra = {"shape": list(pic.rgb.shape)}
dt = time.perf_counter() - t0
print(json.dumps(dict(seconds=dt, peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, **extra)))
"""


def mosaic(megapixels: float, out: Path) -> tuple[int, int]:
    photos = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(PHOTOS.glob("*.png"))[:16]]
    ph, pw = min(p.shape[0] for p in photos), min(p.shape[1] for p in photos)
    side = math.sqrt(megapixels * 1e6 * pw / ph)
    w, h = int(side), int(megapixels * 1e6 / int(side))
    img = np.empty((h, w, 3), np.uint8)
    k = 0
    for t in range(0, h, ph):
        for l in range(0, w, pw):
            p = photos[k % len(photos)]
            k += 1
            img[t:t + ph, l:l + pw] = p[:min(ph, h - t), :min(pw, w - l)]
    Image.fromarray(img).save(out, compress_level=1)
    return w, h


def run(mode, src, dst, model, tile) -> dict:
    p = subprocess.run([sys.executable, "-c", CHILD, mode, str(src), str(dst), model or "", str(tile)],
                       capture_output=True, text=True, cwd=ROOT)
    if p.returncode:
        raise SystemExit(p.stderr[-2000:])
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1,4,16,64")
    ap.add_argument("--model", default="")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/memory.json"))
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mp in [float(s) for s in a.sizes.split(",")]:
            src, aec = Path(tmp) / f"{mp}.png", Path(tmp) / f"{mp}.aec"
            w, h = mosaic(mp, src)
            enc = run("encode", src, aec, a.model, a.tile)
            dec = run("decode", aec, None, a.model, a.tile)
            row = {"megapixels": round(w * h / 1e6, 2), "width": w, "height": h, "tile": a.tile,
                   "encode_s": round(enc["seconds"], 2), "encode_peak_rss_mb": round(enc["peak_rss_mb"]),
                   "decode_s": round(dec["seconds"], 2), "decode_peak_rss_mb": round(dec["peak_rss_mb"]),
                   "bpp": round(enc["bpp"], 4), "psnr": round(enc["psnr"], 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows}, indent=1))


if __name__ == "__main__":
    main()
