"""Explorations of session 28.

    PYTHONPATH=src python scripts/explore_session28.py lean --out DIR

- ``lean``: ``recompute=True`` peaked at 448 MiB at 4096 tokens of the Llama-3-8B MLP, 0.55x
  eager's 816 (issue 4 asks for at most half). The weight gradients, dx and the output are
  400 MiB of it; the rest is one column slice's three ``[4096, 2048]`` buffers. Session 28's
  backward keeps those buffers in the weight gradients' rows and columns that later slices
  write, and narrows its last slices so that they still fit (``ops.train.lean_slices``).
  At 1024-16384 tokens: eager, ours with ``recompute=False``, and ``recompute=True`` with
  the lean slices and with the plain ones (``ops.train.LEAN`` off), each checked against the
  float64 step and timed with its peak memory by the benchmark's own functions
  (explore_session16's ``_measured``: three rotated rounds). -> ``lean.json``.
- ``compiled``: ``torch.compile(fullgraph=True)`` over our module runs the custom ops, whose
  backward may not write over the saved pre-activation and so runs over column slices with
  it kept: what that costs in peak memory and time at 4096 and 8192 tokens, against eager,
  the compiled eager MLP (the benchmark's ``compile``) and ours uncompiled, both recompute
  settings. -> ``compiled.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session12 as S12
import explore_session16 as S16
import torch

from flash_swiglu.bench.cases import mlp as B
from flash_swiglu.ops import train as T

say = S16.say
LEAN_TOKENS = tuple(
    int(t) for t in os.environ.get("LEAN_TOKENS", "1024,2048,4096,8192,16384").split(",")
)


class _Lean(S16._Configured):
    """A step whose calls run with ``ops.train.LEAN`` set to its settings' last item (the
    first three are explore_session16's ``_table`` arguments)."""

    def _under(self, fn):
        *table, lean = self.settings

        def call():
            real = T.LEAN
            T.LEAN = lean
            try:
                with S16._table(*table):
                    return fn()
            finally:
                T.LEAN = real

        return call


VARIANTS = {  # label -> (backend, table entries, Gluon on, CHUNK_N, LEAN)
    "torch": ("torch", None, True, None, True),
    "ours": ("triton", None, True, None, True),
    "recompute lean": ("triton-recompute", None, True, None, True),
    "recompute plain": ("triton-recompute", None, True, None, False),
}


def lean(out: Path) -> list[dict]:
    rows = []
    for m in LEAN_TOKENS:
        results = S16._measured(m, VARIANTS, ("fwd+bwd",), configured=_Lean)["fwd+bwd"]
        rows.append(dict(m=m, results=results))
        (out / "lean.json").write_text(json.dumps(rows, indent=1))
        eager = results["torch"]
        say(f"lean M={m:5d}: " + ", ".join(
            f"{lb} {r.get('median_ms') or float('nan'):.3f} ms "
            f"{r.get('peak_mib') or float('nan'):.0f} MiB "
            f"({(r.get('peak_mib') or float('nan')) / (eager.get('peak_mib') or float('nan')):.3f}"
            f"x eager's){S16._ok(r)}"
            for lb, r in results.items()))  # fmt: skip
    return rows


COMPILED_TOKENS = tuple(int(t) for t in os.environ.get("COMPILED_TOKENS", "4096,8192").split(","))
COMPILED = {  # label -> (backend, compile ours)
    "torch": ("torch", False),
    "compile": ("compile", False),
    "ours": ("triton", False),
    "ours compiled": ("triton", True),
    "recompute": ("triton-recompute", False),
    "recompute compiled": ("triton-recompute", True),
}


def compiled(out: Path) -> list[dict]:
    """The 8B step of ``torch.compile(fullgraph=True)`` over our module (the custom ops: the
    backward may not write over the saved pre-activation, so it runs over column slices)
    against eager, the compiled eager MLP and ours uncompiled: peak memory and time."""
    rows = []
    for m in COMPILED_TOKENS:
        case = B.MLPCase(S16.MODEL, S16.HIDDEN, S16.INTERMEDIATE, m, S16.DTYPE)
        inputs, dout = case.make_inputs(S16.DEVICE, torch.Generator(S16.DEVICE).manual_seed(0))
        steps = {}
        for label, (backend, compile_ours) in COMPILED.items():
            step = B.Step(backend, case.module(backend, S16.DEVICE), inputs, dout)
            if compile_ours:
                step.module = B.compile_module(step.params)
            steps[label] = step
        checks = B._check(case, steps, inputs, dout, ("fwd+bwd",))
        results = {lb: dict(checks[lb]["fwd+bwd"]) for lb in steps}
        B._time(steps, "fwd+bwd", results, S16.DEVICE)
        rows.append(dict(m=m, results=results))
        (out / "compiled.json").write_text(json.dumps(rows, indent=1))
        say(f"compiled M={m:5d}: " + ", ".join(
            f"{lb} {r.get('median_ms') or float('nan'):.3f} ms "
            f"{r.get('peak_mib') or float('nan'):.0f} MiB{S16._ok(r)}"
            for lb, r in results.items()))  # fmt: skip
        del steps
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    S12.run_stages({"lean": lean, "compiled": compiled}, ["lean"])


if __name__ == "__main__":
    main()
