"""Explorations of session 33: the training step's host time.

    PYTHONPATH=src python scripts/explore_session33.py compiled --out DIR

- ``compiled``: the example's end-to-end run compiled without CUDA graphs (``--compile
  default``) ran the patched model at 0.54-0.68x the compiled unpatched one (sessions 30-31),
  uncompiled at 0.77-1.06x; both bound by the host. Where a compiled MLP step's host time
  goes: ``SwiGLUMLP`` and ``LlamaMLP`` each compiled with ``torch.compile`` (default mode,
  ``fullgraph=True``), forward + backward at the example's MLP (hidden 1024, MLP 2816) and
  Llama-3.2-1B's, 256 rows back to back and 8192 rows with the GPU idle at each step's start;
  host and wall time per step in rotated blocks of 50 steps, 10 rounds, and the uncompiled
  modules beside them. Then one traced run of each compiled ``SwiGLUMLP`` (session 31's
  tracer over our functions) for the parts. -> ``compiled.json``, a table on stdout.
- ``ab``: the training step's lean path (``ops.train``'s training plans, switched by
  ``FLASH_SWIGLU_PLAN_CACHE``) against the full path and ``LlamaMLP``, in one process:
  rotated blocks of 50 steps over 10 rounds, forward + backward at the example's MLP and
  1B's (256 rows back to back; 8192 and 2048 rows with the GPU idle at each start),
  uncompiled and compiled; "noshort": plans on, ``modules.mlp_forward``'s training shortcut
  ``ops.mlp.train`` off (call 4, at ``06b5991``; the shortcut measured within the noise and
  was taken out after it, so on later trees "noshort" runs what "plan" does). The outputs
  and gradients with and without plans are compared bit for bit first. -> ``ab.json``.

EXPLORE_CPU=1 (with TRITON_INTERPRET=1): a smoke run on the CPU at tiny sizes, to check the
script before a device call; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session31 as S31

CPU, DEV, DTYPE = S31.CPU, S31.DEV, S31.DTYPE
_sync, say, _host_and_wall_us = S31._sync, S31.say, S31._host_and_wall_us
ROUNDS, BLOCK = (2, 3) if CPU else (10, 50)
SHAPES = {"example": (1024, 2816), "1B": (2048, 8192)}
PLAN_ENV = "FLASH_SWIGLU_PLAN_CACHE"


def _rotated(names: list[str], r: int) -> list[str]:
    k = r % len(names)
    return names[k:] + names[:k]


def _modules(shape: str):
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP

    hidden, inter = (32, 64) if CPU else SHAPES[shape]
    torch.manual_seed(0)
    ref = LlamaMLP(LlamaConfig(hidden_size=hidden, intermediate_size=inter)).to(DEV, DTYPE)
    return ref, SwiGLUMLP.from_module(ref), hidden


def _items():
    """(name, shape, rows, GPU idle at each step's start)."""
    small, large = (8, 16) if CPU else (256, 8192)
    return [(f"example m={small}", "example", small, False),
            (f"1B m={small}", "1B", small, False),
            (f"example m={large} (GPU idle at each start)", "example", large, True)]  # fmt: skip


def _step(mod, x, dy):
    def step():
        mod(x).backward(dy)

    return step


def _timed_variants(variants: dict, idle: bool, before=None) -> dict:
    """Host time per step of each variant (``name -> (setup, step)``), rotated blocks."""
    per = {v: [] for v in variants}
    for setup, fn in variants.values():
        setup()
        for _ in range(3):
            fn()
    _sync()
    for r in range(ROUNDS):
        for v in _rotated(list(variants), r):
            setup, fn = variants[v]
            setup()
            per[v].append(_host_and_wall_us(fn, BLOCK, idle)[0])
    return per


def _summary(per: dict, a: str, b: str) -> dict:
    row: dict = {v: statistics.median(t) for v, t in per.items()}
    ratios = [x / y for x, y in zip(per[a], per[b], strict=True)]
    row[f"{a}/{b} (median of rounds)"] = statistics.median(ratios)
    row[f"rounds {a} faster"] = sum(x < y for x, y in zip(per[a], per[b], strict=True))
    row["rounds"] = per
    return row


def compiled(out: Path) -> None:
    import triton

    results: dict = {"torch": torch.__version__, "triton": triton.__version__, "items": {},
                     "device": "cpu" if CPU else torch.cuda.get_device_name()}  # fmt: skip
    say(f"compiled: host us per fwd+bwd step, median of {ROUNDS} rounds of {BLOCK}")
    cols = ("ours-compiled", "Llama-compiled", "ours", "Llama")
    say(f"{'item':46} " + " ".join(f"{c:>15}" for c in cols))
    mods = {s: _modules(s) for s in SHAPES}
    compiled_mods = {}
    for shape, (ref, ours, _) in mods.items():
        backend = "eager" if CPU else "inductor"
        compiled_mods[shape] = (torch.compile(ours, fullgraph=True, backend=backend),
                                torch.compile(ref, fullgraph=True, backend=backend))  # fmt: skip
    for name, shape, m, idle in _items():
        ref, ours, hidden = mods[shape]
        c_ours, c_ref = compiled_mods[shape]
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=True)
        dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        noop = lambda: None
        variants = {"ours-compiled": (noop, _step(c_ours, x, dy)),
                    "Llama-compiled": (noop, _step(c_ref, x, dy)),
                    "ours": (noop, _step(ours, x, dy)),
                    "Llama": (noop, _step(ref, x, dy))}  # fmt: skip
        per = _timed_variants(variants, idle)
        row = _summary(per, "ours-compiled", "Llama-compiled")
        results["items"][name] = row
        say(f"{name:46} " + " ".join(f"{row[c]:15.1f}" for c in cols))
    # The parts of one compiled step of ours (session 31's tracer over our functions).
    tr = _runtime_tracer()
    parts: dict = {}
    for name, shape, m, idle in _items():
        _, _, hidden = mods[shape]
        c_ours = compiled_mods[shape][0]
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=True)
        dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        tr.on = False
        step = _step(c_ours, x, dy)
        step()
        _sync()
        row = S31._untraced_then_traced(tr, step, 3 if CPU else 100, idle)
        parts[name] = row
        say(f"== compiled SwiGLUMLP {name}: host {row['host_us']:.1f} "
            f"(traced {row['traced_host_us']:.1f}), wall {row['wall_us']:.1f}")  # fmt: skip
        for label, v in sorted(row["parts"].items(), key=lambda kv: -kv[1]["us"]):
            say(f"   {label:44} {v['us']:8.1f} us  {v['calls']:5.1f} calls")
    tr.restore()
    results["parts"] = parts
    (out / "compiled.json").write_text(json.dumps(results, indent=1))


