"""Anomaly scoring: how surprising an image is to the trained codec.

A plain autoencoder can only say how badly an image reconstructs. A codec
also says how many bits it needs, and -log2 p(y_hat) is a likelihood under
the model of natural images it learned (the rate term of its training
loss). Per-pixel maps (eval-mode forward pass, rounded latents)::

    error(i)  = mean over colours of (x - x_hat)^2 * 255^2
    rate(i)   = bits of the latents whose 16x16 (y) / 64x64 (z) cell holds i,
                spread evenly over the cell's pixels: bits per pixel
    rd(i)     = rate(i) + lambda * error(i) / 255^2 ... the codec's own loss

A defect is local, and images differ wildly in how many bits their content
needs, so the image score compares each region with the rest of the same
image: the map is averaged over ``window`` x ``window`` windows and the
score is the largest log(local / median local), in nats (softened where
the image needs almost nothing, see ``SOFT``). (Score kinds
``*-max`` use the largest local mean instead, with no normalisation, and
``*-line`` the largest mean along a straight line of ``window`` pixels at
any of 16 angles: a thin defect, a scratch, fills a line but only a sliver
of any square window.)

A detector (:func:`fit`) records the scores of normal images; a new image's
percentile among them, and a threshold at a chosen false-positive rate, turn
the score into a flag.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

MAP_KINDS = ("rate", "error", "rd")
#: map kinds that need a trained head besides the codec (heads/defect.py)
HEAD_KINDS = ("defect",)
AGGREGATES = ("relative", "max", "line")
#: angles of the ``line`` aggregate's lines, evenly spread over 180 degrees
LINE_ANGLES = 16
#: softens the relative score where the map is near zero (flat regions):
#: the ratio is taken of (local + SOFT * mean) to (median + SOFT * mean)
SOFT = 0.25


def codec_view(net, xp: torch.Tensor, quality: float):
    """The codec's eval-mode pass over padded images (B, 3, H, W) ->
    (x_hat clamped, error map, rate map), the maps (B, 1, H, W)."""
    out = net(xp, torch.full((xp.shape[0],), float(quality)))
    x_hat = out["x_hat"].clamp(0, 1)
    err = (x_hat - xp).pow(2).mean(1, keepdim=True) * 255.0 ** 2
    rate = 0
    for lik in out["likelihoods"].values():
        bits = -torch.log2(lik).sum(1, keepdim=True)           # (B, 1, h', w')
        f = xp.shape[-1] // bits.shape[-1]
        rate = rate + F.interpolate(bits, scale_factor=f, mode="nearest") / (f * f)
    return x_hat, err, rate


@torch.no_grad()
def maps(image, model=None, quality: float = 4, max_pixels=None, defect_head=None) -> dict:
    """-> {"rate", "error", "rd"} (and "defect" with ``defect_head``, a
    heads.defect.DefectNet or "shipped"): (H, W) float32 maps of one image."""
    from .. import io
    from ..models import pad_to
    from ..pipeline import load_model
    lm = load_model(model)
    net = lm.net
    if not hasattr(net, "latent") or not hasattr(net.latent, "h_a"):
        raise ValueError(f"anomaly scoring needs a hyperprior model, not {lm.model_id}")
    q = net.check_quality(quality)
    pic = image if isinstance(image, io.Picture) else io.load(image, max_pixels=max_pixels)
    h, w = pic.height, pic.width
    x = torch.from_numpy(np.array(pic.rgb, np.float32)).permute(2, 0, 1)[None] / 255.0
    xp = pad_to(x, net.stride)
    x_hat, err, rate = codec_view(net, xp, q)
    lam = float(net.lmbda(torch.tensor([q])))
    rd = rate + lam * err
    crop = (0, 0, slice(0, h), slice(0, w))
    out = {"rate": rate[crop].numpy().astype(np.float32), "error": err[crop].numpy().astype(np.float32),
           "rd": rd[crop].numpy().astype(np.float32)}
    if defect_head is not None:
        from . import defect
        head = defect.load() if isinstance(defect_head, str) else defect_head
        first = (x_hat, err, rate) if head.cfg.quality == q else None
        out["defect"] = defect.probability(head, xp, net, first=first)[crop].numpy().astype(np.float32)
    return out


def local_mean(m: np.ndarray, window: int) -> np.ndarray:
    """Mean of ``m`` over window x window squares (stride window/2)."""
    t = torch.from_numpy(np.ascontiguousarray(m))[None, None].double()
    win = min(window, *m.shape)
    return F.avg_pool2d(t, win, stride=max(1, win // 2))[0, 0].numpy()


def line_mean(m: np.ndarray, length: int, angles: int = LINE_ANGLES) -> float:
    """The largest mean of ``m`` along a straight segment of ``length``
    pixels lying wholly inside the map, at ``angles`` angles over 180
    degrees (shortened to the map's smaller side, which fits at any angle).
    Each angle turns the map (bilinear) so that its lines run along the
    rows, then takes running sums along them: O(H W) per angle."""
    h, w = m.shape
    length = max(1, min(int(length), h, w))
    t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
    side = int(math.ceil(math.hypot(h, w))) + 2
    ones = torch.ones_like(t)
    # output pixel (v, u) around an integer centre -> input pixel (y, x) = centre + R(a) (v, u):
    # at 0 and 90 degrees every sample falls on a pixel, not between two
    k = torch.arange(side, dtype=torch.float32) - side // 2
    v, u = torch.meshgrid(k, k, indexing="ij")
    cy, cx = (h - 1) // 2, (w - 1) // 2
    best = -math.inf
    for i in range(angles):
        a = math.pi * i / angles
        c, s_ = math.cos(a), math.sin(a)
        x, y = cx + c * u - s_ * v, cy + s_ * u + c * v
        grid = torch.stack([(2 * x + 1) / w - 1, (2 * y + 1) / h - 1], -1)[None]   # align_corners=False
        both = F.grid_sample(torch.cat([t, ones]), grid.expand(2, -1, -1, -1), mode="bilinear",
                             padding_mode="zeros", align_corners=False)
        vals, inside = both[0, 0].double(), (both[1, 0] > 1 - 1e-5).double()
        run = F.pad(vals.cumsum(1), (1, 0))
        cover = F.pad(inside.cumsum(1), (1, 0))
        sums = run[:, length:] - run[:, :-length]
        full = (cover[:, length:] - cover[:, :-length]) > length - 0.5
        if full.any():
            best = max(best, float(sums[full].max()) / length)
    return best


def image_score(m: np.ndarray, aggregate: str = "relative", window: int = 32) -> float:
    if aggregate == "line":
        return line_mean(m, window)
    loc = local_mean(m, window)
    if aggregate == "max":
        return float(loc.max())
    if aggregate != "relative":
        raise ValueError(f"aggregate must be one of {AGGREGATES}")
    c = SOFT * float(np.mean(m)) + 1e-6
    return float(np.log((loc.max() + c) / (float(np.median(loc)) + c)))


def relative_map(m: np.ndarray, window: int = 32) -> np.ndarray:
    """Per-pixel max(0, log(local mean / median local mean)): the heat map
    behind the ``relative`` score, at full resolution."""
    t = torch.from_numpy(np.ascontiguousarray(m))[None, None].double()
    win = min(window, *m.shape)
    loc = F.avg_pool2d(t, win, stride=1, padding=win // 2, count_include_pad=False)[0, 0]
    loc = loc[:m.shape[0], :m.shape[1]].numpy()
    c = SOFT * float(np.mean(m)) + 1e-6
    return np.maximum(0, np.log((loc + c) / (float(np.median(loc)) + c))).astype(np.float32)


def scoring_key(aggregate: str, window: int) -> str:
    """The name of an image scoring in a head's validation table ("max-2", "line-17")."""
    return f"{aggregate}-{window}"


def parse_scoring_key(key: str) -> tuple[str, int]:
    """The inverse of :func:`scoring_key`."""
    aggregate, window = key.rsplit("-", 1)
    return aggregate, int(window)


def head_window(meta: dict, aggregate: str) -> int:
    """A trained head's window (or line length) for ``aggregate``: the one
    chosen with it if that was ``aggregate``, else the best for
    ``aggregate`` in its validation table (meta "score_auroc"), else 32."""
    if aggregate == meta.get("aggregate", "max") and "window" in meta:
        return int(meta["window"])
    table = {k: v for k, v in (meta.get("score_auroc") or {}).items() if parse_scoring_key(k)[0] == aggregate}
    return parse_scoring_key(max(table, key=table.get))[1] if table else 32


def default_scoring(kind: str, aggregate: str | None = None) -> tuple[str, int]:
    """-> (aggregate, window) for a score kind: "max" over 32-pixel windows
    for the codec's maps; for "defect", the aggregate and window chosen on
    validation crops when the head was exported (heads/defect.py), or with
    ``aggregate`` given, :func:`head_window`."""
    if kind not in HEAD_KINDS:
        return aggregate or "max", 32
    from . import defect
    meta = defect.load().meta
    aggregate = aggregate or meta.get("aggregate", "max")
    return aggregate, head_window(meta, aggregate)


def score(image, kind: str = "rd", aggregate: str | None = None, window: int | None = None, model=None,
          quality: float = 4, max_pixels=None) -> tuple[float, np.ndarray]:
    """-> (image score, per-pixel heat map) for one image (``aggregate`` or
    ``window`` None: :func:`default_scoring`)."""
    if kind not in MAP_KINDS + HEAD_KINDS:
        raise ValueError(f"score kind must be one of {', '.join(MAP_KINDS + HEAD_KINDS)}")
    if aggregate is not None and aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}")
    aggregate, default = default_scoring(kind, aggregate)
    window = window or default
    m = maps(image, model, quality, max_pixels, "shipped" if kind in HEAD_KINDS else None)[kind]
    heat = relative_map(m, window) if aggregate == "relative" else m
    return image_score(m, aggregate, window), heat


