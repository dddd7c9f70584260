"""``--op mlp``: one training step of the whole gated MLP, ``down(act(x Wg^T) * (x Wu^T))``.

``x [1, M, K]`` (one sequence of M tokens, hidden K), ``w_gate, w_up [N, K]`` and
``w_down [K, N]`` (``nn.Linear`` layout), ``dout [1, M, K]``; x and dout ~ N(0, 1), each
weight ~ N(0, 1/fan_in), no bias. Shapes are the MLPs of ``linear.MODELS``.

The step is what a training loop does to one MLP: ``out = mlp(x); out.backward(dout)``, with
``x`` a leaf that requires grad and every ``.grad`` set to None before (as optimizers'
``zero_grad`` does by default), so all backends allocate their gradients the same way.

Passes:
    fwd      the step's forward (autograd recording: it saves what the backward needs)
    bwd      the step's backward alone. Each timed call backpropagates a fresh forward that ran
             before the timed region; no graph is backpropagated twice. A retained graph is
             not an option here: Liger's ``LigerMLPFunction`` writes dG, dU over the
             pre-activations it saved, so its second backward computes garbage, and
             ``torch.compile``'s donated buffers (on by default) forbid a second backward.
    fwd+bwd  the step (the main row)

FLOPs: ``6 M N K`` forward (three products), ``12 M N K`` backward (six), ``18 M N K`` the
step; the ``4 M N K`` that ``recompute=True`` adds is overhead and not counted. Ideal bytes
(``s`` per element): forward reads x and the weights and writes out; backward reads x, the
weights and dout and writes dx and the weight gradients.

Backends (each an ``nn.Module`` with ``gate_proj``/``up_proj``/``down_proj`` holding copies of
the same weights):
    torch             ``transformers``' ``LlamaMLP`` (eager), built from a ``LlamaConfig`` of
                      the shape; ``EagerMLP`` (the same maths) when transformers is missing
                      or has no such activation
    compile           ``torch.compile(fullgraph=True, dynamic=False)`` of a torch module,
                      compiled once per case (shape) and shared by the three passes, with
                      torch.compile's defaults (donated buffers on)
    liger             ``LigerSwiGLUMLP``: three ``nn.Linear`` and ``LigerSiLUMulFunction``
    liger-fused       ``LigerMLP`` (``LigerMLPFunction``): gate/up projection and SiLU in one
                      Triton GEMM, fused backward kernels, down projection by cuBLAS
    triton            ``flash_swiglu.SwiGLUMLP(recompute=False)``
    triton-recompute  ``flash_swiglu.SwiGLUMLP(recompute=True)``
    cublas            the step's nine products alone, by cuBLAS in eager's layouts, nothing
                      between them (``GemmsMLP``): the step's speed of light, issue 4's
                      moonshot. Checked against the same products in float64 (it computes
                      no activation); each row's ``frac_cublas`` is its time over this one's

Measuring (:func:`run_case`, this op's loop in place of ``harness.run_case``):

1. Check: the float64 step (autograd on float64 copies) is the oracle (``cublas``: its own
   products in float64, with its own error in the case's dtype as the yardstick, as the
   linear op's ``cublas``); every backend runs one
   step (which also warms it up: compilation, autotuning) and its ``[out, dx, dw_gate, dw_up,
   dw_down]`` are checked with ``checks.check``, PyTorch eager's errors in the same dtype as
   the yardstick. A pass is judged on its own outputs: fwd on out, bwd on the gradients,
   fwd+bwd on all five.
2. Peak memory (CUDA), one un-timed run of each pass per backend: ``max_memory_allocated``
   during the pass minus ``memory_allocated`` before the step, when the inputs, dout and every
   module's weights exist and the gradients are None. For bwd the peak statistics are reset
   after the forward and the peak is taken over the same pre-forward baseline, so it counts
   the saved activations the backward holds. ``peak_mib`` in the rows (None on the CPU).
3. Timing: ``timing.measure_steps`` (CUDA events around each call, L2 flushed before each;
   no CUDA graphs: see there), every backend in `timing.ROUNDS` rounds, the order rotated
   each round (`timing.interleaved_rounds`), each timing after untimed calls that fill
   `timing.SETTLE_MS` of GPU time (at most `timing.STEP_SETTLE_MAX` calls).
4. The timed steps are checked too: what the last one left (fwd: its output; bwd and
   fwd+bwd: the gradients) against the same oracle (``_check_timed``).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import flash_swiglu
from flash_swiglu import reference
from flash_swiglu.bench.backends import BASELINE, Skip, unavailable
from flash_swiglu.bench.checks import check, fail_recheck, max_abs_err
from flash_swiglu.bench.roofline import Ceilings
from flash_swiglu.bench.timing import (
    Timing,
    cold_l2_note,
    interleaved_rounds,
    measure_steps,
    median_round,
    step_note,
    step_settle_note,
    summarize_rounds,
)

BACKENDS = ("torch", "compile", "liger", "liger-fused", "triton", "triton-recompute", "cublas")
# The peers flash-swiglu is compared with.
PEERS = ("torch", "compile", "liger", "liger-fused")
TOKENS = (1024, 2048, 4096, 8192, 16384)
PASS_FLOPS = {"fwd": 6, "bwd": 12, "fwd+bwd": 18}  # times M N K
# The outputs of a step, [out, dx, dw_gate, dw_up, dw_down], each pass is judged on.
PASS_OUTPUTS = {"fwd": slice(0, 1), "bwd": slice(1, 5), "fwd+bwd": slice(0, 5)}
# Liger's modules: (module under liger_kernel.transformers, class).
LIGER_MODULES = {"liger": ("swiglu", "LigerSwiGLUMLP"), "liger-fused": ("mlp", "LigerMLP")}
# Our activation names -> transformers' ACT2FN names (swiglu_oai has none).
HF_ACTIVATIONS = {"silu": "silu", "gelu": "gelu", "gelu_tanh": "gelu_pytorch_tanh", "relu": "relu"}
SEED = 0
TIMING_CUDA = "cuda events per call, {cold} (no graphs)"
BWD_TIMING = "; a fresh forward before each backward, outside the timed region"

# Options left out take their value from the suite of the device.
SUITES: dict[str, dict[str, Any]] = {
    "cuda": {
        "models": ("llama-3-8b",),
        "tokens": TOKENS,
        "dtypes": ("bfloat16",),
        "passes": ("fwd", "bwd", "fwd+bwd"),
        "activations": ("silu",),
        "backends": BACKENDS,
    },
    # Through Triton's interpreter: a tiny custom shape, every pass, the backends it can run.
    "cpu": {
        "shape": (32, 48),
        "tokens": (5, 70),
        "dtypes": ("float32", "float16"),
        "passes": ("fwd", "bwd", "fwd+bwd"),
        "activations": ("silu",),
        "backends": ("torch", "triton", "triton-recompute", "cublas"),
    },
}


class _Projections(nn.Module):
    """The three bias-free ``nn.Linear`` of a ``LlamaMLP``: ``gate_proj``, ``up_proj``,
    ``down_proj``."""

    def __init__(self, hidden: int, intermediate: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden, intermediate, bias=False)
        self.up_proj = nn.Linear(hidden, intermediate, bias=False)
        self.down_proj = nn.Linear(intermediate, hidden, bias=False)


class EagerMLP(_Projections):
    """``LlamaMLP``'s maths without transformers: ``down_proj(act(gate_proj(x)) * up_proj(x))``."""

    def __init__(self, hidden: int, intermediate: int, activation: str) -> None:
        super().__init__(hidden, intermediate)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(
            reference.act_glu(self.gate_proj(x), self.up_proj(x), self.activation)
        )


