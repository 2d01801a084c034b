#!/usr/bin/env bash
# Issue 22 on one GPU (docs/PERFORMANCE.md, "Today's recipe"), from the repo root:
#   NANOGPT=DIR DATA=FILE OUT=DIR bash benchmarks/gpu_recipe.sh PART...
# PARTs, each appending JSON lines under $OUT and printing its table:
#   step     Muon's step against AdamW's on the baby GPT, alternating (benchmarks/muon_step.py)
#   race     nanoGPT's train.py (NANOGPT: its train.py, model.py, configurator.py, config/ and
#            data/shakespeare_char/ prepared) to val 1.47, then each recipe of RACE on the baby GPT, seed 1337,
#            one at a time: whole processes, the same data, the same GPU, one call
#   seeds    the baby GPT's recipes again with seed 1338, all at once (their losses count, not their clocks)
#   gpt2     GPT-2 124M on BPE Shakespeare: today's recipe and all of issue 22's, seed 1337 alone, 1338 at once
# SMALL adds overrides to every tuigpt run and NANO_SMALL to nanoGPT's (a dry run of the script on a CPU).
set -uo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD TUIGPT_CACHE_DIR=${TUIGPT_CACHE_DIR:-/tmp/tuigpt-cache}
export TIKTOKEN_CACHE_DIR=${TIKTOKEN_CACHE_DIR:-$PWD/../shared/data/tiktoken-cache}
DATA=${DATA:-$PWD/../shared/data/tinyshakespeare.txt}
NANOGPT=${NANOGPT:-}
OUT=${OUT:-/tmp/gpu-recipe}; mkdir -p "$OUT"
RACE=${RACE:-today,muon,wsd,modern,all}
SEEDS=${SEEDS:-$RACE}  # the recipes the seeds part runs again
STEP_VARIANTS=${STEP_VARIANTS:-adamw,muon,muon:compiled}
NANO_ITERS=${NANO_ITERS:-2500}  # nanoGPT's own schedule (5,000) cut short: it over-fits after ~2,000
SMALL=${SMALL:-}
NANO_SMALL=${NANO_SMALL:-}
DTYPE=${DTYPE:-bfloat16}
py=${PY:-python3}

nvidia-smi -L 2>/dev/null
$py -c 'import torch, yaml, psutil; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
for part in "$@"; do
  echo "=== $part $(date +%T)"
  case $part in
  step)
    $py benchmarks/muon_step.py --config configs/train_shakespeare_char.yaml --data_path="$DATA" --dtype=$DTYPE \
      --compile=false --variants $STEP_VARIANTS --rounds 5 --steps 50 --json "$OUT/step_baby.json" $SMALL
    ;;
  race)
    $py benchmarks/recipe.py --shape baby --recipes "$RACE" --seeds 1337 --nanogpt "$NANOGPT" \
      --nanogpt-args "config/train_shakespeare_char.py --max_iters=$NANO_ITERS $NANO_SMALL" --timeout 300 \
      --jsonl "$OUT/baby.jsonl" --data_path="$DATA" --dtype=$DTYPE --compile=false $SMALL
    $py benchmarks/recipe.py --table "$OUT/baby.jsonl" --baseline nanogpt
    ;;
  seeds)
    $py benchmarks/recipe.py --shape baby --recipes "$SEEDS" --seeds 1338 --concurrent 8 --timeout 400 \
      --jsonl "$OUT/baby.jsonl" --data_path="$DATA" --dtype=$DTYPE --compile=false $SMALL
    $py benchmarks/recipe.py --table "$OUT/baby.jsonl" --baseline today
    ;;
  gpt2)
    $py benchmarks/recipe.py --shape gpt2 --recipes today,all --seeds 1337 --timeout 240 --jsonl "$OUT/gpt2.jsonl" \
      --data_path="$DATA" --dtype=$DTYPE --compile=false $SMALL
    $py benchmarks/recipe.py --shape gpt2 --recipes today,all --seeds 1338 --concurrent 8 --timeout 300 \
      --jsonl "$OUT/gpt2.jsonl" --data_path="$DATA" --dtype=$DTYPE --compile=false $SMALL
    $py benchmarks/recipe.py --table "$OUT/gpt2.jsonl" --target-from today
    ;;
  *) echo "unknown part $part"; exit 2 ;;
  esac
done
echo "=== done $(date +%T)"