def fit(images, out_path=None, kind: str = "rd", aggregate: str | None = None, window: int | None = None,
        model=None, quality: float = 4, fpr: float = 0.05) -> dict:
    """Score normal images and record their distribution -> detector dict
    (written as JSON to ``out_path`` if given)."""
    from ..pipeline import load_model
    if not 0 < fpr < 1:
        raise ValueError("false-positive rate must be between 0 and 1")
    lm = load_model(model)
    if kind in MAP_KINDS + HEAD_KINDS:
        aggregate, default = default_scoring(kind, aggregate)
        window = window or default
    scores = sorted(score(p, kind, aggregate, window, lm, quality)[0] for p in images)
    if len(scores) < 2:
        raise ValueError("fit needs at least 2 normal images")
    from ..registry import MODELS
    shipped = lm.model_id in MODELS and MODELS[lm.model_id].path.resolve() == lm.path.resolve()
    det = {"format": "aecodec-anomaly-detector/1", "model": lm.model_id if shipped else str(lm.path),
           "weights_hash": lm.weights_hash.hex(), "quality": quality, "kind": kind,
           "aggregate": aggregate, "window": window, "fpr": fpr,
           "threshold": float(np.quantile(scores, 1 - fpr)), "normal_scores": scores,
           "quantiles": {str(p): float(np.quantile(scores, p / 100)) for p in (50, 90, 95, 99)}}
    if out_path is not None:
        Path(out_path).write_text(json.dumps(det, indent=1))
    return det


def load_detector(path) -> dict:
    try:
        det = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot read detector {path}: {e}") from None
    if not isinstance(det, dict) or det.get("format") != "aecodec-anomaly-detector/1":
        raise ValueError(f"{path} is not an aecodec anomaly detector")
    return det


def judge(image, det: dict, model=None) -> dict:
    """Score one image with a detector -> {score, percentile, anomalous, heat}."""
    s, heat = score(image, det["kind"], det["aggregate"], det["window"], model or det["model"],
                    det["quality"])
    normal = np.asarray(det["normal_scores"])
    return {"score": s, "percentile": float(100 * (normal <= s).mean()),
            "anomalous": bool(s > det["threshold"]), "heat": heat}


def heat_overlay(rgb: np.ndarray, heat: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """Dimmed grey image with the heat map in red/yellow on top (uint8)."""
    vmax = vmax or float(np.quantile(heat, 0.999)) or 1.0
    h = np.clip(heat / vmax, 0, 1)[..., None]
    grey = rgb.mean(2, keepdims=True) * 0.5
    hot = np.concatenate([np.ones_like(h), h, np.zeros_like(h)], 2) * 255
    return (grey * (1 - h) + hot * h).clip(0, 255).astype(np.uint8)
