"""Session-8 exploration on the H200: the decode kernel's split-K option and the host time of
one MLP training step, in one call.

    PYTHONPATH=src python scripts/explore_session8.py [decode] [host] --out DIR

- ``decode``: the four model shapes at M = 1, 8, 16, 32 and 64 tokens. Per case: the cuBLAS
  product ``x @ [Wg; Wu]^T``, a device copy of the same bytes, a pure read of the weights (a
  Triton sum over them: what streaming alone reaches at this size), the committed launch
  table's decode entry, and decode candidates with and without ``SPLIT_K`` (the last program
  of each tile adds the K slices' partials and applies the activation). M = 1 and 32 time
  every candidate; 8, 16 and 64 time the three fastest of their neighbour. The fastest
  candidate per case and the table's entry are timed twice more (the spread). The winners
  go to ``decode_table.json`` in the launch table's format.
- ``host``: the example's MLP shape (16 x 512 tokens, hidden 1024, intermediate 2816, bf16):
  host time to enqueue a fwd+bwd of eager's ``LlamaMLP`` and of ``SwiGLUMLP``, and of the
  pieces of ours (a bare Triton launch, a Gluon launch, descriptor construction, the
  autograd function, ``torch.mm``), each the mean over many calls without synchronising.

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
import triton
import triton.language as tl

from flash_swiglu import reference
from flash_swiglu.bench.roofline import copy_bandwidth, same_size_copy_gbps
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944), "70b": (8192, 28672)}
# Tensor-parallel shards of the gate/up projection (N split over the ranks): few tiles of
# weight rows for 132 SMs, where slices of K could give the parallelism.
TP_MODELS = {
    "1b/tp4": (2048, 2048),
    "8b/tp8": (4096, 1792),
    "qwen7b/tp4": (3584, 4736),
    "70b/tp8": (8192, 3584),
}
DT = torch.bfloat16
ACT = ("silu", 1.702, 7.0)

# (BLOCK_N, BLOCK_K, num_warps, num_stages); each with SPLIT_K 1 (a few) or 2, 4, 8.
_TILES = [
    (64, 128, 4, 2),
    (64, 128, 4, 3),
    (32, 128, 4, 3),
    (32, 256, 4, 2),
    (64, 64, 4, 4),
    (128, 128, 8, 2),
    (128, 64, 8, 3),
    (64, 256, 4, 2),
]
DECODE_CANDS = [
    dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s, SPLIT_K=sk)
    for sk in (2, 4, 8)
    for bn, bk, w, s in _TILES
] + [
    dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=s, SPLIT_K=1)
    for bn, bk, w, s in ((64, 128, 4, 4), (32, 128, 4, 4), (128, 128, 8, 3))
]
FULL_M = (1, 32)
NEIGHBOUR = {8: 1, 16: 1, 64: 32}  # M -> the M whose three fastest candidates it times


def _w(n, k):
    return torch.randn(n, k, device="cuda", dtype=DT) / k**0.5


def _ok(out, ref) -> bool:
    err = (out.double() - ref).abs().max().item()
    return err <= 0.02 * ref.abs().max().item()


@triton.jit
def _read_kernel(src, out, n, CHUNK: tl.constexpr, BLOCK: tl.constexpr):
    """Sum of a contiguous chunk of ``src`` per program: a pure streaming read."""
    base = tl.program_id(0).to(tl.int64) * CHUNK
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    for i in range(0, CHUNK, BLOCK):
        offs = base + i + tl.arange(0, BLOCK)
        acc += tl.load(src + offs, mask=offs < n, other=0.0).to(tl.float32)
    tl.store(out + tl.program_id(0), tl.sum(acc))


@triton.jit
def _nop(p):
    pass


def _read_ms(flat: torch.Tensor) -> dict:
    """GPU time of a pure read of ``flat`` (bf16), two chunk sizes."""
    res = {}
    for chunk in (16384, 131072):
        grid = (triton.cdiv(flat.numel(), chunk),)
        out = torch.empty(grid[0], device="cuda", dtype=torch.float32)
        f = lambda: _read_kernel[grid](flat, out, flat.numel(), CHUNK=chunk, BLOCK=2048,
                                       num_warps=8)  # fmt: skip
        f()
        res[f"read_{chunk * 2 // 1024}k"] = measure_graph(f).median_ms
    return res


def decode(out: Path, models: dict = MODELS, ms=(1, 32, 8, 16, 64), tag="decode") -> list[str]:
    copy = copy_bandwidth(torch.device("cuda"))  # GB/s
    rows, lines, table = [], [], {}
    for name, (k, n) in models.items():
        wg, wu = _w(n, k), _w(n, k)
        wcat = torch.cat([wg, wu])
        reads = _read_ms(wcat.view(-1))
        ranked: dict[int, list] = {}
        for m in ms:
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(
                x.double(), wg.double(), wu.double(), None, None, *ACT
            )
            nbytes = (2 * n * k + m * k + m * n) * 2
            bw = lambda ms: nbytes / ms / 1e6 / copy
            cub = measure_graph(lambda: x @ wcat.T).median_ms
            table_f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT)
            assert _ok(table_f(), ref)
            table_ms = measure_graph(table_f).median_ms
            cands = DECODE_CANDS if m in FULL_M else [c for _, c in ranked[NEIGHBOUR[m]][:3]]
            timed = []
            for cfg in cands:
                f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "decode", cfg)
                try:
                    if not _ok(f(), ref):
                        print(f"decode {name} M={m} {cfg}: WRONG", flush=True)
                        continue
                    timed.append((measure_graph(f).median_ms, cfg))
                except Exception as e:  # out of resources: not a candidate
                    print(f"decode {name} M={m} {cfg}: {type(e).__name__}"[:200], flush=True)
            timed.sort(key=lambda t: t[0])
            ranked[m] = timed
            best_ms, best = timed[0]
            f_best = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "decode", best)
            again = dict(
                best=[measure_graph(f_best).median_ms for _ in range(2)],
                table=[measure_graph(table_f).median_ms for _ in range(2)],
                cublas=[measure_graph(lambda: x @ wcat.T).median_ms],
            )
            same = same_size_copy_gbps(nbytes, torch.device("cuda"))
            row = dict(model=name, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy,
                       same_size_copy_gbps=same, cublas_ms=cub, table_ms=table_ms,
                       best_ms=best_ms, best=best, again=again, reads_ms=reads,
                       candidates=[dict(ms=t, cfg=c) for t, c in timed])  # fmt: skip
            rows.append(row)
            (out / f"{tag}.json").write_text(json.dumps(rows, indent=1))
            best2 = min([best_ms, *again["best"]])
            table2 = min([table_ms, *again["table"]])
            read = min(reads.values())
            lines.append(
                f"{tag} {name:10s} M={m:3d} cublas {bw(min(cub, *again['cublas'])):4.0%} "
                f"table {bw(table2):4.0%} best {bw(best2):4.0%} "
                f"(spread {bw(max(best_ms, *again['best'])):4.0%}) "
                f"copy-same {same / copy:4.0%} read {bw(read):4.0%} "
                f"SK{best['SPLIT_K']} BN{best['BLOCK_N']} BK{best['BLOCK_K']} "
                f"w{best['num_warps']} s{best['num_stages']}"
            )
            print(lines[-1], flush=True)
            if best2 < table2:
                stamp = (
                    f"scripts/explore_session8.py {tag} on {torch.cuda.get_device_name()}, "
                    f"{time.strftime('%Y-%m-%d')}: {best2 * 1e3:.1f} us ({bw(best2):.0%} of "
                    f"copy bandwidth; cuBLAS product {bw(cub):.0%}; table entry it replaced "
                    f"{table2 * 1e3:.1f} us)"
                )
                table[f"m{L.token_bucket(m)}_n{n}_k{k}"] = dict(best, source=stamp)
                (out / f"{tag}_table.json").write_text(json.dumps(table, indent=2))
    (out / f"{tag}_table.json").write_text(json.dumps(table, indent=2))
    return lines


def host(out: Path) -> list[str]:
    """Host time of the example's MLP and of its pieces (means, no synchronisation)."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP
    from flash_swiglu.kernels.ws_mlp import _desc

    h, n = 1024, 2816
    x = torch.randn(16, 512, h, device="cuda", dtype=DT, requires_grad=True)
    dy = torch.randn_like(x)
    cfg = LlamaConfig(hidden_size=h, intermediate_size=n, hidden_act="silu")
    eager = LlamaMLP(cfg).to("cuda", DT)
    ours = SwiGLUMLP.from_module(eager)
    x2 = x.detach().view(-1, h)
    a = torch.randn(x2.shape[0], n, device="cuda", dtype=DT)

    def step(mlp):
        def f():
            x.grad = None
            for p in mlp.parameters():
                p.grad = None
            mlp(x).backward(dy)

        return f

    empty = torch.empty(1, device="cuda")
    pieces = {
        "eager LlamaMLP fwd+bwd": step(eager),
        "SwiGLUMLP fwd+bwd": step(ours),
        "eager LlamaMLP fwd (no grad)": lambda: eager(x2),
        "SwiGLUMLP fwd, no grad": lambda: ours(x2),
        "torch.mm": lambda: torch.mm(x2, eager.gate_proj.weight.T),
        "Triton launch, one pointer arg": lambda: _nop[(1,)](empty),
        "Gluon descriptor (cached layout)": lambda: _desc(a, [128, 64]),
        "F.silu(g) * u": lambda: torch.nn.functional.silu(a) * a,
    }
    rows, lines = {}, []
    for label, f in pieces.items():
        grad = "fwd+bwd" in label
        ctx = torch.enable_grad() if grad else torch.no_grad()
        with ctx:
            for _ in range(10):
                f()
            torch.cuda.synchronize()
            reps = 50 if grad else 500
            t0 = time.perf_counter()
            for _ in range(reps):
                f()
            us = (time.perf_counter() - t0) / reps * 1e6
            torch.cuda.synchronize()
        rows[label] = us
        lines.append(f"host {label:34s} {us:8.1f} us")
        print(lines[-1], flush=True)
    (out / "host.json").write_text(json.dumps(rows, indent=1))
    return lines


