"""Training crops read in place from image folders.

Each crop: pick an image, pick a down-scale factor s in [min_scale, 1]
(down-scaling hides the JPEG artifacts of BSDS500), cut a (crop/s)^2 region
at a random place, resize it to crop^2 with antialiasing, flip at random.
All randomness comes from one ``torch.Generator`` whose state is saved in
checkpoints, so a resumed run draws exactly the crops it would have drawn.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..models import pad_to
from ..transforms import STRIDE

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def list_images(folders) -> list[Path]:
    paths = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            paths.append(folder)
            continue
        if not folder.is_dir():
            raise FileNotFoundError(f"training folder not found: {folder}")
        paths += [p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES]
    if not paths:
        raise FileNotFoundError(f"no images in {', '.join(map(str, folders))}")
    return sorted(paths)


def split(paths: list[Path], every: int = 20) -> tuple[list[Path], list[Path]]:
    """Deterministic train/validation split: every ``every``-th image is held out."""
    val = paths[::every]
    train = [p for i, p in enumerate(paths) if i % every]
    return train, val


def load_uint8(path) -> torch.Tensor:
    """An image file (path or binary file object) as a (3, H, W) uint8 tensor."""
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class CropSampler:
    def __init__(self, images: list[torch.Tensor], crop: int, min_scale: float = 0.5) -> None:
        small = [tuple(im.shape[1:]) for im in images if min(im.shape[1:]) < crop]
        if small:
            raise ValueError(f"crop {crop} is larger than an image of size {small[0]}")
        self.images, self.crop, self.min_scale = images, crop, min_scale

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """-> (batch, 3, crop, crop) float32 in [0, 1], on the images' device
        (the random draws come from ``gen`` on the CPU either way)."""
        out = torch.empty(batch, 3, self.crop, self.crop, device=self.images[0].device)
        for b in range(batch):
            u = torch.rand(4, generator=gen).tolist()
            im = self.images[int(torch.randint(len(self.images), (1,), generator=gen))]
            h, w = im.shape[1:]
            lo = max(self.min_scale, self.crop / min(h, w))
            s = lo + (1.0 - lo) * u[0]
            r = min(min(h, w), int(round(self.crop / s)))
            top, left = int(u[1] * (h - r + 1)), int(u[2] * (w - r + 1))
            region = im[None, :, top:top + r, left:left + r].float() / 255.0
            if r != self.crop:
                region = F.interpolate(region, size=(self.crop, self.crop), mode="bilinear",
                                       antialias=True, align_corners=False)
            if u[3] < 0.5:
                region = region.flip(-1)
            out[b] = region[0].clamp_(0, 1)
        return out


def validation_crops(images: list[torch.Tensor], size: int = 192, scale: float = 0.75) -> torch.Tensor:
    """Fixed validation set: each image down-scaled by ``scale``, centre crop."""
    crops = []
    for im in images:
        x = im[None].float() / 255.0
        h, w = x.shape[-2:]
        x = F.interpolate(x, size=(int(h * scale), int(w * scale)), mode="bilinear",
                          antialias=True, align_corners=False)
        h, w = x.shape[-2:]
        c = min(size, h, w)
        t, l = (h - c) // 2, (w - c) // 2
        crops.append(pad_to(x[:, :, t:t + c, l:l + c].clamp(0, 1), STRIDE))
    return crops