class _NineProducts(torch.autograd.Function):
    """The matrix products of an MLP step and nothing else. Forward: ``g = x Wg^T``,
    ``u = x Wu^T`` (computed as the step computes it, then dropped) and ``out = g Wd^T``
    (g stands in for the GLU's output h). Backward: ``dWd = dout^T g``, ``dh = dout Wd``,
    ``dx = dh Wg + dh Wu`` (a product and an ``addmm``), ``dWg = dh^T x`` and
    ``dWu = dh^T x`` (dh stands in for dg and du). Nine products in the layouts of eager's
    step, no elementwise kernel between them; its gradients are these formulas', not the
    derivative of its forward."""

    @staticmethod
    def forward(ctx, x, w_gate, w_up, w_down):
        g = F.linear(x, w_gate)
        F.linear(x, w_up)  # the up projection's product, run and dropped
        ctx.save_for_backward(x, g, w_gate, w_up, w_down)
        return F.linear(g, w_down)

    @staticmethod
    def backward(ctx, dout):
        x, g, w_gate, w_up, w_down = ctx.saved_tensors
        x2, g2 = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])
        d2 = dout.reshape(-1, dout.shape[-1])
        dw_down = d2.T @ g2
        dh = d2 @ w_down
        dx = torch.addmm(dh @ w_gate, dh, w_up).reshape(x.shape)
        return dx, dh.T @ x2, dh.T @ x2, dw_down


