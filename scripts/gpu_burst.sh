#!/usr/bin/env bash
# One GPU training burst, end to end (run on the device machine, repo root):
# resume from carry/init.safetensors, train for MINUTES on carry/pack.safetensors,
# then write to $OUT: weights.safetensors (fp16), compact/ (resumable, files < 16 MiB),
# log.csv. Test it here first:  DEVICE=cpu MINUTES=0.2 BATCH=2 CROP=128 OUT=/tmp/b bash scripts/gpu_burst.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${MINUTES:-7}
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-16}
CROP=${CROP:-256}
OUT=${OUT:-out/burst}
RUN=${RUN:-/tmp/aecodec-burst-run}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONWARNINGS=ignore
need="compressai constriction safetensors click tqdm"
if ! $PY -c "import ${need// /, }" 2>/dev/null; then
  $PY -m pip install -q --no-deps --no-index carry/wheels/*.whl || true
fi
$PY - <<'PY'
import importlib, sys
missing = []
for m in ("torch", "compressai", "constriction", "safetensors", "click", "tqdm"):
    try:
        importlib.import_module(m)
    except Exception as exc:
        missing.append(f"{m} ({exc})")
if missing:
    sys.exit("burst cannot start, missing: " + "; ".join(missing))
import torch
print("torch", torch.__version__, "cuda", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
mkdir -p "$OUT"
INIT=()
[ -f carry/init.safetensors ] && INIT=(--init carry/init.safetensors)
$PY -m cli.main train --pack carry/pack.safetensors "${INIT[@]}" --device "$DEVICE" --crop "$CROP" \
  --batch "$BATCH" --minutes "$MINUTES" --out "$RUN" --ckpt-every 120 --val-every 500 \
  --no-progress --N "${N:-96}" --M "${M:-160}" ${EXTRA:-}
ckpt=$(ls "$RUN"/ckpt-*.pt | tail -1)
$PY -m cli.main export "$ckpt" -o "$OUT/weights.safetensors" --id hyperprior-vr \
  --hardware "${HARDWARE:-GPU burst on $DEVICE}" -f
$PY -c "from codec.training import checkpoint, compact; compact.save_compact(checkpoint.load('$ckpt'), '$OUT/compact')"
cp "$RUN/log.csv" "$OUT/"
ls -la "$OUT" "$OUT/compact"
