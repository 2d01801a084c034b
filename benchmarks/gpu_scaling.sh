#!/usr/bin/env bash
# Issue 7's GPU check: the GPT-2 124M config for 100 iterations on 1 GPU, then on 2 GPUs (torchrun, NCCL),
# same global batch (8 x 1024 x 4 accumulation). Prints the last iteration lines and the cluster records.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD TUIGPT_CACHE_DIR=${TUIGPT_CACHE_DIR:-/tmp/tuigpt-cache}
export TIKTOKEN_CACHE_DIR=$PWD/.devdata/tiktoken-cache
DATA=${DATA:-.devdata/tinyshakespeare.txt}
OUT=${OUT:-/tmp/gpu-scaling}; mkdir -p "$OUT"
CFG=configs/train_gpt2_shakespeare.yaml
COMMON="--headless --max_iters=100 --eval_interval=100 --eval_iters=5 --log_interval=10 --data_path=$DATA --out_dir=$OUT"
CUDA_VISIBLE_DEVICES=0 python3 -m tuigpt $CFG $COMMON --run_name=gpu1 2>&1 | tee "$OUT/gpu1.log" | grep -E "^(tuigpt|iter (50|60|70|80|90|100)/|eval|checkpoint|done|error|warning)"
python3 -m torch.distributed.run --standalone --nproc_per_node=2 -m tuigpt $CFG $COMMON --run_name=gpu2 2>&1 \
    | tee "$OUT/gpu2.log" | grep -E "^(tuigpt|info|iter (50|60|70|80|90|100)/|eval|checkpoint|done|error|warning)"
grep '"type":"cluster"' "$OUT/gpu2/metrics.jsonl" | tail -3