class GemmsMLP(_Projections):
    """The ``cublas`` backend: ``_NineProducts`` on the weights of three ``nn.Linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = (self.gate_proj.weight, self.up_proj.weight, self.down_proj.weight)
        return _NineProducts.apply(x, *weights)


def eager_module(hidden: int, intermediate: int, activation: str) -> Callable[[], nn.Module]:
    """A builder of Hugging Face's ``LlamaMLP`` when transformers has the activation, else of
    ``EagerMLP``. Whatever must be imported is imported here, so that the builder can run
    under a ``torch.device`` context without any module-level tensor of an import landing
    there."""
    if activation in HF_ACTIVATIONS and importlib.util.find_spec("transformers") is not None:
        try:
            from transformers import LlamaConfig
            from transformers.models.llama.modeling_llama import LlamaMLP

            config = LlamaConfig(
                hidden_size=hidden,
                intermediate_size=intermediate,
                hidden_act=HF_ACTIVATIONS[activation],
                mlp_bias=False,
                num_attention_heads=1,  # unused by the MLP; any hidden size divides by 1
                num_key_value_heads=1,
            )
        except Exception:  # a transformers that cannot build it: the same maths without it
            pass
        else:
            return lambda: LlamaMLP(config)
    return lambda: EagerMLP(hidden, intermediate, activation)


def _liger_class(module: str, name: str) -> type[nn.Module]:
    """``liger_kernel.transformers.<module>.<name>``, or :class:`Skip` saying why not."""
    try:
        return getattr(importlib.import_module(f"liger_kernel.transformers.{module}"), name)
    except Exception as e:  # an incompatible Liger install must not stop the benchmark
        raise Skip(f"liger_kernel.transformers.{module}.{name} unusable: {e}") from e


@dataclass(frozen=True)
class MLPCase:
    model: str
    hidden: int  # K
    intermediate: int  # N
    tokens: int  # M
    dtype: torch.dtype
    activation: str = "silu"
    op: str = "mlp"

    @property
    def label(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        return f"{self.activation}/{dtype}/{self.model}/M{self.tokens}"

    def fields(self) -> dict[str, Any]:
        return {
            "activation": self.activation,
            "dtype": str(self.dtype).removeprefix("torch."),
            "model": self.model,
            "tokens": self.tokens,
            "hidden": self.hidden,
            "intermediate": self.intermediate,
            "shape": [self.tokens, self.hidden, self.intermediate],
        }

    def make_inputs(
        self, device: torch.device, generator: torch.Generator
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``[x, w_gate, w_up, w_down]`` and ``dout``."""

        def randn(*shape: int, std: float = 1.0) -> torch.Tensor:
            t = torch.randn(shape, generator=generator, device=device, dtype=self.dtype)
            return t.mul_(std)

        m, k, n = self.tokens, self.hidden, self.intermediate
        weights = [randn(n, k, std=k**-0.5), randn(n, k, std=k**-0.5), randn(k, n, std=n**-0.5)]
        return [randn(1, m, k), *weights], randn(1, m, k)

    def module(self, backend: str, device: torch.device) -> nn.Module:
        """``backend``'s MLP on ``device`` in the case's dtype, its weights uninitialised (they
        are copied in); raises ``Skip`` if none."""
        k, n, activation = self.hidden, self.intermediate, self.activation
        if backend in ("torch", "compile"):
            build = eager_module(k, n, activation)
        elif backend == "cublas":
            build = lambda: GemmsMLP(k, n)
        elif backend in ("triton", "triton-recompute"):
            recompute = backend == "triton-recompute"
            build = lambda: flash_swiglu.SwiGLUMLP(k, n, activation=activation, recompute=recompute)
        elif backend in ("liger", "liger-fused"):
            if activation != "silu":
                raise Skip(f"Liger's MLPs compute silu only, not {activation}")
            config = SimpleNamespace(hidden_size=k, intermediate_size=n, hidden_act="silu")
            cls = _liger_class(*LIGER_MODULES[backend])
            if backend == "liger-fused":
                ops = importlib.import_module("liger_kernel.ops.mlp")
                if getattr(ops, "TensorDescriptor", None) is None:
                    raise Skip("LigerMLP needs triton.tools.tensor_descriptor, missing here")
            build = lambda: cls(config)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        with torch.device("meta"):  # no initialisation (seconds on the CPU for a 70B MLP)
            module = build()
        if next(module.buffers(), None) is None:
            return module.to_empty(device=device).to(self.dtype)
        with torch.device(device):  # buffers: to_empty would leave them garbage
            return build().to(self.dtype)

    def ideal_bytes(self, pass_: str) -> tuple[int, int]:
        s = self.dtype.itemsize
        x = self.tokens * self.hidden * s  # x, out, dout and dx are all [M, K]
        w = 3 * self.intermediate * self.hidden * s
        if pass_ == "fwd":
            return x + w, x
        if pass_ == "bwd":
            return 2 * x + w, x + w
        return 2 * x + w, 2 * x + w

    def flops(self, pass_: str) -> int:
        return PASS_FLOPS[pass_] * self.tokens * self.intermediate * self.hidden


