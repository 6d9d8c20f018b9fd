"""Add the integer hyper-synthesis (codec/integer.py) to a scalar model's
weights file, keeping every other tensor as it is: calibrated on the side
latents of some training images, then its cost printed (the latent rate
under integer vs float64 h_s on other training images).

    python scripts/integerize.py codec/weights/hyperprior-vr.safetensors [-o OUT] [--images DIR]
"""

import argparse
import glob
import json
import os

from safetensors.torch import load_file

from codec import io, tiling, weights


def y_bytes(net, rgbs, quality, integer: bool) -> int:
    hs_int = net.latent.hs_int
    saved = hs_int.state_dict()
    if not integer:
        hs_int.clear()  # h_s in float64
    try:
        return sum(sum(len(s) for s in tiling.encode(net, rgb, quality, 0)[0][2:]) for rgb in rgbs)
    finally:
        hs_int.load_state_dict(saved)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("-o", "--out", help="output file (default: rewrite WEIGHTS)")
    ap.add_argument("--images", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "train"))
    ap.add_argument("--count", type=int, default=6, help="images to measure the rate on")
    ap.add_argument("--calibrate", type=int, default=10, help="images to calibrate on")
    args = ap.parse_args()
    lm = weights.load(args.weights)
    net = lm.net
    if net.latent_kind != "scalar":
        raise SystemExit(f"{args.weights}: not a scalar hyperprior model")
    files = sorted(glob.glob(os.path.join(args.images, "**", "*.jpg"), recursive=True))
    calib = [tiling.analyse(net, io.load(f).rgb, 0) for f in files[1::4][:args.calibrate]]
    net.build_integer_hs(calib)
    rgbs = [io.load(f).rgb for f in files[::7][:args.count]]  # a different set to measure on
    change = {}
    for q in (net.min_quality, (net.min_quality + net.cfg.levels) / 2, net.cfg.levels):
        a, b = y_bytes(net, rgbs, q, True), y_bytes(net, rgbs, q, False)
        change[f"{q:g}"] = round(100 * (a / b - 1), 3)
        print(f"quality {q:g}: latent bytes integer h_s {a}, float64 h_s {b} ({change[f'{q:g}']:+.3f} %)")
    tensors = load_file(args.weights)
    tensors = {k: v for k, v in tensors.items() if not k.startswith("latent.hs_int.")}
    for k, v in net.latent.hs_int.state_dict(prefix="latent.hs_int.").items():
        tensors[k] = v.contiguous()
    metadata = weights.file_metadata(args.weights)
    meta = json.loads(metadata.get("meta", "{}"))
    meta["integer_hs"] = {"calibration_images": len(calib), "measured_on_images": len(rgbs),
                          "rate_change_percent": change}
    metadata["meta"] = json.dumps(meta, sort_keys=True)
    out = weights.write_safetensors(tensors, args.out or args.weights, metadata)
    print(f"wrote {out} (weights hash {weights.file_hash(out).hex()})")


if __name__ == "__main__":
    main()