def host2(out: Path) -> list[str]:
    """Host time of the pieces of ``SwiGLUMLP``'s training step at the example's shape, and
    ``cProfile``'s cumulative view of one fwd+bwd restricted to flash_swiglu and Triton."""
    import cProfile
    import io
    import pstats

    from flash_swiglu import SwiGLUMLP
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws, mlp_backward_ws
    from flash_swiglu.ops import train as T

    h, n, m = 1024, 2816, 8192
    mlp = SwiGLUMLP(h, n, device="cuda", dtype=DT)
    x = torch.randn(m, h, device="cuda", dtype=DT, requires_grad=True)
    dy = torch.randn_like(x)
    wg, wu, wd = mlp.gate_proj.weight, mlp.up_proj.weight, mlp.down_proj.weight
    x2 = x.detach()
    g, u, hh, dg, du = (torch.randn(m, n, device="cuda", dtype=DT) for _ in range(5))
    fcfg = T.ws_config(DT, x.device, "silu", m, "forward_saving_ws")
    bcfg = T.ws_config(DT, x.device, "silu", m)

    def fwd_bwd():
        x.grad = None
        for p in mlp.parameters():
            p.grad = None
        mlp(x).backward(dy)

    def fwd_only():
        return mlp(x)

    pieces = {
        "SwiGLUMLP fwd+bwd": fwd_bwd,
        "SwiGLUMLP training fwd (graph kept)": fwd_only,
        "T.forward_saving": lambda: T.forward_saving(x2, wg, wu, None, None, "silu", 1.702, 7.0),
        "glu_forward_ws (saving g, u)": lambda: glu_forward_ws(
            x2,
            wg,
            wu,
            None,
            None,
            hh,
            g=g,
            u=u,
            activation="silu",
            alpha=1.702,
            limit=7.0,
            config=fcfg,
        ),
        "mlp_backward_ws": lambda: mlp_backward_ws(
            dy.detach(),
            wd,
            g,
            u,
            hh,
            dg,
            du,
            activation="silu",
            alpha=1.702,
            limit=7.0,
            config=bcfg,
        ),
        "T.ws_config": lambda: T.ws_config(DT, x.device, "silu", m),
        "T.fused_ok": lambda: T.fused_ok(x2, wg, wu, dy, wd, g, u),
        "torch.cuda.get_device_capability": lambda: torch.cuda.get_device_capability(x.device),
        "torch.empty [M, N]": lambda: torch.empty(m, n, device="cuda", dtype=DT),
        "torch.mm [M,N]x[N,K]": lambda: torch.mm(dg, wg),
    }
    rows, lines = {}, []
    for label, f in pieces.items():
        try:
            for _ in range(5):
                f()
        except Exception as e:  # a piece whose signature differs: say so, go on
            lines.append(f"host2 {label:36s} failed: {type(e).__name__}: {e}"[:200])
            print(lines[-1], flush=True)
            continue
        torch.cuda.synchronize()
        reps = 100
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        us = (time.perf_counter() - t0) / reps * 1e6
        torch.cuda.synchronize()
        rows[label] = us
        lines.append(f"host2 {label:36s} {us:8.1f} us")
        print(lines[-1], flush=True)
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(20):
        fwd_bwd()
    prof.disable()
    torch.cuda.synchronize()
    buf = io.StringIO()
    st = pstats.Stats(prof, stream=buf)
    st.sort_stats("cumulative").print_stats("flash_swiglu|triton|torch/autograd", 60)
    st.sort_stats("tottime").print_stats(40)
    (out / "host2_profile.txt").write_text(buf.getvalue())
    (out / "host2.json").write_text(json.dumps(rows, indent=1))
    return lines