def _runtime_tracer():
    """Session 31's tracer over the functions that run inside our custom ops only: what
    Dynamo traces (the module, ``swiglu_mlp``, the checks) must stay as it was compiled."""
    import triton.runtime.jit as J

    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.ops import _launch
    from flash_swiglu.ops import mlp as MLP
    from flash_swiglu.ops import train as T

    tr = S31._Tracer()
    for owner, attr, label in (
        (MLP, "forward_train", "MLP.forward_train"),
        (MLP, "backward", "MLP.backward"),
        (T, "rows", "T.rows"),
        (T, "forward_saving", "T.forward_saving"),
        (T, "fused_ok", "T.fused_ok"),
        (T, "launch", "T.launch"),
        (T, "ws_config", "T.ws_config"),
        (T, "backward", "T.backward"),
        (T, "_backward_over_saved", "T._backward_over_saved"),
        (T, "split_dh", "T.split_dh"),
        (T, "split_epilogue", "T.split_epilogue"),
        (W, "glu_forward_ws", "W.glu_forward_ws"),
        (W, "mlp_backward_ws", "W.mlp_backward_ws"),
        (W, "_desc", "W._desc"),
        (_launch, "launch", "_launch.launch"),
        (J.JITFunction, "run", "triton JITFunction.run"),
    ):
        if hasattr(owner, attr):
            tr.wrap(owner, attr, label)
    for name in ("train_forward", "train_backward"):  # this session's plans, where present
        if hasattr(MLP, name):
            tr.wrap(MLP, name, f"MLP.{name}")
    return tr


def _grads_step(mod, x, dy):
    """Output and every gradient (x's and the parameters') of one training step."""
    for p in mod.parameters():
        p.grad = None
    xl = x.detach().clone().requires_grad_(True)
    y = mod(xl)
    y.backward(dy)
    return [y.detach(), xl.grad, *(p.grad.clone() for p in mod.parameters())]


