"""Session-37 exploration on the H200: GELU's CDF as a sigmoid against libdevice's erf.

    PYTHONPATH=src python scripts/explore_session37.py gelu --out DIR

Why: run ``h200-s36-linear-bf16-acts`` measured ``swiglu_linear`` with GELU at 0.909-0.949 of
the cuBLAS product's rate, against 0.968-1.007 for SiLU (session 19) and 0.963-1.004 for
gelu_tanh. The Gluon forward's epilogue at M >= 1024 runs with both consumer warp groups on
one tile (``COOP``), so its instructions are not hidden behind the other tile's products, and
libdevice's ``erff`` cost it about 20 instructions an element more than SiLU's sigmoid in the
sm_90 SASS (5784 against 3240 instructions in the kernel). ``activations.gelu_cdf`` now
computes ``Phi`` as ``sigmoid(x R(x^2))`` (``scripts/fit_gelu_cdf.py``): 4520.

- ``gelu``: two child processes, the erf form first (``activations.gelu_cdf`` replaced by the
  erf form before any kernel compiles) and then the sigmoid form (as committed). Each times,
  on Llama-3.2-1B and Llama-3-8B at 2048 and 8192 tokens (bf16): cuBLAS's ``x @ [Wg; Wu]^T``,
  ``swiglu_linear`` with SiLU and with GELU, and ``ops.train.forward_saving`` (the training
  forward, which also writes g and u) with GELU; and on Llama-3-8B at 8192 tokens one
  ``swiglu_mlp`` training step (forward and backward, weights with gradients) with SiLU and
  with GELU. ``measure_graph`` after ``SETTLE_MS`` of each call's own replays, cold L2, three
  rounds in rotated order; outputs checked against an fp32 reference first. The ratios within
  a process (GELU over cuBLAS, GELU over SiLU) are what compare across the two.
  -> ``gelu_erf.json``, ``gelu_sigmoid.json``, ``smi.csv``

- ``tiles``: does GELU (or gelu_tanh) want another Gluon forward entry than the one SiLU's
  settled sweep chose (session 15: cooperative 128 x (128 + 128) tiles above 1024 tokens, whose
  epilogue no other tile's products hide)? On the same four cases, ``ws_mlp.glu_forward_ws``
  with the launched entry, with it at 2 and 8 epilogue parts, and with the ping-pong 128 x
  (64 + 64) tiles (6 slots; 4 and 2 parts), beside cuBLAS's product and SiLU's launched
  entry; timed as ``gelu``, outputs checked first. -> ``tiles.json``, ``smi_tiles.csv``

- ``ulps``: the precision of GELU on the GPU over -12..12 (100001 points, ``up = 1``), the
  output and both gradients of ``flash_swiglu.swiglu`` in fp32, fp16 and bf16, as the largest
  ``|error| / max(|value|, 1)`` against float64 in ulps of the dtype, beside PyTorch's
  ``F.gelu``. The CUDA build's sigmoid uses approximate ``ex2`` and division, the
  interpreter's numpy does not (1.55 ulps in fp32 there). -> ``ulps.json``

- ``sass`` (on the CPU, no GPU needed): the instruction counts the docs cite. The Gluon
  forward with the launch table's ``n8192_k2048`` entry (bf16, no bias, g and u not stored)
  compiled for sm_90 as ``tests/compile_gate_ws.py`` compiles it, for SiLU and GELU with
  the committed CDF, then GELU with the erf form in a process of its own (a compile looks
  the helper up when it runs, but Triton's cache key of a function is computed once). Total
  SASS instructions and the opcodes whose counts differ. -> ``sass.json``

- ``late`` (written in session 37 after its device time was spent; run in session 38's call 1,
  ``benchmarks/results/h200-session38-explore/call1``: no gain, no entry sets the key): the Gluon
  forward with ``COALESCE_OUT``. With ``COALESCE`` each epilogue part moves gate and up
  (fp32) through shared memory to the store layout before the math; ``COALESCE_OUT`` moves
  only the rounded outputs after it. In the sm_90 SASS of the cooperative ``n8192_k2048``
  entry without g and u stored: 2880 instructions against 3240 for SiLU, 16 ``STS.128`` and
  16 ``LDSM`` against 64 and 64, 23 barriers against 47 (GELU: 4160 against 4520). With g
  and u stored the flag does nothing (three bf16 moves took 4456 instructions against 4280,
  and GELU's spilled), so the training forward is not in it. Above 1024 tokens
  the committed entries are cooperative, and their epilogue runs while no wgmma does. Cases:
  Llama-3.2-1B and Llama-3-8B at 512 and 1024 tokens (their bucket entries are ping-pong,
  whose epilogue shares shared-memory bandwidth with the other consumer's wgmma), 2048 and
  8192; Qwen2.5-7B at 2048 and 8192; Llama-3-70B at 2048; bf16. Each case times cuBLAS's
  product and ``ws_mlp.glu_forward_ws`` with the entry ``swiglu_linear`` launches, with and
  without ``COALESCE_OUT``, for SiLU, GELU and gelu_tanh. Every pair is checked bit for bit
  first. Timing as ``gelu``.
  -> ``late.json``, ``smi_late.csv``
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import torch
import triton
import triton.language as tl

sys.path.insert(0, str(Path(__file__).resolve().parent))

SETTLE_MS = 300.0
SHAPES = {"1b": (2048, 8192), "8b": (4096, 14336)}  # (K, N)
LATE_CASES = (("1b", 2048, 8192, (512, 1024, 2048, 8192)),
              ("8b", 4096, 14336, (512, 1024, 2048, 8192)),
              ("qwen", 3584, 18944, (2048, 8192)), ("70b", 8192, 28672, (2048,)))  # fmt: skip
TOKENS = (2048, 8192)
STEP = ("8b", 8192)
FORMS = ("erf", "sigmoid")


@triton.jit
def erf_cdf(x):
    """GELU's CDF as the kernels computed it before session 37 (libdevice's ``erff``)."""
    return 0.5 * (1.0 + tl.erf(x * 0.7071067811865476))


def _use_erf_form() -> None:
    """Replace ``gelu_cdf`` by the erf form it replaced (before any kernel compiles: the
    kernels look the helper up in ``activations``' globals when they compile)."""
    from flash_swiglu import activations

    activations.gelu_cdf = erf_cdf


def _rel_err(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.float() - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def _median(values: list[float]) -> float | None:
    return sorted(values)[len(values) // 2] if values else None


def _rounds(calls: dict, rounds: int = 3) -> tuple[dict, dict]:
    """``({label: [median ms of each round]}, {label: error})``: every call timed by
    ``measure_graph`` after ``SETTLE_MS`` of its own replays, ``rounds`` rounds in rotated
    order (``timing.interleaved_rounds``), on a side stream."""
    from flash_swiglu.bench.timing import interleaved_rounds, measure_graph

    torch.cuda.synchronize()
    with torch.cuda.stream(torch.cuda.Stream()):
        rounds = interleaved_rounds(
            list(calls), lambda lb: measure_graph(calls[lb], SETTLE_MS), rounds
        )
    ms = {lb: [t.median_ms for t in ts if not isinstance(t, Exception)]
          for lb, ts in rounds.items()}  # fmt: skip
    failed = {lb: repr(t) for lb, ts in rounds.items() for t in ts if isinstance(t, Exception)}
    return ms, failed


def _draws(k: int, n: int):
    """One shape's seeded bf16 draws: ``(randn, wg, wu, [wg; wu])``, with ``randn(*shape,
    sc=1.0)`` drawing further tensors from the same generator."""
    gen = torch.Generator(device="cuda").manual_seed(37)
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=torch.bfloat16, generator=gen) * sc
    wg, wu = r(n, k, sc=k**-0.5), r(n, k, sc=k**-0.5)
    return r, wg, wu, torch.cat((wg, wu))


def one(form: str, out: Path) -> None:
    """Time this process's form (see the module doc); writes ``gelu_<form>.json``."""
    if form == "erf":
        _use_erf_form()
    import flash_swiglu
    from flash_swiglu import reference
    from flash_swiglu.ops import train as T

    rows = []
    for model, (k, n) in SHAPES.items():
        r, wg, wu, wcat = _draws(k, n)
        wd = r(k, n, sc=n**-0.5)
        for m in TOKENS:
            x = r(m, k)
            gu = (x.float() @ wcat.float().t()).split(n, dim=1)
            calls = {"cublas": lambda: x @ wcat.t()}
            errors = {}
            for act in ("silu", "gelu"):
                ref = reference.act_glu(gu[0], gu[1], act, 1.702, 7.0)
                calls[f"{act}/proj"] = lambda a=act: flash_swiglu.swiglu_linear(
                    x, wg, wu, activation=a
                )
                errors[f"{act}/proj"] = _rel_err(calls[f"{act}/proj"](), ref)
                if act == "gelu":
                    calls["gelu/save"] = lambda: T.forward_saving(
                        x, wg, wu, None, None, "gelu", 1.702, 7.0
                    )
                    errors["gelu/save"] = _rel_err(calls["gelu/save"]()[0], ref)
            ref = gu = None
            if (model, m) == STEP:
                xg = x.detach().clone().requires_grad_(True)
                ws = [w.detach().clone().requires_grad_(True) for w in (wg, wu, wd)]
                dy = r(m, k)
                for act in ("silu", "gelu"):
                    calls[f"{act}/step"] = lambda a=act: flash_swiglu.swiglu_mlp(
                        xg, *ws, activation=a
                    ).backward(dy)
            bad = {lb: e for lb, e in errors.items() if e > 0.02}
            ms, failed = _rounds(calls)
            rows.append(dict(form=form, model=model, m=m, n=n, k=k, ms=ms, rel_err=errors,
                             wrong=bad, failed=failed))  # fmt: skip
            (out / f"gelu_{form}.json").write_text(json.dumps(rows, indent=1))
            med = {lb: _median(v) for lb, v in ms.items()}
            print(f"{form:7s} {model} M={m:5d} " + " ".join(
                f"{lb} {v:.4f}" for lb, v in med.items() if v is not None
            ) + (f" WRONG {bad}" if bad else "") + (f" FAILED {failed}" if failed else ""),
                flush=True)  # fmt: skip
            x = calls = None
            torch.cuda.empty_cache()


def gelu(out: Path) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi.csv"):
        for form in FORMS:
            subprocess.run([sys.executable, __file__, "gelu-one", "--form", form, "--out",
                            str(out)], check=True)  # fmt: skip
    rows = {form: json.loads((out / f"gelu_{form}.json").read_text()) for form in FORMS}
    lines = ["case               form     GELU/cuBLAS rate  GELU save  SiLU/cuBLAS  "
             "GELU step / SiLU step"]  # fmt: skip
    for i, base in enumerate(rows["erf"]):
        for form in FORMS:
            row = rows[form][i]
            med = {lb: _median(v) for lb, v in row["ms"].items()}
            cub = med["cublas"]
            step = (f"{med['gelu/step'] / med['silu/step']:.3f} ({med['gelu/step']:.3f} ms)"
                    if med.get("gelu/step") else "")  # fmt: skip
            lines.append(
                f"{base['model']} M={base['m']:5d}  {form:8s} {cub / med['gelu/proj']:16.3f} "
                f"{cub / med['gelu/save']:10.3f} {cub / med['silu/proj']:12.3f}  {step}"
            )
    return lines


PING_PONG = dict(BLOCK_M=128, BLOCK_H=64, BLOCK_K=64, GROUP_M=8, STAGES=6, EPILOGUE_SPLIT=4,
                 COALESCE=True, CONSUMER_REGS=232, COOP=False)  # fmt: skip


def _launched(m: int, n: int, k: int, activation: str) -> dict:
    """The Gluon forward entry ``swiglu_linear`` launches for this call (``_ws_launch``)."""
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    entries = L.load_table(L._device_name(0)).get("ws", {})
    keys = L.table_keys(m, n, k, torch.bfloat16)
    entry = next((entries[key] for key in keys if key in entries), None)
    return T.ws_entry(entry, "projection_ws", activation, m)


def tiles(out: Path) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi_tiles.csv"):
        return _tiles(out)


def _tiles(out: Path) -> list[str]:
    from flash_swiglu import reference
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    dt = torch.bfloat16
    rows, lines = [], []
    for model, (k, n) in SHAPES.items():
        r, wg, wu, wcat = _draws(k, n)
        for m in TOKENS:
            x = r(m, k)
            gu = (x.float() @ wcat.float().t()).split(n, dim=1)
            h = torch.empty(m, n, device="cuda", dtype=dt)
            calls, configs, errors = {"cublas": lambda: x @ wcat.t()}, {}, {}
            for act in ("silu", "gelu", "gelu_tanh"):
                table = _launched(m, n, k, act)
                cands = {"table": table}
                if act != "silu":
                    cands.update(
                        e2=dict(table, EPILOGUE_SPLIT=2), e8=dict(table, EPILOGUE_SPLIT=8),
                        pp=PING_PONG, pp_e2=dict(PING_PONG, EPILOGUE_SPLIT=2),
                    )  # fmt: skip
                ref = reference.act_glu(gu[0], gu[1], act, 1.702, 7.0)
                for name, cfg in cands.items():
                    label = f"{act}/{name}"
                    call = lambda a=act, c=cfg: glu_forward_ws(
                        x, wg, wu, None, None, h, activation=a, alpha=1.702, limit=7.0,
                        config=c,
                    )  # fmt: skip
                    try:
                        call()
                        errors[label] = _rel_err(h, ref)
                    except Exception as e:  # a candidate that does not compile or launch
                        errors[label] = repr(e)
                        continue
                    if errors[label] > 0.02:
                        continue
                    calls[label], configs[label] = call, cfg
            ref = gu = None
            ms, _ = _rounds(calls)
            rows.append(dict(model=model, m=m, n=n, k=k, ms=ms, rel_err=errors,
                             configs=configs))  # fmt: skip
            (out / "tiles.json").write_text(json.dumps(rows, indent=1))
            med = {lb: _median(v) for lb, v in ms.items()}
            cub = med["cublas"]
            line = f"{model} M={m:5d} " + " ".join(
                f"{lb} {cub / v:.3f}" for lb, v in med.items() if v and lb != "cublas"
            )
            bad = {lb: e for lb, e in errors.items() if not isinstance(e, float) or e > 0.02}
            lines.append(line + (f" BAD {bad}" if bad else ""))
            print(lines[-1], flush=True)
            x = h = calls = None
            torch.cuda.empty_cache()
    return lines


def ulps(out: Path) -> list[str]:
    import flash_swiglu
    from flash_swiglu import reference

    rows, lines = [], []
    for dt in (torch.float32, torch.float16, torch.bfloat16):
        x = torch.linspace(-12, 12, 100_001, device="cuda").to(dt).requires_grad_(True)
        u = torch.ones_like(x).requires_grad_(True)
        h = flash_swiglu.swiglu(x, u, activation="gelu")
        grads = torch.autograd.grad(h, (x, u), torch.ones_like(h))
        x64, u64 = (t.detach().double().requires_grad_(True) for t in (x, u))
        ref = reference.act_glu(x64, u64, "gelu")
        refs = (ref, *torch.autograd.grad(ref, (x64, u64), torch.ones_like(ref)))
        got = (h, *grads, torch.nn.functional.gelu(x.detach()))
        eps = torch.finfo(dt).eps
        row = {"dtype": str(dt)}
        for name, a, b in zip(("out", "dgate", "dup", "F.gelu"), got, (*refs, ref), strict=True):
            row[name] = ((a.double() - b).abs() / b.abs().clamp_min(1)).max().item() / eps
        rows.append(row)
        lines.append(
            " ".join(f"{k} {v:.3f}" if isinstance(v, float) else v for k, v in row.items())
        )
    (out / "ulps.json").write_text(json.dumps(rows, indent=1))
    return lines


SASS_OP = re.compile(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)")


def sass_counts(form: str, out: Path) -> None:
    """Opcode counts of the forward per activation in this process's form, as JSON lines."""
    if form == "erf":
        _use_erf_form()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import compile_gate_ws as G
    from flash_swiglu.ops import linear as L

    from compile_gate import _sass

    entry = json.loads((L.CONFIG_DIR / "h200_linear.json").read_text())["ws"]["n8192_k2048"]
    cfg = G.T.ws_entry(entry, "projection_ws", "silu", None)
    bm, bh, bk = cfg.pop("BLOCK_M"), cfg.pop("BLOCK_H"), cfg.pop("BLOCK_K")
    descs = {"x_desc": [bm, bk], "wg_desc": [bh, bk], "wu_desc": [bh, bk]}
    acts = ("silu", "gelu") if form == "sigmoid" else ("gelu",)
    rows = []
    for act in acts:
        consts = dict(cfg, HAS_BG=False, HAS_BU=False, STORE_GU=False, ACTIVATION=act,
                      ALPHA=1.702, LIMIT=7.0)  # fmt: skip
        sass = _sass(_compiled_cubin(G, descs, consts))
        ops: dict[str, int] = {}
        for op in SASS_OP.findall(sass):
            ops[op] = ops.get(op, 0) + 1
        rows.append(dict(form=form, activation=act, total=sum(ops.values()), ops=ops))
    with open(out / "sass.json", "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _compiled_cubin(G, descs: dict, consts: dict) -> bytes:
    """The cubin of the Gluon forward as ``compile_gate_ws._compile`` builds it."""
    from triton.backends.compiler import GPUTarget
    from triton.experimental.gluon._runtime import GluonASTSource

    from flash_swiglu.kernels.ws_mlp import glu_forward_ws_kernel as kernel

    signature, constexprs, attrs = {}, {}, {}
    for i, name in enumerate(kernel.arg_names):
        if name in consts:
            signature[name], constexprs[(i,)] = "constexpr", consts[name]
        elif name in descs:
            signature[name] = G._desc_type(descs[name], torch.bfloat16)
        else:
            signature[name] = "*bf16" if name.endswith("_ptr") else "i32"
            attrs[(i,)] = [["tt.divisibility", 16]]
    src = GluonASTSource(kernel, signature, constexprs=constexprs, attrs=attrs)
    options = {"num_warps": 4, "enable_fp_fusion": G.T.L.ENABLE_FP_FUSION}
    return triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options).asm["cubin"]


def sass(out: Path) -> list[str]:
    (out / "sass.json").unlink(missing_ok=True)
    for form in FORMS[::-1]:
        subprocess.run([sys.executable, __file__, "sass-one", "--form", form, "--out",
                        str(out)], check=True)  # fmt: skip
    rows = [json.loads(line) for line in (out / "sass.json").read_text().splitlines()]
    silu = next(r for r in rows if r["activation"] == "silu")
    lines = []
    for r in rows:
        diff = {op: r["ops"].get(op, 0) - silu["ops"].get(op, 0)
                for op in sorted(set(r["ops"]) | set(silu["ops"]))}  # fmt: skip
        diff = {op: d for op, d in diff.items() if d}
        lines.append(f"{r['activation']:5s} {r['form']:8s} {r['total']} instructions; "
                     f"against SiLU: {diff or 'none'}")  # fmt: skip
    return lines


def late(out: Path) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi_late.csv"):
        return _late(out)


def _late(out: Path) -> list[str]:
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    dt = torch.bfloat16
    rows, lines = [], []
    for model, k, n, tokens in LATE_CASES:
        r, wg, wu, wcat = _draws(k, n)
        for m in tokens:
            x = r(m, k)
            h = torch.empty(m, n, device="cuda", dtype=dt)
            calls, configs, same = {"cublas": lambda: x @ wcat.t()}, {}, {}
            for act in ("silu", "gelu", "gelu_tanh"):
                entry = _launched(m, n, k, act)
                results = []
                for tag, cfg in (("table", entry), ("out", dict(entry, COALESCE_OUT=True))):
                    label = f"{act}/{tag}"
                    calls[label] = lambda a=act, c=cfg: glu_forward_ws(
                        x, wg, wu, None, None, h, activation=a, alpha=1.702, limit=7.0,
                        config=c,
                    )  # fmt: skip
                    configs[label] = cfg
                    calls[label]()
                    results.append(h.clone())
                same[act] = torch.equal(*results)
            ms, _ = _rounds(calls)
            rows.append(dict(model=model, m=m, n=n, k=k, ms=ms, bitwise=same, configs=configs))
            (out / "late.json").write_text(json.dumps(rows, indent=1))
            med = {lb: _median(v) for lb, v in ms.items()}
            cub = med["cublas"]
            parts = [f"{name} {cub / med[f'{name}/table']:.3f} -> {cub / med[f'{name}/out']:.3f}"
                     f"{'' if same[name] else ' NOT BITWISE'}" for name in same]  # fmt: skip
            lines.append(f"{model:4s} M={m:5d} (of cuBLAS, table -> COALESCE_OUT) "
                         + "; ".join(parts))  # fmt: skip
            print(lines[-1], flush=True)
            x = h = calls = None
            torch.cuda.empty_cache()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "mode",
        choices=("gelu", "gelu-one", "tiles", "ulps", "sass", "sass-one", "late"),
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--form", choices=FORMS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.mode in ("gelu-one", "sass-one"):
        (one if args.mode == "gelu-one" else sass_counts)(args.form, args.out)
        return 0
    modes = {"gelu": gelu, "tiles": tiles, "ulps": ulps, "sass": sass, "late": late}
    lines = modes[args.mode](args.out)
    (args.out / f"{args.mode}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