def cases(args: argparse.Namespace) -> list[MLPCase]:
    """The cases of ``args``: every model x dtype x activation x tokens asked for
    (``args.shapes``: ``[(model, K, N)]``)."""
    return [
        MLPCase(model, k, n, m, dtype, activation)
        for model, k, n in args.shapes
        for dtype in args.dtypes
        for activation in args.activations
        for m in args.tokens
    ]


# ----------------------------------------------------------------------------------------
# The measuring loop
# ----------------------------------------------------------------------------------------


class Step:
    """One backend's training step: its module, its own copies of ``x`` and ``dout``."""

    def __init__(
        self,
        backend: str,
        module: nn.Module,
        inputs: Sequence[torch.Tensor],
        dout: torch.Tensor,
    ) -> None:
        x, *weights = inputs
        self.params = module  # the module that holds the parameters (uncompiled)
        with torch.no_grad():
            for name, w in zip(("gate_proj", "up_proj", "down_proj"), weights, strict=True):
                getattr(module, name).weight.copy_(w)
        self.module = compile_module(module) if backend == "compile" else module
        self.x = x.detach().clone().requires_grad_()
        self.dout = dout.clone()

    def zero_grad(self) -> None:
        self.params.zero_grad(set_to_none=True)
        self.x.grad = None

    def forward(self) -> torch.Tensor:
        return self.module(self.x)

    def outputs(self) -> list[torch.Tensor]:
        """``[out, dx, dw_gate, dw_up, dw_down]`` of one step."""
        self.zero_grad()
        out = self.forward()
        out.backward(self.dout)
        p = self.params
        grads = [self.x.grad, p.gate_proj.weight.grad, p.up_proj.weight.grad]
        result = [out.detach(), *grads, p.down_proj.weight.grad]
        self.zero_grad()
        return result

    def pass_call(self, pass_: str) -> tuple[Callable[[], object], Callable[[], object]]:
        """``(setup, call)``: the call to time for ``pass_`` and what must run before each
        call, outside the timed region (the gradients set to None; for bwd, the forward)."""
        if pass_ == "fwd":
            return lambda: None, self.forward
        if pass_ == "fwd+bwd":
            return self.zero_grad, lambda: self.forward().backward(self.dout)
        pending: list[torch.Tensor] = []

        def setup() -> None:
            self.zero_grad()
            pending.append(self.forward())

        return setup, lambda: pending.pop().backward(self.dout)

    def peak_mib(self, pass_: str) -> float | None:
        """Peak memory of one run of ``pass_`` above the memory before the step (module doc)."""
        if self.x.device.type != "cuda":
            return None
        self.zero_grad()
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        out = self.forward()
        if pass_ == "bwd":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()  # the peak from here on, over `before`
        if pass_ != "fwd":
            out.backward(self.dout)
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        del out
        self.zero_grad()
        return peak / 2**20


