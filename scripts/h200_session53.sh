#!/usr/bin/env bash
# Session 53's device call: the GLU derivative's fix for extreme gates (gelu_tanh, gpt-oss's
# GLU; src/flash_swiglu/activations.py) checked and timed on the H200. From the repo root,
# with the previous commit's src/ unpacked under .old53/ (`git archive 633b2c1 src | tar -x
# -C .old53`, carried). Stages:
#   kernel  the kernel tier's tests that cover the change, on CUDA (extreme and NaN/Inf
#           gates, gpt-oss's GLU with other alpha / limit through every path, autocast)
#   gpu     the GPU tier's gelu_tanh and swiglu_oai cases (Triton and Gluon kernels)
#   ab      the changed backwards timed, old and new code alternately in four processes
#           (old, new, old, new; the Triton cache is warm after the first two): the MLP
#           step's backward, Llama-3-8B at 8192 tokens, and the elementwise backward at
#           8192 x 14336, bf16, gelu_tanh and swiglu_oai
# Logs and JSON under $OUT; a table of the A/B last.
set -uo pipefail
OUT=${OUT:-/tmp/out53}
mkdir -p "$OUT"
nvidia-smi -L >"$OUT/gpu.txt" 2>&1
export FLASH_SWIGLU_COMMIT=${FLASH_SWIGLU_COMMIT:-unknown}
stages=("$@")
[ ${#stages[@]} -eq 0 ] && stages=(kernel gpu ab)
for stage in "${stages[@]}"; do
    case $stage in
    kernel)
        PYTHONPATH=src timeout 300 python3 -m pytest -q -x -m "not gpu" \
            tests/test_elementwise.py tests/test_linear.py tests/test_mlp.py tests/test_modules.py \
            -k "extreme or oai or nan_and_inf or gelu_tanh or autocast" >"$OUT/tests_kernel.log" 2>&1
        echo "kernel tier: $(tail -1 "$OUT/tests_kernel.log")"
        ;;
    gpu)
        PYTHONPATH=src timeout 400 python3 -m pytest -q -m gpu tests/test_ws_mlp.py tests/test_mlp.py \
            tests/test_elementwise.py tests/test_linear.py -k "gelu_tanh or swiglu_oai" \
            >"$OUT/tests_gpu.log" 2>&1
        echo "gpu tier: $(tail -1 "$OUT/tests_gpu.log")"
        ;;
    ab)
        for i in 1 2; do
            for v in old new; do
                src=src
                [ $v = old ] && src=.old53/src
                PYTHONPATH=$src timeout 200 python3 -m flash_swiglu.bench.cli --op mlp \
                    --model llama-3-8b --tokens 8192 --dtype bfloat16 --backend triton \
                    --pass bwd --activation gelu_tanh,swiglu_oai --json "$OUT/mlp_${v}${i}.json" \
                    >"$OUT/mlp_${v}${i}.log" 2>&1 || echo "mlp $v$i failed"
                PYTHONPATH=$src timeout 120 python3 -m flash_swiglu.bench.cli --op elementwise \
                    --rows 8192 --cols 14336 --dtype bfloat16 --backend triton --pass bwd \
                    --activation gelu_tanh,swiglu_oai --json "$OUT/ew_${v}${i}.json" \
                    >"$OUT/ew_${v}${i}.log" 2>&1 || echo "ew $v$i failed"
            done
        done
        python3 - "$OUT" <<'EOF'
import json, sys, glob, os
out = sys.argv[1]
print(f"{'file':<14} {'activation':<11} {'pass':<5} {'median ms':>9}  rounds  passed")
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    for row in json.load(open(path)):
        if row["backend"] == "triton":
            rounds = " ".join(f"{t:.4f}" for t in row["median_ms_rounds"] or [])
            print(f"{os.path.basename(path):<14} {row['activation']:<11} {row['pass']:<5} "
                  f"{row['median_ms']:>9.4f}  {rounds}  {row['passed']} {row['timed_check']}")
EOF
        ;;
    esac
done
