"""Session-6 exploration on the H200: the cooperative schedule of the Gluon kernels
(``kernels/ws_mlp.py``, ``COOP``: both consumers on one 128 x 256 tile, 64 rows each, so a
ring slot's B tile feeds twice the products of the ping-pong's 128 x 128 tiles) against the
ping-pong schedule, the Triton kernels and cuBLAS.

    PYTHONPATH=src python scripts/explore_session6.py [check] [forward] [kernel] [step] --out DIR

- ``check``: the backward's checks of ``explore_session5.check`` (tails, few SMs, dg/du over
  g/u, every activation, fp16) with the cooperative backward.
- ``forward``: ``explore_session5.forward`` (the four model shapes at M = 2048 and 8192, each
  candidate checked against the projection's result, the 8B shape at M = 8192 also saving
  g and u) with the candidates below.
- ``kernel``: ``explore_session5.kernel`` (the MLP backward at the 8B shape, M = 8192) with
  the candidates below.
- ``step``: whole MLP steps at 4096, 8192 and 16384 tokens: eager, the Triton kernels
  (``FLASH_SWIGLU_GLUON=0``), the committed table, and the fastest forward-saving and
  backward candidates of this run's ``forward`` and ``kernel`` stages as table entries
  (each stage must run first in the same call; else the first candidate is taken).

Kernel times are CUDA-graph replays from a cold L2; steps are ``do_bench`` medians. Full
results go to ``DIR/*.json``; a short table is printed last.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from flash_swiglu.ops import train as T

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explore_session5 as S5

FORWARD_CANDS = {
    "pp_s6_split4": dict(STAGES=6, EPILOGUE_SPLIT=4),  # call 1's fastest ping-pong
    "pp_s5_split4": dict(STAGES=5, EPILOGUE_SPLIT=4),
    "pp_k128_s3": dict(BLOCK_K=128, STAGES=3, EPILOGUE_SPLIT=4),
    "coop_h128_s4": dict(BLOCK_H=128, STAGES=4, EPILOGUE_SPLIT=4, COOP=True),
    "coop_h128_s3": dict(BLOCK_H=128, STAGES=3, EPILOGUE_SPLIT=4, COOP=True),
    "coop_h128_s4_split8": dict(BLOCK_H=128, STAGES=4, EPILOGUE_SPLIT=8, COOP=True),
    "coop_h128_s4_g16": dict(BLOCK_H=128, STAGES=4, EPILOGUE_SPLIT=4, COOP=True, GROUP_M=16),
}
KERNEL_CANDS = {
    "pp_table": dict(STAGES=6, EPILOGUE_SPLIT=8),  # the committed entry
    "coop_n256_s4_split8": dict(BLOCK_N=256, STAGES=4, EPILOGUE_SPLIT=8, COOP=True),
    "coop_n256_s4_split16": dict(BLOCK_N=256, STAGES=4, EPILOGUE_SPLIT=16, COOP=True),
    "coop_n256_s3_split8": dict(BLOCK_N=256, STAGES=3, EPILOGUE_SPLIT=8, COOP=True),
    "coop_n256_s4_split8_pf2": dict(BLOCK_N=256, STAGES=4, EPILOGUE_SPLIT=8, PREFETCH=2, COOP=True),
}
COOP_CHECK = dict(BLOCK_N=256, STAGES=4, EPILOGUE_SPLIT=8, COOP=True)
BEST: dict = {}  # kind -> candidate, filled by the forward and kernel stages


def _fastest(path: Path, prefix: str, cands: dict, **match) -> str:
    rows = [r for r in json.loads(path.read_text()) if r["name"].startswith(prefix) and r["ok"]
            and all(r.get(k) == v for k, v in match.items())]  # fmt: skip
    best = min(rows, key=lambda r: r["ms"])["name"][len(prefix) :]
    return best if best in cands else next(iter(cands))


def check(out: Path) -> list[str]:
    S5.CHECK_CONFIG.update(COOP_CHECK)
    return S5.check(out)


def forward(out: Path) -> list[str]:
    S5.FORWARD_CANDS = FORWARD_CANDS
    lines = S5.forward(out)
    name = _fastest(out / "forward.json", "gluon saving ", FORWARD_CANDS, model="8b", m=8192)
    BEST["forward_saving_ws"] = name
    return [*lines, f"forward: fastest saving candidate {name}"]


def kernel(out: Path) -> list[str]:
    S5.KERNEL_CANDS = KERNEL_CANDS
    lines = S5.kernel(out)
    name = _fastest(out / "kernel.json", "gluon ", KERNEL_CANDS)
    BEST["mlp_backward_ws"] = name
    return [*lines, f"kernel: fastest backward candidate {name}"]


def step(out: Path) -> list[str]:
    from flash_swiglu.kernels import ws_mlp

    n, k = 14336, 4096
    dt = torch.bfloat16
    real_table = T.load_table
    committed = real_table(torch.cuda.get_device_name())
    fwd_name = BEST.get("forward_saving_ws", next(iter(FORWARD_CANDS)))
    bwd_name = BEST.get("mlp_backward_ws", "pp_table")
    fwd = dict(ws_mlp.WS_FORWARD_CONFIG, **FORWARD_CANDS[fwd_name])
    bwd = dict(committed["mlp_backward_ws"], **KERNEL_CANDS[bwd_name])
    fwd["MIN_M"] = bwd["MIN_M"] = 2048
    variants = {  # name -> (Gluon on, table entries replaced)
        "triton": (False, {}),
        "committed": (True, {}),
        "best bwd": (True, {"mlp_backward_ws": bwd}),
        "best fwd+bwd": (True, {"mlp_backward_ws": bwd, "forward_saving_ws": fwd}),
    }

    def use(name: str) -> None:
        on, entries = variants[name]
        os.environ[T.GLUON_ENV] = "1" if on else "0"
        T.load_table = lambda gpu: {**real_table(gpu), **entries}

    lines = [f"step: forward entry {fwd}", f"step: backward entry {bwd}"]
    rows = []
    for mm in (4096, 8192, 16384):
        params, eager_step, fused_step = S5.mlp_steps(mm, n, k, dt)
        gm = 2 * mm * n * k
        grads = {}
        for name in variants:
            use(name)
            fused_step()
            grads[name] = [t.grad.clone() for t in params]
        errs = {name: [S5._rel_err(a, b) for a, b in zip(g, grads["triton"], strict=True)]
                for name, g in grads.items()}  # fmt: skip
        lines.append(f"step M={mm:5d} grads vs triton: "
                     + "; ".join(f"{k_}: {S5._fmt(v)}" for k_, v in errs.items()))  # fmt: skip
        print(lines[-1], flush=True)
        grads = None
        for again in ("", " again"):
            for name in ("eager", *variants):
                if name != "eager":
                    use(name)
                ms, peak = S5.measure_step(eager_step if name == "eager" else fused_step)
                rows.append(dict(name=name + again, m=mm, ms=ms, peak_mib=peak))
                lines.append(f"step M={mm:5d} {name + again:20s} {ms:7.3f} ms "
                             f"{9 * gm / ms / 1e9:4.0f} TF peak {peak:6.0f} MiB")  # fmt: skip
                print(lines[-1], flush=True)
        params = eager_step = fused_step = None
        torch.cuda.empty_cache()
    T.load_table = real_table
    (out / "step.json").write_text(json.dumps(rows, indent=1))
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["check", "forward", "kernel", "step"])
    ap.add_argument("--out", default="/tmp/explore")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.cuda.set_stream(torch.cuda.Stream())
    lines = [f"{torch.cuda.get_device_name()}"]
    parts = {"check": check, "forward": forward, "kernel": kernel, "step": step}
    for part in a.parts:
        t0 = time.time()
        lines += parts[part](out)
        lines.append(f"== {part}: {time.time() - t0:.0f} s")
        print(lines[-1], flush=True)
        (out / "summary.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
