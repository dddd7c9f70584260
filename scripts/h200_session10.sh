#!/usr/bin/env bash
# The GPU runs of session 10 (issue 3), from the repo root on the H200 (device tool),
# with Liger-Kernel's wheel installed on PYTHONPATH by the caller. Stages (each with its own
# time limit; logs and a tarball of every result under $OUT):
#   tests-linear   GPU tier of the projection tests (every committed launch-table entry,
#                  decode and matrix-vector kernels under CUDA graphs)
#   decode         the four models at M = 1, 8, 32, bf16, every backend of the linear suite,
#                  max-autotune included (run $DECODE_RUN_ID, default h200-s10-linear-bf16-decode)
#   tp             one rank's shard of the four models on 8 tensor-parallel ranks, M = 1, 8,
#                  32, every backend but max-autotune (run h200-s10-linear-bf16-tp8)
#   large          Llama-3.2-1B, Llama-3-8B, Qwen2.5-7B at M = 2048, 8192, 16384, bf16, every
#                  backend of the linear suite, max-autotune included (run
#                  h200-s10-linear-bf16-large-tokens); large-70b the same for Llama-3-70B
#                  (run h200-s10-linear-bf16-large-tokens-70b)
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bench="python3 -m flash_swiglu.bench.cli"
pytest="python3 -m pytest -q -p no:cacheprovider -rfE"
models=llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b
peers="torch,torch-packed,compile,cublas,liger,liger-mul,triton"
for stage in "$@"; do
  SECONDS=0
  case $stage in
    tests-linear)
      timeout 240 $pytest -m gpu tests/test_linear.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_linear_gpu.log" ;;
    decode)
      timeout 480 $bench --op linear --model $models --dtype bfloat16 --tokens 1,8,32 \
        --backend "$peers,compile-max" --run-id "${DECODE_RUN_ID:-h200-s10-linear-bf16-decode}" 2>&1 \
        | tee "$OUT/linear_decode.log" | tail -n 4 ;;
    tp)
      timeout 300 $bench --op linear --model $models --tp 8 --dtype bfloat16 --tokens 1,8,32 \
        --backend "$peers" --run-id h200-s10-linear-bf16-tp8 2>&1 | tee "$OUT/linear_tp8.log" \
        | tail -n 4 ;;
    large)
      timeout 420 $bench --op linear --model llama-3.2-1b,llama-3-8b,qwen2.5-7b --dtype bfloat16 \
        --tokens 2048,8192,16384 --backend "$peers,compile-max" \
        --run-id h200-s10-linear-bf16-large-tokens 2>&1 | tee "$OUT/linear_large.log" | tail -n 4 ;;
    large-70b)
      timeout 300 $bench --op linear --model llama-3-70b --dtype bfloat16 \
        --tokens 2048,8192,16384 --backend "$peers,compile-max" \
        --run-id h200-s10-linear-bf16-large-tokens-70b 2>&1 | tee "$OUT/linear_large_70b.log" \
        | tail -n 4 ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results 2>/dev/null
done