def _weight_grad_mib(step: Step | None, pass_: str) -> float | None:
    if step is None or pass_ == "fwd":
        return None
    return sum(p.numel() * p.element_size() for p in step.params.parameters()) / 2**20


def compile_module(module: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``torch.compile(module, fullgraph=True, dynamic=False)`` with a clean Dynamo cache.

    Donated buffers (the compiled backward frees saved activations as it goes) are set back to
    torch.compile's default: ``backends.compile_eager`` turns them off for the retained-graph
    backward of the other ops, and this op never backpropagates a graph twice.
    """
    import torch._functorch.config  # not imported by ``import torch``

    torch._functorch.config.donated_buffer = True
    torch._dynamo.reset()
    return torch.compile(module, fullgraph=True, dynamic=False)


def reference_step(
    inputs: Sequence[torch.Tensor], dout: torch.Tensor, activation: str
) -> list[torch.Tensor]:
    """``[out, dx, dw_gate, dw_up, dw_down]`` of the step in float64."""
    x, w_gate, w_up, w_down = (t.detach().double().requires_grad_() for t in inputs)
    h = reference.act_glu(F.linear(x, w_gate), F.linear(x, w_up), activation)
    out = F.linear(h, w_down)
    grads = torch.autograd.grad(out, [x, w_gate, w_up, w_down], dout.double())
    return [out.detach(), *grads]


def products_step(
    inputs: Sequence[torch.Tensor], dout: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``cublas``'s oracle, written apart from ``_NineProducts``: ``[out, dx, dw_gate, dw_up,
    dw_down]`` of its formulas in float64, and the same in the inputs' dtype (whose error is
    the yardstick, as for the linear op's ``cublas``)."""
    runs = []
    for dtype in (torch.float64, inputs[0].dtype):
        x, w_gate, w_up, w_down = (t.detach().to(dtype) for t in inputs)
        d = dout.to(dtype)
        x2, d2 = x.reshape(-1, x.shape[-1]), d.reshape(-1, d.shape[-1])
        g2, dh2 = x2 @ w_gate.T, d2 @ w_down
        out = (g2 @ w_down.T).reshape(d.shape)
        dx = (dh2 @ w_gate + dh2 @ w_up).reshape(x.shape)
        runs.append([out, dx, dh2.T @ x2, dh2.T @ x2, d2.T @ g2])
    return runs[0], runs[1]


# LigerMLP autotunes two Triton kernels over 32 configs each and compiles every config it
# tries, one after another: two integer specialisations of its bucket_M argument (16 for 1024
# tokens; 24, or 40 from 4096 tokens on) make 128 compilations, a minute or two of the run.
# Compiling them first in parallel processes fills Triton's disk cache, where the autotuner
# then finds them; it still benchmarks every config, so what it picks does not change.
LIGER_WARM_TOKENS = (1024, 2048)  # bucket_M 16 (divisible by 16) and 24 (stands for 40)
LIGER_WARM_SIZE = 256  # K = N: divisible by 16 like every model's, and above every block
LIGER_WARM_TIMEOUT_S = 120.0
_liger_warmed: set[torch.dtype] = set()


def _liger_compile_worker(part: int, parts: int, dtype_name: str) -> None:
    """Run a small LigerMLP step with every ``parts``-th config (from ``part``) of its two
    autotuned kernels, so that Triton compiles those configs into its disk cache."""
    from liger_kernel.ops import mlp as liger_mlp

    dtype = getattr(torch, dtype_name)
    for kernel in (liger_mlp._swiglu_kernel_forward, liger_mlp._swiglu_kernel_backward_dI):
        kernel.configs = kernel.configs[part::parts] or kernel.configs[:1]
    s = LIGER_WARM_SIZE
    for m in LIGER_WARM_TOKENS:
        x, w_gate, w_up, w_down = (
            torch.randn(shape, device="cuda", dtype=dtype).div_(16).requires_grad_()
            for shape in ((1, m, s), (s, s), (s, s), (s, s))
        )
        out = liger_mlp.LigerMLPFunction.apply(x, w_gate, w_up, w_down)
        out.backward(torch.randn_like(out))
    torch.cuda.synchronize()


def warm_liger_fused(dtype: torch.dtype) -> str:
    """Compile LigerMLP's autotuned kernels for ``dtype`` in parallel processes (see above);
    return what happened. Nothing here is needed for correctness: whatever fails or runs past
    ``LIGER_WARM_TIMEOUT_S`` is left to the autotuner."""
    import multiprocessing
    import os
    import time

    if dtype in _liger_warmed:
        return ""
    _liger_warmed.add(dtype)
    parts = max(1, min(16, os.cpu_count() or 1))
    name = str(dtype).removeprefix("torch.")
    print(f"compiling LigerMLP's autotune configs in {parts} processes ...", file=sys.stderr)
    start = time.perf_counter()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_liger_compile_worker, args=(i, parts, name), daemon=True)
        for i in range(parts)
    ]
    for w in workers:
        w.start()
    deadline = start + LIGER_WARM_TIMEOUT_S
    for w in workers:
        w.join(max(0.0, deadline - time.perf_counter()))
    late = [w for w in workers if w.is_alive()]
    for w in late:
        w.terminate()
    failed = sum(w.exitcode not in (0, None) for w in workers if w not in late)
    return (
        f"LigerMLP {name} configs compiled in {parts} processes in "
        f"{time.perf_counter() - start:.0f} s ({failed} failed, {len(late)} stopped at the "
        f"{LIGER_WARM_TIMEOUT_S:.0f} s limit)"
    )


