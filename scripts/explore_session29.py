"""Explorations of session 29.

    PYTHONPATH=src python scripts/explore_session29.py compiled2 --out DIR

- ``compiled2``: under ``torch.compile`` the MLP's custom op may not write over the saved
  pre-activation (it declares no mutation), so its backward runs over column slices with
  ``gu`` kept. Session 28's ``compiled`` stage had that step at 4096 tokens 3% slower than
  the compiled eager MLP and 80 MiB above it (6.980 ms, 672 MiB against 6.771, 592), while
  ours uncompiled took 6.642 ms and 512 MiB. Two ways out, each a variant here:

  - ``over``: the library's op as it is, its backward writing over ``gu`` in one pass when
    the graph task that runs it keeps no graph (``retain_graph`` off: nothing reads the
    saved tensor after it; checked at run time, inside the op). ``gu`` is an intermediate
    of our own forward op, saved for this op alone; AOTAutograd treats it as a donated
    buffer (freed by the compiled backward once used).
  - ``mutating``: ops of this script whose backward declares ``mutates_args=("gu",)``.
    Functionalization then hands the op a copy of the saved tensor unless Inductor re-inplaces
    it, which it does for a graph input only where the program itself writes it back: the
    cost is one copy of ``[M, 2N]``, with Inductor's buffer reuse perhaps in the saved
    tensor's own memory (torch 2.15 on the CPU does so; this measures torch 2.11).

  At 4096 and 8192 tokens of Llama-3-8B (bf16): eager, the compiled eager MLP, ours
  uncompiled, ours compiled (sliced), ``over`` and ``mutating`` compiled, each checked against
  the float64 step and timed with its peak memory by the benchmark's own functions (three
  rotated rounds). Then a small fp32 step of ``over`` compiled with donated buffers off,
  backpropagated twice with ``retain_graph=True`` first: both gradients against eager ours.
  -> ``compiled2.json``.

Ran at commit ``e3a5f62`` (``h200-session29-explore/call1``), where ``ops.mlp.forward_train``
returned one ``gu [M, 2N]``. Since ``0eab50e`` the library takes the ``mutating`` way, and
since the session's later commit it saves g and u apart and returns them as a pair: run
this stage from ``e3a5f62`` to repeat it.
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
from torch import nn

import flash_swiglu
from flash_swiglu.bench.cases import mlp as B
from flash_swiglu.ops import _common as C
from flash_swiglu.ops import mlp as M

say = S16.say
TOKENS = tuple(int(t) for t in os.environ.get("COMPILED_TOKENS", "4096,8192").split(","))
_REAL_BACKWARD = M.backward


def _keep_graph() -> bool:
    return torch._C._autograd._get_current_graph_task_keep_graph()


def _over_backward(*args, **kwargs):
    """``ops.mlp.backward`` writing over the saved pre-activation where no graph is kept."""
    kwargs.setdefault("overwrite_gu", not _keep_graph())
    return _REAL_BACKWARD(*args, **kwargs)


class _Over(S16._Configured):
    """A step whose calls run with ``ops.mlp.backward`` replaced by ``_over_backward`` (the
    custom op looks it up at each call, so the compiled graph runs it too)."""

    def _under(self, fn):
        def call():
            M.backward = _over_backward
            try:
                return fn()
            finally:
                M.backward = _REAL_BACKWARD

        return call


# --- the mutating pair of ops (no biases, silu) ------------------------------------------


@torch.library.custom_op("explore29::train_fwd", mutates_args=())
def train_fwd(
    x: torch.Tensor, w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return M.forward_train(x, w_gate, w_up, w_down, None, None, None, "silu", False, 1.702, 7.0)


@train_fwd.register_fake
def _(x, w_gate, w_up, w_down):
    m = x.shape[:-1].numel()
    return x.new_empty(x.shape), x.new_empty((m, 2 * w_gate.shape[0]))


@torch.library.custom_op("explore29::bwd_mut", mutates_args=("gu",))
def bwd_mut(
    x: torch.Tensor,
    w_gate: torch.Tensor,
    w_up: torch.Tensor,
    w_down: torch.Tensor,
    gu: torch.Tensor,
    dy: torch.Tensor,
    needs: list[bool],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = _REAL_BACKWARD(
        x, w_gate, w_up, w_down, None, None, None, gu, dy, "silu", 1.702, 7.0,
        [*needs, False, False, False], overwrite_gu=True,
    )  # fmt: skip
    return tuple(C.empty_if_none(g, x) for g in grads[:4])


@bwd_mut.register_fake
def _(x, w_gate, w_up, w_down, gu, dy, needs):
    return C.fake_grads((x, w_gate, w_up, w_down), needs, x)


def _setup(ctx, inputs, output):
    ctx.save_for_backward(*inputs, output[1])


def _backward(ctx, dy, _dgu):
    x, wg, wu, wd, gu = ctx.saved_tensors
    needs = list(ctx.needs_input_grad[:4])
    return C.keep_needed(bwd_mut(x, wg, wu, wd, gu, dy, needs), needs)


train_fwd.register_autograd(_backward, setup_context=_setup)


class MutatingMLP(nn.Module):
    """``SwiGLUMLP``'s parameters, the step through ``train_fwd`` / ``bwd_mut``."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)
        return train_fwd(x, *w)[0]


