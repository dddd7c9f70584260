"""Session-50 exploration (run in session 51, ``h200-session51-explore/call2``): how far the
warp-specialized backward's main loop alone is from cuBLAS's ``dy @ W_down``.

    PYTHONPATH=src python scripts/explore_session50.py gate              (CPU or GPU)
    PYTHONPATH=src python scripts/explore_session50.py dhgemm --out DIR  (GPU)

Why: issue 4's 8B step trails its 1.06x target by about 2 points, and the kernel that forms
dh (``ws_mlp.mlp_backward_ws_kernel``) is where the step loses most: 0.84-0.85 of cuBLAS's
rate at 8192 x 14336 x 4096. Session 7 (``explore_session7.py diag``) took the epilogue's
memory traffic out piece by piece: with g and u made from indices and no stores the kernel
still took 1.59-1.62 ms against cuBLAS's 1.37. What no session timed is the kernel's main
loop with nothing after it but storing dh: if that alone is well short of cuBLAS, no epilogue
design closes the gap and the main loop (tile, ring, operand majors) is the lever.

The kernels here reuse ``ws_mlp``'s loader, main loop and tile order unchanged; only the
consumers' epilogue differs: dh rounded to the storage dtype, moved to 16-byte rows
(``_coalesced_layout``) and stored, in PARTS column parts. ``store_rows`` bounds the rows
stored: ``M`` stores dh, 0 stores nothing (a runtime value, so the compiler keeps the
epilogue's arithmetic and layout moves). ``B_KMAJOR`` reads W_down transposed (``[N, K]``,
a contiguous copy), as the forward reads its weights.

- ``gate``: every variant compiled for sm_90 (shared memory, registers, spills), CPU or GPU.
- ``dhgemm``: at 8192 x 14336 x 4096, bf16: cuBLAS's ``dy @ W_down`` and ``dy @ W_down^T^T``
  (its other operand major), the committed backward entry (SiLU, g and u in buffers of their
  own), and the variants below; each checked against cuBLAS's product (rounded alike, at
  most 1% of the largest entry apart; the committed kernel's gradients against float64),
  then ``ROUNDS`` rotated rounds of ``measure_graph`` (CUDA-graph replays after an L2
  eviction, settled 100 ms). -> ``dhgemm.json`` and one line a variant.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from triton.experimental import gluon
from triton.experimental.gluon import language as gl

from flash_swiglu.kernels import ws_mlp
from flash_swiglu.kernels.linear import _grouped_tile

ROUNDS = 5
SETTLE_MS = 100.0
SHAPE = (8192, 14336, 4096)  # M, N (intermediate), K (hidden): Llama-3-8B at 8192 tokens

# name -> (BLOCK_M, BLOCK_N, BLOCK_K, GROUP_M, STAGES, PARTS, CONSUMER_REGS, COOP, B_KMAJOR,
# store): ping-pong 128 x 128 (the committed backward's tile and ring), and the cooperative
# 128 x 256 tile of the forward's shape-wide entries (two consumers of 64 x 256, 4 slots).
VARIANTS = {
    "pp128": (128, 128, 64, 8, 6, 8, 232, False, False, True),
    "pp128 nostore": (128, 128, 64, 8, 6, 8, 232, False, False, False),
    "pp128 kmajor": (128, 128, 64, 8, 6, 8, 232, False, True, True),
    "coop256": (128, 256, 64, 8, 4, 8, 232, True, False, True),
    "coop256 kmajor": (128, 256, 64, 8, 4, 8, 232, True, True, True),
}


@gluon.jit
def _loader_kmajor(dy_desc, wt_desc, a_ring, b_ring, ready, empty, M, N, K,
                   GROUP_M: gl.constexpr, STAGES: gl.constexpr):  # fmt: skip
    """``ws_mlp._loader`` for a transposed W_down ``[N, K]``: B tiles ``[BLOCK_N, BLOCK_K]``."""
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    BLOCK_N: gl.constexpr = wt_desc.block_type.shape[0]
    num_pid_m = gl.cdiv(M, BLOCK_M)
    num_pid_n = gl.cdiv(N, BLOCK_N)
    k_steps = gl.cdiv(K, BLOCK_K)
    nbytes: gl.constexpr = dy_desc.block_type.nbytes + wt_desc.block_type.nbytes
    count = 0
    for t in range(gl.program_id(0), num_pid_m * num_pid_n, gl.num_programs(0)):
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        for ks in range(k_steps):
            slot, bar = ws_mlp._claim_slot(ready, empty, count, STAGES, nbytes)
            ws_mlp._tma_load(dy_desc, [pid_m * BLOCK_M, ks * BLOCK_K], bar, a_ring.index(slot))
            ws_mlp._tma_load(wt_desc, [pid_n * BLOCK_N, ks * BLOCK_K], bar, b_ring.index(slot))
            count += 1


@gluon.jit
def _loader(dy_desc, w_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M: gl.constexpr,
            STAGES: gl.constexpr, B_KMAJOR: gl.constexpr):  # fmt: skip
    """The loader of W_down's major: ``ws_mlp._loader`` or ``_loader_kmajor``."""
    if B_KMAJOR:
        _loader_kmajor(dy_desc, w_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M, STAGES)
    else:
        ws_mlp._loader(dy_desc, w_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M, STAGES)


