"""Session 14 explorations for the H200: why some large-token projections ran below the cuBLAS
product in session 14's first call, and where the host time of the fused elementwise GLU
goes.

    PYTHONPATH=src python scripts/explore_session14.py STAGE... --out DIR

(stages: large, hostparts)

- ``large``: run ``h200-s13-linear-bf16-large-tokens`` (commit ``b56b839``) put the fused
  projection at 0.925 / 0.889 of the cuBLAS product on Llama-3.2-1B at 8192 / 16384 tokens and
  0.873 on Qwen2.5-7B at 2048 (slower than eager there), with wide spreads (1B at 8192: p20
  0.758 ms, median 0.857, cuBLAS 0.792). Those cases and two steady ones (Llama-3-8B at 2048,
  Qwen at 8192), five rounds each in turn: the launcher (the Gluon ``ws`` entry), the Triton
  TMA kernel's entry (``FLASH_SWIGLU_GLUON=0``), the cuBLAS product and eager, while
  ``nvidia-smi`` samples the SM clock and the board power every 50 ms, so each timing can be
  set against the clock it ran at. -> ``large.json``, ``smi.csv``.

- ``hostparts``: the example's MLP at 512 tokens, where a step is bound by the host. Session 14's
  ``host3`` put the host time of one forward + backward at 484 us for eager and 1032 us with
  the fused elementwise kernel between the same ``nn.Linear``s, though the composite issues
  fewer operations. The host time of each part on its own (the elementwise forward and
  backward with and without autograd, the bare launches, eager's ``silu * mul``), then a
  ``cProfile`` of 50 composite steps. -> ``hostparts.json``, ``hostparts_profile.txt``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session11 as S11
import explore_session12 as S12

from flash_swiglu import reference
from flash_swiglu.bench.timing import measure_graph
from flash_swiglu.ops import linear as L

DT = torch.bfloat16
ACT = S11.ACT
say = S11.say
MODELS = {"1b": (2048, 8192), "8b": (4096, 14336), "qwen7b": (3584, 18944)}
CASES = [("1b", 8192), ("1b", 16384), ("qwen7b", 2048), ("qwen7b", 2000), ("8b", 2048),
         ("qwen7b", 8192)]  # fmt: skip


def _gluon_off(f):
    def call():
        old = os.environ.get("FLASH_SWIGLU_GLUON")
        os.environ["FLASH_SWIGLU_GLUON"] = "0"
        try:
            return f()
        finally:
            if old is None:
                del os.environ["FLASH_SWIGLU_GLUON"]
            else:
                os.environ["FLASH_SWIGLU_GLUON"] = old

    return call


@contextlib.contextmanager
def clock_samples(path: Path):
    """``nvidia-smi`` writing the time, SM clock, board power and temperature to ``path`` (CSV)
    every 50 ms while the block runs."""
    with open(path, "w") as log:
        smi = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu",
             "--format=csv,noheader,nounits", "-lms", "50"],
            stdout=log, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            yield
        finally:
            smi.terminate()


def large(out: Path) -> list[dict]:
    with clock_samples(out / "smi.csv"):
        return _large(out)


def _large(out: Path) -> list[dict]:
    rows = []
    for name, m in CASES:
        k, n = MODELS[name]
        wg = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wu = torch.randn(n, k, device="cuda", dtype=DT) / k**0.5
        wcat = torch.cat([wg, wu])
        x = torch.randn(m, k, device="cuda", dtype=DT)
        ref = reference.swiglu_linear_reference(x.double(), wg.double(), wu.double())
        launcher = lambda: L._forward_triton(x, wg, wu, None, None, *ACT)
        calls = {
            "launcher": launcher,
            "triton entry": _gluon_off(launcher),
            "cublas product": lambda: x @ wcat.T,
            "eager": lambda: S11._eager(x, wg, wu),
        }
        ok = {label: S11._ok(calls[label](), ref) for label in ("launcher", "triton entry")}
        del ref
        times = {label: [] for label in calls}
        spans = {label: [] for label in calls}
        for _ in range(5):
            for label, f in calls.items():
                t0 = time.time()
                times[label].append(measure_graph(f).median_ms)
                spans[label].append((t0, time.time()))
        rows.append(dict(model=name, m=m, n=n, k=k, ok=ok, ms=times, spans=spans))
        (out / "large.json").write_text(json.dumps(rows, indent=1))
        best = {label: min(t) for label, t in times.items()}
        cub = best["cublas product"]
        cells = ", ".join(f"{label} {min(t):.3f}-{max(t):.3f}" for label, t in times.items())
        say(f"large {name:6s} M={m:5d} ms {cells}; best/cuBLAS launcher "
            f"{cub / best['launcher']:.3f} triton {cub / best['triton entry']:.3f}; "
            f"wrong: {[label for label, good in ok.items() if not good]}")  # fmt: skip
    return rows


def hostparts(out: Path) -> dict:
    import flash_swiglu
    from flash_swiglu.ops import elementwise as E

    k, n, m = 1024, 2816, 512
    dev = "cuda"
    gate = torch.nn.Linear(k, n, bias=False, device=dev, dtype=DT)
    up = torch.nn.Linear(k, n, bias=False, device=dev, dtype=DT)
    down = torch.nn.Linear(n, k, bias=False, device=dev, dtype=DT)
    params = [*gate.parameters(), *up.parameters(), *down.parameters()]
    x = torch.randn(m, k, device=dev, dtype=DT, requires_grad=True)
    dy = torch.randn(m, k, device=dev, dtype=DT)
    g = torch.randn(m, n, device=dev, dtype=DT, requires_grad=True)
    u = torch.randn(m, n, device=dev, dtype=DT, requires_grad=True)
    dout = torch.randn(m, n, device=dev, dtype=DT)
    gd, ud = g.detach(), u.detach()

    def clear():
        for t in (x, g, u, *params):
            t.grad = None

    def eager_fb():
        clear()
        down(F.silu(gate(x)) * up(x)).backward(dy)

    def composite_fb():
        clear()
        down(flash_swiglu.swiglu(gate(x), up(x))).backward(dy)

    def eager_f():
        return down(F.silu(gate(x)) * up(x))

    def composite_f():
        return down(flash_swiglu.swiglu(gate(x), up(x)))

    def glu_eager_fb():
        clear()
        (F.silu(g) * u).backward(dout)

    def glu_ours_fb():
        clear()
        flash_swiglu.swiglu(g, u).backward(dout)

    def glu_ours_f():
        return flash_swiglu.swiglu(g, u)

    def glu_eager_f():
        return F.silu(g) * u

    def glu_ours_nograd():
        with torch.no_grad():
            return flash_swiglu.swiglu(gd, ud)

    calls = {
        "eager fwd+bwd": eager_fb,
        "composite fwd+bwd": composite_fb,
        "eager fwd (grad on)": eager_f,
        "composite fwd (grad on)": composite_f,
        "silu*mul fwd+bwd (leaves g, u)": glu_eager_fb,
        "flash_swiglu.swiglu fwd+bwd (leaves g, u)": glu_ours_fb,
        "silu*mul fwd (grad on)": glu_eager_f,
        "flash_swiglu.swiglu fwd (grad on)": glu_ours_f,
        "flash_swiglu.swiglu fwd (no_grad)": glu_ours_nograd,
        "E._fwd_triton (bare launcher)": lambda: E._fwd_triton(gd, ud, *ACT),
        "E._bwd_triton (bare launcher)": lambda: E._bwd_triton(gd, ud, dout, *ACT),
        "torch.empty_like x2": lambda: (torch.empty_like(gd), torch.empty_like(gd)),
        "torch.mm": lambda: torch.mm(gd, dout.T),
    }
    result = {}
    for label, f in calls.items():
        result[label] = S11._host_us(f)
        say(f"hostparts {label:45s} {result[label]:7.1f} us")
    clear()
    (out / "hostparts.json").write_text(json.dumps(result, indent=1))
    profile = S11.profile_text(composite_fb, rows=40, orders=("tottime", "cumulative"))
    (out / "hostparts_profile.txt").write_text(profile)
    return result


def main() -> None:
    S12.run_stages({"large": large, "hostparts": hostparts}, ["hostparts", "large"])


if __name__ == "__main__":
    main()
