"""``benchmark-swiglu --op mlp`` (the MLP training step) on tiny shapes, and its README table.

On the CPU the kernels run in Triton's interpreter (conftest sets ``TRITON_INTERPRET=1``);
the shapes are tiny. ``torch.compile`` and Liger (CUDA only) are left out.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from flash_swiglu import reference
from flash_swiglu.bench import cli, timing
from flash_swiglu.bench.cases.mlp import EagerMLP, MLPCase
from flash_swiglu.bench.summary import load_rows, render_summary

MLP_FIELDS = {
    "op", "case", "pass", "backend", "activation", "dtype", "model", "tokens", "hidden",
    "intermediate", "shape", "median_ms", "p20_ms", "p80_ms", "median_ms_repeat", "host_ms",
    "flops", "tflops", "gemm_tflops", "frac_gemm_ceiling", "speedup_vs_eager", "peak_mib",
    "max_abs_err", "err_torch", "passed", "skipped", "error", "module", "timing", "gpu",
    "torch", "triton", "commit", "timestamp", "command",
}  # fmt: skip


def run_mlp(tmp_path: Path, device: str, *args: str) -> tuple[int, list[dict]]:
    out = tmp_path / "rows.json"
    status = cli.main(["--op", "mlp", "--device", device, *args, "--json", str(out)])
    return status, json.loads(out.read_text())


def test_mlp_rows_and_fields(tmp_path, device, capsys):
    k, n, m = 32, 48, 17
    args = ("--shape", f"{k},{n}", "--tokens", str(m), "--dtype", "float32")
    status, rows = run_mlp(tmp_path, device, *args, "--backend", "triton,triton-recompute")
    assert status == 0
    assert [(r["pass"], r["backend"]) for r in rows] == [
        (p, b) for p in ("fwd", "bwd", "fwd+bwd") for b in ("torch", "triton", "triton-recompute")
    ]
    eager_ms = {r["pass"]: r["median_ms"] for r in rows if r["backend"] == "torch"}
    for row in rows:
        ms = row["median_ms"]
        assert row.keys() >= MLP_FIELDS
        assert row["op"] == "mlp" and row["model"] == "custom" and row["shape"] == [m, k, n]
        assert row["flops"] == {"fwd": 6, "bwd": 12, "fwd+bwd": 18}[row["pass"]] * m * n * k
        assert row["tflops"] == pytest.approx(row["flops"] / ms / 1e9)
        assert row["speedup_vs_eager"] == pytest.approx(eager_ms[row["pass"]] / ms)
        assert 0 < row["p20_ms"] <= ms <= row["p80_ms"] and row["median_ms_repeat"] > 0
        assert row["passed"] is True and row["error"] is None and row["skipped"] is None
        assert row["max_abs_err"] < 1e-4 and row["err_torch"] < 1e-4
        if device == "cpu":
            assert row["peak_mib"] is None and row["timing"] == "cpu wall clock"
        else:
            assert row["peak_mib"] > 0 and row["timing"].startswith("cuda events")
    modules = {r["backend"]: r["module"] for r in rows}
    assert modules["triton"] == modules["triton-recompute"] == "flash_swiglu.modules.SwiGLUMLP"
    assert modules["torch"].endswith(("LlamaMLP", "EagerMLP"))
    printed = capsys.readouterr().out
    assert "peak MiB" in printed and "GEMM ceiling" in printed and "18 per step" in printed


def test_mlp_float16_and_liger_skipped(tmp_path, device):
    args = ("--shape", "32,48", "--tokens", "70", "--dtype", "float16", "--pass", "fwd+bwd")
    backends = "triton-recompute,liger,liger-fused"
    status, rows = run_mlp(tmp_path, device, *args, "--backend", backends)
    assert status == 0
    by_backend = {r["backend"]: r for r in rows}
    assert by_backend["torch"]["passed"] and by_backend["triton-recompute"]["passed"]
    assert by_backend["triton-recompute"]["dtype"] == "float16"
    if device == "cpu":
        for liger in ("liger", "liger-fused"):
            assert by_backend[liger]["skipped"] in (
                "liger_kernel not installed",
                "Liger-Kernel needs a CUDA device",
            )
            assert by_backend[liger]["median_ms"] is None and by_backend[liger]["passed"] is None


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; the gradient 1% too large (a wrong backward, a right forward)."""

    @staticmethod
    def forward(ctx, t):
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        return grad * 1.01