@gluon.jit
def _gemm_consumer(dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, c_ptr, stride_c,
                   store_rows, M, N, K, GROUP_M: gl.constexpr, STAGES: gl.constexpr,
                   PARTS: gl.constexpr, ROLE: gl.constexpr, COOP: gl.constexpr,
                   B_KMAJOR: gl.constexpr):  # fmt: skip
    BLOCK_M: gl.constexpr = dy_desc.block_type.shape[0]
    BLOCK_K: gl.constexpr = dy_desc.block_type.shape[1]
    if B_KMAJOR:
        BLOCK_N: gl.constexpr = w_desc.block_type.shape[0]
    else:
        BLOCK_N: gl.constexpr = w_desc.block_type.shape[1]
    SUB_M: gl.constexpr = BLOCK_M // (1 + COOP)
    WIDTH: gl.constexpr = BLOCK_N // PARTS
    layout: gl.constexpr = ws_mlp._acc_layout(SUB_M, BLOCK_N)
    out_layout: gl.constexpr = ws_mlp._coalesced_layout(SUB_M, WIDTH)
    num_pid_m, num_pid_n, num_tiles, k_steps, first, step, count, row0 = ws_mlp._consumer_tiles(
        M, N, K, BLOCK_M, BLOCK_N, BLOCK_K, ROLE, COOP)  # fmt: skip
    for t in range(first, num_tiles, step):
        i = (t - first) // step
        pid_m, pid_n = _grouped_tile(t, num_pid_m, num_pid_n, GROUP_M)
        off_m = pid_m * BLOCK_M + row0
        off_n = pid_n * BLOCK_N
        acc, count = ws_mlp._main_loop(a_ring, b_ring, ready, empty, turn, count, i, k_steps,
                                       layout, SUB_M, BLOCK_N, STAGES, ROLE, B_KMAJOR,
                                       COOP)  # fmt: skip
        parts = ws_mlp._split_columns(acc, PARTS)
        for p in gl.static_range(PARTS):
            d = gl.convert_layout(parts[p].to(c_ptr.dtype.element_ty), out_layout)
            rows = off_m + gl.arange(0, SUB_M, layout=gl.SliceLayout(1, out_layout))
            cols = off_n + p * WIDTH + gl.arange(0, WIDTH, layout=gl.SliceLayout(0, out_layout))
            mask = (rows < store_rows)[:, None] & (cols < N)[None, :]
            gl.store(c_ptr + (rows.to(gl.int64)[:, None] * stride_c + cols[None, :]), d,
                     mask=mask)  # fmt: skip


