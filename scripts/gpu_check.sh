#!/usr/bin/env bash
# The GPU acceptance run (scripts/gpu_check.py): environment and AMP dtype, the loop's per-step overhead against
# the checkout from before issue 20, a torch.compile smoke test, a 2-process DDP smoke test when 2 GPUs are present,
# the `gpu` preset for MINUTES minutes (throughput, peak memory, PublicTest accuracy), and one JSON summary
# (runs/gpu_check/summary.json, and $OUT/gpu_check.json when OUT is set), rewritten after every step. It ends within
# --deadline minutes (default 9; a lent machine cuts a command at 10): the main run gets what is left. Not yet run
# on a GPU.
#
#   scripts/gpu_check.sh --prepare              # once, here: data/packed/ (FER2013, ~36 MiB) and device_data/
#                                               # (the "before" checkout), both git-ignored; prints the call
#   scripts/gpu_check.sh                        # there: reads data/packed/ and device_data/
#   MINUTES=3 scripts/gpu_check.sh --batch-size 1024 --lr 8e-3 --compile-main   # an H100-class variant
#   scripts/gpu_check.sh --dry-run              # on a CPU: every step on tiny data (checks the script only)
#
# Environment: PY (python; default .venv/bin/python, else python3), MINUTES (main run's budget, default 5; 0.3 with --dry-run),
# FER2013_DIR (data instead of data/packed). Any other flag goes to scripts/gpu_check.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
ARGS=()
if [ -n "${MINUTES:-}" ]; then
    ARGS+=(--minutes "$MINUTES")
fi
if [ -n "${FER2013_DIR:-}" ]; then
    ARGS+=(--data-root "$FER2013_DIR")
fi
export PYTHONUNBUFFERED=1
exec "$PY" scripts/gpu_check.py ${ARGS[@]+"${ARGS[@]}"} "$@"
