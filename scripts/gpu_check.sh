#!/usr/bin/env bash
# One-shot GPU check: train the `gpu` preset on FER2013 for about 8 minutes on one GPU, then print the
# validation (PublicTest) accuracy, the epoch time and the training throughput.
#
#   FER2013_DIR=/path/to/fer2013 scripts/gpu_check.sh                 # ~8 minutes on one modern GPU
#   FER2013_DIR=... scripts/gpu_check.sh --model sota_resemote_small  # any `fer_lib train` flag overrides
#
# Budget: --max-minutes 7 with --fit-budget: after each epoch the cosine schedule is re-planned from the measured
# epoch times so that it ends (learning rate annealed) when the 7 minutes do, whatever the GPU's speed; --epochs 30
# is only the first epoch's plan. Environment knobs: MAX_MINUTES, EPOCHS, NAME (run folder runs/$NAME), PY.
#
# CPU dry run of the whole path (no GPU needed; seconds, not a benchmark):
#   scripts/gpu_check.sh --device cpu --max-minutes 0.2 --subset 256 --subset-val 128 --batch-size 32 \
#       --model baseline_resnet18
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
NAME=${NAME:-gpu_check}
MAX_MINUTES=${MAX_MINUTES:-7}
EPOCHS=${EPOCHS:-30}
DATA_ARGS=()
if [ -n "${FER2013_DIR:-}" ]; then
    DATA_ARGS=(--data-root "$FER2013_DIR")
fi

echo "== gpu_check: $("$PY" -c 'import torch; print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
    "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")')"
start=$(date +%s)
"$PY" -m fer_lib train --preset gpu --data fer2013 "${DATA_ARGS[@]}" --name "$NAME" --epochs "$EPOCHS" \
    --max-minutes "$MAX_MINUTES" --fit-budget --no-progress --log-every 50 "$@"
end=$(date +%s)

"$PY" - "runs/$NAME/history.json" "$((end - start))" <<'PY'
import json, sys
h = json.load(open(sys.argv[1]))
best = max(h, key=lambda r: r["val_acc"])
steady = h[1:] or h  # the first epoch includes warm-up (cuDNN autotuning, torch.compile)
print("== gpu_check results")
print(f"epochs run             {len(h)}")
print(f"validation accuracy    best {best['val_acc']:.4f} (epoch {best['epoch']}), last {h[-1]['val_acc']:.4f}"
      " (PublicTest, EMA weights, no TTA)")
note = f"mean of epochs 2-{len(h)}; epoch 1 {h[0]['seconds']:.1f} s" if len(h) > 1 else "only epoch 1 ran"
print(f"epoch time             {sum(r['seconds'] for r in steady) / len(steady):.1f} s ({note})")
print(f"training throughput    {sum(r['images_per_sec'] for r in steady) / len(steady):.0f} images/s")
print(f"wall time              {sys.argv[2]} s (including data loading and model build)")
PY
