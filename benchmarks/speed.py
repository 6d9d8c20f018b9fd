"""Encode/decode speed: aecodec's shipped models vs CompressAI's reference
implementation of the same architecture and Pillow's JPEG / WebP / AVIF.

    python benchmarks/speed.py [--model ID|PATH] [--images A.png,B.png] [--repeat 5] [--markdown]

For the scalar models (the default, and binary-hp on its weights), decode
time is split into entropy decoding (constriction: z and y streams) and
transforms (h_s: integer layers where the model has them, else float64; g_s;
the post-filter, where the file has one, over the file's views),
tile by tile as the decoder runs them, and the synthesis is timed again
split as files before flags bit 4 were (by channels, layer by layer); the other shipped codecs (VQ, binary)
are timed in total. CompressAI's reference (``MeanScaleHyperprior`` with
random weights, its own rANS coder) runs at the default model's N, M on the
same pixels; the speed ratios compare the default model with it. Prints a
table, writes JSON.
"""

from __future__ import annotations

import argparse
import io
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from codec import pipeline, registry, tiling
from codec.container import FLAG_Y_TABLES
from codec.models import pad_to, y_slice

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = [ROOT.parent / "shared/data/kodak/kodim01.png",
                  ROOT.parent / "shared/data/train/photos"]


