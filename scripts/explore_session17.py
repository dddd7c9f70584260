"""Explorations written in session 17 for the next session's H200 time: the training step's
questions its runs left (issue 4) and the decode tiles not yet tried (issue 3).

    PYTHONPATH=src python scripts/explore_session17.py bwd-small fwd-shapes decode-narrow --out DIR

- ``bwd-small``: run ``h200-s17-mlp-8b-1k-4k`` had the Llama-3-8B step at 1024 tokens 2.2%
  behind the fastest peer, the gap in the backward (1.245 against ``LigerSwiGLUMLP``'s 1.188
  ms). Below 2048 rows the backward is the Triton kernel (``mlp_backward_ws`` has ``MIN_M``
  2048) with the tile tuned at 8192 tokens. At 1024 and 2048 tokens, fwd+bwd and bwd:
  eager, ``torch.compile``, ``LigerSwiGLUMLP``, ours, ours with the Gluon backward from 1024
  rows, and ours with each of ``ops.train.CANDIDATES["mlp_backward"]`` as the Triton entry.
  -> ``bwd_small.json``.
- ``fwd-shapes``: session 17 moved the forward that saves the pre-activation to the Gluon
  kernel from 1024 rows (``forward_saving_ws`` ``MIN_M`` 8192 -> 1024) on Llama-3-8B's
  measurements alone; the entry holds for every shape. On Llama-3.2-1B, Qwen2.5-7B and
  Llama-3-70B at 1024 and 4096 tokens, fwd and fwd+bwd: eager, ``LigerSwiGLUMLP``, ours and
  ours with the Triton forward below 8192 rows (the entry before). -> ``fwd_shapes.json``.

- ``decode-narrow``: issue 3's 90%-of-copy-bandwidth target at 8 and 32 tokens is missed on
  Llama-3-8B (84 / 83% in run ``h200-s16-linear-bf16-decode``), Qwen2.5-7B at 8 tokens (85%)
  and Llama-3.2-1B (66 / 66%). The 8B entries read 128 weight rows a program: 112 programs
  for 132 SMs, one wave with 20 SMs idle, about the 85% measured; session 17's ``decode8b``
  tried 64- and 32-row tiles and split-K 2, none faster. Qwen's 32-token entry (16 rows a
  program, TMA, 2 warps: 1184 programs, 9 waves) reached 87%. Narrow TMA tiles (16 and 32
  rows, 128-512 columns a step, 2-4 warps, 3-4 stages) and 16-row pointer tiles, through
  ``explore_session15.decode``'s harness (ours, Liger's kernel, the cuBLAS product, each
  after 100 ms of its own CUDA-graph replays, three rotated rounds, every candidate checked
  against float64). -> ``decode_narrow.json``.

Each MLP variant is a step of the benchmark's own (``bench.cases.mlp.Step``) under its table
settings, its outputs and gradients checked against the float64 step, timed as the benchmark
times (settled, three rotated rounds): ``explore_session16._measured``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session15 as S15
import explore_session16 as S16

from flash_swiglu.bench.cases import linear as BL
from flash_swiglu.bench.cases import mlp as B
from flash_swiglu.ops import train as T

say = S16.say
BWD_TOKENS = (1024, 2048)
FWD_MODELS = ("llama-3.2-1b", "qwen2.5-7b", "llama-3-70b")
FWD_TOKENS = (1024, 4096)


def _peers() -> dict:
    return {p: (p, None, True, None) for p in S16.PEERS}


def _bwd_variants() -> dict:
    variants = _peers() | {
        "ours": ("triton", None, True, None),
        "ours ws-bwd from 1024": ("triton", {"mlp_backward_ws": {"MIN_M": 1024}}, True, None),
    }
    for cfg in T.CANDIDATES["mlp_backward"]:
        label = "ours bwd " + " ".join(f"{k}={v}" for k, v in cfg.items() if k != "BLOCK_K")
        variants[label] = ("triton", {"mlp_backward": dict(cfg)}, True, None)
    return variants


def _report(name: str, m: int, pass_: str, results: dict) -> None:
    eager = results["torch"].get("median_ms") or float("nan")
    say(f"{name} M={m:5d} {pass_:7s} " + ", ".join(
        f"{lb} {r.get('median_ms') or float('nan'):.3f} ms "
        f"({eager / (r.get('median_ms') or float('nan')):.3f}x){S16._ok(r)}"
        for lb, r in results.items()))  # fmt: skip


def bwd_small(out: Path) -> list[dict]:
    rows = []
    for m in BWD_TOKENS:
        for pass_, results in S16._measured(m, _bwd_variants(), ("fwd+bwd", "bwd")).items():
            rows.append(dict(m=m, pass_=pass_, results=results))
            (out / "bwd_small.json").write_text(json.dumps(rows, indent=1))
            _report("bwd-small", m, pass_, results)
    return rows


def fwd_shapes(out: Path) -> list[dict]:
    variants = {"torch": ("torch", None, True, None), "liger": ("liger", None, True, None)}
    variants["ours"] = ("triton", None, True, None)
    variants["ours triton-fwd"] = ("triton", {"forward_saving_ws": {"MIN_M": 8192}}, True, None)
    rows = []
    for model in FWD_MODELS:
        hidden, intermediate = BL.MODELS[model]
        for m in FWD_TOKENS:
            case = B.MLPCase(model, hidden, intermediate, m, S16.DTYPE)
            for pass_, results in S16._measured(m, variants, ("fwd", "fwd+bwd"), case).items():
                rows.append(dict(model=model, m=m, pass_=pass_, results=results))
                (out / "fwd_shapes.json").write_text(json.dumps(rows, indent=1))
                _report(f"fwd-shapes {model}", m, pass_, results)
    return rows


NARROW_CASES = [("llama-3-8b", 8), ("llama-3-8b", 32), ("qwen2.5-7b", 8),
                ("llama-3.2-1b", 8), ("llama-3.2-1b", 32)]  # fmt: skip
NARROW_TILES = [  # (TMA, BLOCK_N, BLOCK_K, warps, stages)
    (True, 16, 256, 2, 3), (True, 16, 256, 2, 4), (True, 16, 128, 2, 4), (True, 16, 512, 4, 3),
    (True, 32, 256, 4, 3), (True, 32, 128, 2, 4), (False, 16, 256, 2, 3), (False, 16, 512, 4, 2),
]  # fmt: skip


def decode_narrow(out: Path) -> list[dict]:
    candidates = lambda: S16.decode_tile_candidates(NARROW_TILES)
    return S15.decode(out, NARROW_CASES, candidates, "decode_narrow")


def main() -> None:
    stages = {"bwd-small": bwd_small, "fwd-shapes": fwd_shapes, "decode-narrow": decode_narrow}
    S12.run_stages(stages, ["bwd-small"])


if __name__ == "__main__":
    main()
