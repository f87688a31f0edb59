#!/usr/bin/env bash
# Get this checkout ready for a call of the device tool, which carries at most 64 MiB (tracked files + carried paths):
#   bench/device_prepare.sh data     pack the tokens and the tokenizer into the ignored .gpu_data/ (needs PD_NB_DATA; ~3 min)
#   bench/device_prepare.sh hide     untrack data/checkpoints (~90 MB) in the index only, so it does not travel
#   bench/device_prepare.sh restore  track it again (git reset of the index; the files never moved)
# Carry then: .gpu_data/lm_L128_gpu.memmap.xz .gpu_data/lm_L128_gpu.json .gpu_data/tokenizer
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  data)
    PY=${PYTHON:-.venv/bin/python}; mkdir -p .gpu_data/tokenizer
    src=$($PY -c "from pd_nb.data import build_lm_memmap; print(build_lm_memmap(['wikipedia', 'gutenberg'], seq_len=128).filename)")
    $PY bench/pack_lm_subset.py "$src" 420000 .gpu_data/lm_L128_gpu.memmap
    xz -9 -f -T1 .gpu_data/lm_L128_gpu.memmap
    tok=$($PY -c "from pd_nb.core import minilm_dir; print(minilm_dir())")
    cp "$tok"/{tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt} .gpu_data/tokenizer/
    du -sh .gpu_data/*;;
  hide)
    git diff --cached --quiet || { echo "device_prepare.sh: the index has staged changes; commit them first" >&2; exit 2; }
    git rm -r -q --cached data/checkpoints
    grep -qx '/data/checkpoints/' .git/info/exclude 2>/dev/null || echo '/data/checkpoints/' >> .git/info/exclude
    echo "travels: $( (git ls-files; git ls-files --others --exclude-standard) | sort -u | xargs du -cb 2>/dev/null | tail -1 | cut -f1) bytes + carried";;
  restore)
    sed -i '\|^/data/checkpoints/$|d' .git/info/exclude; git reset -q -- data/checkpoints; git status --short | head;;
  *) echo "usage: bench/device_prepare.sh data|hide|restore" >&2; exit 2;;
esac
