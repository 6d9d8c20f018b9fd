#!/usr/bin/env bash
# Create .venv and install aecodec with everything its tests and benchmarks use.
# torch and torchvision are pinned as a matching pair: compressai imports
# torchvision, and an unmatched pair fails to import.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The CUDA build of torch with its NVIDIA libraries is about 6 GB in .venv;
# pip's download cache would hold another copy of the wheels, so skip it.
export PIP_NO_CACHE_DIR=1
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[test,eval]"
touch .venv/.installed
