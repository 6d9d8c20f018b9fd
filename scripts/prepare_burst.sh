#!/usr/bin/env bash
# Prepare carry/ for a GPU training burst (run here, on the CPU machine):
#   carry/wheels/       cp312 wheels the GPU machine lacks (it has torch, no registry)
#   carry/pack.safetensors   uint8 training crops (+ held-out validation crops)
#   carry/init.safetensors   fp16 weights of the newest checkpoint of RUN (if any)
# Usage: scripts/prepare_burst.sh [RUN_DIR] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-$HOME/.cache/aecodec/runs/hp-vr-96-160}
COUNT=${2:-190}
mkdir -p carry/wheels
.venv/bin/python -m pip download -q --no-deps --only-binary :all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d carry/wheels compressai==1.2.8 constriction safetensors click tqdm einops pytorch-msssim
.venv/bin/aecodec pack ../shared/data/train -o carry/pack.safetensors --count "$COUNT" --size 256 -f
ckpt=$(ls "$RUN"/ckpt-*.pt 2>/dev/null | tail -1 || true)
if [ -n "$ckpt" ]; then
  .venv/bin/aecodec export "$ckpt" -o carry/init.safetensors --id burst-init -f
fi
du -sh carry carry/*
