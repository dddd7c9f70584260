#!/usr/bin/env bash
# The GPU run of issues 3 and 4 as made on the H200 (device tool), from the repo root:
#   bash scripts/h200_session2.sh env tune mlp example tests-train      (first call)
#   bash scripts/h200_session2.sh linear linear-max tests-linear        (second call)
# Stages:
#   env           GPU, driver, clocks, versions
#   tune          ops.train.retune on the Llama-3-8B slice (M=8192, N=14336, K=4096), written
#                 to src/flash_swiglu/configs/h200_train.json so the later stages use it
#   mlp           scripts/h200_issue4.sh mlp   (benchmark-swiglu --op mlp, 8B, 1k..16k tokens)
#   example       scripts/h200_issue4.sh example (examples/train_tiny_llama.py)
#   tests-train   GPU tier of the MLP, module and Hugging Face tests
#   linear        benchmark-swiglu --op linear, bf16, each of the four models (a run each),
#                 M in 1, 8, 32, 2048, 8192, every backend but max-autotune
#   linear-max    torch.compile max-autotune, Llama-3-8B, M = 8192 only (its autotuning takes
#                 tens of seconds a shape, and the session had minutes of GPU time)
#   tests-linear  GPU tier of the gate/up projection tests
#   retune-decode scripts/linear_quick.py --retune-tokens 8,32: launch-table entries for the
#                 decode buckets that fell back to the built-in config (added; not run yet)
# Every stage has its own time limit and log under $OUT; results are tarred to $OUT.
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bench="python3 -m flash_swiglu.bench.cli"
pytest="python3 -m pytest -q -p no:cacheprovider -rfE"
for stage in "$@"; do
  SECONDS=0
  case $stage in
    env)
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
      python3 -c "import torch, triton, transformers; print(torch.__version__, \
triton.__version__, transformers.__version__)"
      python3 -c "import liger_kernel; print('liger', liger_kernel.__file__)" ;;
    tune)
      timeout 100 python3 -c "
import json
from flash_swiglu.ops import train
t = train.retune(8192, 14336, 4096, out_path='src/flash_swiglu/configs/h200_train.json')
print(json.dumps(t, indent=1))" 2>&1 | tee "$OUT/tune.log"
      cp src/flash_swiglu/configs/h200_train.json "$OUT/" ;;
    mlp|example)
      timeout 240 bash scripts/h200_issue4.sh "$stage" ;;
    tests-train)
      timeout 130 $pytest -m gpu tests/test_mlp.py tests/test_modules.py tests/test_hf_patch.py \
        2>&1 | tail -n 25 | tee "$OUT/pytest_train_gpu.log" ;;
    linear)
      for model in llama-3.2-1b llama-3-8b qwen2.5-7b llama-3-70b; do  # one run each: partial
        timeout 100 $bench --op linear --model $model --dtype bfloat16 \
          --tokens 1,8,32,2048,8192 --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton \
          --run-id h200-linear-bf16-$model 2>&1 | tee -a "$OUT/linear.log" | tail -n 12
      done ;;
    linear-max)
      timeout 90 $bench --op linear --model llama-3-8b --dtype bfloat16 --tokens 8192 \
        --backend torch,compile-max,cublas,triton --run-id h200-linear-bf16-max-autotune \
        2>&1 | tee "$OUT/linear_max.log" | tail -n 12 ;;
    tests-linear)
      timeout 110 $pytest -m gpu tests/test_linear.py 2>&1 | tail -n 25 \
        | tee "$OUT/pytest_linear_gpu.log" ;;
    retune-decode)  # added after the run, not yet run: decode entries for 8 and 32 tokens
      timeout 300 python3 scripts/linear_quick.py --retune "$OUT/decode_8_32.json" \
        --retune-tokens 8,32 --merge "$OUT/h200_linear_merged.json" 2>&1 | tail -n 40 ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results src/flash_swiglu/configs 2>/dev/null
done
