#!/usr/bin/env bash
# Join the pieces bench/device_pretrain.sh wrote (gpu_runs.tar.part_0, _1, ...) and unpack them into DEST.
#   usage: bench/unpack_gpu_runs.sh FOLDER_WITH_PIECES DEST
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: bench/unpack_gpu_runs.sh FOLDER_WITH_PIECES DEST" >&2; exit 2; }
ls "$1"/gpu_runs.tar.part_* >/dev/null 2>&1 || { echo "$1: no gpu_runs.tar.part_* pieces" >&2; exit 2; }
mkdir -p "$2"
cat $(ls "$1"/gpu_runs.tar.part_* | sort -V) | tar -x -C "$2"
