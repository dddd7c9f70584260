"""Explorations of session 34: the MLP backward's hand-off kernel on 256-row tiles.

    PYTHONPATH=src python scripts/explore_session34.py gate                (CPU or GPU)
    PYTHONPATH=src python scripts/explore_session34.py handoff256 --out DIR (H200)

Why. In session 34's benchmark runs at the final commit (`h200-s34-mlp-8b`) the 8B step's
forward led the fastest peer by 1.1-1.4% at 4096 and 8192 tokens while its backward trailed
Liger's by 1.4%: the kernel that forms dh (``kernels/ws_mlp.py``, ping-pong, 128 x 128 tiles)
runs at 0.85 of cuBLAS's ``dy @ W_down`` rate alone, and at 0.90 with its stores switched
off (session 7). A 128 x 128 tile loads 32 KB of operands (dy and W_down) per 2.1 MFLOP of
K step, 15.6 bytes per kFLOP; at its 633 TFLOP/s that is about 9.9 TB/s from L2 into the
SMs. A 256 x 128 tile loads 48 KB per 4.2 MFLOP, 11.7 bytes per kFLOP, 25% less.

The ping-pong kernel cannot take a 256-row tile (each consumer would hold a 256 x 128 fp32
accumulator), nor can the cooperative schedule keep its heavy epilogue off the tensor cores
(session 6). The hand-off kernel (``mlp_backward_handoff_kernel``: a cooperative main loop,
each consumer on half of the tile's rows, and the epilogue in a partition of its own fed
through shared memory) takes one as it stands: with ``BLOCK_M`` 256 each consumer owns a
128 x 128 accumulator (128 registers), the ring holds 3 slots of 48 KB beside the 64 KB of
dh (213 KB), and the sixteen warps' 512 registers a lane are split between the partitions
(``CONSUMER_REGS`` twice, ``EPILOGUE_REGS``, the loader's rest). In the sm_90 build (Triton
3.9, on the CPU machine of session 34) the epilogue spilled with 8 parts (SiLU, 120
registers), and with 16 parts below 136 registers for gpt-oss's GLU (6-19 spilled loads and
stores at 104-120; SiLU needs 104); the candidates below compile without spills for every
activation.

- ``gate``: compile each candidate below for sm_90 as the training table would launch it,
  every activation in bf16 and SiLU in fp16; one JSON object a line (``shared`` bytes,
  ``setmaxnreg`` values, ``sass_spills``, ...). ``tests/test_explore_session34.py`` checks
  them on the CPU: no spills, shared memory within a Hopper block, ``wgmma`` and bulk
  tensor copies.
- ``handoff256`` (written in session 34 after its device time was spent; not yet run):
  ``explore_session5.check`` with each 256-row candidate (tails, few SMs, dg / du over g /
  u, every activation, fp16, against an fp32 reference and the Triton kernel); then the dh
  kernel alone at the 8B shape and M = 8192 (``explore_session5.kernel``: the committed
  ping-pong entry, session 7's hand-off on 128-row tiles and the candidates, cuBLAS's
  ``dy @ W_down`` beside them, CUDA-graph replays with a cold L2); then whole 8B MLP steps
  at 4096, 8192 and 16384 tokens with the fastest candidate that passed as the table's
  ``mlp_backward_ws`` entry, against the committed table and eager (two passes in turn,
  ``do_bench`` medians, gradients against the committed table's). -> ``check.json``,
  ``kernel.json``, ``handoff256_step.json`` and a short table.

A candidate that wins here is a table entry to confirm with ``benchmark-swiglu --op mlp``
(and ``--step-ms 2000``) before it is committed: the step runs at the H200's power limit,
where a kernel's time alone does not carry over one for one (``docs/mlp.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# mlp_backward_ws table entries: ``ws_mlp.HANDOFF_CONFIG`` with these keys (``entry``).
CANDIDATES = {
    # session 7's fastest hand-off entry (128-row tiles, 5 slots), for reference
    "ho128_p8": dict(EPILOGUE_SPLIT=8),
    "ho256_c168_e136": dict(BLOCK_M=256, STAGES=3, EPILOGUE_SPLIT=16, CONSUMER_REGS=168,
                            EPILOGUE_REGS=136),
    "ho256_c160_e152": dict(BLOCK_M=256, STAGES=3, EPILOGUE_SPLIT=16, CONSUMER_REGS=160,
                            EPILOGUE_REGS=152),
    "ho256_c168_e136_g16": dict(BLOCK_M=256, STAGES=3, EPILOGUE_SPLIT=16, CONSUMER_REGS=168,
                                EPILOGUE_REGS=136, GROUP_M=16),
    # session 35, after call 2 had the three above at 2.32-2.36 ms against 1.56 for ho128_p8:
    # 16 parts are 8 columns, 16-byte accesses per row in the epilogue. With 160 / 152
    # registers 8 parts compile without spills for SiLU, GELU and ReLU (the two others take
    # 16 parts whatever the entry says, ``T.ws_entry``). Since session 37's ``gelu_cdf``,
    # GELU spills too (2 spill instructions in the sm_90 SASS).
    "ho256_s8_c160_e152": dict(BLOCK_M=256, STAGES=3, EPILOGUE_SPLIT=8, CONSUMER_REGS=160,
                               EPILOGUE_REGS=152),
    # the 128-row hand-off with 16 parts: what 8-column pieces cost at the committed tile
    "ho128_p16": dict(EPILOGUE_SPLIT=16),
}  # fmt: skip
SELECTED: tuple[str, ...] = tuple(CANDIDATES)  # --candidates
MIN_M = 2048  # as the committed entry's: below it the step takes the Triton kernel


def entry(name: str) -> dict:
    """The ``mlp_backward_ws`` table entry of candidate ``name`` (a hand-off entry)."""
    from flash_swiglu.kernels import ws_mlp

    return dict(ws_mlp.HANDOFF_CONFIG, **CANDIDATES[name], HANDOFF=True, MIN_M=MIN_M)


def fastest_passed(rows: list[dict], prefix: str = "gluon ho256") -> str | None:
    """The candidate (name without ``gluon ``) of the fastest row of ``explore_session5.kernel``
    whose name starts with ``prefix`` and whose check passed; None if none did."""
    passed = [r for r in rows if r["name"].startswith(prefix) and r["ok"]]
    if not passed:
        return None
    return min(passed, key=lambda r: r["ms"])["name"][len("gluon ") :]


def gate(out: Path | None = None) -> list[dict]:
    """Each 256-row candidate compiled for sm_90 (``tests/compile_gate_ws.py``'s
    ``compile_variant``, as a launch takes the entry), every activation in bf16, SiLU in
    fp16 (the 128-row reference is the committed gate's built-in hand-off but for its 8
    parts)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import torch

    from compile_gate_ws import ACTIVATIONS, compile_variant
    from flash_swiglu.ops import train as T

    rows = []
    for dtype in (torch.bfloat16, torch.float16):
        for act in ACTIVATIONS if dtype == torch.bfloat16 else ("silu",):
            for name in (c for c in CANDIDATES if c.startswith("ho256")):
                cfg = T.ws_entry(entry(name), "mlp_backward_ws", act, None)
                row = dict(compile_variant(cfg, dtype, act), candidate=name,
                           dtype=str(dtype), activation=act)  # fmt: skip
                rows.append(row)
                print(json.dumps(row), flush=True)
    if out is not None:
        (out / "gate.json").write_text(json.dumps(rows, indent=1))
    return rows


