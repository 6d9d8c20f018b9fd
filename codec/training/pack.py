"""A compact uint8 pack of training crops, for GPU bursts.

Made once on the CPU (``make_pack``) as a safetensors file holding one
(N, 3, S, S) uint8 tensor of crops already down-scaled the way
:class:`~codec.training.data.CropSampler` does it. On the GPU the whole pack
is copied once, and each step cuts random ``crop``-sized windows with random
flips there (:class:`PackSampler`), so no data loading runs during training.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .data import CropSampler, list_images, load_uint8, split, validation_crops


def make_pack(folders, out, count: int, size: int = 256, seed: int = 0) -> Path:
    """Write ``count`` random ``size``^2 crops of the training split to ``out``."""
    train_paths, val_paths = split(list_images(folders))
    sampler = CropSampler([load_uint8(p) for p in train_paths], size)
    gen = torch.Generator().manual_seed(seed)
    crops = torch.empty(count, 3, size, size, dtype=torch.uint8)
    for i in range(0, count, 64):
        n = min(64, count - i)
        crops[i:i + n] = sampler.sample(n, gen).mul(255).round().to(torch.uint8)
    val = torch.cat(validation_crops([load_uint8(p) for p in val_paths[:12]]))
    out = Path(out)
    save_file({"crops": crops, "val": val.mul(255).round().to(torch.uint8)}, str(out), metadata={"size": str(size), "count": str(count)})
    return out


class PackSampler:
    def __init__(self, pack_path, crop: int, device="cpu") -> None:
        tensors = load_file(str(pack_path))
        self.crops = tensors["crops"].to(device)   # (N, 3, S, S) uint8
        #: held-out validation crops, (V, 3, 192, 192) float
        self.val = [v[None].float().div(255).to(device) for v in tensors.get("val", [])]
        n, _, s, _ = self.crops.shape
        if crop > s:
            raise ValueError(f"crop {crop} is larger than the pack's {s}x{s} crops")
        self.crop, self.size, self.n = crop, s, n

    def sample(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """-> (batch, 3, crop, crop) float in [0, 1] on the pack's device."""
        idx = torch.randint(self.n, (batch,), generator=gen)
        off = torch.randint(self.size - self.crop + 1, (batch, 2), generator=gen)
        flip = torch.rand(batch, generator=gen) < 0.5
        c = self.crop
        out = torch.stack([self.crops[i, :, t:t + c, l:l + c]
                           for i, (t, l) in zip(idx.tolist(), off.tolist())])
        out = torch.where(flip.to(out.device)[:, None, None, None], out.flip(-1), out)
        return out.float().div_(255.0)
