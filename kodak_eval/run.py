"""Run every codec at every setting on every image of a folder."""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

import numpy as np
from PIL import Image

from .codecs import classical


def rgb_images(folder) -> list[tuple[str, np.ndarray]]:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in {".png", ".ppm", ".bmp", ".tif"})
    if not paths:
        raise FileNotFoundError(f"no PNG/PPM/BMP/TIFF images in {folder}")
    return [(p.name, np.asarray(Image.open(p).convert("RGB"))) for p in paths]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    if min(a.shape[:2]) < 161:  # five scales need 160+ pixels
        return None
    import torch
    from pytorch_msssim import ms_ssim as _ms
    ta, tb = (torch.from_numpy(np.array(x)).permute(2, 0, 1)[None].float() for x in (a, b))
    return float(_ms(ta, tb, data_range=255.0))


CURVE_KEYS = ("bpp", "psnr", "ms_ssim", "enc_s", "dec_s")


def _measure(images, settings, encode, decode, check=None):
    """-> per-setting means and per-image records."""
    curve = {k: [] for k in CURVE_KEYS}
    per_image = []
    for s in settings:
        rows = []
        for name, img in images:
            t0 = time.perf_counter()
            data = encode(img, s)
            t1 = time.perf_counter()
            out = decode(data)
            t2 = time.perf_counter()
            if check is not None:
                check(data, out)
            h, w = img.shape[:2]
            rows.append({"image": name, "bytes": len(data), "bpp": 8 * len(data) / (h * w),
                         "psnr": psnr(out, img), "ms_ssim": ms_ssim(out, img),
                         "enc_s": t1 - t0, "dec_s": t2 - t1})
        per_image.append({"setting": s, "images": rows})
        for k in curve:
            vals = [r[k] for r in rows if r[k] is not None]
            curve[k].append(float(np.mean(vals)) if vals else None)
    order = np.argsort(curve["bpp"])
    curve = {k: [v[i] for i in order] for k, v in curve.items()}
    curve["settings"] = [settings[i] for i in order]
    return curve, [per_image[i] for i in order]


def join_curves(a: dict, b: dict, per_a: list, per_b: list) -> tuple[dict, list]:
    """One codec's curve from two runs at other settings (parallel processes
    over the qualities): every point of both, ``b``'s where a setting is in
    both, in rate order, with each run's per-image records."""
    points = {}
    for c, per in ((a, per_a), (b, per_b)):
        per = per or [None] * len(c["settings"])
        points |= {s: ({k: c[k][i] for k in CURVE_KEYS}, per[i]) for i, s in enumerate(c["settings"])}
    order = sorted(points, key=lambda s: points[s][0]["bpp"])
    curve = {**a, **b, **{k: [points[s][0][k] for s in order] for k in CURVE_KEYS}, "settings": order}
    if "exact_decode" in a or "exact_decode" in b:
        curve["exact_decode"] = a.get("exact_decode", True) and b.get("exact_decode", True)
    for k in ("note", "weights", "precision"):   # a join of two files or precisions says so
        if a.get(k) != b.get(k):
            curve[k] = f"{a.get(k)}; {b.get(k)}"
    per = [points[s][1] for s in order]
    return curve, (per if None not in per else [])


def run_classical(images, only=None, log=print):
    codecs, skipped = classical()
    results, per = {}, {}
    for c in codecs:
        if only and c.name not in only:
            continue
        log(f"{c.name}: {len(c.settings)} settings x {len(images)} images")

        def enc(img, s, c=c):
            return c.encode(Image.fromarray(img), s)

        results[c.name], per[c.name] = _measure(images, c.settings, enc, c.decode)
        results[c.name].update(source="measured", note=c.note, machine=machine())
    return results, per, skipped


def run_aecodec(images, models, qualities=None, log=print, effort: int = 0, precision: str | None = None,
                post_views: int | None = None):
    """``precision`` None: the encoder's default for the model on this CPU
    (codec.tiling.default_precision); the one the files record goes into each
    curve's note. ``post_views`` None: the encoder's default
    (pipeline.DEFAULT_POST_VIEWS); another count names a curve of its own."""
    from codec import pipeline

    results, per = {}, {}
    for m in models:
        lm = pipeline.load_model(m)
        if effort and lm.net.latent_kind not in ("scalar", "vq"):
            log(f"{lm.model_id}: no latent refinement for a {lm.net.latent_kind} latent; skipped")
            continue
        qs = qualities or sorted({lm.net.min_quality, *range(math.ceil(lm.net.min_quality), lm.config.levels + 1)})
        name = f"aecodec {lm.model_id}" + (f" effort {effort}" if effort else "")
        views = post_views if lm.net.has_post else None   # a model without a filter has no views to set
        if views not in (None, pipeline.DEFAULT_POST_VIEWS):
            name += f" post views {views}"
        log(f"{name}: {len(qs)} qualities x {len(images)} images")
        mismatches = []

        def enc(img, q, lm=lm, views=views):
            r = pipeline.encode(img, q, lm, effort=effort, precision=precision, post_views=views)
            enc.last, enc.precision, enc.views = r.picture.rgb, r.header.precision, r.header.post_views
            return r.data

        def dec(data, lm=lm):
            return pipeline.decode(data, lm).rgb

        def check(data, out):
            if not np.array_equal(out, enc.last):
                mismatches.append(len(mismatches))

        results[name], per[name] = _measure(images, [float(q) for q in qs], enc, dec, check)
        context = lm.net.latent_kind == "scalar" and getattr(lm.net, "has_context", False)
        post = lm.net.has_post
        weights = lm.hash_for(context, post).hex()
        results[name].update(source="measured", exact_decode=not mismatches, machine=machine(),
                             weights=weights, precision=enc.precision,   # as the files record them
                             post_views=enc.views,
                             note=f"weights {weights}, {lm.config.arch} N={lm.config.N} M={lm.config.M}"
                                  + (", context model" if context else "") + (f", post-filter ({enc.views} view{'s' * (enc.views > 1)})" if post else "")
                                  + (f", {effort} steps of encoder-side latent refinement" if effort else "")
                                  + f", {enc.precision} synthesis")
    return results, per


def machine() -> str:
    """The CPU's model name where Linux tells it (timings and, through the
    default precision, the scalar models' files depend on it)."""
    import os
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from codec.tiling import native_bf16
    bf16 = "native bfloat16" if native_bf16() else "no native bfloat16"
    return f"{name} ({bf16}), {os.cpu_count()} cores, {platform.system()}"
