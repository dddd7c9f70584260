#!/usr/bin/env bash
# The GPU measurements of issue 4 (sections 3 and 5), as run on the H200 (device tool), from
# the repo root:
#   bash scripts/h200_issue4.sh [mlp] [example]        # no stage named: both
#   mlp      benchmark-swiglu --op mlp: Llama-3-8B MLP training step, bf16, tokens 1024..16384,
#            fwd / bwd / fwd+bwd, backends torch (HF LlamaMLP), compile, liger, liger-fused,
#            triton, triton-recompute; time and peak memory -> benchmarks/results/$MLP_RUN_ID/
#            (default h200-mlp-8b-<UTC date and time>; session 2 made h200-mlp-8b, session 3
#            h200-s3-mlp-8b and h200-s3b-mlp-8b)
#            (estimated 2-3 min, most of it torch.compile and LigerMLP autotuning)
#   example  examples/train_tiny_llama.py: a 4-layer LLaMA trained 300 steps unpatched and
#            patched -> benchmarks/results/h200-train-tiny-llama/ (estimated under a minute)
# Liger-Kernel must be importable (the caller installs its wheel on PYTHONPATH). Results are
# tarred to $OUT/results.tgz and the logs copied to $OUT when OUT is set.
set -uo pipefail
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
logs=${OUT:-/tmp}
stages=("$@")
MLP_RUN_ID=${MLP_RUN_ID:-h200-mlp-8b-$(date -u +%Y%m%dT%H%M)}
[ ${#stages[@]} -eq 0 ] && stages=(mlp example)
status=0
for stage in "${stages[@]}"; do
  SECONDS=0
  case $stage in
    mlp)
      python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b --dtype bfloat16 \
        --tokens 1024,2048,4096,8192,16384 --pass fwd,bwd,fwd+bwd --backend all \
        --run-id "$MLP_RUN_ID" 2>&1 | tee "$logs/mlp.log" || status=1 ;;
    example)
      python3 examples/train_tiny_llama.py 2>&1 | tee "$logs/train_tiny_llama.log" || status=1 ;;
    *)
      echo "unknown stage $stage (mlp, example)" >&2; status=1; continue ;;
  esac
  echo "== $stage: ${SECONDS} s"
done
if [ -n "${OUT:-}" ]; then
  dirs=()
  for d in "benchmarks/results/$MLP_RUN_ID" benchmarks/results/h200-train-tiny-llama; do
    [ -d "$d" ] && dirs+=("$d")
  done
  [ ${#dirs[@]} -gt 0 ] && tar czf "$OUT/results.tgz" "${dirs[@]}"
fi
exit $status
