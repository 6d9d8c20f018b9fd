"""What a weights file's context model saves, as its float network and as
the integer layers the coder runs (codec/integer.py), on held-out training
images (never Kodak).

    python benchmarks/context_precision.py [WEIGHTS ...] [--images 6] [--qualities -1,1,4,8] [--json OUT]

Each image (cropped to a multiple of 64) is analysed once; at each quality
y passes through the context model's passes in coding order, each pass's
elements rounded around their corrected means and costed under their
rounded scale indexes (``context.symbol_bits``): once with the float
network's corrections, once with the integer layers'. Printed, per file and
quality: the y bits against the hyperprior alone (negative: the context
model saves). The gap between the two columns is what the integer
quantization costs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from codec import weights
from codec.context import PASSES, pass_map, symbol_bits
from codec.priors import LEVELS
from codec.training.context import hyper
from codec.training.data import list_images, load_uint8, split

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def y_bits(net, x: torch.Tensor, quality: float) -> dict:
    """y bits of one image: hyperprior alone, float context network, integer layers."""
    ctx = net.context
    y, means, t = (v.double() for v in hyper(net, net.g_a(x), torch.tensor([quality])))
    passes = pass_map(*y.shape[1:])
    out = {"hyperprior": float(symbol_bits(torch.round(y - means), t).sum())}
    run = ctx.exact_passes(means, t)
    for mode in ("float", "integer"):
        y_hat, bits = torch.zeros_like(y), 0.0
        for p in range(PASSES):
            sel = passes == p
            idx, mu = t, means
            if p and ctx.uses(p):
                if mode == "integer":
                    dt, dmu = run(y_hat, passes, p)
                else:
                    dt, dmu = (v.double() for v in ctx(ctx.inputs(y_hat.float(), passes, p, means.float(),
                                                                    t.float()), p))
                idx, mu = (t + dt).round().clamp(0, LEVELS - 1), means + dmu
            s = torch.round(y - mu)
            bits += float((symbol_bits(s, idx) * sel).sum())
            y_hat = torch.where(sel, s + mu, y_hat)
        out[mode] = bits
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", nargs="*", default=[str(ROOT / "codec/weights/hyperprior-vr.safetensors")])
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/train"))
    ap.add_argument("--images", type=int, default=6, help="the first N held-out training images")
    ap.add_argument("--qualities", default="-1,1,4,8")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/context_precision.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    _, val = split(list_images([args.data]))
    images = []
    for p in val[:args.images]:
        x = load_uint8(p)[None].float() / 255
        images.append(x[..., : x.shape[-2] // 64 * 64, : x.shape[-1] // 64 * 64])
    qualities = [float(q) for q in args.qualities.split(",")]
    results = {"images": [str(Path(p).name) for p in val[:args.images]], "files": {}}
    for w in args.weights:
        lm = weights.load(w)
        net = lm.net.eval()
        if not getattr(net, "has_context", False):
            raise SystemExit(f"{w}: no context model")
        wide = [net.context.int.wide(k) for k in range(net.context.int.layers)]
        rows = {}
        for q in qualities:
            tot = {}
            for x in images:
                for k, v in y_bits(net, x, q).items():
                    tot[k] = tot.get(k, 0.0) + v
            rows[f"{q:g}"] = {k: round(100 * (tot[k] / tot["hyperprior"] - 1), 3) for k in ("float", "integer")}
            print(f"{Path(w).name} ({lm.weights_hash.hex()}, wide layers {wide}) quality {q:g}: y bits vs the "
                  f"hyperprior: float network {rows[f'{q:g}']['float']:+.3f} %, integer layers "
                  f"{rows[f'{q:g}']['integer']:+.3f} %", flush=True)
        results["files"][str(w)] = {"weights_hash": lm.weights_hash.hex(), "wide_layers": wide,
                                    "y_bits_vs_hyperprior_percent": rows}
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
