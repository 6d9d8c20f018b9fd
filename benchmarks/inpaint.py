"""Masked-autoencoder inpainting, measured on Kodak crops.

    python benchmarks/inpaint.py [--kodak DIR] [--crops 2]

Centre-left and centre-right 256x256 crops of each Kodak image; in each crop
four square holes of 16x16 (then, separately, 32x32) at random places
(numpy seed 0). PSNR inside the holes only, for: the restoration
autoencoder (trained with masking noise, BERT-style), OpenCV's Telea and
Navier-Stokes inpainting, scikit-image's biharmonic inpainting, and mean
fill (each hole filled with the mean colour of its border ring).

Writes benchmarks/results/inpaint.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from codec.heads import restore

ROOT = Path(__file__).resolve().parents[1]


def crops(paths, size=256, per_image=2):
    out = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = a.shape[:2]
        for k in range(per_image):
            left = (w - size) * (k + 1) // (per_image + 1)
            out.append(a[(h - size) // 2:(h - size) // 2 + size, left:left + size].copy())
    return out


def holes(shape, side, count, rng) -> np.ndarray:
    m = np.zeros(shape, bool)
    for _ in range(count):
        t, l_ = rng.integers(0, shape[0] - side), rng.integers(0, shape[1] - side)
        m[t:t + side, l_:l_ + side] = True
    return m


def mean_fill(img, hole):
    from scipy import ndimage
    out = img.copy()
    labels, n = ndimage.label(hole)
    for k in range(1, n + 1):
        region = labels == k
        ring = ndimage.binary_dilation(region, iterations=2) & ~hole
        out[region] = img[ring].mean(0).round().astype(np.uint8)
    return out


METHODS = ("ours", "telea", "ns", "biharmonic", "mean")


def fill(method, img, hole, net):
    if method == "ours":
        return restore.run(net, img, ~hole, 0.0)
    if method == "mean":
        return mean_fill(img, hole)
    if method in ("telea", "ns"):
        import cv2
        flag = cv2.INPAINT_TELEA if method == "telea" else cv2.INPAINT_NS
        return cv2.inpaint(np.ascontiguousarray(img), hole.astype(np.uint8), 5, flag)
    if method == "biharmonic":
        from skimage.restoration import inpaint_biharmonic
        out = inpaint_biharmonic(img.astype(np.float64) / 255, hole, channel_axis=-1)
        return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
    raise ValueError(method)


def hole_psnr(a, b, hole) -> float:
    d = a[hole].astype(np.float64) - b[hole]
    return float(10 * np.log10(255.0 ** 2 / max((d ** 2).mean(), 1e-12)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--crops", type=int, default=2, help="crops per image")
    ap.add_argument("--holes", type=int, default=4, help="holes per crop")
    ap.add_argument("--weights", default=None, help="restoration weights (default: shipped)")
    ap.add_argument("--methods", default=",".join(METHODS),
                    help="methods to run; figures of other methods already in --out are kept")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/inpaint.json"))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    methods = [m for m in args.methods.split(",") if m]
    if set(methods) - set(METHODS):
        ap.error(f"unknown method(s) {', '.join(sorted(set(methods) - set(METHODS)))}; choose from {', '.join(METHODS)}")
    net = restore.load(args.weights) if "ours" in methods else None
    images = crops(sorted(Path(args.kodak).glob("*.png"))[:args.images], per_image=args.crops)
    old = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    same = old.get("crops") == len(images) and old.get("holes_per_crop") == args.holes
    res = {"crops": len(images), "holes_per_crop": args.holes,
           "weights_meta": getattr(net, "meta", {}) if net else old.get("weights_meta", {}),
           "sides": old.get("sides", {}) if same else {}}
    for side in (16, 32):
        rng = np.random.default_rng(0)
        masks = [holes(im.shape[:2], side, args.holes, rng) for im in images]
        row = res["sides"].get(str(side), {})
        for m in methods:
            t0 = time.perf_counter()
            vals = [hole_psnr(fill(m, im, hole, net), im, hole) for im, hole in zip(images, masks)]
            row[m] = {"psnr": float(np.mean(vals)), "seconds_per_crop": (time.perf_counter() - t0) / len(images)}
        res["sides"][str(side)] = row
        print(f"{side}x{side} holes: " + "  ".join(f"{m} {v['psnr']:.2f} dB" for m, v in row.items()), flush=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
