"""Add the integer hyper-synthesis (codec/integer.py) to a scalar model's
weights file, keeping every other tensor as it is: calibrated on the side
latents of some training images, then its cost printed (the latent rate
under integer vs float64 h_s on other training images).

With ``--context``, rebuild the integer layers of the file's context model
(codec/context.py) from its float network instead -- its first layer wide
(integer.py), calibrated on the latents of training crops -- and print the
latent bytes the context-coded files of other training images take with
the new layers against the file's. Files coded with the context model then
carry a new weights hash.

    python scripts/integerize.py codec/weights/hyperprior-vr.safetensors [-o OUT] [--images DIR] [--context]
"""

import argparse
import glob
import json
import os

from safetensors.torch import load_file

from codec import integer, io, tiling, weights


def y_bytes(net, rgbs, quality, context: bool = False) -> int:
    """Bytes of the latent streams of ``rgbs`` coded at ``quality``."""
    return sum(sum(len(s) for s in tiling.encode(net, rgb, quality, 0, y_context=context)[0][2:]) for rgb in rgbs)


def compare(net, rgbs, qualities, context: bool, change) -> dict:
    """Latent bytes after ``change()`` (which rebuilds integer layers) against
    before -> {quality: % change}."""
    before = {q: y_bytes(net, rgbs, q, context) for q in qualities}
    change()
    pct = {}
    for q in qualities:
        after = y_bytes(net, rgbs, q, context)
        pct[f"{q:g}"] = round(100 * (after / before[q] - 1), 3)
        print(f"quality {q:g}: latent bytes {after}, before {before[q]} ({pct[f'{q:g}']:+.3f} %)")
    return pct


def rebuild_hs(net, calibration_files, rgbs, qualities) -> dict:
    """Build the integer h_s; its cost against float64 h_s."""
    net.latent.hs_int.clear()  # h_s in float64
    calib = [tiling.analyse(net, io.load(f).rgb, 0) for f in calibration_files]
    change = compare(net, rgbs, qualities, False, lambda: net.build_integer_hs(calib))
    return {"calibration_images": len(calib), "measured_on_images": len(rgbs), "rate_change_percent": change}


def rebuild_context(net, calibration_files, rgbs, qualities, crops: int = 16) -> dict:
    """Rebuild the context model's integer layers (wide) from its float
    network, calibrated on ``crops`` 256-pixel crops of the calibration
    images; the change against the file's integer layers."""
    from codec.training.context import calibration_inputs, latent_bank
    from codec.training.data import CropSampler, load_uint8
    sampler = CropSampler([load_uint8(f) for f in calibration_files], 256)
    bank = latent_bank(net, sampler, crops, seed=0)
    inputs = calibration_inputs(net, net.context, bank)
    change = compare(net, rgbs, qualities, True, lambda: net.context.build_integer(inputs))
    wide = [net.context.int.wide(k) for k in range(net.context.int.layers)]
    return {"calibration_crops": len(bank), "measured_on_images": len(rgbs), "wide_layers": wide,
            "group": integer.GROUP, "latent_bytes_change_percent": change}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights")
    ap.add_argument("-o", "--out", help="output file (default: rewrite WEIGHTS)")
    ap.add_argument("--images", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "train"))
    ap.add_argument("--count", type=int, default=6, help="images to measure the rate on")
    ap.add_argument("--calibrate", type=int, default=10, help="images to calibrate on")
    ap.add_argument("--context", action="store_true", help="rebuild the context model's integer layers instead")
    args = ap.parse_args()
    lm = weights.load(args.weights)
    net = lm.net
    if net.latent_kind != "scalar":
        raise SystemExit(f"{args.weights}: not a scalar hyperprior model")
    if args.context and not net.has_context:
        raise SystemExit(f"{args.weights}: has no context model")
    files = sorted(glob.glob(os.path.join(args.images, "**", "*.jpg"), recursive=True))
    rgbs = [io.load(f).rgb for f in files[::7][:args.count]]  # a different set from the calibration's
    qualities = (net.min_quality, (net.min_quality + net.cfg.levels) / 2, net.cfg.levels)
    if args.context:
        key, what = "integer_context", rebuild_context(net, files[1::4][:args.calibrate], rgbs, qualities)
        prefix, module = "context.int.", net.context.int
    else:
        key, what = "integer_hs", rebuild_hs(net, files[1::4][:args.calibrate], rgbs, qualities)
        prefix, module = "latent.hs_int.", net.latent.hs_int
    tensors = {k: v for k, v in load_file(args.weights).items() if not k.startswith(prefix)}
    for k, v in module.state_dict(prefix=prefix).items():
        tensors[k] = v.contiguous()
    metadata = weights.file_metadata(args.weights)
    meta = json.loads(metadata.get("meta", "{}"))
    meta[key] = what
    metadata["meta"] = json.dumps(meta, sort_keys=True)
    out = weights.write_safetensors(tensors, args.out or args.weights, metadata)
    print(f"wrote {out} (weights hash {weights.file_hash(out).hex()})")


if __name__ == "__main__":
    main()
