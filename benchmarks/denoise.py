"""Denoising, measured on Kodak.

    python benchmarks/denoise.py [--kodak DIR] [--images N] [--bm3d-images 4]

Kodak images with additive Gaussian noise of sigma = 15, 25, 50 (0..255
scale; numpy seed 0 per image and sigma; values clipped to 0..255 and
rounded, as a real 8-bit noisy file would be). PSNR against the clean
images for: the noisy input, the restoration autoencoder (told sigma, and
with sigma estimated), scikit-image's non-local means, wavelet (BayesShrink)
and total-variation denoisers, and CBM3D (the ``bm3d`` package) on the first
``--bm3d-images`` images, where ours is also reported on that subset.
``--reuse`` keeps the classical figures of an earlier run (per image), so a
new restoration model is measured in minutes.

Denoise-and-compress at sigma = 25: the default codec at quality 4 on the
noisy image, and on the autoencoder's clean estimate (``aecodec compress
--denoise``): bpp and PSNR against the clean original.

Writes benchmarks/results/denoise.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from codec import io as cio
from codec.heads import restore

ROOT = Path(__file__).resolve().parents[1]


def noisy_copy(clean: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(clean + rng.normal(0, sigma, clean.shape), 0, 255).round().astype(np.uint8)


def classical(name: str, noisy: np.ndarray, sigma: float) -> np.ndarray:
    from skimage import restoration as r
    x = noisy.astype(np.float64) / 255
    s = sigma / 255
    if name == "nlm":
        out = r.denoise_nl_means(x, h=0.8 * s, sigma=s, patch_size=5, patch_distance=6,
                                 fast_mode=True, channel_axis=-1)
    elif name == "wavelet":
        out = r.denoise_wavelet(x, sigma=s, method="BayesShrink", mode="soft", channel_axis=-1,
                                convert2ycbcr=True, rescale_sigma=True)
    elif name == "tv":
        out = r.denoise_tv_chambolle(x, weight=0.8 * s, channel_axis=-1)
    elif name == "cbm3d":
        import bm3d
        out = bm3d.bm3d_rgb(x, s)
    else:
        raise ValueError(name)
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--bm3d-images", type=int, default=4)
    ap.add_argument("--sigmas", default="15,25,50")
    ap.add_argument("--weights", default=None, help="restoration weights (default: shipped)")
    ap.add_argument("--no-classical", action="store_true")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the classical denoisers' figures already in --out (ours is always rerun)")
    ap.add_argument("--no-compress", action="store_true", help="skip the denoise-and-compress figures")
    ap.add_argument("--auto-at", default="25", help="sigmas at which to also run ours with estimated sigma")
    ap.add_argument("--ensemble-at", default="25",
                    help="sigmas at which to also run ours as a self-ensemble of 8 (restore.run(ensemble=8))")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/denoise.json"))
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    paths = sorted(Path(args.kodak).glob("*.png"))[:args.images]
    net = restore.load(args.weights)
    methods = ["noisy", "ours", "ours_auto", "ours_x8"] + ([] if args.no_classical else ["nlm", "wavelet", "tv"])
    res = {"images": len(paths), "sigmas": {}, "weights_meta": getattr(net, "meta", {})}
    try:
        import bm3d  # noqa: F401
        have_bm3d = not args.no_classical and args.bm3d_images > 0
    except ImportError:
        have_bm3d = False
    old = json.loads(Path(args.out).read_text()) if args.reuse and Path(args.out).exists() else {}
    ours = {"ours", "ours_auto", "ours_x8"}
    only_at = {"ours_auto": args.auto_at, "ours_x8": args.ensemble_at}
    for sigma in (float(s) for s in args.sigmas.split(",")):
        key = str(int(sigma))
        prev = old.get("sigmas", {}).get(key, {})
        reuse = {m for m in methods if m not in ours and "per_image" in prev.get(m, {})
                 and len(prev[m]["per_image"]) == len(paths)}
        run_methods = [m for m in methods
                       if m not in only_at or key in {str(int(float(a))) for a in only_at[m].split(",") if a}]
        scores = {m: list(prev[m]["per_image"]) if m in reuse else [] for m in run_methods}
        secs = {m: prev[m]["seconds_per_image"] * len(paths) if m in reuse else 0.0 for m in run_methods}
        bm3d_prev = prev.get("subset", {}).get("cbm3d_per_image")
        cbm3d = list(bm3d_prev) if bm3d_prev and len(bm3d_prev) == min(args.bm3d_images, len(paths)) else []
        est = []
        for i, p in enumerate(paths):
            clean = np.asarray(Image.open(p).convert("RGB"))
            noisy = noisy_copy(clean, sigma, seed=1000 * int(sigma) + i)
            for m in run_methods:
                if m in reuse:
                    continue
                t0 = time.perf_counter()
                if m == "noisy":
                    out = noisy
                elif m == "ours":
                    out = restore.run(net, noisy, np.ones(clean.shape[:2], bool), sigma)
                elif m == "ours_auto":
                    s_hat = restore.estimate_sigma(noisy)
                    est.append(s_hat)
                    out = restore.run(net, noisy, np.ones(clean.shape[:2], bool), s_hat)
                elif m == "ours_x8":
                    out = restore.run(net, noisy, np.ones(clean.shape[:2], bool), sigma, ensemble=8)
                else:
                    out = classical(m, noisy, sigma)
                secs[m] += time.perf_counter() - t0
                scores[m].append(cio.psnr(out, clean))
            if have_bm3d and i < args.bm3d_images and len(cbm3d) <= i:
                cbm3d.append(cio.psnr(classical("cbm3d", noisy, sigma), clean))
        row = {m: {"psnr": float(np.mean(v)), "seconds_per_image": secs[m] / len(paths), "per_image": v}
               for m, v in scores.items()}
        row["estimated_sigma_mean"] = float(np.mean(est)) if est else prev.get("estimated_sigma_mean")
        if row["estimated_sigma_mean"] is None:
            row["estimated_sigma_mean"] = float(np.mean([restore.estimate_sigma(noisy_copy(
                np.asarray(Image.open(p).convert("RGB")), sigma, 1000 * int(sigma) + i)) for i, p in enumerate(paths)]))
        if cbm3d:
            row["subset"] = {"images": len(cbm3d), "cbm3d_psnr": float(np.mean(cbm3d)),
                             "ours_psnr": float(np.mean(scores["ours"][:len(cbm3d)])), "cbm3d_per_image": cbm3d}
        res["sigmas"][key] = row
        line = "  ".join(f"{m} {row[m]['psnr']:.2f}" for m in run_methods)
        extra = (f"  | first {row['subset']['images']}: cbm3d {row['subset']['cbm3d_psnr']:.2f} "
                 f"ours {row['subset']['ours_psnr']:.2f}") if "subset" in row else ""
        print(f"sigma {sigma:g}: {line}{extra}  (estimated sigma {row['estimated_sigma_mean']:.1f})", flush=True)

    if args.no_compress:
        Path(args.out).write_text(json.dumps(res, indent=1))
        return
    # denoise-and-compress at sigma 25
    from codec.pipeline import encode
    plain, den = [], []
    for i, p in enumerate(paths):
        clean = np.asarray(Image.open(p).convert("RGB"))
        noisy = noisy_copy(clean, 25.0, seed=25000 + i)
        a = encode(noisy, quality=4)
        b = encode(restore.run(net, noisy, np.ones(clean.shape[:2], bool), restore.estimate_sigma(noisy)),
                   quality=4)
        plain.append((a.bpp, cio.psnr(a.picture.rgb, clean)))
        den.append((b.bpp, cio.psnr(b.picture.rgb, clean)))
    pb, pp = np.mean(plain, 0)
    db, dp = np.mean(den, 0)
    res["denoise_and_compress_sigma25_q4"] = {
        "noisy": {"bpp": float(pb), "psnr_vs_clean": float(pp)},
        "denoised": {"bpp": float(db), "psnr_vs_clean": float(dp)},
        "bpp_saved_percent": float(100 * (1 - db / pb))}
    print(f"compress at q4, sigma 25: noisy {pb:.3f} bpp {pp:.2f} dB vs clean; "
          f"--denoise {db:.3f} bpp {dp:.2f} dB ({100 * (1 - db / pb):.1f}% fewer bits)")
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