def _plans(on: bool, shortcut: bool = True):
    """Setup of a variant: the plans on or off, and ``modules.mlp_forward``'s training
    shortcut ``ops.mlp.train`` on or off (where it exists)."""
    from flash_swiglu import modules
    from flash_swiglu.ops import mlp

    def setup():
        os.environ[PLAN_ENV] = "1" if on else "0"
        if hasattr(modules, "_train"):
            modules._train = mlp.train if shortcut else (lambda *a: None)

    return setup


def ab(out: Path) -> None:
    import triton

    from flash_swiglu.ops import train as T

    results: dict = {"torch": torch.__version__, "triton": triton.__version__, "items": {},
                     "device": "cpu" if CPU else torch.cuda.get_device_name()}  # fmt: skip
    mods = {s: _modules(s) for s in SHAPES}
    backend = "eager" if CPU else "inductor"
    compiled_mods = {
        shape: (torch.compile(ours, fullgraph=True, backend=backend),
                torch.compile(ref, fullgraph=True, backend=backend))
        for shape, (ref, ours, _) in mods.items()
    }  # fmt: skip
    cols = ("plan", "noplan", "noshort", "Llama", "plan-c", "noplan-c", "Llama-c")
    say(f"ab: host us per fwd+bwd step, median of {ROUNDS} rounds of {BLOCK} (-c: compiled)")
    say(f"{'item':42} " + " ".join(f"{c:>9}" for c in cols) + "  plan/noplan  -c  vs Llama  -c")
    items = _items()
    if not CPU:
        items.append(("1B m=2048 (GPU idle at each start)", "1B", 2048, True))
    for name, shape, m, idle in items:
        ref, ours, hidden = mods[shape]
        c_ours, c_ref = compiled_mods[shape]
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        same = {}
        for label, mod in (("eager", ours), ("compiled", c_ours)):
            os.environ[PLAN_ENV] = "1"
            _grads_step(mod, x, dy)  # the plan's first step (the full path, which makes it)
            with_plan = _grads_step(mod, x, dy)
            os.environ[PLAN_ENV] = "0"
            without = _grads_step(mod, x, dy)
            os.environ[PLAN_ENV] = "1"
            same[label] = all(torch.equal(a, b) for a, b in zip(with_plan, without, strict=True))
        xg = x.clone().requires_grad_(True)
        variants = {"plan": (_plans(True), _step(ours, xg, dy)),
                    "noplan": (_plans(False), _step(ours, xg, dy)),
                    "noshort": (_plans(True, shortcut=False), _step(ours, xg, dy)),
                    "Llama": (_plans(True), _step(ref, xg, dy)),
                    "plan-c": (_plans(True), _step(c_ours, xg, dy)),
                    "noplan-c": (_plans(False), _step(c_ours, xg, dy)),
                    "Llama-c": (_plans(True), _step(c_ref, xg, dy))}  # fmt: skip
        per = _timed_variants(variants, idle)
        _plans(True)()
        row = _summary(per, "plan", "noplan")
        row["plan/noshort (median of rounds)"] = _summary(per, "plan", "noshort")[
            "plan/noshort (median of rounds)"
        ]
        row.update({k: v for k, v in _summary(per, "plan-c", "noplan-c").items() if "/" in k
                    or k.startswith("rounds ")})  # fmt: skip
        row["plan/Llama (median of rounds)"] = _summary(per, "plan", "Llama")[
            "plan/Llama (median of rounds)"
        ]
        row["plan-c/Llama-c (median of rounds)"] = _summary(per, "plan-c", "Llama-c")[
            "plan-c/Llama-c (median of rounds)"
        ]
        row["bit_identical"] = same
        row["plans"] = len(T._TRAIN_PLANS)
        results["items"][name] = row
        say(f"{name:42} " + " ".join(f"{row[c]:9.1f}" for c in cols)
            + f"  {row['plan/noplan (median of rounds)']:.3f} "
            f"{row['plan-c/noplan-c (median of rounds)']:.3f}  "
            f"{row['plan/Llama (median of rounds)']:.3f} "
            f"{row['plan-c/Llama-c (median of rounds)']:.3f}  same {same}")  # fmt: skip
    (out / "ab.json").write_text(json.dumps(results, indent=1))


STAGES = {"compiled": compiled, "ab": ab}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stages", nargs="+", choices=tuple(STAGES))
    p.add_argument("--out", type=Path, default=Path("explore-out"))
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for stage in a.stages:
        STAGES[stage](a.out)


if __name__ == "__main__":
    main()
