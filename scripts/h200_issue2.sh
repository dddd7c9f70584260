#!/usr/bin/env bash
# The GPU measurements of issue 2, as run on the H200 (device tool), from the repo root:
#   bash scripts/h200_issue2.sh tests|brief|large|sweep|layouts
# Results land in benchmarks/results/<run-id>/ and are tarred to $OUT when OUT is set.
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
bench="python3 -m flash_swiglu.bench.cli"
for stage in "$@"; do
  case $stage in
    tests)
      python3 -m pytest tests/test_gpu.py tests/test_elementwise.py tests/test_api.py -q \
        -p no:cacheprovider 2>&1 | tail -n 15 | tee -a "${OUT:-/tmp}/pytest_gpu.log" ;;
    brief)
      for dt in float32 float16 bfloat16; do
        $bench --backend all --device cuda --rows 4096 --cols 4096 --dtype $dt \
          --pass fwd,bwd,fwd+bwd --profile --run-id h200-brief-4096-$dt
      done ;;
    large)
      $bench --backend all --rows 8192 --cols 14336 --dtype float32,float16,bfloat16 \
        --pass fwd,bwd,fwd+bwd --run-id h200-8192x14336 ;;
    sweep)
      $bench --backend all --sweep --dtype bfloat16 --pass fwd,bwd \
        --plot benchmarks/results/h200-sweep-bf16/gbps.png --run-id h200-sweep-bf16 ;;
    layouts)
      $bench --backend all --rows 8192 --cols 14336 --dtype bfloat16 --pass fwd,bwd \
        --layout concat,interleaved --activation silu,gelu_tanh,swiglu_oai \
        --run-id h200-layouts-8192x14336 ;;
  esac
  if [ -n "${OUT:-}" ]; then tar czf "$OUT/results.tgz" benchmarks/results; fi
done
