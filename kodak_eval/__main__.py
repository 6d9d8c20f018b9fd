"""python -m kodak_eval: measure, then write results.json, rd.png, results.md."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from . import report, run

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m kodak_eval", description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared/data/kodak"))
    ap.add_argument("--out", default=str(ROOT / "kodak_eval/results"))
    ap.add_argument("--codecs", default="", help="comma-separated subset of codec names to (re)run")
    ap.add_argument("--models", default="", help="comma-separated aecodec model ids or .safetensors paths "
                                                 "(default: every installed shipped model)")
    ap.add_argument("--qualities", default="", help="comma-separated qualities for aecodec models")
    ap.add_argument("--reuse", action="store_true", help="keep codecs already in OUT/results.json")
    ap.add_argument("--no-classical", action="store_true")
    ap.add_argument("--no-models", action="store_true", help="run no aecodec model")
    ap.add_argument("--merge", default="", help="comma-separated results.json files whose codecs to add "
                                                "(e.g. from runs in parallel processes; a codec in several "
                                                "of them gets the points of all)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    ap.add_argument("--effort", type=int, default=0,
                    help="steps of encoder-side latent refinement for scalar and VQ models (a separate curve)")
    ap.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                    help="synthesis arithmetic of the models' files (auto: the encoder's default, "
                         "codec.tiling.default_precision); recorded in each curve's note")
    ap.add_argument("--post-views", type=int, choices=(1, 2, 4, 8), default=None,
                    help="post-filter views of the models' files (default: the encoder's); another count "
                         "than the default is a curve of its own")
    ap.add_argument("--published", default=str(ROOT.parent / "shared/data/published_kodak_rd.json"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = run.rgb_images(args.data)
    if args.limit:
        images = images[: args.limit]
    old = {}
    if args.reuse and (out / "results.json").exists():
        old = json.loads((out / "results.json").read_text())
    codecs = dict(old.get("codecs", {}))
    per = json.loads((out / "per_image.json").read_text()) if args.reuse and (out / "per_image.json").exists() else {}
    only = {c.strip() for c in args.codecs.split(",") if c.strip()}
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731

    skipped = old.get("skipped", {})
    if not args.no_classical:
        res, p, skipped = run.run_classical(images, only or None, log)
        codecs.update(res)
        per.update(p)
    from codec import registry
    models = [m for m in args.models.split(",") if m] or \
        [e.id for e in registry.MODELS.values() if e.path.exists()]
    if args.no_models:
        models = []
    merged = set()  # a codec in two of the merged files: their points are joined (runs split by quality)
    for f in [f for f in args.merge.split(",") if f]:
        other = json.loads(Path(f).read_text())
        other_per = Path(f).with_name("per_image.json")
        other_per = json.loads(other_per.read_text()) if other_per.exists() else {}
        for name, curve in other["codecs"].items():
            if name in merged and "settings" in curve and "settings" in codecs[name]:
                codecs[name], per[name] = run.join_curves(codecs[name], curve, per.get(name, []),
                                                          other_per.get(name, []))
            else:
                codecs[name] = curve
                if name in other_per:
                    per[name] = other_per[name]
            merged.add(name)
    qs = [float(q) for q in args.qualities.split(",") if q] or None
    if models:
        res, p = run.run_aecodec(images, models, qs, log, args.effort,
                                  None if args.precision == "auto" else args.precision, args.post_views)
        codecs.update(res)
        per.update(p)

    results = {"dataset": Path(args.data).name, "images": len(images), "machine": run.machine(),
               "codecs": codecs, "skipped": skipped}
    pub = Path(args.published)
    if pub.exists():
        results["published"] = json.loads(pub.read_text())["codecs"]
    results["bd_rate"] = report.bd_table(results)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "per_image.json").write_text(json.dumps(per))
    (out / "results.md").write_text(report.markdown(results))
    report.plot(results, out / "rd.png")
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