@gluon.jit
def dh_gemm_kernel(dy_desc, w_desc, c_ptr, stride_c, store_rows, M, N, K,
                   GROUP_M: gl.constexpr, STAGES: gl.constexpr, PARTS: gl.constexpr,
                   CONSUMER_REGS: gl.constexpr, COOP: gl.constexpr,
                   B_KMAJOR: gl.constexpr):  # fmt: skip
    """``c = dy @ w`` (``w [K, N]``, or ``[N, K]`` with B_KMAJOR) on ``ws_mlp``'s loader and
    main loop: the backward kernel with an epilogue that only stores dh."""
    dtype: gl.constexpr = dy_desc.dtype
    a_shape: gl.constexpr = [STAGES] + dy_desc.block_type.shape  # noqa: RUF005
    b_shape: gl.constexpr = [STAGES] + w_desc.block_type.shape  # noqa: RUF005
    a_ring = gl.allocate_shared_memory(dtype, a_shape, dy_desc.layout)
    b_ring = gl.allocate_shared_memory(dtype, b_shape, w_desc.layout)
    ready, empty, turn = ws_mlp._ring_barriers(STAGES, COOP)
    # fmt: off
    gl.warp_specialize(
        [
            (_loader, (dy_desc, w_desc, a_ring, b_ring, ready, empty, M, N, K, GROUP_M,
                       STAGES, B_KMAJOR)),
            (_gemm_consumer, (dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, c_ptr,
                              stride_c, store_rows, M, N, K, GROUP_M, STAGES, PARTS, 0, COOP,
                              B_KMAJOR)),
            (_gemm_consumer, (dy_desc, w_desc, a_ring, b_ring, ready, empty, turn, c_ptr,
                              stride_c, store_rows, M, N, K, GROUP_M, STAGES, PARTS, 1, COOP,
                              B_KMAJOR)),
        ],
        [4, 4],
        [CONSUMER_REGS, CONSUMER_REGS],
    )
    # fmt: on


def _blocks(name: str) -> tuple[list[int], list[int], dict]:
    """The dy and W blocks of variant ``name`` and its constexprs."""
    bm, bn, bk, group, stages, parts, regs, coop, kmajor, _ = VARIANTS[name]
    consts = dict(GROUP_M=group, STAGES=stages, PARTS=parts, CONSUMER_REGS=regs, COOP=coop,
                  B_KMAJOR=kmajor)  # fmt: skip
    return [bm, bk], ([bn, bk] if kmajor else [bk, bn]), consts


def gate(out: Path | None) -> list[str]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from compile_gate_ws import _compile

    rows, lines = [], []
    for name in VARIANTS:
        a_block, b_block, consts = _blocks(name)
        row = _compile(dh_gemm_kernel, {"dy_desc": a_block, "w_desc": b_block}, consts,
                       torch.bfloat16)  # fmt: skip
        rows.append(dict(row, variant=name))
        lines.append(json.dumps(rows[-1]))
        print(lines[-1], flush=True)
    if out is not None:
        (out / "gate.json").write_text(json.dumps(rows, indent=1))
    return lines


