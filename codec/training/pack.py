"""A compact pack of training images, for GPU bursts.

Made once on the CPU (``make_pack``): one safetensors file holding the
training split's images as encoded files (uint8 byte tensors) and the
held-out validation crops. An image whose shorter side is at most
``short_side`` keeps its original file bytes; a larger one is down-scaled
to that shorter side and stored as a JPEG (quality 95, no chroma subsampling; the
random down-scaling of training hides its artifacts as it hides those of
BSDS500's own JPEGs). This keeps the 514 training images of
../shared/data/train at about 40 MiB, where raw pixels would take 265 MiB.

On the device the pack is decoded once, its images are copied to the GPU,
and each step cuts its crops there with the same random down-scaling,
cropping and flipping as training from image folders
(:class:`~codec.training.data.CropSampler`, run on the device), so no data
loading runs during training and a burst sees as many distinct crops as a
CPU run.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from .data import CropSampler, list_images, load_uint8, split, validation_crops


def _encoded(path: Path, short_side: int) -> bytes:
    with Image.open(path) as im:  # reads the header only
        w, h = im.size
    if min(h, w) <= short_side:
        return path.read_bytes()
    im = load_uint8(path)
    s = short_side / min(h, w)
    x = F.interpolate(im[None].float(), size=(round(h * s), round(w * s)), mode="bilinear",
                      antialias=True, align_corners=False)
    arr = x[0].round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def make_pack(folders, out, short_side: int = 400) -> Path:
    """Write the training split of ``folders`` (and its validation crops) to ``out``."""
    train_paths, val_paths = split(list_images(folders))
    tensors = {f"file/{i:05d}": torch.frombuffer(bytearray(_encoded(p, short_side)), dtype=torch.uint8)
               for i, p in enumerate(train_paths)}
    val = torch.cat(validation_crops([load_uint8(p) for p in val_paths[:12]]))
    tensors["val"] = val.mul(255).round().to(torch.uint8)
    out = Path(out)
    save_file(tensors, str(out), metadata={"images": str(len(train_paths)), "short_side": str(short_side)})
    return out


class PackSampler(CropSampler):
    """:class:`CropSampler` over a pack's images, decoded once and moved to ``device``."""

    def __init__(self, pack_path, crop: int, device="cpu") -> None:
        tensors = load_file(str(pack_path))
        images = [load_uint8(io.BytesIO(tensors[k].numpy().tobytes())).to(device) for k in sorted(tensors) if k.startswith("file/")]
        if not images:
            raise ValueError(f"{pack_path} holds no training images (made by an older 'aecodec pack'?)")
        super().__init__(images, crop)
        #: held-out validation crops, each (1, 3, 192, 192) float
        self.val = [v[None].float().div(255).to(device) for v in tensors.get("val", [])]
