#!/usr/bin/env bash
# Prepare carry/ for a GPU training burst (run here, on the CPU machine):
#   carry/wheels/            cp312 wheels the GPU machine lacks (it has torch, no registry)
#   carry/pack.safetensors   the training split as uint8 images (+ validation crops)
#   carry/init.safetensors   fp16 weights of the newest checkpoint of RUN (if any: a
#                            full one, else RUN/compact/, an earlier burst's brought
#                            back through $OUT; with neither, the shipped default
#                            weights); the burst starts Adam afresh, warmed up
#   carry/compact/           with RESUME=1 instead: RUN/compact/ itself, resumed with
#                            its Adam moments (26 MB more to carry: see the size check)
# Usage: [RESUME=1] scripts/prepare_burst.sh [RUN_DIR]
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
rm -rf carry/compact carry/init.safetensors
ckpt=$(ls -d "$RUN"/ckpt-*.pt 2>/dev/null | tail -1 || true)
[ -z "$ckpt" ] && [ -f "$RUN/compact/state.json" ] && ckpt=$RUN/compact
if [ -n "${RESUME:-}" ] && [ "$ckpt" = "$RUN/compact" ]; then
  cp -r "$RUN/compact" carry/compact
elif [ -n "$ckpt" ]; then
  .venv/bin/aecodec export "$ckpt" -o carry/init.safetensors --id burst-init -f
else  # no run here (a fresh machine): fine-tune the shipped weights (training drops their
  # context model and integer h_s, which are rebuilt after the burst; the post-filter trains on with
  # the transforms, POST=1 in gpu_burst.sh)
  cp codec/weights/hyperprior-vr.safetensors carry/init.safetensors
fi
du -sh carry carry/*
# The device call sends the working tree (tracked files too) plus carry/: at most 64 MiB.
total=$( (git ls-files -z; git ls-files -z --others --exclude-standard; find carry -type f -print0) \
  | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
echo "would travel: $((total / 1048576)) MiB (limit 64)"
if [ "$total" -gt $((64 * 1048576)) ]; then
  echo "over the limit: for the call, untrack the shipped weights (the burst does not read them):"
  echo "  git rm -r -q --cached codec/weights && echo /codec/weights/ >> .git/info/exclude"
  echo "and afterwards: git reset -q codec/weights, and remove that line from .git/info/exclude"
fi
