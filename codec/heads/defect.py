"""A defect segmenter on the codec's view of an image (anomaly scoring).

The codec alone (heads/anomaly.py: its rate and its reconstruction error)
flags what it cannot code well, such as noise; a pasted patch, a blurred
square or a colour shift is ordinary image content to it. As in DRAEM
(Zavrtanik et al., ICCV 2021), a small discriminative network learns where
an image departs from its surroundings, from synthetic defects made on the
fly on clean training crops, and reads what the autoencoder sees::

    input (8, H, W) = [x (3), x_hat (3), log1p(error / 16) (1), log1p(rate) (1)]
        x_hat, error, rate: the default codec at quality 4 (heads/anomaly.py's maps)
      -> 3x3 convolutions, dilations 1, 2, 4, 8, 16, 1 (receptive field 65 px)
      -> 1x1 -> logit that the pixel belongs to a defect

Training defects (:func:`synthesize`): smooth random blobs (thresholded,
up-sampled noise, DRAEM's Perlin masks in spirit) or thin random strokes
1-3 px wide (curved or straight), filled with a region of another training
image (blended), a blurred, noisy, colour-shifted or tone-changed copy of
the image itself, or a flat colour (strokes: any colour, or near black or
white as a scratch is). These are the families of benchmarks/anomaly.py's
defects -- pasted patches, local blur, noise, colour shifts, scratches --
with other shapes (blobs, not squares; strokes of any length across the
crop, of 1-3 px and of drawn grey levels, not the benchmark's 2 px lines of
pure black or white) and drawn parameters, so the benchmark measures how
the segmenter carries over to other shapes and strengths, not to defect
families it never saw.

Focal loss (Lin et al. 2017) against the defect mask (the pixels the
defect visibly changed, :func:`changed_mask`), plus a cross-entropy
on the largest 2x2 mean logit (:func:`image_logit`). The image score is the
largest mean probability over a square window or along a straight line
(heads/anomaly.py), whichever :func:`choose_scoring` finds best on
validation crops; the probability is averaged over four views of the image
(:func:`probability`: as it is, flipped, turned by 180 degrees, both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .views import SYMMETRIES, turn, turn_back

NAME = "defect"
QUALITY = 4.0
#: weight of the image-level term of :func:`defect_loss`
IMAGE_WEIGHT = 0.05


@dataclass(frozen=True)
class DefectConfig:
    width: int = 32
    dilations: tuple = (1, 2, 4, 8, 16, 1)
    quality: float = QUALITY


class DefectNet(nn.Module):
    def __init__(self, cfg: DefectConfig = DefectConfig()) -> None:
        super().__init__()
        self.cfg = cfg
        layers, cin = [], 8
        for d in cfg.dilations:
            layers += [nn.Conv2d(cin, cfg.width, 3, padding=d, dilation=d), nn.LeakyReLU(0.1)]
            cin = cfg.width
        self.body = nn.Sequential(*layers)
        self.out = nn.Conv2d(cfg.width, 1, 1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """features (B, 8, H, W) -> defect logits (B, 1, H, W)."""
        return self.out(self.body(feats))


_CODEC = {}


def _codec():
    """The shipped default codec, loaded once (frozen)."""
    if "net" not in _CODEC:
        from ..pipeline import load_model
        net = load_model(None).net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        _CODEC["net"] = net
    return _CODEC["net"]


@torch.no_grad()
def features(x: torch.Tensor, codec=None, quality: float = QUALITY) -> torch.Tensor:
    """x (B, 3, H, W) in [0, 1], H and W multiples of 64 -> (B, 8, H, W)."""
    from .anomaly import codec_view
    return stack_features(x, *codec_view(codec or _codec(), x, quality))


def stack_features(x, x_hat, err, rate) -> torch.Tensor:
    return torch.cat([x, x_hat, torch.log1p(err / 16), torch.log1p(rate)], 1)


#: the views of :func:`probability`, in the order they are used: (k, flip)
#: = turned by k x 90 degrees (0 or 180), then flipped left-right or not (the
#: codec is not symmetric, so each view is another look at the image)
VIEWS = SYMMETRIES[:4]
#: views averaged by default: on validation crops (scripts/defect_window.py's
#: synthetic defects), 1 / 2 / 4 views gave image AUROC 0.892 / 0.907 / 0.918
DEFAULT_VIEWS = 4


@torch.no_grad()
def probability(head: "DefectNet", x: torch.Tensor, codec=None, views: int = DEFAULT_VIEWS,
                first=None) -> torch.Tensor:
    """Defect probability (B, 1, H, W) of images x (B, 3, H, W), H and W
    multiples of 64, averaged over the first ``views`` of :data:`VIEWS`
    (each view's maps turned back). ``first``: the codec's view of x itself
    (x_hat, error, rate) at the head's quality, if already computed."""
    if views not in (1, 2, 4):
        raise ValueError(f"views must be 1, 2 or 4, got {views!r}")
    acc = 0
    for k, flip in VIEWS[:views]:
        if (k, flip) == (0, False) and first is not None:
            feats = stack_features(x, *first)
        else:
            feats = features(turn(x, k, flip, (2, 3)), codec, head.cfg.quality)
        acc = acc + turn_back(torch.sigmoid(head(feats)), k, flip, (2, 3))
    return acc / views


# ------------------------------------------------------------ training data
def _uniform(gen, lo, hi, n=()):
    return lo + (hi - lo) * torch.rand(n, generator=gen)


def blob_mask(size: int, gen: torch.Generator) -> torch.Tensor:
    """(size, size) 0/1: a thresholded, up-sampled random field covering 2-15 % of the crop."""
    cells = int(torch.randint(3, 8, (1,), generator=gen))
    field = torch.randn(1, 1, cells, cells, generator=gen)
    field = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)[0, 0]
    share = float(_uniform(gen, 0.02, 0.15))
    return (field >= torch.quantile(field.flatten(), 1 - share)).float()