# More shapes for the split-K rule: shards of 8B and 70B at other degrees, and two models
# whose shapes the launch table has no entry for.
MORE_MODELS = {
    "8b/tp2": (4096, 7168),
    "8b/tp4": (4096, 3584),
    "70b/tp4": (8192, 7168),
    "qwen2.5-14b": (5120, 13824),
    "qwen3-8b": (4096, 12288),
}
_DEFAULT_TILES = {"s3": (64, 128, 4, 3), "s4": (64, 128, 4, 4)}


def tpcheck(out: Path) -> list[str]:
    """The decode tile a table without an entry for the shape should default to, at SPLIT_K
    1, 2, 4 and 8 and with ``ops.linear.auto_split_k`` choosing (no SPLIT_K given), on the
    tensor-parallel shards and the shapes of ``MORE_MODELS``; the cuBLAS product and a pure
    read of the weights in the same loop."""
    copy = copy_bandwidth(torch.device("cuda"))
    rows, lines = [], []
    for name, (k, n) in {**TP_MODELS, **MORE_MODELS}.items():
        wg, wu = _w(n, k), _w(n, k)
        wcat = torch.cat([wg, wu])
        read = min(_read_ms(wcat.view(-1)).values())
        for m in (1, 32):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(
                x.double(), wg.double(), wu.double(), None, None, *ACT
            )
            nbytes = (2 * n * k + m * k + m * n) * 2
            bw = lambda ms: nbytes / ms / 1e6 / copy
            times = {"cublas": measure_graph(lambda: x @ wcat.T).median_ms}
            for tname, (bn, bk, w, st) in _DEFAULT_TILES.items():
                base = dict(BLOCK_N=bn, BLOCK_K=bk, num_warps=w, num_stages=st)
                for sk in (None, 1, 2, 4, 8):
                    cfg = base if sk is None else dict(base, SPLIT_K=sk)
                    f = lambda: L._forward_triton(x, wg, wu, None, None, *ACT, "decode", cfg)
                    label = f"{tname}_{'auto' if sk is None else f'sk{sk}'}"
                    try:
                        if not _ok(f(), ref):
                            times[label] = float("nan")
                            continue
                        times[label] = min(measure_graph(f).median_ms for _ in range(2))
                    except Exception as e:
                        print(f"tpcheck {name} M={m} {label}: {type(e).__name__}"[:200])
                        times[label] = float("nan")
            tiles = -(-n // 64) * -(-m // max(16, 1 << max(m - 1, 0).bit_length()))
            auto = L.auto_split_k(
                tiles, -(-k // 128), torch.cuda.get_device_properties(0).multi_processor_count
            )
            rows.append(dict(model=name, m=m, n=n, k=k, nbytes=nbytes, copy_gbps=copy,
                             read_ms=read, ms=times, auto_split=auto))  # fmt: skip
            (out / "tpcheck.json").write_text(json.dumps(rows, indent=1))
            cells = " ".join(f"{lab}={bw(t):.0%}" for lab, t in times.items())
            lines.append(f"tpcheck {name:12s} M={m:3d} read={bw(read):.0%} auto->SK{auto} {cells}")
            print(lines[-1], flush=True)
    return lines


def mid(out: Path) -> list[str]:
    """The Gluon forward's candidates (``ops.linear.WS_CANDIDATES``) at 128-1024 tokens on
    the four model shapes, against the launch table's choice there (the Triton TMA kernel
    below each ``ws`` entry's MIN_M) and the cuBLAS product, each timed twice."""
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    rows, lines = [], []
    for name, (k, n) in MODELS.items():
        wg, wu = _w(n, k), _w(n, k)
        wcat = torch.cat([wg, wu])
        for m in (128, 256, 512, 1024):
            x = torch.randn(m, k, device="cuda", dtype=DT)
            ref = reference.swiglu_linear_reference(
                x.double(), wg.double(), wu.double(), None, None, *ACT
            )
            h = torch.empty(m, n, device="cuda", dtype=DT)
            twice = lambda f: min(measure_graph(f).median_ms for _ in range(2))
            times = {
                "cublas": twice(lambda: x @ wcat.T),
                "table": twice(lambda: L._forward_triton(x, wg, wu, None, None, *ACT)),
            }
            for i, cand in enumerate(L.WS_CANDIDATES):
                f = lambda: glu_forward_ws(x, wg, wu, None, None, h, activation="silu",
                                           alpha=1.702, limit=7.0, config=cand)  # fmt: skip
                try:
                    f()
                    if not _ok(h, ref):
                        times[f"ws{i}"] = float("nan")
                        continue
                    times[f"ws{i}"] = twice(f)
                except Exception as e:
                    print(f"mid {name} M={m} ws{i}: {type(e).__name__}: {e}"[:200])
                    times[f"ws{i}"] = float("nan")
            rows.append(dict(model=name, m=m, n=n, k=k, ms=times, candidates=L.WS_CANDIDATES))
            (out / "mid.json").write_text(json.dumps(rows, indent=1))
            cub = times["cublas"]
            cells = " ".join(f"{lab}={cub / t:.3f}" for lab, t in times.items() if lab != "cublas")
            lines.append(f"mid {name:6s} M={m:5d} vs cuBLAS ({cub * 1e3:.1f} us): {cells}")
            print(lines[-1], flush=True)
    return lines


def hostprof(out: Path) -> list[str]:
    """``torch.profiler`` (CPU side) over 20 fwd+bwd of eager's ``LlamaMLP`` and of
    ``SwiGLUMLP`` at the example's shape: host time per op, and whether any call
    synchronises with the GPU."""
    from torch.profiler import ProfilerActivity, profile
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP

    h, n = 1024, 2816
    x = torch.randn(16, 512, h, device="cuda", dtype=DT, requires_grad=True)
    dy = torch.randn_like(x)
    eager = LlamaMLP(LlamaConfig(hidden_size=h, intermediate_size=n)).to("cuda", DT)
    ours = SwiGLUMLP.from_module(eager)
    lines = []
    for label, mlp in (("eager", eager), ("flash-swiglu", ours)):

        def step():
            x.grad = None
            for p in mlp.parameters():
                p.grad = None
            mlp(x).backward(dy)

        for _ in range(10):
            step()
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(20):
                step()
        torch.cuda.synchronize()
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
        (out / f"hostprof_{label}.txt").write_text(table)
        names = {e.key for e in prof.key_averages()}
        syncs = sorted(s for s in names if "ynchronize" in s or "Memcpy" in s or "item" in s)
        total = sum(e.self_cpu_time_total for e in prof.key_averages()) / 20
        lines.append(f"hostprof {label:12s} {total:8.1f} us self CPU per fwd+bwd; syncs: {syncs}")
        print(lines[-1], flush=True)
    return lines


STAGES = {
    "tpcheck": tpcheck,
    "mid": mid,
    "hostprof": hostprof,
    "decode": decode,
    "tp": lambda out: decode(out, TP_MODELS, (1, 32, 8), "tp"),
    "host": host,
    "host2": host2,
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("parts", nargs="*", default=["decode"])
    ap.add_argument("--out", default="/tmp/explore")
    a = ap.parse_args()
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
