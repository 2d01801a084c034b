#!/usr/bin/env bash
# tuigpt vs nanoGPT's loop on GPUs at the same global batch (docs/PERFORMANCE.md). Run from the repo root:
#   bash benchmarks/gpu_speed.sh        one GPU, ~7 min: tuigpt as shipped, tune, tuned, nanoGPT at both splits
#   bash benchmarks/gpu_speed.sh 2      two GPUs, ~6 min: 1 vs 2 GPUs (torchrun, NCCL), DDP bucket size, nanoGPT
# DATA and TIKTOKEN_CACHE_DIR point at offline copies of the corpus and the gpt2 BPE files.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD TUIGPT_CACHE_DIR=${TUIGPT_CACHE_DIR:-/tmp/tuigpt-cache}
export DATA=${DATA:-.devdata/tinyshakespeare.txt}
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-$PWD/.devdata/tiktoken-cache}
nvidia-smi -L
python3 benchmarks/gpu_speed.py --gpus "${1:-1}" --data "$DATA" "${@:2}"
