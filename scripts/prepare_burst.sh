#!/usr/bin/env bash
# Prepare carry/ for a GPU training burst (run here, on the CPU machine):
#   carry/wheels/            cp312 wheels the GPU machine lacks (it has torch, no registry)
#   carry/pack.safetensors   the training split as uint8 images (+ validation crops)
#   carry/init.safetensors   fp16 weights of the newest checkpoint of RUN (if any)
# Usage: scripts/prepare_burst.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-$HOME/.cache/aecodec/runs/hp-vr-96-160}
rm -rf carry/wheels
mkdir -p carry/wheels
.venv/bin/python -m pip download -q --no-deps --only-binary :all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 \
  -d carry/wheels compressai==1.2.8 "constriction>=0.4,<0.6" pytorch-msssim
.venv/bin/aecodec pack ../shared/data/train -o carry/pack.safetensors -f
ckpt=$(ls "$RUN"/ckpt-*.pt 2>/dev/null | tail -1 || true)
if [ -n "$ckpt" ]; then
  .venv/bin/aecodec export "$ckpt" -o carry/init.safetensors --id burst-init -f
fi
du -sh carry carry/*
