"""Anomaly scoring, measured.

    python benchmarks/anomaly.py [--kodak ../shared/data/kodak] [--quick]

1. Defects on Kodak: normal = 256x256 crops of the Kodak images (two per
   image); anomalies = the same crops, each with one synthetic defect --
   a patch pasted from another image, local Gaussian blur, local noise, a
   colour shift, a scratch (fixed seed). Image-level AUROC per score kind
   (codec rate, reconstruction error, rate + lambda*error) and aggregate
   (relative to the image's own median, or the raw maximum), overall and
   per defect; pixel-level AUROC of the heat maps over the defect masks.
2. One-class digits (scikit-learn's bundled 8x8 digits): train on one digit's
   training images, score the test split; AUROC of "other digit" vs "this
   digit", averaged over the ten digits, for the reconstruction error of a
   small autoencoder and the negative ELBO (a rate) of a small VAE.

Writes benchmarks/results/anomaly.json and docs/img/anomaly_*.png.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from sklearn.metrics import roc_auc_score

from codec.heads import anomaly

from inpaint import crops  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

ROOT = Path(__file__).resolve().parents[1]
DEFECTS = ("paste", "blur", "noise", "colour", "scratch")


def add_defect(img, kind, rng, donors):
    """-> (defective copy, mask of changed pixels)."""
    h, w = img.shape[:2]
    out = img.astype(np.float32).copy()
    mask = np.zeros((h, w), bool)
    s = int(rng.integers(32, 65))
    t, l_ = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
    box = (slice(t, t + s), slice(l_, l_ + s))
    if kind == "paste":
        d = donors[int(rng.integers(len(donors)))]
        dt, dl = int(rng.integers(0, d.shape[0] - s)), int(rng.integers(0, d.shape[1] - s))
        out[box] = d[dt:dt + s, dl:dl + s]
        mask[box] = True
    elif kind == "blur":
        blurred = np.asarray(Image.fromarray(img).filter(ImageFilter.GaussianBlur(3)), np.float32)
        out[box] = blurred[box]
        mask[box] = True
    elif kind == "noise":
        out[box] += rng.normal(0, 25, out[box].shape)
        mask[box] = True
    elif kind == "colour":
        out[box] += np.array([40, -20, -30], np.float32)[rng.permutation(3)]
        mask[box] = True
    elif kind == "scratch":
        n = 200
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        ang, length = rng.uniform(0, np.pi), rng.uniform(60, 140)
        ys = np.clip(y0 + np.sin(ang) * np.linspace(-length / 2, length / 2, n), 0, h - 1)
        xs = np.clip(x0 + np.cos(ang) * np.linspace(-length / 2, length / 2, n), 0, w - 1)
        for yy, xx in zip(ys.astype(int), xs.astype(int)):
            mask[max(0, yy - 1):yy + 1, max(0, xx - 1):xx + 1] = True
        out[mask] = 255.0 if rng.uniform() < 0.5 else 0.0
    changed = np.abs(out.clip(0, 255).round() - img).max(2) > 0
    return out.clip(0, 255).round().astype(np.uint8), mask & changed | (mask if kind == "blur" else False)


def kodak_benchmark(kodak: Path, quality: float, window: int, quick: bool, defect_head=None) -> dict:
    paths = sorted(kodak.glob("*.png"))[: 6 if quick else None]
    normals = crops(paths)
    rng = np.random.default_rng(0)
    anomalies = []  # (kind, image, mask)
    for i, img in enumerate(normals):
        donors = [c for j, c in enumerate(normals) if j // 2 != i // 2]
        for kind in DEFECTS:
            a, m = add_defect(img, kind, rng, donors)
            anomalies.append((kind, a, m))
    map_kinds = anomaly.MAP_KINDS + (anomaly.HEAD_KINDS if defect_head is not None else ())
    kinds = [(k, a) for k in map_kinds for a in anomaly.AGGREGATES]

    def win(mk, agg="max"):  # the codec's maps: --window; the defect head: the ones chosen on validation
        return anomaly.head_window(defect_head.meta, agg) if mk in anomaly.HEAD_KINDS else window

    def all_maps(img):
        return anomaly.maps(img, quality=quality, defect_head=defect_head)

    def heat_of(m, mk):  # the segmenter's map is a probability already
        return m[mk] if mk in anomaly.HEAD_KINDS else anomaly.relative_map(m[mk], win(mk))

    t0 = time.perf_counter()
    normal_maps = [all_maps(im) for im in normals]
    anomaly_maps = [all_maps(im) for _, im, _ in anomalies]
    secs = time.perf_counter() - t0
    res = {"normals": len(normals), "anomalies": len(anomalies), "quality": quality, "window": window,
           "defect_scoring": ({"aggregate": defect_head.meta.get("aggregate", "max"),
                               "window": anomaly.head_window(defect_head.meta, defect_head.meta.get("aggregate", "max"))}
                              if defect_head is not None else None),
           "seconds_per_image": secs / (len(normals) + len(anomalies)), "image_auroc": {}, "pixel_auroc": {}}
    for mk, agg in kinds:
        sn = [anomaly.image_score(m[mk], agg, win(mk, agg)) for m in normal_maps]
        sa = [anomaly.image_score(m[mk], agg, win(mk, agg)) for m in anomaly_maps]
        row = {"all": roc_auc_score([0] * len(sn) + [1] * len(sa), sn + sa)}
        for kind in DEFECTS:
            s_k = [s for s, (k, _, _) in zip(sa, anomalies) if k == kind]
            row[kind] = roc_auc_score([0] * len(sn) + [1] * len(s_k), sn + s_k)
        res["image_auroc"][f"{mk}-{agg}"] = row
    for mk in map_kinds:
        row = {}
        for kind in DEFECTS:
            labels, values = [], []
            for m, (k, _, mask) in zip(anomaly_maps, anomalies):
                if k == kind:
                    heat = heat_of(m, mk)
                    labels.append(mask.ravel())
                    values.append(heat.ravel())
            row[kind] = roc_auc_score(np.concatenate(labels), np.concatenate(values))
        row["mean"] = float(np.mean(list(row.values())))
        res["pixel_auroc"][mk] = row
    # a picture: one crop per defect kind, the defective image over its heat map
    tiles = []
    for kind in DEFECTS:
        i = next(j for j, (k, _, _) in enumerate(anomalies) if k == kind)
        _, img, _ = anomalies[i]
        best = "defect" if defect_head is not None else "rd"
        heat = heat_of(anomaly_maps[i], best)
        tiles.append(np.concatenate([img, anomaly.heat_overlay(img, heat, 1.0 if best == "defect" else None)], 0))
    pic = np.concatenate([np.pad(t, ((0, 0), (0, 4), (0, 0)), constant_values=255) for t in tiles], 1)
    out = ROOT / "docs/img/anomaly_defects.png"
    Image.fromarray(pic).save(out)
    res["picture"] = str(out.relative_to(ROOT))
    return res


def digits_one_class(steps: int) -> dict:
    """Train on one digit, score the test split; AUROC averaged over digits."""
    from codec.small.data import digits, mlp
    from codec.small.generative import GenConfig, train_vae

    xtr, ytr, xte, yte = digits()
    rows = {}
    for d in range(10):
        x = xtr[torch.from_numpy(ytr == d)]
        torch.manual_seed(d)
        ae = torch.nn.Sequential(mlp(64, 128, 8), torch.nn.ReLU(), mlp(8, 128, 64), torch.nn.Sigmoid())
        opt = torch.optim.Adam(ae.parameters(), 1e-3)
        gen = torch.Generator().manual_seed(d)
        for _ in range(steps):
            xb = x[torch.randint(len(x), (64,), generator=gen)]
            loss = (ae(xb) - xb).pow(2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        vae = train_vae(x, GenConfig(dim=4, hidden=128, steps=steps, batch=64, seed=d))
        with torch.no_grad():
            err = (ae(xte) - xte).pow(2).sum(1).numpy()
            g = torch.Generator().manual_seed(0)
            elbo = sum(sum(vae.neg_elbo(xte, g)) for _ in range(8)).numpy() / 8
        other = (yte != d).astype(int)
        rows[str(d)] = {"ae_error": roc_auc_score(other, err), "vae_neg_elbo": roc_auc_score(other, elbo)}
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ("ae_error", "vae_neg_elbo")}
    return {"per_digit": rows, "mean": mean, "steps": steps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--quality", type=float, default=4)
    ap.add_argument("--window", type=int, default=32)
    ap.add_argument("--quick", action="store_true", help="6 Kodak images, short digit training")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/anomaly.json"))
    ap.add_argument("--defect-weights", default=None,
                    help="defect segmenter weights (default: the shipped codec/weights/defect.safetensors, if any)")
    ap.add_argument("--no-digits", action="store_true",
                    help="skip the one-class digits part (its figures in --out, if any, are kept)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from codec.heads import defect
    head = None
    if args.defect_weights or (ROOT / "codec/weights/defect.safetensors").exists():
        head = defect.load(args.defect_weights)
    res = {"kodak_defects": kodak_benchmark(Path(args.kodak), args.quality, args.window, args.quick, head)}
    if not args.no_digits:
        res["digits_one_class"] = digits_one_class(300 if args.quick else 2000)
    elif Path(args.out).exists():  # keep the digits figures of the last run, marked as such
        old = json.loads(Path(args.out).read_text()).get("digits_one_class")
        if old:
            res["digits_one_class"] = dict(old, kept_from_an_earlier_run=True)
    k = res["kodak_defects"]
    print(f"Kodak defects: {k['normals']} normal, {k['anomalies']} defective crops, quality {args.quality}")
    print(f"{'score':<16}" + "".join(f"{c:>9}" for c in ("all",) + DEFECTS))
    for name, row in k["image_auroc"].items():
        print(f"{name:<16}" + "".join(f"{row[c]:9.3f}" for c in ("all",) + DEFECTS))
    print("pixel AUROC (relative heat map)")
    for name, row in k["pixel_auroc"].items():
        print(f"{name:<16}" + "".join(f"{row[c]:9.3f}" for c in DEFECTS) + f"  mean {row['mean']:.3f}")
    if "digits_one_class" in res:
        d = res["digits_one_class"]["mean"]
        print(f"digits one-class AUROC (mean of 10): AE error {d['ae_error']:.3f}, VAE -ELBO {d['vae_neg_elbo']:.3f}")
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