def _error(e: BaseException) -> dict[str, Any]:
    return {"passed": False, "error": f"{type(e).__name__}: {e}"}


def _build_steps(
    case: MLPCase,
    backends: Sequence[str],
    device: torch.device,
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
) -> tuple[dict[str, Step], dict[str, str], dict[str, dict[str, Any]]]:
    """``({backend: step}, {backend: why skipped}, {backend: error})``."""
    steps, skipped, failed = {}, {}, {}
    for backend in backends:
        reason = unavailable(backend, device, case.dtype)
        try:
            if reason is None:
                module = case.module(backend, device)
                steps[backend] = Step(backend, module, inputs, dout)
        except Skip as e:
            reason = str(e)
        except Exception as e:  # a failing backend is reported in its rows
            failed[backend] = _error(e)
        if reason is not None:
            skipped[backend] = reason
    return steps, skipped, failed


def _check(
    case: MLPCase,
    steps: dict[str, Step],
    inputs: list[torch.Tensor],
    dout: torch.Tensor,
    passes: Sequence[str],
) -> tuple[dict[str, dict[str, dict[str, Any]]], tuple]:
    """``{backend: {pass: {max_abs_err, err_torch, passed, checked_against} or {passed,
    error}}}``; the first step of each backend, which also warms it up; and ``{backend:
    (reference, eager's errors)}`` for ``_check_timed``."""
    expected = reference_step(inputs, dout, case.activation)
    eager_outputs = steps[BASELINE].outputs()
    eager_errors = [max_abs_err(o, r) for o, r in zip(eager_outputs, expected, strict=True)]
    results: dict[str, dict[str, dict[str, Any]]] = {}
    oracles: dict[str, tuple] = {}
    for backend, step in steps.items():
        try:
            outputs = eager_outputs if backend == BASELINE else step.outputs()
            oracle, against = (expected, eager_errors), None
            if backend == "cublas":
                own, own_dtype = products_step(inputs, dout)
                errors = [max_abs_err(o, r) for o, r in zip(own_dtype, own, strict=True)]
                oracle, against = (own, errors), "the nine products in float64"
        except Exception as e:
            results[backend] = {pass_: _error(e) for pass_ in passes}
            continue
        oracles[backend] = oracle
        results[backend] = {}
        for pass_ in passes:
            part = PASS_OUTPUTS[pass_]
            c = check(outputs[part], oracle[0][part], oracle[1][part])
            results[backend][pass_] = {
                "max_abs_err": c.max_abs_err,
                "err_torch": c.err_torch,
                "passed": c.passed,
                "checked_against": against,
            }
        del outputs
    return results, oracles


