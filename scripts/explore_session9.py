"""Session-9 exploration on the H200: a matrix-vector kernel for one token.

    PYTHONPATH=src python scripts/explore_session9.py [gemv] --out DIR

- ``gemv``: the four model shapes and their shards on 8 tensor-parallel ranks, one token
  (``--tokens`` for more). Per case: the cuBLAS product ``x @ [Wg; Wu]^T``, the decode
  kernel with the committed launch table's decode configuration, ``torch.compile``
  max-autotune of eager's ``silu(x Wg^T) * (x Wu^T)`` (full shapes only: Inductor turns a
  one-row product into a fused reduction), and every candidate of ``GEMV_CANDS`` for
  ``kernels.linear._linear_gemv_kernel``. The fastest candidate and the decode kernel are
  timed twice more (the spread). Where the fastest candidate beats the decode kernel, it goes
  to ``gemv_table.json`` in the launch table's format (section ``gemv``, keyed
  ``m1_n{N}_k{K}``).

Session 9's first call (``call2``) ran a version of the kernel with a token tile of up to 8
(``[T, BLOCK_N, BLOCK_K]`` accumulators) at 1, 2, 4 and 8 tokens: 1.2-3.9x the decode
kernel's time from 2 tokens, hence one token only. ``call3`` timed the one-token kernel
(68 candidates, listed in its ``gemv.json``), ``call4`` 64 more (its ``gemv.json``),
``call6`` the candidates below.

Every kernel time is GPU time from CUDA-graph replays with a cold L2 (``bench.timing``).
Each candidate is checked against the float64 reference before it is timed. Full results go
to ``DIR/*.json``; a short table is printed last.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from flash_swiglu import reference
from flash_swiglu.bench.roofline import copy_bandwidth
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

MODELS = {
    "1b": (2048, 8192),
    "8b": (4096, 14336),
    "qwen7b": (3584, 18944),
    "70b": (8192, 28672),
    "1b/tp8": (2048, 1024),
    "8b/tp8": (4096, 1792),
    "qwen7b/tp8": (3584, 2368),
    "70b/tp8": (8192, 3584),
}
DT = torch.bfloat16
ACT = ("silu", 1.702, 7.0)
# Session 9's call 3 (``h200-session9-explore/call3``) timed 68 candidates (BLOCK_N 1-8,
# BLOCK_K 256-2048, 1-8 warps, UNROLL 1-2, each thread 8 to 32 elements of a weight slice):
# the fastest were single-warp programs of one weight row. Call 4 added UNROLL 4 and
# persistent grids of 8, 16 or 32 programs per SM: no faster but on the 1B shard. Call 6
# (x now loaded with evict_last): around the m1 entry, UNROLL 2, 4 and 8 and the weights
# through L2 only (W_CACHE ".cg") or not.
_BASE = [(1, 128, 1), (1, 256, 1), (1, 512, 1), (1, 1024, 2), (1, 2048, 2), (2, 256, 1)]
GEMV_CANDS = [
    dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=1, UNROLL=u, W_CACHE=c)
    for bn, bk, w in _BASE
    for u in (2, 4, 8)
    for c in ("", ".cg")
    if bk * u <= 4096
]


# Call 7: programs that hold a whole row of K (or half of it) in one trip, with 4 to 16 warps
# (the shape of a reduction kernel), against the m1 entry and the 70B entry; full model
# shapes only (``gemv-rows``).
ROW_CANDS = [
    dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=1, UNROLL=1, W_CACHE=c)
    for bn, bk, w in [(1, bk, w) for bk in (2048, 4096, 8192) for w in (4, 8, 16)]
    + [(2, 2048, 8), (2, 2048, 16), (2, 4096, 16)]
    for c in ("", ".cg")
    if 4 <= bn * bk // (32 * w) <= 32 and (c == "" or w == 16)
] + [
    dict(BLOCK_N=1, BLOCK_K=256, num_warps=1, num_stages=1, UNROLL=2, W_CACHE=""),
    dict(BLOCK_N=1, BLOCK_K=128, num_warps=1, num_stages=1, UNROLL=8, W_CACHE=".cg"),
    dict(BLOCK_N=1, BLOCK_K=256, num_warps=1, num_stages=1, UNROLL=8, W_CACHE=""),
]


def _compiled_eager(n, k):
    """max-autotune of eager's projection (no CUDA graphs of its own: measure_graph adds one)."""

    def eager(x, wg, wu):
        return torch.nn.functional.silu(x @ wg.T) * (x @ wu.T)

    return torch.compile(eager, mode="max-autotune-no-cudagraphs", dynamic=False)


def _w(n, k):
    return torch.randn(n, k, device="cuda", dtype=DT) / k**0.5


def _ok(out, ref) -> bool:
    err = (out.double() - ref).abs().max().item()
    return err <= 0.02 * ref.abs().max().item()