CHECK = True  # --no-check: skip the accuracy checks (session 35's call 1 ran them, all passed)


def handoff256(out: Path) -> list[str]:
    import explore_session5 as S5
    import torch

    from flash_swiglu.ops import train as T

    lines = []
    for name in SELECTED:
        if not name.startswith("ho256") or not CHECK:
            continue
        S5.CHECK_CONFIG.clear()
        S5.CHECK_CONFIG.update(entry(name))
        S5.CHECK_CONFIG.pop("MIN_M")
        lines += [f"{name}: {line}" for line in S5.check(out)]
        (out / "check.json").rename(out / f"check_{name}.json")
    committed = T.load_table(torch.cuda.get_device_name())
    pp = {key: committed["mlp_backward_ws"][key] for key in T.WS_KEYS["mlp_backward_ws"]}
    S5.KERNEL_CANDS = {"pp_table": pp}
    for name in SELECTED:
        cand = entry(name)
        cand.pop("MIN_M")
        S5.KERNEL_CANDS[name] = cand
    # measure_graph captures on the caller's stream, which must not be the default one
    # (session 35's call 1 stopped here without this).
    with torch.cuda.stream(torch.cuda.Stream()):
        lines += S5.kernel(out)
    best = fastest_passed(json.loads((out / "kernel.json").read_text()))
    if best is None:
        lines.append("handoff256: no 256-row candidate passed; no step stage")
        print(lines[-1], flush=True)
        return lines
    lines.append(f"handoff256: fastest candidate {best}: {entry(best)}")
    print(lines[-1], flush=True)
    lines += compare_steps(best, entry(best), out / "handoff256_step.json")
    return lines