class _Once(torch.autograd.Function):
    """Identity whose backward refuses to run twice on one graph, as a backward that
    overwrites what its forward saved (Liger's LigerMLPFunction) would compute garbage."""

    @staticmethod
    def forward(ctx, t):
        ctx.done = False
        return t.view_as(t)

    @staticmethod
    def backward(ctx, grad):
        if ctx.done:
            raise RuntimeError("the same graph was backpropagated twice")
        ctx.done = True
        return grad


class _Wrapped(EagerMLP):
    def __init__(self, hidden, intermediate, activation, fn):
        super().__init__(hidden, intermediate, activation)
        self.fn = fn

    def forward(self, x):
        gate = self.fn.apply(self.gate_proj(x))
        return self.down_proj(reference.act_glu(gate, self.up_proj(x), self.activation))


def _patch_triton(monkeypatch, fn):
    original = MLPCase.module

    def module(self, backend, device):
        if backend == "triton":
            module = _Wrapped(self.hidden, self.intermediate, self.activation, fn)
            return module.to(device=device, dtype=self.dtype)
        return original(self, backend, device)

    monkeypatch.setattr(MLPCase, "module", module)


def test_mlp_wrong_backward_fails_only_its_passes(tmp_path, device, monkeypatch):
    _patch_triton(monkeypatch, _ScaleGrad)
    args = ("--shape", "16,24", "--tokens", "9", "--dtype", "float32", "--backend", "triton")
    status, rows = run_mlp(tmp_path, device, *args)
    assert status == 1
    assert {(r["pass"], r["backend"]): r["passed"] for r in rows} == {
        ("fwd", "torch"): True,
        ("fwd", "triton"): True,  # the forward is right
        ("bwd", "torch"): True,
        ("bwd", "triton"): False,
        ("fwd+bwd", "torch"): True,
        ("fwd+bwd", "triton"): False,
    }


def test_mlp_no_graph_is_backpropagated_twice(tmp_path, device, monkeypatch):
    _patch_triton(monkeypatch, _Once)
    args = ("--shape", "16,24", "--tokens", "9", "--dtype", "float32", "--backend", "triton")
    status, rows = run_mlp(tmp_path, device, *args)
    assert status == 0
    assert all(r["passed"] and r["error"] is None and r["median_ms"] for r in rows)


