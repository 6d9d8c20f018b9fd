"""Start a VQ codec from the trained default model instead of from scratch
(codec/training/transfer.py): its transforms, codebooks by k-means on
training crops. The result is a weights file for ``aecodec train --init``::

    python scripts/vq_init.py codec/weights/hyperprior-vr.safetensors ../shared/data/train \\
        -o ~/.cache/aecodec/vq-init.safetensors --codebook 1024 --vq-dim 40 --stages 6
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import weights  # noqa: E402
from codec.training.data import CropSampler, list_images, load_uint8, split  # noqa: E402
from codec.training.transfer import vq_from_hyperprior  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("default", help="weights of a trained hyperprior model")
    ap.add_argument("data", nargs="+", help="training image folders (validation split left out)")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--codebook", type=int, default=1024)
    ap.add_argument("--vq-dim", type=int, default=40)
    ap.add_argument("--stages", type=int, default=6)
    ap.add_argument("--quality", type=int, default=4, help="level whose gain scales the latent")
    ap.add_argument("--crops", type=int, default=256)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(1)
    src = weights.load(args.default)
    train, _ = split(list_images(args.data))
    gen = torch.Generator().manual_seed(args.seed)
    sampler = CropSampler([load_uint8(p) for p in train], args.crop)
    batches = [sampler.sample(8, gen) for _ in range(-(-args.crops // 8))]
    try:
        net, facts = vq_from_hyperprior(src.net, batches, args.codebook, args.vq_dim, args.stages,
                                        args.quality, gen)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(facts)
    weights.save(net, args.out, Path(args.out).stem, meta={
        "init": f"from {Path(args.default).name} (g_a with quality {args.quality}'s gain folded in, g_s), "
                f"codebooks by k-means on {len(batches) * 8} training crops of {args.crop}px"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
