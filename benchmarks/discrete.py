"""The discrete codecs' latents on Kodak: codebook use and coded vs raw bits.

    python benchmarks/discrete.py [--kodak DIR] [--images 24]

VQ (``vq-residual``): for each residual stage, the share of codebook entries
used on Kodak (each group has its own codebooks: per group, averaged), the
perplexity 2^H of the empirical index distribution (per group, averaged; K
is the most it can be), and
the bits per index: raw log2 K, the empirical entropy H per (stage, group)
(what an ideal static prior fitted to Kodak would pay), what the shipped
prior pays (measured from the real files: the context model where the
model has one) and what its factorized prior alone would pay for the same
indices (their ideal code length), with the context model's saving in %.

Binary (``binary-nested``): the bits kept at each quality (raw bits) against
the coded payload of the real .aec files.

Binarized (``binary-hp``): the binary decisions the default model's latent
becomes (zero flag, sign, thermometer bits; 12 per escaped magnitude) against
their coded size, and against the same symbols coded as integers (grouped
tables, the default codec's scalar coding).

    python benchmarks/discrete.py --parts binarized   # recompute one part, keep the others

Writes benchmarks/results/discrete.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec import container, pipeline, tiling

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def vq_usage(paths, model="vq-residual") -> dict:
    lm = pipeline.load_model(model)
    net = lm.net
    S, K, G = net.cfg.levels, net.cfg.codebook, net.groups
    counts = np.zeros((S, G, K), np.int64)
    coded_bits = np.zeros(S)
    factorized_bits = np.zeros(S)
    logp = -torch.log2(net.table_probs())                                # (S, G, K)
    n_pos = 0
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        y = tiling.analyse(net, rgb, tiling.DEFAULT_TILE)
        syms = net.assign(y, S)                                   # (S, 1, G, h, w): the indices the encoder codes
        for s in range(S):
            for g in range(G):
                counts[s, g] += np.bincount(syms[s, 0, g].reshape(-1).numpy(), minlength=K)
                factorized_bits[s] += float(logp[s, g][syms[s, 0, g].reshape(-1)].sum())
        n_pos += syms[0].numel()
        for q in range(1, S + 1):  # real files: payload bits at each stage count
            res = pipeline.encode(rgb, quality=q, model=lm)
            coded_bits[q - 1] += 8 * sum(container.unpack(res.data)[0].stream_lengths)
    stages = []
    prev = 0.0
    for s in range(S):
        p = counts[s] / counts[s].sum(1, keepdims=True)                  # (G, K)
        h = float(np.mean([-(pg[pg > 0] * np.log2(pg[pg > 0])).sum() for pg in p]))
        bits_stage = (coded_bits[s] - prev) / n_pos
        prev = coded_bits[s]
        size = net.vq.sizes[s]
        stages.append({"stage": s + 1, "entries": size, "used_share": float((counts[s, :, :size] > 0).mean()),
                       "perplexity": float(2 ** h),
                       "raw_bits_per_index": math.log2(size),
                       "empirical_entropy_bits": h, "coded_bits_per_index": float(bits_stage),
                       "factorized_bits_per_index": float(factorized_bits[s] / n_pos)})
    coded, fact = coded_bits[-1] / n_pos, factorized_bits.sum() / n_pos
    return {"model": lm.model_id, "codebook": K, "groups": G, "stages": stages,
            "indices_per_stage": int(n_pos), "context": bool(net.cfg.context),
            "energy_classes": int(net.cfg.vq_classes),
            "context_saving_percent_all_stages": float(100 * (1 - coded / fact))}


@torch.no_grad()
def binary_rates(paths, model="binary-nested") -> dict:
    lm = pipeline.load_model(model)
    net = lm.net
    rows = []
    for q in range(1, net.cfg.levels + 1):
        raw = coded = pixels = 0
        for p in paths:
            rgb = np.asarray(Image.open(p).convert("RGB"))
            res = pipeline.encode(rgb, quality=q, model=lm)
            hp, wp = tiling.padded_size(net, *rgb.shape[:2])
            raw += int(net.keep(q)) * (hp // 16) * (wp // 16)
            coded += 8 * sum(container.unpack(res.data)[0].stream_lengths)
            pixels += rgb.shape[0] * rgb.shape[1]
        rows.append({"quality": q, "raw_bits": raw, "coded_bits": coded, "coded_over_raw": coded / raw,
                     "raw_bpp": raw / pixels, "coded_bpp": coded / pixels})
    return {"model": lm.model_id, "qualities": rows}


@torch.inference_mode()
def binarized_rates(paths, model="binary-hp", qualities=(-1, 1, 4, 8)) -> dict:
    from codec.latent_codecs import encode_binarized
    from codec.models import y_slice
    lm = pipeline.load_model(model)
    net = lm.net
    rows = []
    for q in qualities:
        raw = coded = scalar = pixels = 0
        for p in paths:
            rgb = np.asarray(Image.open(p).convert("RGB"))
            y = tiling.analyse(net, rgb, tiling.DEFAULT_TILE)
            _, state = net.code_side(y, q)
            hp, wp = tiling.padded_size(net, *rgb.shape[:2])
            for r in tiling.rects(hp, wp, tiling.DEFAULT_TILE):
                scales, means = net._tile_params(state, r)
                sym = torch.round(state["y"][y_slice(r)].double() - means).clamp_(-4095, 4095)
                idx = net.latent.y.table.index(scales)
                data, n = encode_binarized(sym.reshape(-1).numpy().astype(np.int32), idx)
                raw += n
                coded += 8 * len(data)
                scalar += 8 * len(net.latent.y.compress(state["y"][y_slice(r)], scales, means, "tables")[0])
            pixels += rgb.shape[0] * rgb.shape[1]
        rows.append({"quality": q, "raw_bits": raw, "coded_bits": coded, "coded_over_raw": coded / raw,
                     "raw_bpp": raw / pixels, "coded_bpp": coded / pixels,
                     "scalar_coded_bpp": scalar / pixels, "binary_over_scalar": coded / scalar})
    return {"model": lm.model_id, "latent_only": True, "qualities": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kodak", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/discrete.json"))
    ap.add_argument("--parts", default="vq,binary,binarized", help="parts to (re)compute; the others are kept from --out")
    ap.add_argument("--vq-model", default="vq-residual", help="the VQ model (registry id or .safetensors)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    paths = sorted(Path(args.kodak).glob("*.png"))[:args.images]
    parts = {"vq": vq_usage, "binary": binary_rates, "binarized": binarized_rates}
    wanted = args.parts.split(",")
    res = json.loads(Path(args.out).read_text()) if Path(args.out).exists() and len(wanted) < len(parts) else {}
    if res and res.get("images") != len(paths):
        raise SystemExit(f"{args.out} was measured on {res.get('images')} images; recompute all parts")
    res["images"] = len(paths)
    for name in wanted:
        res[name] = parts[name](paths, args.vq_model) if name == "vq" else parts[name](paths)
    Path(args.out).write_text(json.dumps(res, indent=1))
    v = res.get("vq", {"stages": []})
    if "model" in v:
        print(f"VQ {v['model']}: K={v['codebook']}, {v['groups']} groups, {v['indices_per_stage']} indices per stage")
    for s in v["stages"]:
        print(f"  stage {s['stage']}: used {100 * s['used_share']:.1f}% of its {s.get('entries', v['codebook'])} "
              f"entries per group, "
              f"perplexity {s['perplexity']:.1f} per group, bits/index raw {s['raw_bits_per_index']:.2f} entropy "
              f"{s['empirical_entropy_bits']:.2f} coded {s['coded_bits_per_index']:.2f} "
              f"(factorized prior alone {s.get('factorized_bits_per_index', float('nan')):.2f})")
    if "context_saving_percent_all_stages" in v:
        print(f"  all stages: the context model codes {v['context_saving_percent_all_stages']:.1f}% fewer bits "
              f"than the factorized prior alone")
    for r in res.get("binary", {}).get("qualities", []):
        print(f"binary q{r['quality']}: raw {r['raw_bpp']:.4f} bpp, coded {r['coded_bpp']:.4f} bpp "
              f"({100 * r['coded_over_raw']:.1f}% of raw)")
    for r in res.get("binarized", {}).get("qualities", []):
        print(f"binarized (binary-hp) q{r['quality']:g}: raw {r['raw_bpp']:.4f} bits/pixel, coded {r['coded_bpp']:.4f} "
              f"bpp ({100 * r['coded_over_raw']:.1f}% of raw); the same symbols as integers {r['scalar_coded_bpp']:.4f} bpp "
              f"({100 * (r['binary_over_scalar'] - 1):+.2f}%)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
