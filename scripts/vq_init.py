"""Start a VQ codec from the trained default model instead of from scratch.

The VQ codec shares the backbone (g_a, g_s) with the scalar hyperprior; what
differs is the quantizer and its prior. This copies the default's transforms,
folds the gain of one quality level into g_a's last convolution (so g_s sees
latents on the scale it was trained on), fits the residual codebooks by
k-means on training crops, and sets the factorized prior to the symbol
frequencies. The result is a weights file for ``aecodec train --init`` (the
checkerboard context model is added after training, by ``aecodec refit``)::

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
from codec.models import LAMBDAS_MSE, ModelConfig, build  # noqa: E402
from codec.training.data import CropSampler, list_images, load_uint8, split  # noqa: E402


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
    if src.config.arch != "hyperprior":
        sys.exit(f"error: {args.default} is a {src.config.arch} model, not a hyperprior")
    hp = src.net
    cfg = ModelConfig(arch="vq", N=src.config.N, M=src.config.M, lambdas=LAMBDAS_MSE[:args.stages],
                      codebook=args.codebook, vq_dim=args.vq_dim)
    net = build(cfg)
    net.g_a.load_state_dict(hp.g_a.state_dict())
    net.g_s.load_state_dict(hp.g_s.state_dict())
    q = args.quality - 1
    scale = torch.exp(hp.log_gain[q] + hp.log_inv_gain[q]).detach()    # what g_s sees = y * scale
    with torch.no_grad():
        last = net.g_a[-1]
        last.weight.mul_(scale[:, None, None, None])
        last.bias.mul_(scale)

    train, _ = split(list_images(args.data))
    gen = torch.Generator().manual_seed(args.seed)
    sampler = CropSampler([load_uint8(p) for p in train], args.crop)
    with torch.no_grad():
        y = torch.cat([net.g_a(sampler.sample(8, gen)) for _ in range(-(-args.crops // 8))])
        counts = net.vq.kmeans_init(y, gen=gen)
        net.prior_logits.copy_(torch.log((counts + 0.5) / (counts + 0.5).sum(-1, keepdim=True)))
    used = (counts > 0).float().mean().item()
    bits = -(counts / counts.sum(-1, keepdim=True) * torch.log2(torch.softmax(net.prior_logits, -1))).sum(-1)
    print(f"{len(y)} crops: codebook usage {used:.1%}, "
          f"bits per index by stage {[round(b, 2) for b in bits.mean(1).tolist()]}")
    weights.save(net, args.out, Path(args.out).stem, meta={
        "init": f"from {Path(args.default).name} (g_a with quality {args.quality}'s gain folded in, g_s), "
                f"codebooks by k-means on {len(y)} training crops of {args.crop}px"})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