def gemv(out: Path, models: dict = MODELS, ms=(1,), cands=None, tag="gemv") -> list[str]:
    copy = copy_bandwidth(torch.device("cuda"))  # GB/s
    rows, lines, table = [], [], {}
    for name, (k, n) in models.items():
        wg, wu = _w(n, k), _w(n, k)
        wcat = torch.cat([wg, wu])
        for m in ms:
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(
                x.double(), wg.double(), wu.double(), None, None, *ACT
            )
            nbytes = (2 * n * k + m * k + m * n) * 2
            bw = lambda t: nbytes / t / 1e6 / copy
            cub = measure_graph(lambda: x @ wcat.T).median_ms
            dec_cfg = L.launch_config("decode", L.token_bucket(m), n, k, DT, L._device_name(0))
            dec_f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "decode", dec_cfg)
            assert _ok(dec_f(), ref)
            dec = measure_graph(dec_f).median_ms
            cmax = None
            if "/" not in name:
                try:
                    fc = _compiled_eager(n, k)
                    assert _ok(fc(x, wg, wu), ref)
                    cmax = measure_graph(lambda: fc(x, wg, wu)).median_ms
                except Exception as e:
                    msg = f"gemv {name} M={m} compile-max: {type(e).__name__}: {e}"
                    print(msg[:300], flush=True)
            timed = []
            for cfg in cands or GEMV_CANDS:
                f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "gemv", cfg)
                try:
                    if not _ok(f(), ref):
                        print(f"gemv {name} M={m} {cfg}: WRONG", flush=True)
                        continue
                    timed.append((measure_graph(f).median_ms, cfg))
                except Exception as e:  # out of resources: not a candidate
                    print(f"gemv {name} M={m} {cfg}: {type(e).__name__}"[:200], flush=True)
            timed.sort(key=lambda t: t[0])
            best_ms, best = timed[0]
            f_best = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "gemv", best)
            again = dict(
                best=[measure_graph(f_best).median_ms for _ in range(2)],
                decode=[measure_graph(dec_f).median_ms for _ in range(2)],
                cublas=[measure_graph(lambda: x @ wcat.T).median_ms],
            )
            row = dict(model=name, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy,
                       cublas_ms=cub, decode_ms=dec, decode_cfg=dec_cfg, compile_max_ms=cmax,
                       best_ms=best_ms, best=best, again=again,
                       candidates=[dict(ms=t, cfg=c) for t, c in timed])  # fmt: skip
            rows.append(row)
            (out / f"{tag}.json").write_text(json.dumps(rows, indent=1))
            best2 = min([best_ms, *again["best"]])
            dec2 = min([dec, *again["decode"]])
            lines.append(
                f"gemv {name:10s} M={m:2d} cublas {bw(min(cub, *again['cublas'])):4.0%} "
                f"decode {bw(dec2):4.0%} gemv {bw(best2):4.0%} "
                f"(spread {bw(max(best_ms, *again['best'])):4.0%}) "
                f"compile-max {bw(cmax) if cmax else 0:4.0%} "
                f"BN{best['BLOCK_N']} BK{best['BLOCK_K']} w{best['num_warps']} U{best['UNROLL']} "
                f"P{best.get('PROGRAMS_PER_SM')} C{best.get('W_CACHE')!r} "
                f"gemv/decode time {best2 / dec2:.3f}"
            )
            print(lines[-1], flush=True)
            if best2 < dec2:
                stamp = (
                    f"scripts/explore_session9.py gemv on {torch.cuda.get_device_name()}, "
                    f"{time.strftime('%Y-%m-%d')}: {best2 * 1e3:.1f} us ({bw(best2):.0%} of "
                    f"copy bandwidth; decode kernel {dec2 * 1e3:.1f} us, {bw(dec2):.0%}; cuBLAS "
                    f"product {bw(cub):.0%})"
                )
                table[f"m{L.token_bucket(m)}_n{n}_k{k}"] = dict(best, source=stamp)
                (out / f"{tag}_table.json").write_text(json.dumps(table, indent=2))
    (out / f"{tag}_table.json").write_text(json.dumps(table, indent=2))
    return lines


FULL = {key: v for key, v in MODELS.items() if "/" not in key}
STAGES = {
    "gemv": gemv,
    "gemv-rows": lambda out: gemv(out, FULL, cands=ROW_CANDS, tag="gemv_rows"),
}


def merge(table_path: str, found_path: str, out_path: str) -> None:
    """The launch table with the ``gemv`` entries found by a ``gemv-rows`` run in place of its
    own (for a benchmark run with ``FLASH_SWIGLU_LINEAR_CONFIGS``)."""
    table = json.loads(Path(table_path).read_text())
    table["gemv"].update(json.loads(Path(found_path).read_text()))
    Path(out_path).write_text(json.dumps(table, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["gemv"])
    ap.add_argument("--out", default="/tmp/explore")
    ap.add_argument("--merge", nargs=3, metavar=("TABLE", "FOUND", "OUT"))
    a = ap.parse_args()
    if a.merge:
        merge(*a.merge)
        return
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.cuda.set_stream(torch.cuda.Stream())
    lines = [f"{torch.cuda.get_device_name()}"]
    for part in a.parts:
        t0 = time.time()
        lines += STAGES[part](out)
        lines.append(f"== {part}: {time.time() - t0:.0f} s")
        print(lines[-1], flush=True)
    (out / f"summary_{'_'.join(a.parts)}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
