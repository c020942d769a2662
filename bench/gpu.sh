#!/usr/bin/env bash
# bench/step.py and bench/extract.py on a CUDA GPU with fp16 AMP at the paper's batch (4 identities
# x 4 tracklets x 2 modalities = 32 tracklets, 192 frames of 288x144), this project against the
# official code (same weights, same batch), then this project with activation checkpointing.
# Writes the tables to OUTPUT (default gpu_results.md) and the console; about 5 minutes on one GPU.
#
#   git clone https://github.com/Visuang/VLD /tmp/VLD                  # outside this repository
#   bash bench/gpu.sh /tmp/VLD [OUTPUT]
#
# VLD_BENCH_DEVICE=cpu runs the same script without CUDA and AMP (to try it out; pair it with
# VLD_BENCH_ARGS="--size 64 32" for minutes instead of hours). PYTHON picks the interpreter.
set -euo pipefail
official=${1:?usage: bash bench/gpu.sh OFFICIAL_VLD_CHECKOUT [OUTPUT]}
output=${2:-gpu_results.md}
python=${PYTHON:-.venv/bin/python}
device=${VLD_BENCH_DEVICE:-cuda}
read -r -a extra <<< "${VLD_BENCH_ARGS:-}"
amp=()
if [ "$device" = cuda ]; then amp=(--amp); fi
cd "$(dirname "$0")/.."

{
  gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 || true)
  echo "# VLD on ${gpu:-$device}, $(date -u +%F), ${amp[*]:-fp32}"
  echo
  echo "## Training step, 16 tracklets per modality (first step a warm-up, then the mean of 2)"
  echo
  "$python" bench/step.py --official "$official" --device "$device" "${amp[@]}" --tracklets 16 --steps 3 \
    --sweep --checkpoint-sweep 16 "${extra[@]}"
  echo
  echo "## Test-feature extraction"
  echo
  "$python" bench/extract.py --official "$official" --device "$device" "${amp[@]}" --batches 32 64 --repeats 3 \
    "${extra[@]}"
} 2>&1 | tee "$output"
