"""Session 38's exploration on the H200: the Gluon forward's entries at 2048 tokens.

- ``m2048``: session 38's benchmark run ``h200-s38-linear-bf16-large-max-a`` had
  ``swiglu_linear`` (SiLU) on Llama-3.2-1B at 2048 tokens at 0.932 of the cuBLAS product's
  rate (session 19's run of the same command: 0.968), while 8192 and 16384 tokens were at
  0.992. In session 38's call 1 (``explore_session37.py late``) the committed entry ran
  0.965 there and the same entry with ``COALESCE_OUT`` 0.998, but the rounds of the 2048-token
  cases spread by 3-8%. 2048 tokens on 1B are 1024 tiles of 128 x 128 outputs, 7.8 waves of
  132 SMs. This times, in one process and in five rotated rounds (so the spread is seen),
  Llama-3.2-1B, Llama-3-8B and Qwen2.5-7B at 2048 tokens, bf16, SiLU:
  - ``cublas``: ``x @ [Wg; Wu]^T``;
  - ``library``: ``swiglu_linear(x, wg, wu)`` as the benchmark calls it;
  - ``table``: ``ws_mlp.glu_forward_ws`` with the entry the library launches;
  - ``out``: the same with ``COALESCE_OUT``;
  - ``g8``: the same with ``GROUP_M`` 8;
  - ``pp``: the ping-pong 128 x (64 + 64) entry with 6 slots (the 1024-token buckets').
  Each candidate's h is checked bit for bit against ``table``'s, and ``library``'s too (all
  have 64-column K steps taken in the same order; in call 5 all were bit-identical). Timing
  as ``explore_session37.py``: CUDA-graph replays after 300 ms of settling, cold L2, on a
  side stream.
  -> ``m2048.json``, ``smi_m2048.csv``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROUNDS = 5
CASES = (("1b", 2048, 8192), ("8b", 4096, 14336), ("qwen", 3584, 18944))  # (model, K, N)
M = 2048


def m2048(out: Path) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi_m2048.csv"):
        return _m2048(out)


def _m2048(out: Path) -> list[str]:
    import explore_session37 as S37

    from flash_swiglu import swiglu_linear
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    dt = torch.bfloat16
    rows, lines = [], []
    for model, k, n in CASES:
        r, wg, wu, wcat = S37._draws(k, n)
        x = r(M, k)
        h = torch.empty(M, n, device="cuda", dtype=dt)
        table = S37._launched(M, n, k, "silu")
        cands = {"table": table, "out": dict(table, COALESCE_OUT=True),
                 "g8": dict(table, GROUP_M=8), "pp": S37.PING_PONG}  # fmt: skip
        fwd = lambda c: glu_forward_ws(x, wg, wu, None, None, h, activation="silu",
                                       alpha=1.702, limit=7.0, config=c)  # fmt: skip
        calls = {"cublas": lambda: x @ wcat.t(), "library": lambda: swiglu_linear(x, wg, wu)}
        fwd(table)
        first = h.clone()
        same = {"library": torch.equal(swiglu_linear(x, wg, wu), first)}
        for name, cfg in cands.items():
            calls[name] = lambda c=cfg: fwd(c)
            calls[name]()
            same[name] = torch.equal(h, first)
        ms, failed = S37._rounds(calls, rounds=ROUNDS)
        rows.append(dict(model=model, m=M, n=n, k=k, ms=ms, failed=failed, bitwise=same,
                         configs=cands))  # fmt: skip
        (out / "m2048.json").write_text(json.dumps(rows, indent=1))
        lines.append(against_cublas(model, M, ms, same))
        print(lines[-1], flush=True)
        x = h = calls = None
        torch.cuda.empty_cache()
    return lines


def against_cublas(model: str, m: int, ms: dict, same: dict) -> str:
    """One line of rounds ``ms`` (``{label: [ms of each round]}``, with a ``cublas`` label):
    each other label's median as a fraction of cuBLAS's rate, its rounds' range in brackets,
    and NOT BITWISE where ``same`` says its output differed."""
    import explore_session37 as S37

    med = {lb: S37._median(v) for lb, v in ms.items() if v}
    cub = med["cublas"]
    return f"{model:4s} M={m} of cuBLAS ({cub * 1e3:.1f} us): " + "; ".join(
        f"{lb} {cub / v:.3f} [{cub / max(ms[lb]):.3f}-{cub / min(ms[lb]):.3f}]"
        f"{'' if same.get(lb, True) else ' NOT BITWISE'}"
        for lb, v in med.items() if lb != "cublas")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("m2048",))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = {"m2048": m2048}[args.mode](args.out)
    (args.out / f"{args.mode}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
