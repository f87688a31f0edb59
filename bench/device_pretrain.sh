#!/usr/bin/env bash
# One GPU chunk of BERT's (the paper's) pre-training recipe for several students at once, each its own process.
# A chunk ends cleanly after MINUTES (checkpointed); run it again on the same machine to continue (--resume).
#   usage: bench/device_pretrain.sh OUT MINUTES [SIZE:NAME ...]      (default: tiny:tiny 6/128:l6_h128 mini:mini)
# Needs (carried, ignored; or PD_NB_GPU_DATA, PD_NB_TOKENIZER): .gpu_data/lm_L128_gpu.memmap.xz + .json (bench/pack_lm_subset.py) and
# .gpu_data/tokenizer/ (the 4 tokenizer files). Writes OUT/console_*.txt and OUT/gpu_runs.tar.part_* (fp16 final
# weights, logs, milestone figures; bench/unpack_gpu_runs.sh joins them). Tested on CPU by tests/test_device_pretrain.py.
set -euo pipefail
OUT=$1; MINUTES=$2; shift 2
SPECS=("$@"); [ ${#SPECS[@]} -gt 0 ] || SPECS=(tiny:tiny 6/128:l6_h128 mini:mini)
PY=${PYTHON:-python3}
export PD_NB_TOKENIZER=${PD_NB_TOKENIZER:-$PWD/.gpu_data/tokenizer} PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
GPU_DATA=${PD_NB_GPU_DATA:-.gpu_data}; RUNS=${PD_NB_GPU_RUNS:-runs/gpu}; mkdir -p "$RUNS" "$OUT"
DATA=$RUNS/lm_L128_gpu.memmap
PYTHON=$PY bash bench/device_data.sh "$GPU_DATA" "$RUNS"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/console_env.txt" 2>&1
pids=()
for spec in "${SPECS[@]}"; do
  size=${spec%%:*}; name=${spec##*:}; extra=()
  if ls "$RUNS/$name/run/checkpoints"/step_* >/dev/null 2>&1; then extra+=(--resume); fi
  $PY -c 'import sys; from pd_nb.cli import main; sys.exit(main(sys.argv[1:]))' pretrain --preset paper --size "$size" \
      --corpus "$DATA" --out "$RUNS/$name" --max-minutes "$MINUTES" --ckpt-every 20000 --eval-every 5000 \
      --milestones 1e8 3e8 1e9 3e9 1e10 3e10 --threads ${PD_NB_THREADS:-4} ${PRETRAIN_FLAGS:-} "${extra[@]}" > "$RUNS/$name.console" 2>&1 &
  pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done
for spec in "${SPECS[@]}"; do name=${spec##*:}; tail -c 3000 "$RUNS/$name.console" | tr '\r' '\n' | tail -n 15 > "$OUT/console_$name.txt"; done
$PY bench/pack_gpu_runs.py "$RUNS" "$OUT" "${SPECS[@]}"
exit $rc
