#!/usr/bin/env bash
# The GPU runs of session 8 (issues 3 and 4), from the repo root on the H200 (device tool),
# with Liger-Kernel's wheel installed on PYTHONPATH by the caller. Stages (each with its own
# time limit; logs and a tarball of every result under $OUT):
#   tests-linear   GPU tier of the projection tests (every committed launch-table entry,
#                  split-K decode under CUDA graphs) and of the Gluon forward's table entries
#   linear-mid     the four models at M = 128, 256, 512 and 1024, bf16, every backend but
#                  max-autotune (run h200-s8-linear-bf16-mid-tokens): the Gluon forward's
#                  token-bucket entries chosen by scripts/explore_session8.py mid ($MID_RUN_ID
#                  names another run)
#   mlp            scripts/h200_issue4.sh mlp (run h200-s8-mlp-8b)
# Session 8's other runs: RUN_PREFIX=h200-s8 bash scripts/h200_session3.sh linear-fp16 linear-8b
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bench="python3 -m flash_swiglu.bench.cli"
pytest="python3 -m pytest -q -p no:cacheprovider -rfE"
all="torch,torch-packed,compile,cublas,liger,liger-mul,triton"
for stage in "$@"; do
  SECONDS=0
  case $stage in
    tests-linear)
      timeout 200 $pytest -m gpu tests/test_linear.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_linear_gpu.log"
      timeout 200 $pytest -m gpu tests/test_ws_mlp.py -k "projection or forward" 2>&1 \
        | tail -n 15 | tee "$OUT/pytest_ws_forward_gpu.log" ;;
    linear-mid)
      timeout 420 $bench --op linear --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b \
        --dtype bfloat16 --tokens 128,256,512,1024 --backend $all \
        --run-id "${MID_RUN_ID:-h200-s8-linear-bf16-mid-tokens}" 2>&1 | tee "$OUT/linear_mid.log" | tail -n 4 ;;
    mlp)
      MLP_RUN_ID=${MLP_RUN_ID:-h200-s8-mlp-8b} timeout 240 bash scripts/h200_issue4.sh mlp ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results 2>/dev/null
done
