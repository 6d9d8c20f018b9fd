#!/usr/bin/env bash
# One GPU training burst, end to end (run on the device machine, repo root):
# resume carry/compact/ (a compact checkpoint of an earlier burst: weights and
# Adam moments) if it is there, else start from carry/init.safetensors (fresh
# Adam, with a warm-up), train on carry/pack.safetensors in PHASES
# (lr:minutes, each resuming the last), then write to $OUT: weights.safetensors
# (fp16), compact/ (resumable, files < 16 MiB), log.csv, train_speed.json.
# Every phase runs under its own timeout and a failed phase still leaves the
# newest checkpoint to export. POST=1 (the default) trains the post-filter
# with the transforms (`train --post`): the start's filter, kept, instead of
# dropped and retrained on the CPU for hours afterwards. With CONTEXT_MINUTES, the context model
# (codec/context.py) is then trained for the new weights on the same pack
# (rate only, transforms fixed; CONTEXT_STEPS: set it to what fits, the lr
# decays at 70 % and 90 % of it; CONTEXT_BATCH; CONTEXT_CROPS per image) and its
# checkpoint (12.7 MB) written to $OUT/context/; back here, install it after
# the integer h_s (the install remakes the bank from the same pack, 42 s):
#   python scripts/integerize.py W
#   aecodec train-context --pack carry/pack.safetensors --crops-per-image C --weights W \
#     --out OUT/context --install-only -o W -f
# Test it here first (PYTHON: the venv's, where python3 is not the 3.12 the wheels are for):
#   PYTHON=.venv/bin/python DEVICE=cpu PHASES="2e-4:0.1 1e-5:0.1" BATCH=2 CROP=128 CONTEXT_MINUTES=0.1 \
#     CONTEXT_STEPS=4 CONTEXT_CROPS=1 CONTEXT_BATCH=2 OUT=/tmp/b bash scripts/gpu_burst.sh
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-32}
CROP=${CROP:-256}
PHASES=${PHASES:-"1e-4:5.5 1e-5:1.5"}
OUT=${OUT:-out/burst}
RUN=${RUN:-/tmp/aecodec-burst-run}
PY=${PYTHON:-python3}
export PYTHONPATH=$PWD PYTHONWARNINGS=ignore PYTHONUNBUFFERED=1
if ! $PY -c "import compressai, constriction" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/aecodec-site \
    carry/wheels/*.whl || exit 1
  export PYTHONPATH=$PWD:/tmp/aecodec-site
fi
$PY - <<'PY' || exit 1
import importlib, sys
missing = []
for m in ("torch", "compressai", "constriction", "safetensors", "click", "codec.models"):
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
rm -rf "$RUN"
mkdir -p "$OUT"
timeout 120 $PY benchmarks/train_speed.py --cuda-only --json "$OUT/train_speed.json" || echo "train_speed failed"
args=()
post=()
[ "${POST:-1}" = 1 ] && post=(--post)
if [ -f carry/compact/state.json ]; then
  mkdir -p "$RUN" && cp -r carry/compact "$RUN/" && args=(--resume)
elif [ -f carry/init.safetensors ]; then
  args=(--init carry/init.safetensors)
fi
for phase in $PHASES; do
  lr=${phase%%:*}
  minutes=${phase##*:}
  limit=$($PY -c "print(int($minutes * 60 + 90))")
  echo "phase lr $lr for $minutes min"
  timeout "$limit" $PY -m cli.main train --pack carry/pack.safetensors "${args[@]}" --device "$DEVICE" \
    --crop "$CROP" --batch "$BATCH" --lr "$lr" --warmup "${WARMUP:-500}" --minutes "$minutes" --out "$RUN" --ckpt-every 60 \
    --val-every 1000 --no-progress --N "${N:-96}" --M "${M:-160}" "${post[@]}" ${EXTRA:-} || echo "phase $phase failed"
  args=(--resume)
done
ckpt=$(ls "$RUN"/ckpt-*.pt 2>/dev/null | tail -1)
[ -n "$ckpt" ] || { echo "no checkpoint was written"; exit 1; }
cp "$RUN/log.csv" "$OUT/"
$PY -m cli.main export "$ckpt" -o "$OUT/weights.safetensors" --id hyperprior-vr \
  --hardware "${HARDWARE:-GPU burst on $DEVICE}" -f
$PY -c "from codec.training import checkpoint, compact; compact.save_compact(checkpoint.load('$ckpt'), '$OUT/compact')"
if [ -n "${CONTEXT_MINUTES:-}" ]; then
  echo "context model for the new weights, ${CONTEXT_MINUTES} min"
  limit=$($PY -c "print(int(${CONTEXT_MINUTES} * 60 + 240))")
  timeout "$limit" $PY -m cli.main train-context --pack carry/pack.safetensors --weights "$OUT/weights.safetensors" \
    --out "$RUN/context" --device "$DEVICE" --steps "${CONTEXT_STEPS:-20000}" --batch "${CONTEXT_BATCH:-64}" \
    --crops-per-image "${CONTEXT_CROPS:-8}" \
    --minutes "$CONTEXT_MINUTES" || echo "context phase failed"
  mkdir -p "$OUT/context"
  cp "$RUN/context/ckpt.pt" "$RUN/context/log.csv" "$OUT/context/" 2>/dev/null || echo "no context checkpoint"
fi
ls -la "$OUT" "$OUT/compact"