def _check_timed(step: Step, pass_: str, result: dict[str, Any], oracle: tuple, kept: list) -> None:
    """Check what the last timed call of ``step`` left (the output it returned for ``fwd``,
    kept in ``kept``; the gradients for ``bwd`` and ``fwd+bwd``) against ``_check``'s
    reference; a failure fails the row (``harness._check_timed`` does the same for the
    other ops)."""
    expected, eager_errors = oracle
    if pass_ == "fwd":
        if not kept:
            return
        outputs, part = kept[:1], PASS_OUTPUTS["fwd"]
    else:
        p = step.params
        grads = [step.x.grad, p.gate_proj.weight.grad, p.up_proj.weight.grad]
        outputs, part = [*grads, p.down_proj.weight.grad], PASS_OUTPUTS["bwd"]
        if any(g is None for g in outputs):
            return
    c = check(outputs, expected[part], eager_errors[part])
    if not c.passed:
        fail_recheck(result, c, "the last timed step failed its check")


def _time(
    steps: dict[str, Step],
    pass_: str,
    results: dict[str, dict[str, Any]],
    device: torch.device,
    oracles: dict[str, tuple] | None = None,
) -> None:
    """Add peak_mib, median_ms, p20_ms, p80_ms, median_ms_repeat, median_ms_rounds
    (``timing.summarize_rounds``), host_ms to ``results``
    (``{backend: result}`` of one pass) for each backend whose check ran; with ``oracles``
    (``_check``'s), check what each backend's last timed step left (``_check_timed``)."""
    live = {b: s for b, s in steps.items() if "error" not in results[b]}
    for backend, step in live.items():
        try:
            results[backend]["peak_mib"] = step.peak_mib(pass_)
        except Exception as e:
            results[backend].update(_error(e))
    live = {b: s for b, s in live.items() if "error" not in results[b]}

    kept: dict[str, list] = {backend: [] for backend in live}

    def measure_one(backend: str) -> tuple[Timing, float | None]:
        setup, call = live[backend].pass_call(pass_)
        if pass_ == "fwd":  # keep the output (not its graph) for _check_timed
            forward, keep = call, kept[backend]

            def call() -> None:
                keep[:] = [forward().detach()]

        return measure_steps(call, device, setup)

    for backend, ts in interleaved_rounds(list(live), measure_one).items():
        error = next((t for t in ts if isinstance(t, Exception)), None)
        if error is not None:
            results[backend].update(_error(error))
            continue
        timings = [timing for timing, _ in ts]
        host = ts[median_round(timings)][1]  # the host time of the round reported
        results[backend].update(summarize_rounds(timings), host_ms=host)
        if oracles is not None and backend in oracles:
            _check_timed(live[backend], pass_, results[backend], oracles[backend], kept[backend])