def _mutating_module(case: B.MLPCase) -> nn.Module:
    with torch.device("meta"):
        module = MutatingMLP(case.hidden, case.intermediate)
    return module.to_empty(device=S16.DEVICE).to(case.dtype)


def _retained_check() -> dict:
    """``over`` compiled with donated buffers off, backpropagated with ``retain_graph=True``
    and then again: each gradient against eager ours (fp32, small)."""
    import torch._functorch.config as fconfig

    g = torch.Generator(S16.DEVICE).manual_seed(1)
    k, n, m = 256, 512, 192
    shapes = ((m, k, 1.0), (n, k, k**-0.5), (n, k, k**-0.5), (k, n, n**-0.5))
    leaves = [
        (torch.randn(r, c, generator=g, device=S16.DEVICE) * s).requires_grad_()
        for r, c, s in shapes
    ]
    dy = torch.randn(m, k, generator=g, device=S16.DEVICE)
    ref = torch.autograd.grad(flash_swiglu.swiglu_mlp(*leaves), leaves, dy)
    real = fconfig.donated_buffer
    fconfig.donated_buffer = False
    M.backward = _over_backward
    try:
        torch._dynamo.reset()
        y = torch.compile(lambda *a: flash_swiglu.swiglu_mlp(*a), fullgraph=True)(*leaves)
        first = torch.autograd.grad(y, leaves, dy, retain_graph=True)
        second = torch.autograd.grad(y, leaves, dy)
    finally:
        M.backward = _REAL_BACKWARD
        fconfig.donated_buffer = real
        torch._dynamo.reset()

    def err(got):
        return max(float((a - b).abs().max()) for a, b in zip(got, ref, strict=True))

    same = all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    return dict(first_err=err(first), second_err=err(second), first_equals_second=same)


def compiled2(out: Path) -> list[dict]:
    rows = []
    for m in TOKENS:
        case = B.MLPCase(S16.MODEL, S16.HIDDEN, S16.INTERMEDIATE, m, S16.DTYPE)
        inputs, dout = case.make_inputs(S16.DEVICE, torch.Generator(S16.DEVICE).manual_seed(0))
        steps = {
            "torch": B.Step("torch", case.module("torch", S16.DEVICE), inputs, dout),
            "compile": B.Step("compile", case.module("compile", S16.DEVICE), inputs, dout),
            "ours": B.Step("triton", case.module("triton", S16.DEVICE), inputs, dout),
        }
        sliced = B.Step("triton", case.module("triton", S16.DEVICE), inputs, dout)
        sliced.module = B.compile_module(sliced.params)
        over = B.Step("triton", case.module("triton", S16.DEVICE), inputs, dout)
        over.module = B.compile_module(over.params)
        mutating = B.Step("triton", _mutating_module(case), inputs, dout)
        mutating.module = B.compile_module(mutating.params)
        steps |= {"sliced compiled": sliced, "over compiled": _Over(over, ()),
                  "mutating compiled": mutating}  # fmt: skip
        checks = B._check(case, steps, inputs, dout, ("fwd+bwd",))
        results = {lb: dict(checks[lb]["fwd+bwd"]) for lb in steps}
        B._time(steps, "fwd+bwd", results, S16.DEVICE)
        rows.append(dict(m=m, results=results))
        (out / "compiled2.json").write_text(json.dumps(rows, indent=1))
        say(f"compiled2 M={m:5d}: " + ", ".join(
            f"{lb} {r.get('median_ms') or float('nan'):.3f} ms "
            f"{r.get('peak_mib') or float('nan'):.0f} MiB{S16._ok(r)}"
            for lb, r in results.items()))  # fmt: skip
        del steps, sliced, over, mutating
        torch.cuda.empty_cache()
    retained = _retained_check()
    rows.append(dict(retained=retained))
    (out / "compiled2.json").write_text(json.dumps(rows, indent=1))
    say(f"compiled2 retained (over, donated buffers off): {retained}")
    return rows


def main() -> None:
    S12.run_stages({"compiled2": compiled2}, ["compiled2"])


if __name__ == "__main__":
    main()
