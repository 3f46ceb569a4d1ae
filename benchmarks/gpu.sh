#!/usr/bin/env bash
# One prepared script for a session that is lent a GPU (budget: under 9 minutes in all, so a
# rerun fits in 15 minutes of device time).
#
#   1. the GPU parity tests (pytest -m gpu: compiled Triton kernels == the torch reference)
#   2. the kernel benchmarks (masking, points) and the MAE step, each under its own timeout
#   3. MAE ViT-B/16 224 px in bf16 (train.precision=auto on CUDA): throughput and MFU, eager
#      blocks and torch.compile'd blocks (train.compile=true), vs HF ViTMAE
#
# Usage: bash benchmarks/gpu.sh            (from the repository root, .venv built)
# Env:   PY=python to pick the interpreter; OUT=dir to copy logs + results there;
#        QUICK=1 for the benchmarks' --quick shapes.
# Exit status: 0 when the tests passed and every benchmark finished.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python
DEST=${OUT:-}
LOG=benchmarks/results/gpu_run.log
mkdir -p benchmarks/results
: > "$LOG"
status=0
start=$(date +%s)

step() {  # step <seconds> <label> <command...>: run with a timeout, log, remember failures
    local limit=$1 label=$2
    shift 2
    echo "=== $label (limit ${limit}s, t=$(( $(date +%s) - start ))s) ===" | tee -a "$LOG"
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    [ "$rc" -eq 5 ] && [ "$1" = "$PY" ] && [ "${2:-}" = "-m" ] && [ "${3:-}" = "pytest" ] && rc=0  # none collected
    [ "$rc" -eq 0 ] || { echo "!!! $label failed (rc=$rc)" | tee -a "$LOG"; status=1; }
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG"
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'triton', triton.__version__, 'device', torch.cuda.get_device_name(0))" 2>&1 | tee -a "$LOG"

# 1. parity on the device (kernel files first: fastest signal if compilation breaks)
step 140 "gpu parity: kernels" "$PY" -m pytest -q -x -p no:cacheprovider -m gpu \
    tests/toolkit/test_masking_triton.py tests/adapters/test_point_kernels.py
step 80 "gpu tests: everything else marked gpu" "$PY" -m pytest -q -p no:cacheprovider -m gpu tests \
    --ignore=tests/toolkit/test_masking_triton.py --ignore=tests/adapters/test_point_kernels.py

# 2. benchmarks (JSON + markdown in benchmarks/results, summary in summary.md)
step 200 "benchmarks: masking, points, mae_step" "$PY" -m benchmarks.run --only masking,points,mae_step \
    ${QUICK:+--quick}

# 3. ViT-B/16 MAE, eager and compiled (the compile itself takes a minute or so)
step 150 "mae_step ViT-B/16 224px bf16, eager + torch.compile" "$PY" -m benchmarks.bench_mae_step --vitb \
    --dtype bf16 --compile

echo "=== done in $(( $(date +%s) - start ))s, status $status ===" | tee -a "$LOG"
if [ -n "$DEST" ]; then
    mkdir -p "$DEST" && cp -r benchmarks/results/. "$DEST"/
fi
exit $status