def _launcher(name: str, dy, wd, wt, c):
    """A call of variant ``name`` writing ``dy @ W_down`` into ``c`` (or nothing)."""
    m, k = dy.shape
    n = wd.shape[1]
    a_block, b_block, consts = _blocks(name)
    store = VARIANTS[name][-1]
    w = wt if consts["B_KMAJOR"] else wd
    bn = b_block[0] if consts["B_KMAJOR"] else b_block[1]
    grid = ws_mlp._grid(dy.device, -(-m // a_block[0]) * -(-n // bn), None)
    da, db = ws_mlp._desc(dy, a_block), ws_mlp._desc(w, b_block)

    def call():
        dh_gemm_kernel[grid](da, db, c, c.stride(0), m if store else 0, m, n, k, num_warps=4,
                             **consts)  # fmt: skip

    return call


def dhgemm(out: Path) -> list[str]:
    from flash_swiglu import reference
    from flash_swiglu.bench.timing import interleaved_rounds, measure_graph
    from flash_swiglu.ops import train as T

    m, n, k = SHAPE
    dt = torch.bfloat16
    gen = torch.Generator(device="cuda").manual_seed(0)
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt, generator=gen) * sc
    dy, wd = r(m, k), r(k, n, sc=k**-0.5)
    wt = wd.t().contiguous()
    g, u = r(m, n), r(m, n)
    h, dg, du = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    entry = T.load_table(torch.cuda.get_device_name())["mlp_backward_ws"]
    cfg = T.ws_entry(entry, "mlp_backward_ws", "silu", m)
    common = dict(activation="silu", alpha=1.702, limit=7.0)
    ref = torch.mm(dy, wd)
    scale = ref.abs().max().item()
    calls, checks = {}, {}
    calls["cublas"] = lambda: torch.mm(dy, wd)
    calls["cublas kmajor"] = lambda: torch.mm(dy, wt.t())
    checks["cublas kmajor"] = (torch.mm(dy, wt.t()) - ref).abs().max().item() / scale
    committed = lambda: ws_mlp.mlp_backward_ws(dy, wd, g, u, h, dg, du, config=cfg, **common)
    committed()
    torch.cuda.synchronize()
    dgr, dur = reference.glu_backward(g.double(), u.double(), dy.double() @ wd.double(),
                                      "silu", 1.702, 7.0)  # fmt: skip
    checks["committed"] = max(
        (dg.double() - dgr).abs().max().item() / dgr.abs().max().item(),
        (du.double() - dur).abs().max().item() / dur.abs().max().item(),
    )
    dgr = dur = None
    calls["committed"] = committed
    outs = {}
    for name in VARIANTS:
        c = torch.zeros(m, n, device="cuda", dtype=dt)
        outs[name] = c
        try:
            calls[name] = _launcher(name, dy, wd, wt, c)
            calls[name]()
            torch.cuda.synchronize()
        except Exception as e:  # a variant that does not launch is reported, the rest go on
            checks[name] = f"{type(e).__name__}: {str(e)[:200]}"
            calls.pop(name, None)
            continue
        if VARIANTS[name][-1]:
            checks[name] = (c - ref).abs().max().item() / scale
        else:
            checks[name] = "no output (stores off); untouched" if not c.any() else "wrote!"
    ok = {lb: isinstance(v, float) and v <= 0.01 for lb, v in checks.items()}
    ok["cublas"] = True
    for name in VARIANTS:
        if name in calls and not VARIANTS[name][-1]:
            ok[name] = checks[name].startswith("no output")
    timed = [lb for lb in calls if ok.get(lb)]
    with torch.cuda.stream(torch.cuda.Stream()):  # measure_graph captures on a side stream
        rounds = interleaved_rounds(timed, lambda lb: measure_graph(calls[lb], SETTLE_MS), ROUNDS)
    ms = {lb: [t.median_ms for t in ts if not isinstance(t, Exception)]
          for lb, ts in rounds.items()}  # fmt: skip
    for lb, ts in rounds.items():  # a timing that raised is reported instead of the check
        for t in ts:
            if isinstance(t, Exception):
                checks[lb] = f"timing raised {type(t).__name__}: {str(t)[:160]}"
    med = {lb: sorted(t)[len(t) // 2] for lb, t in ms.items() if t}
    flops = 2 * m * n * k
    rows = dict(shape=SHAPE, variants=VARIANTS, committed_config=cfg, checks=checks, ms=ms)
    (out / "dhgemm.json").write_text(json.dumps(rows, indent=1, default=str))
    lines = []
    for lb in calls:
        if lb in med:
            rate = med["cublas"] / med[lb]
            lines.append(f"dhgemm {lb:16s} {med[lb]:6.3f} ms {flops / med[lb] / 1e9:4.0f} TF "
                         f"{rate:.3f} of cuBLAS, rounds {min(ms[lb]):.3f}-{max(ms[lb]):.3f}, "
                         f"check {checks.get(lb)}")  # fmt: skip
        else:
            lines.append(f"dhgemm {lb:16s} not timed: check {checks.get(lb)}")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("gate", "dhgemm"))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.out is None and args.mode != "gate":
        parser.error("--out DIR is required")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    lines = {"gate": gate, "dhgemm": dhgemm}[args.mode](args.out)
    if args.out is not None:
        (args.out / f"summary_{args.mode}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
