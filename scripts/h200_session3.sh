#!/usr/bin/env bash
# The GPU runs of sessions 3 and 4 (issues 3 and 4), from the repo root on the H200 (device
# tool), with Liger-Kernel's wheel installed on PYTHONPATH by the caller:
#   bash scripts/h200_session3.sh env linear-1b linear-8b linear-qwen tests-linear   (call 1)
#   bash scripts/h200_session3.sh linear-70b linear-max mlp tests-train linear-fp16 (call 2)
#   RUN_PREFIX=h200-s4 bash scripts/h200_session3.sh linear-mid tests-linear        (session 4)
# The launch tables these use were chosen by scripts/explore_session3.py (the run before,
# benchmarks/results/h200-session3-explore).
# Stages (each with its own time limit; logs and a tarball of the results under $OUT):
#   env            GPU, driver, clocks, versions
#   linear-MODEL   benchmark-swiglu --op linear --sweep, bf16, M = 1 ... 16384, every backend
#                  but max-autotune; MODEL in 1b, 8b, qwen, 70b (run <prefix>-linear-bf16-<model>,
#                  with sweep.png: TFLOP/s against M)
#   linear-max     torch.compile max-autotune against eager, cuBLAS and ours, the four models,
#                  M = 8192 (run <prefix>-linear-bf16-max-autotune)
#   linear-mid     the four models at M = 128, 512 and 2048, bf16, every backend but
#                  max-autotune (run <prefix>-linear-bf16-mid-tokens)
#   linear-fp16    fp16 on Llama-3-8B, M = 1, 32, 2048, 8192 (run <prefix>-linear-fp16-llama-3-8b)
#   mlp            scripts/h200_issue4.sh mlp (benchmark-swiglu --op mlp, 8B, 1k..16k tokens;
#                  run <prefix>-mlp-8b, or $MLP_RUN_ID)
#   tests-linear   GPU tier of the projection tests
#   tests-train    GPU tier of the MLP, module and Hugging Face tests
# Run names start with $RUN_PREFIX (default h200-s3, as committed; give a new one to re-run).
set -uo pipefail
prefix=${RUN_PREFIX:-h200-s3}
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bench="python3 -m flash_swiglu.bench.cli"
pytest="python3 -m pytest -q -p no:cacheprovider -rfE"
all="torch,torch-packed,compile,cublas,liger,liger-mul,triton"
tokens=1,8,32,128,512,2048,8192,16384
declare -A model=([1b]=llama-3.2-1b [8b]=llama-3-8b [qwen]=qwen2.5-7b [70b]=llama-3-70b)
for stage in "$@"; do
  SECONDS=0
  case $stage in
    env)
      nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
      python3 -c "import torch, triton, transformers; print(torch.__version__, \
triton.__version__, transformers.__version__)"
      python3 -c "import liger_kernel; print('liger', liger_kernel.__file__)" ;;
    linear-1b|linear-8b|linear-qwen|linear-70b)
      name=${model[${stage#linear-}]}
      timeout 260 $bench --op linear --model "$name" --dtype bfloat16 --tokens $tokens \
        --backend $all --sweep --run-id "$prefix-linear-bf16-$name" 2>&1 \
        | tee -a "$OUT/linear.log" | tail -n 4 ;;
    linear-max)
      timeout 200 $bench --op linear --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b \
        --dtype bfloat16 --tokens 8192 --backend torch,compile-max,cublas,triton \
        --run-id "$prefix-linear-bf16-max-autotune" 2>&1 | tee "$OUT/linear_max.log" | tail -n 8 ;;
    linear-mid)
      timeout 300 $bench --op linear --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b \
        --dtype bfloat16 --tokens 128,512,2048 --backend $all \
        --run-id "$prefix-linear-bf16-mid-tokens" 2>&1 | tee "$OUT/linear_mid.log" | tail -n 4 ;;
    linear-fp16)
      timeout 150 $bench --op linear --model llama-3-8b --dtype float16 --tokens 1,32,2048,8192 \
        --backend $all --run-id "$prefix-linear-fp16-llama-3-8b" 2>&1 | tee "$OUT/linear_fp16.log" \
        | tail -n 4 ;;
    mlp)
      MLP_RUN_ID=${MLP_RUN_ID:-$prefix-mlp-8b} timeout 240 bash scripts/h200_issue4.sh mlp ;;
    tests-linear)
      timeout 120 $pytest -m gpu tests/test_linear.py 2>&1 | tail -n 25 \
        | tee "$OUT/pytest_linear_gpu.log" ;;
    tests-train)
      timeout 130 $pytest -m gpu tests/test_mlp.py tests/test_modules.py tests/test_hf_patch.py \
        2>&1 | tail -n 25 | tee "$OUT/pytest_train_gpu.log" ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results 2>/dev/null
done
