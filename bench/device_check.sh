#!/usr/bin/env bash
# The prepared device check: one command on one GPU (H100/H200, <= 8 minutes), everything written to OUT.
#   usage: bench/device_check.sh OUT [--smoke] [--pretrain-minutes N]
# 1. the accelerator-only tests (tests/test_device.py: bf16 parity with Hugging Face at equal weights, exact resume)
#    and the GPU-image import tests (no datasets/nbdev/plotting);
# 2. the MLM step benchmark (bench/bench_mlm.py) at batch 4096 for Tiny, Mini and Medium: pd_nb, pd_nb+compile, HF eager;
#    the stage benchmarks (bench/bench_stages.py: distillation cached vs online teacher, fine-tuning vs HF Trainer, inference);
# 3. with --pretrain-minutes N: a chunk of the paper's pre-training recipe (bench/device_pretrain.sh) in what is left.
# --smoke runs the same steps at toy size on CPU (CI does, tests/test_device_check.py). Needs the carried
# .gpu_data/ (packed tokens, tokenizer; see bench/device_pretrain.sh) except under --smoke.
set -uo pipefail
OUT=$1; shift; SMOKE=0; PRETRAIN_MINUTES=0
while [ $# -gt 0 ]; do case $1 in
  --smoke) SMOKE=1;; --pretrain-minutes) PRETRAIN_MINUTES=$2; shift;;
  *) echo "device_check.sh: unknown option '$1' (expected --smoke or --pretrain-minutes N)" >&2; exit 2;; esac; shift; done
PY=${PYTHON:-python3}; mkdir -p "$OUT"; : > "$OUT/summary.txt"; T0=$(date +%s); status=0
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
step() { echo "== $1 ($(( $(date +%s) - T0 )) s)" | tee -a "$OUT/summary.txt"; }
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi"
  $PY -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'cuda', torch.cuda.is_available())"; } > "$OUT/env.txt" 2>&1
if [ $SMOKE = 1 ]; then
  export PD_NB_TEST_DEVICE=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  CORPUS=sample; BENCH=(--size tiny --batch 4 --steps 2 --warmup 1 --threads 1 --contenders pd_nb hf)
  STAGES=(--threads 1 --steps 2 --warmup 0 --repeats 1 --distill-batch 2 --label-batch 2 --ft-batch 4 --infer-sizes tiny --infer-batch 2 --latency-steps 2)
else
  export PD_NB_TOKENIZER=${PD_NB_TOKENIZER:-$PWD/.gpu_data/tokenizer}
  RUNS=${PD_NB_GPU_RUNS:-runs/gpu}; mkdir -p "$RUNS"; CORPUS=$RUNS/lm_L128_gpu.memmap
  PYTHON=$PY bash bench/device_data.sh .gpu_data "$RUNS"
  BENCH=(--size tiny mini medium --batch 4096 --steps 20 --contenders pd_nb pd_nb+compile hf)
  STAGES=(--steps 20 --repeats 2)
fi
step "tests"
$PY -m pytest tests/test_device.py tests/test_gpu_image.py -q -p no:cacheprovider > "$OUT/tests.txt" 2>&1 || status=1
tail -n 3 "$OUT/tests.txt" | tee -a "$OUT/summary.txt"
step "MLM step benchmark"
$PY bench/bench_mlm.py "${BENCH[@]}" --precision bf16 --corpus "$CORPUS" --out "$OUT/bench_mlm.json" > "$OUT/bench_mlm.txt" 2>&1 || status=1
grep -E "tok/s|x,|peak" "$OUT/bench_mlm.txt" | tee -a "$OUT/summary.txt"
step "stage benchmarks (distillation, fine-tuning, inference)"
$PY bench/bench_stages.py "${STAGES[@]}" --out "$OUT/bench_stages.json" > "$OUT/bench_stages.txt" 2>&1 || status=1
grep -E "^(distill|finetune|inference) " "$OUT/bench_stages.txt" | tee -a "$OUT/summary.txt"
if [ "$PRETRAIN_MINUTES" != 0 ] && [ $SMOKE = 0 ]; then
  step "pre-training chunk ($PRETRAIN_MINUTES min)"
  bash bench/device_pretrain.sh "$OUT" "$PRETRAIN_MINUTES" || status=1
fi
step "done, status $status"
exit $status
