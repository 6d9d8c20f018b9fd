"""Encoders as dimension reduction, against PCA at the same dimension.

    python benchmarks/embeddings.py [--kodak DIR] [--train DIR]

64x64 patches: PCA is fitted on patches of the training images
(../shared/data/train, ``--fit`` patches at random places, seed 0) and
every method is measured on a fixed grid of Kodak patches (never trained
on). Reconstruction PSNR at equal dimension k:

* the codec's analysis transform: y = g_a(x) (M x 4 x 4 numbers per patch,
  unquantized, quality 8 gains) decoded by g_s; PCA with the same k;
* the VAE's posterior mean (its M x 4 x 4 numbers) decoded by its decoder;
  PCA with the same k;
* PCA's curve at a few more k, for context.

Writes benchmarks/results/embeddings.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
P = 64


def kodak_patches(folder: Path, per_image: int = 16) -> np.ndarray:
    out = []
    for p in sorted(folder.glob("*.png")):
        a = np.asarray(Image.open(p).convert("RGB"))
        h, w = a.shape[:2]
        for i in range(per_image):
            r, c = divmod(i, 4)
            t, l_ = (h - P) * r // 3, (w - P) * c // 3
            out.append(a[t:t + P, l_:l_ + P])
    return np.stack(out)


def train_patches(folder: Path, count: int, seed: int = 0) -> np.ndarray:
    from codec.training.data import list_images
    rng = np.random.default_rng(seed)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in list_images([folder])]
    out = []
    for _ in range(count):
        a = images[rng.integers(len(images))]
        t, l_ = rng.integers(0, a.shape[0] - P), rng.integers(0, a.shape[1] - P)
        out.append(a[t:t + P, l_:l_ + P])
    return np.stack(out)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = ((a.astype(np.float64) - b) ** 2).mean()
    return float(10 * np.log10(255.0 ** 2 / mse))


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


class PCA:
    def __init__(self, data: np.ndarray) -> None:
        x = data.reshape(len(data), -1).astype(np.float64) / 255
        self.mean = x.mean(0)
        _, _, vt = np.linalg.svd(x - self.mean, full_matrices=False)
        self.vt = vt

    def reconstruct(self, data: np.ndarray, k: int) -> np.ndarray:
        x = data.reshape(len(data), -1).astype(np.float64) / 255 - self.mean
        v = self.vt[:k]
        rec = (x @ v.T) @ v + self.mean
        return (np.clip(rec, 0, 1) * 255).round().astype(np.uint8).reshape(data.shape)


@torch.no_grad()
def codec_roundtrip(patches: np.ndarray, quality: float = 8.0) -> tuple[np.ndarray, int]:
    from codec.pipeline import load_model
    net = load_model().net
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255
    g = net.gains(torch.full((len(x),), quality))
    y = net.g_a(x) * g["y"]
    rec = net.g_s(y * g["y_inv"])
    return to_uint8(rec), int(y[0].numel())


@torch.no_grad()
def vae_roundtrip(patches: np.ndarray) -> tuple[np.ndarray, int]:
    from codec.heads import vae
    net = vae.load()
    x = torch.from_numpy(patches).permute(0, 3, 1, 2).float() / 255
    mu = net.posterior(x)[0]
    return to_uint8(net.decode(mu)[0]), int(mu[0].numel())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--train", default=str(ROOT.parent / "shared/data/train"))
    ap.add_argument("--fit", type=int, default=6000, help="training patches for PCA")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/embeddings.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    test = kodak_patches(Path(args.kodak))
    pca = PCA(train_patches(Path(args.train), args.fit))
    res = {"patch": P, "kodak_patches": len(test), "pca_fit_patches": args.fit, "pairs": {}, "pca_curve": {}}
    for name, fn in (("codec g_a (q8, unquantized)", codec_roundtrip), ("vae posterior mean", vae_roundtrip)):
        try:
            rec, k = fn(test)
        except FileNotFoundError as e:
            print(f"{name}: skipped ({e})")
            continue
        if k > min(args.fit, P * P * 3):
            print(f"{name}: k={k} exceeds what PCA can fit from {args.fit} patches; skipped")
            continue
        res["pairs"][name] = {"k": k, "autoencoder_psnr": psnr(rec, test),
                              "pca_psnr": psnr(pca.reconstruct(test, k), test)}
        r = res["pairs"][name]
        print(f"{name:<30} k={k:5d}: autoencoder {r['autoencoder_psnr']:.2f} dB, PCA {r['pca_psnr']:.2f} dB")
    for k in (16, 64, 256, 512, 1024, 2560):
        if k <= min(args.fit, P * P * 3):
            res["pca_curve"][str(k)] = psnr(pca.reconstruct(test, k), test)
    print("PCA: " + ", ".join(f"k={k} {v:.2f} dB" for k, v in res["pca_curve"].items()))
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
