"""Explorations written in session 18, which spent its device time on its runs, for the next
session's H200 time.

    PYTHONPATH=src python scripts/explore_session19.py fwd-tiles --out DIR

- ``fwd-tiles``: session 18's ``fwd70b`` (``explore_session18.py``) had ``LigerSwiGLUMLP``'s
  forward 0.8-2.3% ahead of ours on Llama-3-70B at 2048-16384 tokens (two cuBLAS products,
  its elementwise kernel and the down projection, against our Gluon forward that saves the
  pre-activation, then the same down projection). That forward's one table entry
  (``forward_saving_ws``: ping-pong, 128 x 64 tiles, 5 slots) was chosen on Llama-3-8B at
  8192 tokens in session 6; the projection without saving (``swiglu_linear``) runs 70B on
  the cooperative schedule with 128 x 128 tiles and 3 slots (``ws`` entry ``n28672_k8192``
  of ``configs/h200_linear.json``), 0.99-1.01 of cuBLAS's rate. Forward alone on 70B at 2048,
  4096 and 8192 tokens, on Qwen2.5-7B at 4096 and 8192 (never timed against Liger's forward:
  session 18's ``fwd-shapes`` ran without Liger) and on 8B at 8192 (the entry's own case, as
  a control), and fwd+bwd on 70B at 4096: eager, ``LigerSwiGLUMLP``, ours, and ours with each
  of ``FWD_CANDIDATES`` as the ``forward_saving_ws`` entry, each a step of the benchmark's
  own checked against the float64 step and timed as the benchmark times
  (``explore_session16._measured``: settled, three rotated rounds). -> ``fwd_tiles.json``.
  A winner on one shape alone goes into the entry's ``shapes`` item for that model's weights
  (``"n28672_k8192"`` for 70B; ``ops.train.ws_entry``, added in session 18).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session16 as S16
import explore_session18 as S18

from flash_swiglu.bench.cases import linear as BL
from flash_swiglu.bench.cases import mlp as B

say = S16.say
# label -> forward_saving_ws keys merged over the committed entry; the first two are the
# projection's ``ws`` entries for 70B and 8B
FWD_CANDIDATES = {
    "coop 128 s3 g8": dict(COOP=True, BLOCK_H=128, STAGES=3, GROUP_M=8),
    "coop 128 s4 g16": dict(COOP=True, BLOCK_H=128, STAGES=4, GROUP_M=16),
    "ping 64 s4": dict(STAGES=4),
    "ping 64 s6": dict(STAGES=6),
    "ping 64 s5 g16": dict(GROUP_M=16),
    "coop 128 s3 g16": dict(COOP=True, BLOCK_H=128, STAGES=3, GROUP_M=16),
}  # fmt: skip
# Not a candidate: the ping-pong entry with its epilogue in 2 parts (2 spill instructions in the
# sm_90 compile under Triton 3.9, session 18).
CASES = [("llama-3-70b", 2048, ("fwd",)), ("llama-3-70b", 4096, ("fwd", "fwd+bwd")),
         ("llama-3-70b", 8192, ("fwd",)), ("qwen2.5-7b", 4096, ("fwd",)),
         ("qwen2.5-7b", 8192, ("fwd",)), ("llama-3-8b", 8192, ("fwd",))]  # fmt: skip


def _variants() -> dict:
    variants = dict(S18.PEERS)
    for label, update in FWD_CANDIDATES.items():
        variants[f"ours {label}"] = ("triton", {"forward_saving_ws": update}, True, None)
    return variants


def fwd_tiles(out: Path) -> list[dict]:
    rows = []
    for model, m, passes in CASES:
        hidden, inter = BL.MODELS[model]
        case = B.MLPCase(model, hidden, inter, m, S16.DTYPE)
        for pass_, results in S16._measured(m, _variants(), passes, case).items():
            rows.append(dict(model=model, m=m, pass_=pass_, results=results))
            (out / "fwd_tiles.json").write_text(json.dumps(rows, indent=1))
            S18._report(f"fwd-tiles {model}", m, pass_, results)
    return rows


def main() -> None:
    S12.run_stages({"fwd-tiles": fwd_tiles}, ["fwd-tiles"])


if __name__ == "__main__":
    main()
