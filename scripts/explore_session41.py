"""Session 41's exploration: the merged forward below 1025 tokens.

    PYTHONPATH=src python scripts/explore_session41.py low --out DIR [--tokens 512,640,768]
        [--models 1b,8b,qwen,70b]                                        (H200)

Why. Session 41's call 1 (``explore_session40.py mid``) timed 1024 tokens, where 1B, 8B and
Qwen had ping-pong entries of their own (``m1024_...``, session 8): the merged forward of the
shape-wide entries ran 1.020 / 1.008 / 1.024 of the cuBLAS product's rate against 0.972 /
0.974 / 0.993 for them, and the 1024 bucket's entries became the merged forward. The bucket
serves 513-1024 tokens; 512 tokens run ping-pong entries (``m512_...``; 70B's cooperative
until session 42, the merged forward since).

``low``: per model (``--models``, of ``explore_session40.CASES``) at each of ``--tokens``
(512, 640 and 768 in session 41's call 3): the launched Gluon entry
(``explore_session37._launched``; none where the launch table's unfused route takes the
count, and the row says ``unfused``), ``m_p4`` (the merged forward as committed), the 1024
bucket's entry before session 41 (1B, 8B, Qwen) and cuBLAS's ``x @ [Wg; Wu]^T``, SiLU,
settled CUDA-graph replays in five rotated rounds (``explore_session40._time_and_record``);
h of each candidate against the launched entry's (max difference over the largest entry).
-> ``low.json``, ``low.txt``, ``smi_low.csv``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TOKENS = (512, 640, 768)
# The 1024 bucket's ping-pong entries before session 41 (session 8's explore_session8.py mid).
PING_PONG = dict(BLOCK_M=128, BLOCK_K=64, EPILOGUE_SPLIT=4, COALESCE=True, CONSUMER_REGS=232,
                 BLOCK_H=64, GROUP_M=8, COOP=False)  # fmt: skip
OLD_M1024 = {"1b": dict(PING_PONG, STAGES=6), "8b": dict(PING_PONG, STAGES=5),
             "qwen": dict(PING_PONG, STAGES=5)}  # fmt: skip


def low(out: Path, tokens=TOKENS, models=None) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi_low.csv"):
        return _low(out, tokens, models)


def _low(out: Path, tokens, models) -> list[str]:
    import explore_session37 as S37
    import explore_session40 as S40
    import torch

    from flash_swiglu.ops import linear as L

    dt = torch.bfloat16
    rows, lines = [], []
    for model, k, n, _, _ in S40.CASES:
        if models is not None and model not in models:
            continue
        r, wg, wu, wcat = S37._draws(k, n)
        for m in tokens:
            x = r(m, k)
            # where the unfused route takes the count, no Gluon entry is what the library runs
            unfused = L.unfused_route(m, n, k, dt, L._device_name(0))
            launched = None if unfused else S37._launched(m, n, k, "silu")
            cands = {"launched": launched, "m_p4": S40.entry("m_p4"),
                     "old_m1024": OLD_M1024.get(model)}  # fmt: skip
            hs = {name: torch.empty(m, n, device="cuda", dtype=dt) for name in cands}
            calls = {"cublas": lambda x=x: x @ wcat.t()}
            for name, cfg in cands.items():
                if cfg is not None:  # None: no Gluon entry launched / no old entry
                    calls[name] = S40._forward(x, wg, wu, hs[name], "silu", cfg)
            diff = {}
            if "launched" in calls:
                for name in calls:
                    if name != "cublas":
                        calls[name]()
                torch.cuda.synchronize()
                ref = hs["launched"].float()
                scale = ref.abs().max().item()
                diff = {name: (hs[name].float() - ref).abs().max().item() / scale
                        for name in calls if name not in ("cublas", "launched")}  # fmt: skip
            S40._time_and_record(calls, out / "low.json", rows, lines, model, m, n, k,
                                 diff_vs_launched=diff, unfused=unfused, configs=cands)  # fmt: skip
            x = hs = calls = None
            torch.cuda.empty_cache()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("low",))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tokens", default=",".join(map(str, TOKENS)))
    parser.add_argument("--models", default=None, help="comma-separated (default: all four)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    tokens = tuple(int(t) for t in args.tokens.split(","))
    models = None if args.models is None else set(args.models.split(","))
    lines = low(args.out, tokens, models)
    (args.out / f"{args.mode}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