def compare_steps(
    name: str, ws_entry: dict, path: Path, kind: str = "mlp_backward_ws"
) -> list[str]:
    """Whole 8B MLP steps at 4096, 8192 and 16384 tokens with ``ws_entry`` as the training
    table's ``kind`` entry (label ``name``) against the committed table and eager:
    the gradients against the committed table's, then two passes of the three, ``do_bench``
    medians and peak memory (``explore_session5.measure_step``). Rows to ``path``."""
    import explore_session5 as S5
    import torch

    from flash_swiglu.ops import train as T

    real_table = T.load_table

    def use(entries: dict) -> None:
        """The training table with ``entries`` over it, and the training plans dropped. (The
        plans' key holds the table reader in place since session 34, so a plan made under
        one table is not taken under another; before that it held only the table's path,
        and a table swapped in this way ran the plan of the table before it.)"""
        T.load_table = lambda gpu: {**real_table(gpu), **entries}
        T.L.clear_plans()

    variants = {"committed": {}, name: {kind: ws_entry}}
    os.environ[T.GLUON_ENV] = "1"
    lines, step_rows = [], []
    try:
        for mm in (4096, 8192, 16384):
            params, eager_step, fused_step = S5.mlp_steps(mm, 14336, 4096, torch.bfloat16)
            grads = {}
            for label, entries in variants.items():
                use(entries)
                fused_step()
                grads[label] = [t.grad.clone() for t in params]
            errs = [S5._rel_err(a, b) for a, b in zip(grads[name], grads["committed"],
                                                      strict=True)]  # fmt: skip
            lines.append(f"step M={mm:5d} grads {name} vs committed: {S5._fmt(errs)}")
            print(lines[-1], flush=True)
            grads = None
            for again in ("", " again"):
                for label in ("eager", *variants):
                    if label != "eager":
                        use(variants[label])
                    ms, peak = S5.measure_step(eager_step if label == "eager" else fused_step)
                    step_rows.append(dict(name=label + again, m=mm, ms=ms, peak_mib=peak))
                    lines.append(f"step M={mm:5d} {label + again:26s} {ms:7.3f} ms "
                                 f"peak {peak:6.0f} MiB")  # fmt: skip
                    print(lines[-1], flush=True)
            params = eager_step = fused_step = None
            torch.cuda.empty_cache()
    finally:
        T.load_table = real_table
        T.L.clear_plans()
    path.write_text(json.dumps(step_rows, indent=1))
    return lines


STAGES = {"gate": gate, "handoff256": handoff256}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stages", nargs="+", choices=tuple(STAGES))
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--no-check", action="store_true")
    p.add_argument("--candidates", nargs="+", choices=tuple(CANDIDATES), default=None)
    a = p.parse_args(argv)
    global CHECK, SELECTED
    CHECK = not a.no_check
    SELECTED = tuple(a.candidates or CANDIDATES)
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
    for stage in a.stages:
        if stage == "handoff256" and a.out is None:
            p.error("handoff256 needs --out")
        STAGES[stage](a.out)


if __name__ == "__main__":
    main()
