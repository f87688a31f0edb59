#!/usr/bin/env bash
# Unpack the carried tokens once per machine: $GPU_DATA/lm_L128_gpu.memmap.xz (+ .json) -> RUNS/lm_L128_gpu.memmap.
#   usage: bench/device_data.sh GPU_DATA RUNS      (used by device_pretrain.sh and device_check.sh)
set -euo pipefail
GPU_DATA=$1; RUNS=$2; PY=${PYTHON:-python3}; DATA=$RUNS/lm_L128_gpu.memmap
mkdir -p "$RUNS"
if [ ! -f "$DATA" ]; then
  $PY -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2] + '.tmp', 'wb'), 1 << 24)" "$GPU_DATA/lm_L128_gpu.memmap.xz" "$DATA"
  mv "$DATA.tmp" "$DATA"
fi
cp "$GPU_DATA/lm_L128_gpu.json" "$RUNS/lm_L128_gpu.json"
