"""Train the default model's context model (codec/context.py) and install it.

    python scripts/train_context.py [--weights W] [--data DIR] [--out RUN]
        [--steps N] [--minutes M] [--resume] [--threads T] [-o OUT.safetensors]

Trains on the rate alone with the model's transforms fixed
(codec/training/context.py), checkpointing to RUN/ckpt.pt; with -o, builds
the integer network and writes OUT: the input file's tensors unchanged plus
the context model (``--install-only`` skips training and reads RUN/ckpt.pt).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from codec.training import context as tc  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", default=str(ROOT / "codec/weights/hyperprior-vr.safetensors"))
    ap.add_argument("--data", nargs="+", default=["../shared/data/train"])
    ap.add_argument("--out", default=str(Path.home() / ".cache/aecodec/runs/context"))
    ap.add_argument("--steps", type=int, default=tc.ContextConfig.steps)
    ap.add_argument("--decay-at", default=None, help="comma-separated steps (default: 70%%, 90%% of --steps)")
    ap.add_argument("--lr", type=float, default=tc.ContextConfig.lr)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--install-only", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-o", "--output", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    decay = tuple(int(s) for s in args.decay_at.split(",")) if args.decay_at else None
    print(tc.run(args.weights, args.data, args.out, args.steps, decay, args.lr, args.minutes, args.resume,
                 args.output, args.install_only, log=lambda m: print(m, flush=True)), flush=True)


if __name__ == "__main__":
    main()