def stroke_mask(size: int, gen: torch.Generator) -> torch.Tensor:
    """(size, size) 0/1: a thin curve 1-3 px wide (a quadratic Bezier; half
    of them straight, with the control point midway between the ends)."""
    p = _uniform(gen, 0, size, (3, 2))
    if float(torch.rand((), generator=gen)) < 0.5:
        p[1] = (p[0] + p[2]) / 2
    t = torch.linspace(0, 1, 4 * size)[:, None]
    pts = (1 - t) ** 2 * p[0] + 2 * t * (1 - t) * p[1] + t ** 2 * p[2]
    m = torch.zeros(size, size)
    w = int(torch.randint(1, 4, (1,), generator=gen))
    for dy in range(-(w // 2), (w + 1) // 2):
        for dx in range(-(w // 2), (w + 1) // 2):
            yy = (pts[:, 0] + dy).long().clamp(0, size - 1)
            xx = (pts[:, 1] + dx).long().clamp(0, size - 1)
            m[yy, xx] = 1
    return m


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = int(2 * math.ceil(3 * sigma) + 1)
    g = torch.exp(-0.5 * ((torch.arange(k) - k // 2) / sigma) ** 2)
    g = (g / g.sum()).to(x)
    c = x.shape[0]
    y = F.conv2d(F.pad(x[None], (k // 2,) * 4, mode="replicate"), g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(y, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)[0]


def synthesize(x: torch.Tensor, gen: torch.Generator, p_clean: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean crops (B, 3, S, S) -> (defective crops, masks (B, 1, S, S)); a
    share ``p_clean`` stays clean (all-zero mask). See the module docstring."""
    B, _, S, _ = x.shape
    out, masks = x.clone(), torch.zeros(B, 1, S, S)
    for b in range(B):
        if float(torch.rand((), generator=gen)) < p_clean:
            continue
        kind = int(torch.randint(0, 6, (1,), generator=gen))
        m = stroke_mask(S, gen) if kind == 5 else blob_mask(S, gen)
        img = x[b]
        if kind == 0:      # another image's content, blended
            donor = x[(b + 1 + int(torch.randint(0, B - 1, (1,), generator=gen))) % B] if B > 1 else img.flip(-1)
            donor = donor.roll((int(torch.randint(0, S, (1,), generator=gen)),) * 2, (1, 2))
            beta = float(_uniform(gen, 0.6, 1.0))
            fill = beta * donor + (1 - beta) * img
        elif kind == 1:    # blurred
            fill = _blur(img, float(_uniform(gen, 1.5, 4.0)))
        elif kind == 2:    # noisy
            fill = img + torch.randn(img.shape, generator=gen) * float(_uniform(gen, 8, 40)) / 255
        elif kind == 3:    # colour shift
            shift = _uniform(gen, -60, 60, (3,))
            shift[int(torch.randint(0, 3, (1,), generator=gen))] = float(_uniform(gen, 25, 60)) * \
                (1 if float(torch.rand((), generator=gen)) < 0.5 else -1)
            fill = img + shift.view(3, 1, 1) / 255
        elif kind == 4:    # tone: gamma and contrast
            gamma, contrast = float(_uniform(gen, 0.5, 2.0)), float(_uniform(gen, 0.5, 1.5))
            fill = ((img.clamp(0, 1) ** gamma - 0.5) * contrast + 0.5)
        else:              # a stroke of one colour; half of them near black or white, like a scratch
            if float(torch.rand((), generator=gen)) < 0.5:
                grey = float(_uniform(gen, 0, 0.08))
                colour = torch.full((3,), grey if float(torch.rand((), generator=gen)) < 0.5 else 1 - grey)
            else:
                colour = _uniform(gen, 0, 1, (3,))
            fill = colour.view(3, 1, 1).expand_as(img)
        fill = fill.clamp(0, 1)
        out[b] = img * (1 - m) + fill * m
        masks[b, 0] = changed_mask(img, fill, m)
    return out, masks


def changed_mask(img: torch.Tensor, fill: torch.Tensor, m: torch.Tensor, near: int = 2) -> torch.Tensor:
    """The training target: pixels of the defect's shape ``m`` (S, S) within
    ``near`` px of one that the fill changed by more than 1.5/255. A blur
    or tone change leaves flat parts of its blob as they were; labelling
    them defective would teach the head to flag flat regions of clean images."""
    changed = ((fill - img).abs().amax(0) > 1.5 / 255).float()
    return F.max_pool2d(changed[None, None], 2 * near + 1, stride=1, padding=near)[0, 0] * m


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    pt = p * target + (1 - p) * (1 - target)
    return (ce * (1 - pt) ** gamma).mean()


def image_logit(logits: torch.Tensor, window: int = 2) -> torch.Tensor:
    """(B, 1, H, W) -> (B,): the largest mean logit over ``window`` x ``window``
    windows, the image score (:func:`anomaly.image_score`) in logit space."""
    return F.avg_pool2d(logits, window, stride=1).amax((1, 2, 3))


def defect_loss(net: DefectNet, x: torch.Tensor, gen: torch.Generator, image_weight: float = IMAGE_WEIGHT):
    """The head loss for training/heads.py: synthesize, featurize, focal loss
    per pixel, plus ``image_weight`` x the cross-entropy of the image score
    (:func:`image_logit`) against "has a defect": the pixel loss averages
    over the crop, this term presses on the one most defect-like spot of a
    clean crop, which is what raises a false alarm."""
    xd, mask = synthesize(x, gen)
    logits = net(features(xd, quality=net.cfg.quality))
    loss = focal_loss(logits, mask)
    if image_weight:
        has = (mask.amax((1, 2, 3)) > 0).float()
        loss = loss + image_weight * F.binary_cross_entropy_with_logits(image_logit(logits), has)
    with torch.no_grad():
        pred = logits > 0
        tp = (pred & (mask > 0)).sum().item()
        iou = tp / max(1, (pred | (mask > 0)).sum().item())
    return loss, {"iou": iou}


# ------------------------------------------------------------------ scoring
def load(path=None) -> DefectNet:
    from .store import shipped
    return shipped(NAME, NAME, DefectConfig, DefectNet, path)


#: image scores tried on validation crops: (aggregate, window or line length)
SCORINGS = tuple(("max", w) for w in (2, 4, 8, 16, 32)) + tuple(("line", n) for n in (17, 33, 65, 129))


@torch.no_grad()
def choose_scoring(head: DefectNet, folders, scorings=SCORINGS, crops: int = 96, crop: int = 256,
                   seed: int = 0, codec=None) -> tuple[tuple[str, int], dict]:
    """The image score (aggregate and window, anomaly.image_score), chosen
    on synthetic defects of the validation split of the training folders
    (never the benchmark's images or defects): image-level AUROC of clean
    against defective crops for each -> ((aggregate, window), {"agg-window": AUROC})."""
    from sklearn.metrics import roc_auc_score

    from ..training.data import CropSampler, list_images, load_uint8, split
    from .anomaly import image_score, parse_scoring_key, scoring_key
    _, val = split(list_images(folders))
    sampler = CropSampler([load_uint8(p) for p in val], crop)
    gen = torch.Generator().manual_seed(seed)
    clean = sampler.sample(crops, gen)
    bad, _ = synthesize(clean, gen, p_clean=0.0)
    maps = []
    for x in (clean, bad):
        for i in range(0, crops, 8):
            maps += list(probability(head, x[i:i + 8], codec)[:, 0].numpy())
    labels = [0] * crops + [1] * crops
    table = {scoring_key(a, w): float(roc_auc_score(labels, [image_score(m, a, w) for m in maps]))
             for a, w in scorings}
    return parse_scoring_key(max(table, key=table.get)), table