def run_case(
    case: MLPCase,
    backends: Sequence[str],
    passes: Sequence[str],
    device: torch.device,
    ceilings: Ceilings,
    on_pass_done: Callable[[str], None] = lambda label: None,
) -> list[dict[str, Any]]:
    """The result rows of one case: one per pass and backend (``torch`` always included)."""
    from flash_swiglu.bench.harness import _ratio, _row, with_baseline  # (import cycle)

    backends = with_baseline(backends)
    warm = "liger-fused" in backends and device.type == "cuda" and case.activation == "silu"
    if warm and unavailable("liger-fused", device) is None and case.dtype not in _liger_warmed:
        try:
            note = warm_liger_fused(case.dtype)
        except Exception as e:  # only a matter of time: the autotuner compiles what is missing
            note = f"LigerMLP configs not compiled ahead: {type(e).__name__}: {e}"
        print(note, file=sys.stderr)
    generator = torch.Generator(device=device).manual_seed(SEED)
    inputs, dout = case.make_inputs(device, generator)
    steps, skipped, failed = _build_steps(case, backends, device, inputs, dout)
    if BASELINE not in steps:
        raise RuntimeError(f"the baseline ({BASELINE}) cannot run: {failed.get(BASELINE)}")
    checked, oracles = _check(case, steps, inputs, dout, passes)
    rows = []
    for pass_ in passes:
        results = {b: checked[b][pass_] for b in steps}
        _time(steps, pass_, results, device, oracles)
        eager_ms = results.get(BASELINE, {}).get("median_ms")
        products = results.get("cublas", {})
        products_ms = products.get("median_ms") if products.get("passed") else None
        for backend in backends:
            if backend in skipped:
                result = {"skipped": skipped[backend]}
            else:
                result = failed.get(backend) or results[backend]
            row = _row(case, pass_, backend, device, ceilings, result)
            cls = type(steps[backend].params) if backend in steps else None
            timing = f"{TIMING_CUDA.format(cold=cold_l2_note())}, {step_settle_note()}{step_note()}"
            timing += BWD_TIMING if pass_ == "bwd" else ""
            row.update(
                speedup_vs_eager=_ratio(eager_ms, row["median_ms"]),
                frac_cublas=_ratio(products_ms, row["median_ms"]),
                peak_mib=result.get("peak_mib"),
                # The weight gradients are new allocations of every backward, the same bytes for
                # every backend; BENCHMARKING.md's peer figures (proportional to M) leave them out.
                weight_grad_mib=_weight_grad_mib(steps.get(backend), pass_),
                module=None if cls is None else f"{cls.__module__}.{cls.__qualname__}",
                timing=timing if device.type == "cuda" else "cpu wall clock",
            )
            rows.append(row)
        on_pass_done(f"{case.label} {pass_}")
    del steps
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows
