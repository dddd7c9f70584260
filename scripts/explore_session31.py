"""Explorations of session 31.

    PYTHONPATH=src python scripts/explore_session31.py launch --out DIR

- ``launch``: session 30 measured the host time of one MLP layer's forward + backward at the
  example's shape (hidden 1024, MLP 2816, 8192 rows, bf16): ``SwiGLUMLP`` 1.38 ms against
  ``LlamaMLP``'s 0.84 (``h200-session30-explore/call2``). Where ours goes, piece by piece:
  each item's host time with the GPU idle at its start (synchronised before each of 200
  repetitions; median and minimum), for

  - the whole layer, forward and forward + backward, ours and ``LlamaMLP``;
  - each layer of our call path (``swiglu_mlp``'s checks, ``T.forward_saving``,
    ``glu_forward_ws``, ``T._backward_over_saved``, ``mlp_backward_ws``, ``split_epilogue``);
  - inside one Gluon launch (``glu_forward_ws_kernel``, ``mlp_backward_ws_kernel``): the
    host descriptors, Triton's argument binder and cache key, the launcher called directly
    with the compiled kernel, and ``fill_tma_descriptor`` alone;
  - inside one plain Triton launch (``_glu_bwd_split_kernel``, pointer arguments): the
    same;
  - PyTorch's own pieces: ``torch.mm``, ``F.linear``, ``torch.empty``, and a trivial
    ``autograd.Function`` (seven inputs) forward + backward.

  -> ``launch.json``, and a table on stdout.
- ``trace``: ``launch`` found the pieces, each timed alone, far short of the whole (the
  layer's forward 375 us, ``T.forward_saving`` 205, the launch inside it 51). The real call
  path, instrumented: each function of it wrapped to add its inclusive host time (and call
  count) per step, inside whole forward + backward steps of ``SwiGLUMLP`` at the example's
  MLP, with the GPU idle at each step's start (8192 rows) and back to back (256 rows, where
  the host bounds the step); also the delay from ``.backward()`` to our backward's start on
  autograd's device thread. ``LlamaMLP`` beside it, with ``F.linear``, ``torch.mm`` and
  Triton's ``run`` wrapped the same way. -> ``trace.json``, and a table on stdout.
- ``trace-infer``: ``trace`` for inference (no gradient), two MLPs, 1 to 8192 rows.
  -> ``trace_infer.json``.
- ``ab``: whole-machine drift moved the host times of call 4's three runs (the same code)
  by up to 30%, so ``ops._launch``'s compiled-kernel path against Triton's own launch is
  measured in one process: blocks of 50 steps with ``FLASH_SWIGLU_FAST_LAUNCH`` on, off,
  and ``LlamaMLP``, in rotated order, 10 rounds, for inference and training steps of the
  example's MLP and Llama-3.2-1B's; and single launches (the Gluon forward, the split
  epilogue, the decode kernel) on and off. Medians of the rounds and of the per-round
  ratios. -> ``ab.json``.
- ``generate``: what a user of Hugging Face ``generate`` sees without CUDA graphs, where the
  host bounds each decode step. A Llama-3.2-1B-shaped ``LlamaForCausalLM`` (16 layers,
  hidden 2048, MLP 8192, random weights, bf16), batch 1, a 32-token prompt, 64 new tokens,
  greedy: unpatched, patched with the launch cache, patched without it, in rotated order, 5
  rounds; tokens per second (median), and whether the generated tokens agree (cache on and
  off must be identical; patched against unpatched, the share of equal tokens).
  -> ``generate.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

# EXPLORE_CPU=1 (``trace`` only): a smoke run on the CPU at tiny sizes through the
# interpreter, to check the script before a device call; its numbers mean nothing.
CPU = os.environ.get("EXPLORE_CPU") == "1"
DEV = "cpu" if CPU else "cuda"
DTYPE = torch.float32 if CPU else torch.bfloat16


def _sync() -> None:
    if not CPU:
        torch.cuda.synchronize()


def say(*a) -> None:
    print(*a, flush=True)


def timed(fn, reps: int = 200, warm: int = 10) -> dict:
    """Host time of ``fn()`` with the GPU idle at its start: median and minimum in us."""
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    torch.cuda.synchronize()
    return {"median_us": 1e6 * statistics.median(times), "min_us": 1e6 * min(times)}


def launch(out: Path) -> None:
    import triton
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP
    from flash_swiglu import functional as FS
    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.ops import _common as C
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import mlp as MLP
    from flash_swiglu.ops import train as T

    hidden, inter, m = 1024, 2816, 8192
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter)
    ref = LlamaMLP(cfg).to(DEV, DTYPE)
    ours = SwiGLUMLP.from_module(ref)
    x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=True)
    dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
    wg, wu, wd = (p.weight.detach() for p in (ref.gate_proj, ref.up_proj, ref.down_proj))
    xd = x.detach()
    rows: dict[str, dict] = {}

    def add(name, fn, **kw):
        rows[name] = timed(fn, **kw)
        say(f"  {name:58} {rows[name]['median_us']:9.1f} {rows[name]['min_us']:9.1f}")

    say(f"{'item':60} {'median':>9} {'min':>9}  (us, host, GPU idle at start)")
    for name, mod in (("LlamaMLP", ref), ("SwiGLUMLP", ours)):
        add(f"{name} forward (grad on)", lambda mod=mod: mod(x))
        add(f"{name} forward + backward", lambda mod=mod: mod(x).backward(dy))
        with torch.no_grad():
            add(f"{name} forward (no grad)", lambda mod=mod: mod(xd))

    # Our call path, layer by layer.
    def checks():
        L.check_linear(xd, wg, wu, None, None)
        MLP.check_down(xd, wg, wd, None)
        C.check_activation("silu")
        C.check_oai_params(FS.OAI_ALPHA, FS.OAI_LIMIT)

    add("swiglu_mlp's checks", checks)
    a, lim = FS.OAI_ALPHA, FS.OAI_LIMIT
    add("T.forward_saving", lambda: T.forward_saving(xd, wg, wu, None, None, "silu", a, lim))
    fcfg = T.ws_config(DTYPE, xd.device, "silu", m, "forward_saving_ws", (inter, hidden))
    add(
        "T.ws_config (forward_saving_ws)",
        lambda: T.ws_config(DTYPE, xd.device, "silu", m, "forward_saving_ws", (inter, hidden)),
    )
    add("T.fused_ok (3 operands)", lambda: T.fused_ok(xd, wg, wu))
    h, g, u = (torch.empty(m, inter, device=DEV, dtype=DTYPE) for _ in range(3))
    add("W.glu_forward_ws", lambda: W.glu_forward_ws(xd, wg, wu, None, None, h, g, u,
                                                     activation="silu", alpha=a, limit=lim,
                                                     config=fcfg))  # fmt: skip
    add("W._desc (one)", lambda: W._desc(xd, [128, 64]))
    add("F.linear (down projection)", lambda: F.linear(h, wd))
    add("torch.mm", lambda: torch.mm(h, wd.t()))
    add("torch.empty [M, N]", lambda: torch.empty(m, inter, device=DEV, dtype=DTYPE))

    def over_saved():
        T._backward_over_saved(xd, wg, wu, dy, wd, (g, u), (True,) * 3 + (False,) * 2 + (True,),
                               None, None, "silu", a, lim, free_gate=False)  # fmt: skip

    add("T._backward_over_saved (split route as the table has it)", over_saved)
    bcfg = T.ws_config(DTYPE, xd.device, "silu", m)
    add(
        "W.mlp_backward_ws",
        lambda: W.mlp_backward_ws(
            dy, wd, g, u, h, g, u, activation="silu", alpha=a, limit=lim, config=bcfg
        ),
    )
    add("T.split_epilogue", lambda: T.split_epilogue(g, u, h, g, u, h, "silu", a, lim))

    # Inside one Gluon launch: glu_forward_ws_kernel as glu_forward_ws launches it.
    from triton.runtime.jit import compute_cache_key

    fc = dict(W.WS_FORWARD_CONFIG, **fcfg)
    bm, bh, bk = fc.pop("BLOCK_M"), fc.pop("BLOCK_H"), fc.pop("BLOCK_K")
    grid = W._grid(xd.device, triton.cdiv(m, bm) * triton.cdiv(inter, bh), None)

    def fwd_args():
        return (W._desc(xd, [bm, bk]), W._desc(wg, [bh, bk]), W._desc(wu, [bh, bk]), h, h, 0, 0,
                g, u, h, g.stride(0), u.stride(0), h.stride(0), m, inter, hidden)  # fmt: skip

    fkw = dict(HAS_BG=False, HAS_BU=False, STORE_GU=True, ACTIVATION="silu", ALPHA=a, LIMIT=lim,
               num_warps=4, enable_fp_fusion=W.ENABLE_FP_FUSION, **fc)  # fmt: skip
    _inside(
        add,
        "glu_forward_ws_kernel",
        W.glu_forward_ws_kernel,
        grid,
        fwd_args,
        fkw,
        compute_cache_key,
    )

    # Inside one plain Triton launch: _glu_bwd_split_kernel as split_epilogue launches it.
    from flash_swiglu.kernels.mlp import _glu_bwd_split_kernel

    sbm, sbn, warps = T.SPLIT_BLOCK
    sgrid = (triton.cdiv(m, sbm) * triton.cdiv(inter, sbn),)

    def split_args():
        return (g, u, h, g, u, h, g.stride(0), u.stride(0), h.stride(0), g.stride(0),
                u.stride(0), h.stride(0), m, inter)  # fmt: skip

    skw = dict(STORE_H=True, ACTIVATION="silu", ALPHA=a, LIMIT=lim, BLOCK_M=sbm, BLOCK_N=sbn,
               num_warps=warps, enable_fp_fusion=L.ENABLE_FP_FUSION)  # fmt: skip
    _inside(
        add,
        "_glu_bwd_split_kernel",
        _glu_bwd_split_kernel,
        sgrid,
        split_args,
        skw,
        compute_cache_key,
    )

    # PyTorch's pieces.
    class Trivial(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, *ws):
            ctx.save_for_backward(x, *ws)
            return x.view(x.shape)

        @staticmethod
        def backward(ctx, dy):
            return (dy,) + (None,) * 6

    w7 = [wg, wu, wd, None, None, None]
    add("trivial autograd.Function forward", lambda: Trivial.apply(x, *w7))
    add("trivial autograd.Function forward + backward", lambda: Trivial.apply(x, *w7).backward(dy))
    add(
        "torch.cuda.current_stream + current_device",
        lambda: (torch.cuda.current_stream(), torch.cuda.current_device()),
    )

    (out / "launch.json").write_text(json.dumps({
        "shape": {"hidden": hidden, "intermediate": inter, "rows": m}, "dtype": str(DTYPE),
        "torch": torch.__version__, "triton": triton.__version__,
        "device": torch.cuda.get_device_name(), "rows": rows}, indent=1))  # fmt: skip


def _inside(add, name, kernel, grid, make_args, kw, compute_cache_key) -> None:
    """The parts of one launch of ``kernel`` (a JITFunction) through Triton's ``run``."""
    from triton.runtime import driver

    args = make_args()
    compiled = kernel[grid](*args, **kw)  # compiled (and launched) once
    device = driver.active.get_current_device()
    stream = driver.active.get_current_stream(device)
    _, key_cache, _, _, binder = kernel.device_caches[device]
    add(f"{name}: kernel[grid](...) (all of it)", lambda: kernel[grid](*make_args(), **kw))
    add(f"{name}: the arguments (host descriptors)", make_args)
    kwd = {**kw, "debug": False}
    add(f"{name}: binder", lambda: binder(*args, **kwd))
    _, spec, opts = binder(*args, **kwd)
    add(f"{name}: compute_cache_key", lambda: compute_cache_key(key_cache, spec, opts))
    add(
        f"{name}: driver device + stream",
        lambda: driver.active.get_current_stream(driver.active.get_current_device()),
    )
    g0, g1, g2 = (*grid, 1, 1)[:3]

    def direct():
        bound = binder(*make_args(), **kwd)[0]
        compiled.run(g0, g1, g2, stream, compiled.function, compiled.packed_metadata, None,
                     None, None, *bound.values())  # fmt: skip

    add(f"{name}: binder + compiled.run (no key, no hooks)", direct)

    def run_only():
        compiled.run(g0, g1, g2, stream, compiled.function, compiled.packed_metadata, None,
                     None, None, *make_args(), *_constexpr_values(kernel, kw))  # fmt: skip

    try:
        run_only()
        add(f"{name}: compiled.run (fresh arguments, nothing else)", run_only)
    except Exception as e:  # the launcher's argument order is Triton's, not ours
        say(f"  {name}: compiled.run alone failed: {type(e).__name__}: {e}")
    descs = [t for t in args if type(t).__name__ == "TensorDescriptor"]
    if descs:
        utils = driver.active.utils
        meta = getattr(compiled.metadata, "tensordesc_meta", None) or []

        def fill():
            for d, md in zip(descs, meta, strict=False):
                utils.fill_tma_descriptor(d.base.data_ptr(), md["swizzle"], md["elem_size"],
                                          _host_dtype(md["elem_type"]), md["block_size"],
                                          d.shape, d.strides, 0)  # fmt: skip

        if meta:
            add(f"{name}: fill_tma_descriptor x{len(descs)}", fill)


def _host_dtype(elem_type: int) -> int:
    from triton.backends.nvidia.driver import TMA_DTYPE_DEVICE_TO_HOST

    return TMA_DTYPE_DEVICE_TO_HOST[elem_type]


def _constexpr_values(kernel, kw) -> list:
    """The constexpr arguments in signature order, as the binder passes them on."""
    names = [p.name for p in kernel.params]
    return [kw[n] for n in names if n in kw and kernel.params[names.index(n)].is_constexpr]


class _Tracer:
    """Wraps functions (module or class attributes) to add up their inclusive host time."""

    def __init__(self) -> None:
        self.acc: dict[str, list[float]] = {}
        self.undo: list[tuple] = []
        self.on = True

    def wrap(self, owner, attr: str, label: str, static: bool = False) -> None:
        import functools

        own = not isinstance(owner, type) or attr in owner.__dict__
        orig = owner.__dict__[attr] if isinstance(owner, type) and own else getattr(owner, attr)
        fn = orig.__func__ if static else orig
        acc = self.acc.setdefault(label, [0.0, 0])

        @functools.wraps(fn)
        def timed_fn(*args, **kwargs):
            if not self.on:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                acc[0] += time.perf_counter() - t0
                acc[1] += 1

        setattr(owner, attr, staticmethod(timed_fn) if static else timed_fn)
        self.undo.append((owner, attr, orig if own else None))

    def reset(self) -> None:
        for v in self.acc.values():
            v[0], v[1] = 0.0, 0

    def restore(self) -> None:
        for owner, attr, orig in reversed(self.undo):
            if orig is None:  # inherited (a method of torch's C base class): unshadow it
                delattr(owner, attr)
            else:
                setattr(owner, attr, orig)
        self.undo.clear()

    def per_step(self, steps: int) -> dict:
        return {
            k: {"us": 1e6 * v[0] / steps, "calls": v[1] / steps}
            for k, v in self.acc.items()
            if v[1]
        }


def _wrap_all() -> _Tracer:
    """A tracer over every function of our call paths (training and inference) and the
    PyTorch and Triton calls they make."""
    import triton.runtime.jit as J

    from flash_swiglu import modules as M
    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.ops import _common as C
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import mlp as MLP
    from flash_swiglu.ops import train as T

    tr = _Tracer()
    for owner, attr, label in (
        (M.SwiGLUMLP, "forward", "SwiGLUMLP.forward"),
        (M, "_under_autocast", "modules._under_autocast"),
        (M, "swiglu_mlp", "functional.swiglu_mlp"),
        (L, "check_linear", "L.check_linear"),
        (MLP, "check_down", "MLP.check_down"),
        (MLP, "mlp", "MLP.mlp (device guard)"),
        (MLP, "forward_train", "MLP.forward_train"),
        (MLP, "backward", "MLP.backward"),
        (MLP, "_may_overwrite_saved", "MLP._may_overwrite_saved"),
        (T, "rows", "T.rows"),
        (T, "forward_saving", "T.forward_saving"),
        (T, "fused_ok", "T.fused_ok"),
        (T, "launch", "T.launch"),
        (T, "ws_config", "T.ws_config"),
        (T, "backward", "T.backward"),
        (T, "_backward_over_saved", "T._backward_over_saved"),
        (T, "split_dh", "T.split_dh"),
        (T, "split_epilogue", "T.split_epilogue"),
        (C, "bind_cuda_context", "C.bind_cuda_context"),
        (W, "glu_forward_ws", "W.glu_forward_ws"),
        (W, "mlp_backward_ws", "W.mlp_backward_ws"),
        (W, "_desc", "W._desc"),
        (W, "_grid", "W._grid"),
        (J.JITFunction, "run", "triton JITFunction.run"),
        (torch, "mm", "torch.mm"),
        (torch, "empty", "torch.empty"),
        (torch.nn.functional, "linear", "F.linear"),
        (torch.Tensor, "addmm_", "Tensor.addmm_"),
        (torch.Tensor, "sum", "Tensor.sum"),
        (MLP, "forward", "MLP.forward (no grad)"),
        (L, "forward", "L.forward"),
        (L, "_forward_triton", "L._forward_triton"),
        (L, "choose_path", "L.choose_path"),
        (L, "row_groups", "L.row_groups"),
        (L, "unfused_route", "L.unfused_route"),
        (L, "wide_decode_config", "L.wide_decode_config"),
        (L, "_forward_ws", "L._forward_ws"),
        (L, "launch_config", "L.launch_config"),
        (L, "gemv_config", "L.gemv_config"),
        (L, "adjust_config", "L.adjust_config"),
        (L, "_host_descriptors", "L._host_descriptors"),
        (L, "_x_rows", "L._x_rows"),
        (L, "needs_int64", "L.needs_int64"),
        (L, "decode_split_warps", "L.decode_split_warps"),
        (L, "_padded_rows", "L._padded_rows"),
        (L, "_decode_tma_ok", "L._decode_tma_ok"),
        (C, "use_triton", "C.use_triton"),
        (torch.nn.functional, "silu", "F.silu"),
    ):
        tr.wrap(owner, attr, label)
    try:  # the compiled-kernel cache of session 31 (absent from earlier trees)
        from flash_swiglu.ops import _launch

        tr.wrap(_launch, "launch", "_launch.launch (all launches through it)")
    except ImportError:
        pass
    for cls in {type(W.glu_forward_ws_kernel), type(W.mlp_backward_ws_kernel)} - {J.JITFunction}:
        if "run" in cls.__dict__:
            tr.wrap(cls, "run", f"{cls.__name__}.run")
    return tr


def _host_and_wall_us(fn, calls: int, idle: bool) -> tuple[float, float]:
    """``calls`` calls of ``fn`` (the GPU synchronised before each if ``idle``, and after the
    last): the host's time per call inside ``fn`` and the wall time per call, in us."""
    total = 0.0
    t_all = time.perf_counter()
    for _ in range(calls):
        if idle:
            _sync()
        t0 = time.perf_counter()
        fn()
        total += time.perf_counter() - t0
    _sync()
    return 1e6 * total / calls, 1e6 * (time.perf_counter() - t_all) / calls


def _untraced_then_traced(tr: _Tracer, step, steps: int, idle: bool) -> dict:
    """``steps`` calls of ``step`` untraced, then as many traced (the GPU idle at each start
    if ``idle``): host and wall time per step (us) and the traced functions' shares. (The
    backward-start mark of ``trace``, reset by the caller, averages over both runs.)"""
    walls = []
    for traced in (False, True):
        tr.on = traced
        tr.reset()
        walls.append(_host_and_wall_us(step, steps, idle))
    return {"host_us": walls[0][0], "wall_us": walls[0][1], "traced_host_us": walls[1][0],
            "parts": tr.per_step(steps)}  # fmt: skip


def trace(out: Path) -> None:
    import triton
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP
    from flash_swiglu.ops import mlp as MLP

    hidden, inter = (32, 64) if CPU else (1024, 2816)
    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=hidden, intermediate_size=inter)
    ref = LlamaMLP(cfg).to(DEV, DTYPE)
    ours = SwiGLUMLP.from_module(ref)
    tr = _wrap_all()
    tr.wrap(MLP._MLPFunction, "forward", "_MLPFunction.forward", static=True)
    tr.wrap(MLP._MLPFunction, "backward", "_MLPFunction.backward", static=True)
    handoff = [0.0, 0]
    started = [0.0]
    inner_bwd = MLP._MLPFunction.__dict__["backward"].__func__

    def bwd_mark(ctx, dy):
        handoff[0] += time.perf_counter() - started[0]
        handoff[1] += 1
        return inner_bwd(ctx, dy)

    MLP._MLPFunction.backward = staticmethod(bwd_mark)  # tr.restore() puts the original back
    results: dict = {"shape": {"hidden": hidden, "intermediate": inter},
                     "torch": torch.__version__, "triton": triton.__version__,
                     "device": "cpu" if CPU else torch.cuda.get_device_name()}  # fmt: skip
    say(f"trace: SwiGLUMLP / LlamaMLP at hidden {hidden}, MLP {inter}, bf16 (us per step)")
    for m, idle in ((16, True), (8, False)) if CPU else ((8192, True), (256, False)):
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=True)
        dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        for name, mod in (("SwiGLUMLP", ours), ("LlamaMLP", ref)):
            for phase in ("fwd", "fwd+bwd"):
                steps = 3 if CPU else 100

                def step(mod=mod, phase=phase):
                    y = mod(x)
                    if phase == "fwd+bwd":
                        started[0] = time.perf_counter()
                        y.backward(dy)

                tr.on = False
                for _ in range(1 if CPU else 10):
                    step()
                _sync()
                handoff[0], handoff[1] = 0.0, 0
                row = _untraced_then_traced(tr, step, steps, idle)
                key = f"{name} {phase} m={m} {'idle' if idle else 'back-to-back'}"
                if handoff[1]:
                    row["backward_start_delay_us"] = 1e6 * handoff[0] / handoff[1]
                results[key] = row
                say(f"== {key}: host {row['host_us']:.1f} (traced {row['traced_host_us']:.1f}), "
                    f"wall {row['wall_us']:.1f}"
                    + (f", backward starts {row['backward_start_delay_us']:.1f} after"
                       if "backward_start_delay_us" in row else ""))  # fmt: skip
                for label, v in sorted(row["parts"].items(), key=lambda kv: -kv[1]["us"]):
                    say(f"   {label:40} {v['us']:8.1f} us  {v['calls']:5.1f} calls")
    tr.restore()
    (out / "trace.json").write_text(json.dumps(results, indent=1))


def trace_infer(out: Path) -> None:
    """``trace`` for inference (no gradient): ``SwiGLUMLP`` against ``LlamaMLP`` at the
    example's MLP and Llama-3.2-1B's, 1 to 8192 rows; back to back below 2048 rows (the host
    bounds the step), with the GPU idle at each step's start from 2048."""
    import triton
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP

    tr = _wrap_all()
    results: dict = {"torch": torch.__version__, "triton": triton.__version__,
                     "device": "cpu" if CPU else torch.cuda.get_device_name()}  # fmt: skip
    shapes = (("tiny", 32, 64),) if CPU else (("example", 1024, 2816), ("1B", 2048, 8192))
    counts = (1, 8) if CPU else (1, 8, 64, 256, 2048, 8192)
    for shape, hidden, inter in shapes:
        torch.manual_seed(0)
        ref = LlamaMLP(LlamaConfig(hidden_size=hidden, intermediate_size=inter)).to(DEV, DTYPE)
        ours = SwiGLUMLP.from_module(ref)
        for m in counts:
            x = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
            idle = m >= 2048
            for name, mod in (("SwiGLUMLP", ours), ("LlamaMLP", ref)):
                steps = 3 if CPU else 100

                def step(mod=mod):
                    with torch.no_grad():
                        mod(x)

                tr.on = False
                for _ in range(1 if CPU else 10):
                    step()
                _sync()
                row = _untraced_then_traced(tr, step, steps, idle)
                key = f"{shape} {name} no-grad m={m} {'idle' if idle else 'back-to-back'}"
                results[key] = row
                say(f"== {key}: host {row['host_us']:.1f} (traced {row['traced_host_us']:.1f}), "
                    f"wall {row['wall_us']:.1f}")  # fmt: skip
                for label, v in sorted(row["parts"].items(), key=lambda kv: -kv[1]["us"]):
                    if v["us"] >= 2.0:
                        say(f"   {label:40} {v['us']:8.1f} us  {v['calls']:5.1f} calls")
    tr.restore()
    (out / "trace_infer.json").write_text(json.dumps(results, indent=1))


def ab(out: Path) -> None:
    import triton
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP, swiglu_linear
    from flash_swiglu.kernels import ws_mlp as W
    from flash_swiglu.ops import _launch
    from flash_swiglu.ops import train as T

    env = _launch.FAST_ENV
    rounds, block = (2, 3) if CPU else (10, 50)
    results: dict = {"torch": torch.__version__, "triton": triton.__version__, "items": {},
                     "device": "cpu" if CPU else torch.cuda.get_device_name()}  # fmt: skip
    mods = {}
    for shape, hidden, inter in (("example", 1024, 2816), ("1B", 2048, 8192)):
        if CPU:
            hidden, inter = 32, 64
        torch.manual_seed(0)
        ref = LlamaMLP(LlamaConfig(hidden_size=hidden, intermediate_size=inter)).to(DEV, DTYPE)
        mods[shape] = (ref, SwiGLUMLP.from_module(ref), hidden, inter)

    def steps_of(shape, m, grad):
        ref, ours, hidden, _ = mods[shape]
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE, requires_grad=grad)
        dy = torch.randn(m, hidden, device=DEV, dtype=DTYPE)

        def make(mod):
            if grad:
                return lambda: mod(x).backward(dy)

            def step():
                with torch.no_grad():
                    mod(x)

            return step

        return make(ours), make(ref)

    items = [("1B no-grad m=8", "1B", 8, False, False), ("1B no-grad m=1", "1B", 1, False, False),
             ("example no-grad m=8", "example", 8, False, False),
             ("example fwd+bwd m=256", "example", 256, True, False),
             ("1B fwd+bwd m=256", "1B", 256, True, False),
             ("example fwd+bwd m=8192 (GPU idle at each start)", "example", 8192, True, True),
             ("1B no-grad m=2048 (GPU idle at each start)", "1B", 2048, False, True)]  # fmt: skip
    say(f"ab: host us per step, median of {rounds} rounds of {block}-step blocks")
    say(f"{'item':50} {'fast':>8} {'triton':>8} {'Llama':>8} {'fast/triton':>12}")
    for name, shape, m, grad, idle in items:
        ours, ref = steps_of(shape, m, grad)
        variants = {"fast": ("1", ours), "triton": ("0", ours), "Llama": ("1", ref)}
        per = {v: [] for v in variants}
        for _, (flag, fn) in variants.items():
            os.environ[env] = flag
            for _ in range(3):
                fn()
        _sync()
        order = list(variants)
        for r in range(rounds):
            for v in order[r % 3 :] + order[: r % 3]:
                flag, fn = variants[v]
                os.environ[env] = flag
                per[v].append(_host_and_wall_us(fn, block, idle)[0])
        os.environ[env] = "1"
        ratios = [a / b for a, b in zip(per["fast"], per["triton"], strict=True)]
        row = {v: statistics.median(t) for v, t in per.items()}
        row["fast/triton (median of rounds)"] = statistics.median(ratios)
        row["rounds"] = per
        results["items"][name] = row
        say(f"{name:50} {row['fast']:8.1f} {row['triton']:8.1f} {row['Llama']:8.1f} "
            f"{row['fast/triton (median of rounds)']:12.3f}")  # fmt: skip

    # Single launches, fast and Triton's, alternating.
    ref, ours, hidden, inter = mods["example"]
    m = 4 if CPU else 256
    x = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
    wg, wu = ours.gate_proj.weight.detach(), ours.up_proj.weight.detach()
    h, g, u = (torch.empty(m, inter, device=DEV, dtype=DTYPE) for _ in range(3))
    a, lim = 1.702, 7.0
    singles = {
        "T.split_epilogue (elementwise kernel)": lambda: T.split_epilogue(
            g, u, h, g, u, h, "silu", a, lim
        ),
        "swiglu_linear m=8 (decode kernel)": lambda: swiglu_linear(x[:8], wg, wu),
    }
    if not CPU:
        cfg = T.ws_config(DTYPE, x.device, "silu", m, "forward_saving_ws", (inter, hidden))
        if cfg is not None:
            singles["W.glu_forward_ws (Gluon)"] = lambda: W.glu_forward_ws(
                x, wg, wu, None, None, h, g, u, activation="silu", alpha=a, limit=lim, config=cfg
            )
    for name, fn in singles.items():
        per = {"1": [], "0": []}
        for flag in ("1", "0"):
            os.environ[env] = flag
            fn()
        for r in range(rounds):
            for flag in ("1", "0") if r % 2 == 0 else ("0", "1"):
                os.environ[env] = flag
                _sync()
                per[flag].append(_host_and_wall_us(fn, block, idle=False)[0])
        os.environ[env] = "1"
        ratios = [a / b for a, b in zip(per["1"], per["0"], strict=True)]
        row = {"fast": statistics.median(per["1"]), "triton": statistics.median(per["0"]),
               "fast/triton (median of rounds)": statistics.median(ratios),
               "rounds": per}  # fmt: skip
        results["items"][name] = row
        say(f"{name:50} {row['fast']:8.1f} {row['triton']:8.1f} {'':8} "
            f"{row['fast/triton (median of rounds)']:12.3f}")  # fmt: skip
    (out / "ab.json").write_text(json.dumps(results, indent=1))


