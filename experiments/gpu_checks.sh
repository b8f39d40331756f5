#!/usr/bin/env bash
# The GPU measurements of the training fast path, in one go (about 8 minutes on an H100 or H200):
#   1. benchmarks/bench_train_gpu.py: eager fp32 against the fast path for four networks, several runs
#      per GPU, and a kernel profile of the fast W x 1 step;
#   2. bf16 against fp32: the 20-layer W x 1 swapout net trained for 30 epochs each way, side by side
#      on the same GPU, then both inference modes on the test set.
#
#   experiments/gpu_checks.sh DATA_DIR OUT_DIR [EPOCHS]
#
# DATA_DIR holds CIFAR-10 (the official archive or the compact copy); OUT_DIR receives the benchmark
# JSON and profile, the two run directories (no checkpoints are needed afterwards) and report.md.
# Runs again continue where they stopped. EPOCHS (default 30) makes a quick check possible on the CPU:
#   SWAPOUT_BENCH_ARGS="--device cpu --networks w1-swapout --steps 2 --warmup 1 --reps 1 --concurrent 1" \
#   SWAPOUT_SWEEP_ARGS="--device cpu --max-steps 4 --eval-limit 200 --eval-samples 2" \
#       experiments/gpu_checks.sh ../shared/data /tmp/gpu-checks 1
set -euo pipefail
data=${1:?usage: gpu_checks.sh DATA_DIR OUT_DIR [EPOCHS]}
out=${2:?usage: gpu_checks.sh DATA_DIR OUT_DIR [EPOCHS]}
epochs=${3:-30}
mkdir -p "$out"
cd "$(dirname "$0")/.."

python benchmarks/bench_train_gpu.py --profile --out "$out" ${SWAPOUT_BENCH_ARGS:-} | tee "$out/bench.md"

cat > "$out/precision.json" <<JSON
{"runs": [
  {"name": "bf16", "preset": "table1/swapout-v2-w1", "seeds": [0], "overrides": {"epochs": $epochs, "precision": "bf16"}},
  {"name": "fp32", "preset": "table1/swapout-v2-w1", "seeds": [0], "overrides": {"epochs": $epochs, "precision": "fp32"}}
]}
JSON
if [ -f "$out/precision/sweep.json" ]; then
    python -m swapout.cli sweep --out "$out/precision" --per-gpu 2 --data-dir "$data" ${SWAPOUT_SWEEP_ARGS:-}
else
    python -m swapout.cli sweep --out "$out/precision" --file "$out/precision.json" --per-gpu 2 --data-dir "$data" \
        ${SWAPOUT_SWEEP_ARGS:-}
fi | tee "$out/report.md"
