#!/usr/bin/env bash
# The GPU checks behind docs/PERFORMANCE.md, run on a 2-GPU machine from the repo root:
#   issue 4: GPT-2 124M, bf16 + compile, ~200 iterations on one GPU: tuigpt's MFU vs an independent
#            FlopCounterMode figure, with the NVML readings;
#   issue 6: compile off vs on (tuigpt bench --compare);
#   issue 7: the same model on 1 and 2 GPUs (torchrun, NCCL): scaling, per-rank times, comm/compute.
# DATA and TIKTOKEN_CACHE_DIR point at offline copies of the corpus and BPE files.
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD TUIGPT_CACHE_DIR=${TUIGPT_CACHE_DIR:-/tmp/tuigpt-cache}
DATA=${DATA:-.devdata/tinyshakespeare.txt}
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-.devdata/tiktoken-cache}
OUT=${OUT:-/tmp/gpu-check}; mkdir -p "$OUT"
CFG=configs/train_gpt2_shakespeare.yaml
py=python3

nvidia-smi -L; $py -c 'import torch; print("torch", torch.__version__, "gpus", torch.cuda.device_count())'
CUDA_VISIBLE_DEVICES=0 $py -m tuigpt info 2>&1 | tee "$OUT/info.txt"

echo "=== issue 4: MFU check, 1 GPU, bf16, compile, 200 iterations"
CUDA_VISIBLE_DEVICES=0 OUT="$OUT/mfu" $py benchmarks/mfu_check.py $CFG --iters 200 --data_path=$DATA 2>&1 | tee "$OUT/mfu.txt"

echo "=== issue 7: 2 GPUs, torchrun, 100 iterations"
$py -m torch.distributed.run --standalone --nproc_per_node=2 -m tuigpt $CFG --headless --max_iters=100 \
    --eval_interval=1000 --log_interval=10 --data_path=$DATA --out_dir="$OUT/ddp" --run_name=gpu2 2>&1 | tee "$OUT/ddp.txt"
grep '"type":"cluster"' "$OUT/ddp/gpu2/metrics.jsonl" | tail -2 | cut -c1-1500

echo "=== issue 6: compile off vs on, 1 GPU"
CUDA_VISIBLE_DEVICES=0 timeout 200 $py -m tuigpt bench $CFG --steps 30 --warmup 5 --compare compile=false,true \
    --data_path=$DATA 2>&1 | tail -40 | tee "$OUT/bench_compile.txt"