def generate(out: Path) -> None:
    import triton
    from transformers import LlamaConfig, LlamaForCausalLM

    from flash_swiglu.integrations.transformers import patch_hf_model, unpatch_hf_model
    from flash_swiglu.ops import _launch

    env = _launch.FAST_ENV
    size = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=512) if CPU else dict(
                hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                num_attention_heads=32, num_key_value_heads=8, vocab_size=32000)  # fmt: skip
    new_tokens, rounds = (4, 1) if CPU else (64, 5)
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**size)).to(DEV, DTYPE).eval()
    prompt = torch.randint(0, size["vocab_size"], (1, 32), device=DEV)

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  do_sample=False, pad_token_id=0)  # fmt: skip

    def variant(name: str) -> torch.Tensor:
        patched = name != "unpatched"
        if patched:
            patch_hf_model(model)
        os.environ[env] = "0" if name == "patched, Triton's launch" else "1"
        _sync()
        t0 = time.perf_counter()
        toks = run()
        _sync()
        dt = time.perf_counter() - t0
        if patched:
            unpatch_hf_model(model)
        os.environ[env] = "1"
        times[name].append(new_tokens / dt)
        return toks[0, prompt.shape[1] :]

    names = ["unpatched", "patched, launch cache", "patched, Triton's launch"]
    times: dict[str, list[float]] = {n: [] for n in names}
    outs = {n: variant(n) for n in names}  # warm-up, compiles
    for n in names:
        times[n].clear()
    for r in range(rounds):
        for n in names[r % 3 :] + names[: r % 3]:
            outs[n] = variant(n)
    same_cache = torch.equal(outs["patched, launch cache"], outs["patched, Triton's launch"])
    agree = (outs["unpatched"] == outs["patched, launch cache"]).float().mean().item()
    row = {n: statistics.median(t) for n, t in times.items()}
    results = {"torch": torch.__version__, "triton": triton.__version__, "config": size,
               "device": "cpu" if CPU else torch.cuda.get_device_name(),
               "new_tokens": new_tokens, "rounds": times, "median_tokens_per_s": row,
               "cache on and off identical": same_cache,
               "patched tokens equal to unpatched": agree}  # fmt: skip
    say(f"generate: 1B-shaped LlamaForCausalLM, batch 1, {new_tokens} new tokens, greedy, "
        f"median of {rounds} rounds (tokens/s)")  # fmt: skip
    for n in names:
        say(f"  {n:28} {row[n]:8.1f}  ({row[n] / row['unpatched']:.3f}x unpatched)")
    say(f"  cache on / off: {row[names[1]] / row[names[2]]:.3f}; tokens identical: {same_cache};"
        f" patched tokens equal to unpatched: {agree:.3f}")  # fmt: skip
    (out / "generate.json").write_text(json.dumps(results, indent=1))


STAGES = {"launch": launch, "trace": trace, "trace-infer": trace_infer, "ab": ab,
          "generate": generate}  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stages", nargs="+", choices=tuple(STAGES))
    p.add_argument("--out", type=Path, default=Path("/tmp/out/explore"))
    a = p.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    for stage in a.stages:
        STAGES[stage](a.out)


if __name__ == "__main__":
    sys.exit(main())