def test_mlp_inputs_and_counts():
    case = MLPCase("custom", 256, 512, 64, torch.float32)
    (x, w_gate, w_up, w_down), dout = case.make_inputs(
        torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    assert x.shape == dout.shape == (1, 64, 256)
    assert w_gate.shape == w_up.shape == (512, 256) and w_down.shape == (256, 512)
    assert x.std().item() == pytest.approx(1.0, rel=0.05)
    assert w_gate.std().item() == pytest.approx(256**-0.5, rel=0.05)
    assert w_down.std().item() == pytest.approx(512**-0.5, rel=0.05)
    mnk = 64 * 512 * 256
    assert [case.flops(p) for p in ("fwd", "bwd", "fwd+bwd")] == [6 * mnk, 12 * mnk, 18 * mnk]
    xb, wb = 64 * 256 * 4, 3 * 512 * 256 * 4  # [M, K] and the three weights, float32
    assert case.ideal_bytes("fwd") == (xb + wb, xb)
    assert case.ideal_bytes("bwd") == (2 * xb + wb, xb + wb)
    assert case.ideal_bytes("fwd+bwd") == (2 * xb + wb, 2 * xb + wb)


def test_measure_steps_times_the_call_not_the_setup():
    calls = []
    setup = lambda: (calls.append("setup"), time.sleep(0.2))
    result, host = timing.measure_steps(lambda: calls.append("call"), torch.device("cpu"), setup)
    assert calls == ["setup", "call"] * timing.STEP_CPU_REPS
    assert result.median_ms < 100 and host is None


@pytest.mark.parametrize(
    "args",
    [
        ["--op", "mlp", "--rows", "4"],
        ["--op", "mlp", "--sweep"],
        ["--op", "mlp", "--profile"],
        ["--op", "mlp", "--layout", "concat"],
        ["--op", "mlp", "--model", "gpt-5"],
        ["--op", "mlp", "--shape", "8,8", "--model", "llama-3-8b"],
        ["--op", "mlp", "--step-ms", "0"],
        ["--op", "mlp", "--step-ms", "nan"],
        ["--op", "mlp", "--step-ms", "inf"],
        ["--op", "linear", "--step-ms", "2000"],  # no training steps there
        ["--step-ms", "2000"],
    ],
)
def test_mlp_options_rejected(args):
    with pytest.raises(SystemExit):
        cli.main(["--device", "cpu", *args])


def _mlp_row(run: str, ts: str, backend: str, pass_: str, tokens: int, ms: float, **extra):
    row = {"op": "mlp", "pass": pass_, "backend": backend, "device": "cuda", "sweep": False}
    row.update(case=f"silu/bfloat16/llama-3-8b/M{tokens}", model="llama-3-8b", tokens=tokens)
    row.update(dtype="bfloat16", activation="silu", median_ms=ms, passed=True, skipped=None)
    row.update(timestamp=ts, gpu="NVIDIA H200", copy_bw_gbps=4270.0, commit="abc", run=run)
    return {**row, **extra}


def test_summary_mlp_section(tmp_path):
    new, old = "2026-11-23T00:00:00Z", "2026-11-01T00:00:00Z"
    rows = []
    for m, eager in ((4096, 6.96), (8192, 14.19)):
        for pass_, share in (("fwd+bwd", 1.0), ("fwd", 1 / 3)):
            t = eager * share
            common = {"speedup_vs_eager": 1.0, "peak_mib": 704.0 * m / 4096}
            rows.append(_mlp_row("mlp", new, "torch", pass_, m, t, **common))
            rows.append(
                _mlp_row(
                    "mlp", new, "triton", pass_, m, t / 1.1, speedup_vs_eager=1.1, peak_mib=500.0
                )
            )
            rows.append(_mlp_row("mlp", new, "liger-fused", pass_, m, None, skipped="no Liger"))
            rows.append(_mlp_row("mlp", new, "compile", pass_, m, t, passed=False))
    rows.append(_mlp_row("old", old, "triton", "fwd+bwd", 4096, 1.0, speedup_vs_eager=9.0))
    rows.append(_mlp_row("cpu", new, "triton", "fwd", 16, 1.0, device="cpu"))
    results = tmp_path / "results"
    for run in ("mlp", "old", "cpu"):
        (results / run).mkdir(parents=True)
        own = [r for r in rows if r["run"] == run]
        (results / run / "rows.json").write_text(json.dumps(own))
    table = render_summary(load_rows(results))
    lines = [x for x in table.splitlines() if x.startswith("| llama-3-8b")]
    assert [(c[2], c[3]) for c in (_cells(x) for x in lines)] == [
        ("fwd+bwd", "4096"),
        ("fwd+bwd", "8192"),
        ("fwd", "4096"),
        ("fwd", "8192"),
    ]
    first = _cells(lines[0])
    assert first[:2] == ["llama-3-8b", "bfloat16"]
    assert first[4] == "6.96 ms · 1.00x · 704 MiB"  # eager
    assert first[5] == "FAIL"  # torch.compile failed its check
    assert first[7] == "-"  # LigerMLP skipped
    assert first[8] == "6.33 ms · 1.10x · 500 MiB"  # flash-swiglu
    assert first[-1] == "`mlp`"
    assert "9.00x" not in table and "`cpu`" not in table  # older run, CPU run left out
    assert "MLP training step" in table


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_step_ms_option(tmp_path, device, monkeypatch):
    """``--step-ms`` sets the GPU time of each round of timed steps (and the most calls one
    may take, ``STEP_MAX_REPS`` per 100 ms); the rows say so where it is not the default."""
    monkeypatch.setattr(timing, "STEP_ROUND_MS", timing.STEP_ROUND_MS)  # restored after
    assert timing.STEP_ROUND_MS == timing.STEP_ROUND_MS_DEFAULT == 100.0
    assert timing.step_note() == "" and timing.step_max_reps() == timing.STEP_MAX_REPS
    args = ("--shape", "32,48", "--tokens", "5", "--dtype", "float32", "--pass", "fwd")
    status, rows = run_mlp(tmp_path, device, *args, "--backend", "triton", "--step-ms", "2000")
    assert status == 0 and timing.STEP_ROUND_MS == 2000.0
    assert timing.step_max_reps() == 20 * timing.STEP_MAX_REPS
    assert timing.step_note() == ", rounds of 2000 ms of steps"
    if device == "cuda":
        assert all(r["timing"].endswith("rounds of 2000 ms of steps") for r in rows)
    status, rows = run_mlp(tmp_path, device, *args, "--backend", "triton")  # back to 100
    assert status == 0 and timing.STEP_ROUND_MS == 100.0 and timing.step_note() == ""


def test_mlp_timed_steps_are_checked_too(tmp_path, device, monkeypatch):
    """A module right on its first step (the one ``_check`` compares) and wrong on the steps
    that are timed fails every pass: the last timed step's output (fwd) or gradients (bwd,
    fwd+bwd) are compared with the same float64 reference."""
    import flash_swiglu

    real, calls = flash_swiglu.SwiGLUMLP.forward, [0]

    def first_right(self, x):
        calls[0] += 1
        out = real(self, x)
        return out if calls[0] == 1 else out * 2

    monkeypatch.setattr(flash_swiglu.SwiGLUMLP, "forward", first_right)
    args = ("--shape", "16,24", "--tokens", "9", "--dtype", "float32", "--backend", "triton")
    status, rows = run_mlp(tmp_path, device, *args)
    assert status == 1
    for r in rows:
        assert r["passed"] == (r["backend"] == "torch"), (r["pass"], r["backend"])
        if r["backend"] == "triton":
            assert r["timed_check"] == "the last timed step failed its check"


# --------------------------------------------------------------------- the cublas products


def test_products_backend_is_nine_products_and_nothing_else(device):
    """``cublas`` (``GemmsMLP``): a training step dispatches nine matrix products (``mm`` /
    ``addmm``) and no other computing op (views, transposes and the autograd bookkeeping
    aside), and its gradients are the formulas its docstring names, in float64."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from flash_swiglu.bench.cases.mlp import GemmsMLP

    k, n, m = 24, 40, 7
    module = GemmsMLP(k, n).to(device=device, dtype=torch.float64)
    x = torch.randn(1, m, k, device=device, dtype=torch.float64, requires_grad=True)
    dout = torch.randn(1, m, k, device=device, dtype=torch.float64)
    products, other = [], []
    free = ("view", "t", "transpose", "permute", "reshape", "_unsafe_view", "detach", "expand",
            "alias",
            "ones_like", "empty", "as_strided", "clone", "_to_copy", "copy_")  # fmt: skip

    class Count(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name in ("mm", "addmm", "bmm", "matmul"):
                products.append(name)
            elif name not in free:
                other.append(name)
            return func(*args, **(kwargs or {}))

    with Count():
        out = module(x)
        out.backward(dout)
    assert len(products) == 9, products
    assert other == [], other
    wg, wu, wd = (p.weight for p in (module.gate_proj, module.up_proj, module.down_proj))
    g = x[0] @ wg.T
    dh = dout[0] @ wd
    torch.testing.assert_close(out[0], g @ wd.T)
    torch.testing.assert_close(x.grad[0], dh @ wg + dh @ wu)
    torch.testing.assert_close(wg.grad, dh.T @ x[0])
    torch.testing.assert_close(wu.grad, dh.T @ x[0])
    torch.testing.assert_close(wd.grad, dout[0].T @ g)


def test_products_rows_and_frac_cublas(tmp_path, device, capsys):
    """The ``cublas`` rows: checked against their own products in float64 (named), and every
    row of the pass carries ``frac_cublas``, the products' time over its own."""
    args = ("--shape", "32,48", "--tokens", "17", "--dtype", "float32")
    status, rows = run_mlp(tmp_path, device, *args, "--backend", "triton,cublas")
    assert status == 0
    products = {r["pass"]: r for r in rows if r["backend"] == "cublas"}
    assert set(products) == {"fwd", "bwd", "fwd+bwd"}
    for row in rows:
        assert row["passed"] is True, row
        want = products[row["pass"]]["median_ms"] / row["median_ms"]
        assert row["frac_cublas"] == pytest.approx(want)
        against = row["checked_against"]
        assert against == ("the nine products in float64" if row["backend"] == "cublas" else None)
    assert "vs cuBLAS" in capsys.readouterr().out


def test_wrong_products_fail_their_check(tmp_path, device, monkeypatch):
    """The products' rows are checked, not assumed: a dropped ``addmm`` term in dx fails the
    backward passes only, and then no row gets a ``frac_cublas``."""
    from flash_swiglu.bench.cases import mlp as M

    real = M._NineProducts.backward

    def backward(ctx, dout):
        dx, dwg, dwu, dwd = real(ctx, dout)
        return dx * 0.5, dwg, dwu, dwd

    monkeypatch.setattr(M._NineProducts, "backward", staticmethod(backward))
    args = ("--shape", "16,24", "--tokens", "9", "--dtype", "float32", "--backend", "cublas")
    status, rows = run_mlp(tmp_path, device, *args)
    assert status == 1
    got = {(r["pass"], r["backend"]): r["passed"] for r in rows}
    assert got == {
        ("fwd", "torch"): True,
        ("fwd", "cublas"): True,
        ("bwd", "torch"): True,
        ("bwd", "cublas"): False,
        ("fwd+bwd", "torch"): True,
        ("fwd+bwd", "cublas"): False,
    }
    assert all(r["frac_cublas"] is None for r in rows if r["pass"] != "fwd")
