#!/usr/bin/env bash
# The GPU runs of session 12, from the repo root on the H200 (device tool), with
# Liger-Kernel's wheel installed on PYTHONPATH by the caller where a stage needs it. Stages
# (each with its own time limit; logs under $OUT and a tarball of benchmarks/results after
# each):
#   tests-linear   GPU tier of the projection tests (the decode fallbacks for fp32 and
#                  unaligned operands among them)
#   wide, pad, mid2 scripts/explore_session12.py STAGE -> $OUT/explore
#   tests-pad      GPU tests of the padded token tiles and the wide decode entries, and the
#                  Gluon kernels' tier (test_ws_mlp.py: the forward now takes M from h)
#   between        the four models at token counts between the buckets' tops (65, 96, 160,
#                  200, 300, 384, 640), bf16, every backend but max-autotune (run
#                  h200-s12-linear-bf16-between-buckets)
#   tests-unfused  GPU tier of test_linear.py and the committed ws entries of test_ws_mlp.py
#                  (after the unfused route)
#   between2       8B, Qwen and 70B at 65-640 tokens, bucket tops 128 and 256 included,
#                  with the unfused route (run h200-s12-linear-bf16-between-buckets-unfused)
#   between2-fp16  the same in fp16 at the counts between the tops, fewer peers
#                  (run h200-s12-linear-fp16-between-buckets-unfused)
#   example        examples/train_tiny_llama.py, patched and not, as committed (16 x 512
#                  tokens a step; h200-train-tiny-llama)
#   example-b64    the same with 64 x 512 tokens a step (h200-train-tiny-llama-b64)
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
pytest="python3 -m pytest -q -p no:cacheprovider -rfE"
for stage in "$@"; do
  SECONDS=0
  case $stage in
    tests-linear)
      timeout 240 $pytest -m gpu tests/test_linear.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_linear_gpu.log" ;;
    tests-pad)
      timeout 300 $pytest -m gpu tests/test_linear.py tests/test_ws_mlp.py \
        -k "padded or wide or ws" 2>&1 | tail -n 15 | tee "$OUT/pytest_pad_gpu.log" ;;
    tests-unfused)
      timeout 300 $pytest -m gpu tests/test_linear.py tests/test_ws_mlp.py \
        -k "test_linear or committed" 2>&1 | tail -n 15 | tee "$OUT/pytest_unfused_gpu.log" ;;
    between2)
      timeout 400 python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 \
        --tokens 65,96,128,160,200,256,300,384,640 \
        --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton \
        --run-id h200-s12-linear-bf16-between-buckets-unfused 2>&1 \
        | tee "$OUT/linear_between2.log" | tail -n 4 ;;
    between2-fp16)
      timeout 400 python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3-8b,qwen2.5-7b,llama-3-70b --dtype float16 \
        --tokens 65,96,160,200,300,384 --backend torch,compile,cublas,liger-mul,triton \
        --run-id h200-s12-linear-fp16-between-buckets-unfused 2>&1 \
        | tee "$OUT/linear_between2_fp16.log" | tail -n 4 ;;
    between)
      timeout 420 python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 \
        --tokens 65,96,160,200,300,384,640 \
        --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton \
        --run-id h200-s12-linear-bf16-between-buckets 2>&1 | tee "$OUT/linear_between.log" \
        | tail -n 4 ;;
    wide|pad|mid2)
      timeout 540 python3 scripts/explore_session12.py $stage --out "$OUT/explore" 2>&1 \
        | tail -n 24 ;;
    example)
      timeout 300 python3 examples/train_tiny_llama.py 2>&1 | tail -n 12 \
        | tee "$OUT/train_tiny_llama.log" ;;
    example-b64)
      timeout 400 python3 examples/train_tiny_llama.py --batch 64 \
        --out benchmarks/results/h200-train-tiny-llama-b64 2>&1 | tail -n 12 \
        | tee "$OUT/train_tiny_llama_b64.log" ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results/h200-train-tiny-llama* \
    benchmarks/results/h200-s12-* 2>/dev/null
done
