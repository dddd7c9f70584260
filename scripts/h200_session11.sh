#!/usr/bin/env bash
# The GPU runs of session 11, from the repo root on the H200 (device tool), with
# Liger-Kernel's wheel installed on PYTHONPATH by the caller. Stages (each with its own time
# limit; logs under $OUT and a tarball of benchmarks/results after each):
#   tests-linear   GPU tier of the projection tests (every committed launch-table entry, the
#                  fp16 one-token entry included; decode and matrix-vector kernels under CUDA
#                  graphs)
#   decode         the four models at M = 1, 8, 32, bf16, every backend of the linear suite,
#                  max-autotune included (run h200-s11-linear-bf16-decode)
#   decode-fp16    the same in fp16 without max-autotune (run h200-s11-linear-fp16-decode)
#   tp             one rank's shard of the four models on 8 tensor-parallel ranks, M = 1, 8,
#                  32, every backend but max-autotune (run h200-s11-linear-bf16-tp8)
#   mid            the four models at M = 128, 256, 512, 1024, bf16, every backend but
#                  max-autotune (run h200-s11-linear-bf16-mid-tokens)
#   tests-train    GPU tier of the training tests (MLP, modules, patching, Gluon kernels)
#   mlp            the 8B MLP training step, tokens 1024-16384, every backend (h200_issue4.sh
#                  mlp, run h200-s11-mlp-8b)
#   example        examples/train_tiny_llama.py, patched and not (h200-train-tiny-llama)
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
        --backend "$peers,compile-max" --run-id h200-s11-linear-bf16-decode 2>&1 \
        | tee "$OUT/linear_decode.log" | tail -n 4 ;;
    decode-fp16)
      timeout 300 $bench --op linear --model $models --dtype float16 --tokens 1,8,32 \
        --backend "$peers" --run-id h200-s11-linear-fp16-decode 2>&1 \
        | tee "$OUT/linear_decode_fp16.log" | tail -n 4 ;;
    tp)
      timeout 300 $bench --op linear --model $models --tp 8 --dtype bfloat16 --tokens 1,8,32 \
        --backend "$peers" --run-id h200-s11-linear-bf16-tp8 2>&1 | tee "$OUT/linear_tp8.log" \
        | tail -n 4 ;;
    mid)
      timeout 400 $bench --op linear --model $models --dtype bfloat16 --tokens 128,256,512,1024 \
        --backend "$peers" --run-id h200-s11-linear-bf16-mid-tokens 2>&1 \
        | tee "$OUT/linear_mid.log" | tail -n 4 ;;
    tests-train)
      timeout 400 $pytest -m gpu tests/test_mlp.py tests/test_modules.py tests/test_hf_patch.py \
        tests/test_gpu.py tests/test_ws_mlp.py 2>&1 | tail -n 15 | tee "$OUT/pytest_train_gpu.log" ;;
    mlp)
      MLP_RUN_ID=h200-s11-mlp-8b timeout 500 bash scripts/h200_issue4.sh mlp 2>&1 | tail -n 4 ;;
    example)
      timeout 400 bash scripts/h200_issue4.sh example 2>&1 | tail -n 20 ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results 2>/dev/null
done
