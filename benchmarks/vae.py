"""The VAE head, measured: negative ELBO on Kodak crops, samples, interpolation.

    python benchmarks/vae.py [--kodak DIR] [--samples 4]

Negative ELBO in bits per dimension (discretized-logistic likelihood, KL to
N(0, I); an upper bound on the code length a bits-back coder would need)
on two 256x256 crops of every Kodak image, averaged over ``--samples``
posterior draws, with its split into reconstruction and KL terms; the
reconstruction PSNR of the posterior mean. Writes a 4x4 sample grid (seed
0) and an interpolation strip (kodim04 -> kodim23) to docs/img/ and the
figures to benchmarks/results/vae.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec.heads import vae

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--weights", default=None)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/vae.json"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    import sys
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from inpaint import crops

    net = vae.load(args.weights)
    paths = sorted(Path(args.kodak).glob("*.png"))
    x = torch.from_numpy(np.stack(crops(paths))).permute(0, 3, 1, 2).float() / 255
    torch.manual_seed(0)
    nll = kl = 0.0
    with torch.no_grad():
        for _ in range(args.samples):
            for xb in x.split(8):
                out = net(xb)
                nll += float(out["nll_bpd"].sum())
                kl += float(out["kl_bpd"].sum())
        n = args.samples * len(x)
        mean = torch.cat([net.decode(net.posterior(xb)[0])[0] for xb in x.split(8)])
        mse = float((mean - x).pow(2).mean())
    res = {"crops": len(x), "posterior_samples": args.samples, "neg_elbo_bpd": (nll + kl) / n,
           "reconstruction_bpd": nll / n, "kl_bpd": kl / n,
           "posterior_mean_psnr": float(-10 * np.log10(mse)),
           "latent_dims_per_pixel": net.cfg.M / 256, "weights_meta": getattr(net, "meta", {})}
    import io
    png = 0
    for c in crops(paths):
        buf = io.BytesIO()
        Image.fromarray(c).save(buf, "PNG", optimize=True)
        png += len(buf.getvalue())
    res["png_bits_per_dim"] = 8 * png / x.numel()  # the same crops, lossless, for scale
    grid = vae.sample_grid(16, seed=0, size=64, weights=args.weights)
    strip = vae.interpolate(Path(args.kodak) / "kodim04.png", Path(args.kodak) / "kodim23.png", steps=8,
                            size=128, weights=args.weights)
    for name, img in (("vae_samples.png", grid), ("vae_interpolation.png", strip)):
        Image.fromarray(img).save(ROOT / "docs/img" / name)
    res["pictures"] = ["docs/img/vae_samples.png", "docs/img/vae_interpolation.png"]
    print(f"Kodak {len(x)} crops 256x256: negative ELBO {res['neg_elbo_bpd']:.3f} bits/dim "
          f"(reconstruction {res['reconstruction_bpd']:.3f} + KL {res['kl_bpd']:.3f}); "
          f"posterior-mean PSNR {res['posterior_mean_psnr']:.2f} dB; optimized PNG {res['png_bits_per_dim']:.2f} bits/dim")
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