def _best(fn, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_aecodec(lm, img, repeat, quality=4.0, precision="fp32", post_views=None):
    net = lm.net
    enc_s, res = _best(lambda: pipeline.encode(img, quality, lm, precision=precision, post_views=post_views),
                       repeat)
    dec_s, _ = _best(lambda: pipeline.decode(res.data, lm), repeat)
    if not hasattr(net, "_tile_params"):  # the discrete codecs: totals only
        return {"encode_s": enc_s, "decode_s": dec_s, "bpp": res.bpp, "psnr": res.psnr}
    # decode, split by stage
    from codec.container import unpack
    header, streams = unpack(res.data)
    hp, wp = tiling.padded_size(net, header.height, header.width)
    scheme = net._y_coding({"y_tables": bool(header.flags & FLAG_Y_TABLES)})
    rects = tiling.rects(hp, wp, header.tile * 64)
    t = {"h_s": 0.0, "y_decode": 0.0}
    with torch.inference_mode():
        t["z_decode"], state = _best(lambda: net.decode_side(streams[0], hp, wp, quality), repeat)
        y_in = torch.zeros(1, net.cfg.M, hp // 16, wp // 16)
        for r, data in zip(rects, streams[2:]):  # tile by tile, as tiling.decode
            dt, (scales, means) = _best(lambda: net._tile_params(state, r), repeat)
            t["h_s"] += dt
            if header.context:  # the passes: entropy decoding and the context model's network
                dt, y_hat = _best(lambda: net._decode_passes(data, scales, means), repeat)
            else:
                dt, y_hat = _best(lambda: net.latent.y.decompress(data, scales, means, scheme), repeat)
            t["y_decode"] += dt
            y_in[y_slice(r)] = (y_hat * state["g"]["y_inv"].double()).float()
        def synth(post, split=header.split, views=header.post_views):
            return tiling._synthesize(net, y_in, (hp, wp), header.tile * 64, precision=precision, post=post,
                                      split=split, post_views=views)
        t["g_s"], _ = _best(lambda: synth(None), repeat)
        # the post-filter: g_s with it, less g_s alone
        whole, _ = _best(lambda: synth(quality if header.post else None), repeat)
        t["post"] = max(whole - t["g_s"], 0.0) if header.post else 0.0
        # one view, cut in row parts, and the same split as files before flags bit 4 were (each
        # layer by halves of its channels, one view)
        one_view = whole if header.post_views == 1 else _best(lambda: synth(quality, views=1), repeat)[0]
        legacy, _ = _best(lambda: synth(quality if header.post else None, "channels", 1), repeat)
    return {"encode_s": enc_s, "decode_s": dec_s, "entropy_decode_s": t["z_decode"] + t["y_decode"],
            "transform_decode_s": t["h_s"] + t["g_s"] + t["post"], "h_s_s": t["h_s"], "g_s_s": t["g_s"],
            "post_s": t["post"], "synthesis_s": whole, "synthesis_one_view_s": one_view,
            "synthesis_channels_split_s": legacy, "post_views": header.post_views,
            "bpp": res.bpp, "psnr": res.psnr}


def bench_compressai(cfg, img, repeat):
    warnings.simplefilter("ignore")
    from compressai.models import MeanScaleHyperprior
    torch.manual_seed(0)
    ref = MeanScaleHyperprior(cfg.N, cfg.M).eval()
    ref.update(force=True)
    x = pad_to(torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float() / 255, 64)
    with torch.inference_mode():
        enc_s, out = _best(lambda: ref.compress(x), repeat)
        dec_s, _ = _best(lambda: ref.decompress(out["strings"], out["shape"]), repeat)
    return {"encode_s": enc_s, "decode_s": dec_s}


def bench_pillow(img, repeat):
    rows = {}
    im = Image.fromarray(img)
    for name, kw in (("JPEG q75", dict(format="JPEG", quality=75)),
                     ("WebP q75", dict(format="WEBP", quality=75)),
                     ("AVIF q60 speed4", dict(format="AVIF", quality=60, speed=4))):
        def enc():
            buf = io.BytesIO()
            im.save(buf, **kw)
            return buf.getvalue()
        try:
            e, data = _best(enc, repeat)
        except (KeyError, OSError, ValueError):
            continue
        d, _ = _best(lambda: Image.open(io.BytesIO(data)).load(), repeat)
        rows[name] = {"encode_s": e, "decode_s": d}
    return rows


def bench_throughput(folder: Path, count: int, workers_list, devices) -> list[dict]:
    """Images per second of ``aecodec compress DIR --workers W [--device D]``
    as a user runs it (a fresh process, imports included), on ``count``
    images of ``folder``."""
    import shutil
    import subprocess
    import sys
    import tempfile
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for p in sorted(folder.glob("*.png"))[:count]:
            shutil.copy(p, src / p.name)
        for device in devices:
            for workers in workers_list:
                cmd = [sys.executable, "-m", "cli.main", "compress", str(src), "-o", str(Path(tmp) / "out"),
                       "-f", "--workers", str(workers), "--device", device]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
                secs = time.perf_counter() - t0
                rows.append({"images": count, "workers": workers, "device": device, "seconds": secs,
                             "images_per_s": count / secs})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=None, help="the model compared with CompressAI's reference (default: the default)")
    ap.add_argument("--others", default=None,
                    help="comma-separated other models timed beside it (default: every other installed shipped "
                         "codec; \"\": none)")
    ap.add_argument("--images", default="")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--throughput", type=int, default=8,
                    help="images of Kodak for the batch-compress throughput rows (0: skip)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks/results/speed.json"))
    ap.add_argument("--post-views", type=int, choices=(1, 2, 4, 8), default=None,
                    help="post-filter views of the compared model's files (default: the encoder's)")
    ap.add_argument("--markdown", action="store_true", help="also print the rows as the README's Markdown table")
    a = ap.parse_args()
    lm = pipeline.load_model(a.model)
    paths = [Path(p) for p in a.images.split(",") if p] or DEFAULT_IMAGES
    paths = [sorted(p.glob("*.png"))[0] if p.is_dir() else p for p in paths]
    # the synthesis arithmetic: fp32 always, bf16 where the CPU has it natively
    precisions = ["fp32"] + (["bf16"] if tiling.native_bf16() else [])
    others = [m for m in (a.others.split(",") if a.others is not None else
                          [e.id for e in registry.MODELS.values() if e.path.exists()]) if m and m != lm.model_id]
    try:
        others = [pipeline.load_model(m) for m in others]
    except KeyError as exc:  # an unknown id: say so in one line ("" times the model alone)
        raise SystemExit(f"speed.py: {exc.args[0]}; --others \"\" times no other model") from None
    rows = []
    for path in paths:
        img = np.asarray(Image.open(path).convert("RGB"))
        mp = img.shape[0] * img.shape[1] / 1e6
        for threads in [int(t) for t in a.threads.split(",")]:
            torch.set_num_threads(threads)
            views = a.post_views if lm.net.has_post else None   # a model without a filter has no views to set
            entries = {f"aecodec {lm.model_id} {p}" + (f" {views} views" if views else ""):
                       bench_aecodec(lm, img, a.repeat, precision=p, post_views=views) for p in precisions}
            entries |= {f"compressai MeanScaleHyperprior({lm.config.N},{lm.config.M}) reference":
                           bench_compressai(lm.config, img, a.repeat)}
            entries |= {f"aecodec {o.model_id} {precisions[-1]}": bench_aecodec(o, img, a.repeat, precision=precisions[-1])
                        for o in others}
            entries.update(bench_pillow(img, a.repeat))
            for name, r in entries.items():
                r.update(codec=name, image=path.name, megapixels=round(mp, 3), threads=threads,
                         encode_mp_s=mp / r["encode_s"], decode_mp_s=mp / r["decode_s"])
                rows.append(r)
    print(f"{'codec':58} {'image':14} {'thr':>3} {'enc MP/s':>9} {'dec MP/s':>9} {'dec s':>7} {'entropy s':>9} {'transf s':>8}")
    for r in rows:
        ent = f"{r['entropy_decode_s']:.3f}" if "entropy_decode_s" in r else ""
        tra = f"{r['transform_decode_s']:.3f}" if "transform_decode_s" in r else ""
        print(f"{r['codec'][:58]:58} {r['image'][:14]:14} {r['threads']:>3} {r['encode_mp_s']:>9.3f} "
              f"{r['decode_mp_s']:>9.3f} {r['decode_s']:>7.3f} {ent:>9} {tra:>8}")
    if a.markdown:
        print("| image | threads | codec | encode MP/s | decode MP/s | decode s (entropy / transforms) |")
        print("|---|---|---|---|---|---|")
        for r in rows:
            parts = (f" ({r['entropy_decode_s']:.3f} / {r['transform_decode_s']:.3f})"
                     if "entropy_decode_s" in r else "")
            print(f"| {r['image']} ({r['megapixels']:.3f} MP) | {r['threads']} | "
                  f"{r['codec'].removesuffix(' reference')} | {r['encode_mp_s']:.3f} | {r['decode_mp_s']:.3f} | "
                  f"{r['decode_s']:.3f}{parts} |")
    for r in rows:
        if "synthesis_channels_split_s" in r:
            views = (f" ({r['post_views']} post-filter views; {r['synthesis_one_view_s']:.3f} s with one)"
                     if r["post_views"] > 1 else "")
            print(f"{r['codec']} on {r['image']}, {r['threads']} thread(s): synthesis {r['synthesis_s']:.3f} s cut "
                  f"in row parts{views}, {r['synthesis_channels_split_s']:.3f} s split by channels with one view "
                  f"(files before flags bit 4)")
    ratios = []
    for r in rows:
        ref = [c for c in rows if c["codec"].startswith("compressai") and c["image"] == r["image"]
               and c["threads"] == r["threads"]]
        if r["codec"].startswith(f"aecodec {lm.model_id} ") and ref:
            ratios.append({"codec": r["codec"], "image": r["image"], "threads": r["threads"],
                           "decode_speed_vs_compressai": ref[0]["decode_s"] / r["decode_s"],
                           "encode_speed_vs_compressai": ref[0]["encode_s"] / r["encode_s"]})
            print(f"{r['codec']} on {r['image']}, {r['threads']} thread(s): decode "
                  f"{ratios[-1]['decode_speed_vs_compressai']:.2f}x, encode "
                  f"{ratios[-1]['encode_speed_vs_compressai']:.2f}x the speed of compressai's reference")
    batch = []
    if a.throughput:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        batch = bench_throughput(ROOT.parent / "shared/data/kodak", a.throughput, (1, 2), devices)
        for r in batch:
            print(f"aecodec compress of {r['images']} Kodak images, --workers {r['workers']} --device "
                  f"{r['device']}: {r['images_per_s']:.2f} images/s ({r['seconds']:.1f} s, imports included)")
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": f"{platform.machine()}, {torch.get_num_threads()} threads max",
                               "torch": torch.__version__, "rows": rows, "vs_compressai": ratios,
                               "throughput": batch}, indent=1))


if __name__ == "__main__":
    main()
