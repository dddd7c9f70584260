"""Session-35 exploration on the H200: the MLP backward's kernel for each activation.

    PYTHONPATH=src python scripts/explore_session35.py acts [steps] [fwd] --out DIR

Why: session 35's call 3 (``h200-session35-explore/call3``) timed the hand-off backward with
16 epilogue parts (8-column pieces, 16-byte accesses per row) at 2.19 ms against 1.54 with 8,
and session 5's kernel runs had the ping-pong kernel with 16 parts at 2.32 / 2.43 ms against
1.70 / 1.76 for the Triton kernel (``h200-session5-explore/call4``, ``call6``). The table's
ping-pong entry is launched with 16 parts for gelu_tanh and gpt-oss's GLU
(``ops.train.ws_entry``: 8 spilled in the sm_90 gate under Triton 3.9). So those two may run
a backward slower than the Triton kernel the Gluon one replaced. Gemma's MLP is gelu_tanh.

- ``acts``: Llama-3-8B shape (M=8192, N=14336, K=4096), bf16, each activation: the Triton
  kernel's entry, the table's ping-pong entry as launched, the same with 8 parts, the hand-off
  with 8 parts (session 7's ``ho128_p8``) and with 4 (SiLU, GELU and ReLU: the other two take
  at least 8, ``ws_mlp.handoff_parts``); cuBLAS's ``dy @ W_down`` once. Each checked against
  an fp32 reference (``explore_session5.kernel``'s rule). -> ``acts.json``
- ``steps``: whole MLP steps (``swiglu_mlp``, forward + backward, do_bench medians, two rounds)
  for gelu_tanh, gpt-oss's GLU and GELU at 8192 and 16384 tokens: eager (the reference's GLU), the
  committed table, the backward on the Triton kernel (the ``mlp_backward_ws`` entry's
  ``MIN_M`` out of reach) and on the 8-part hand-off. -> ``steps.json``

- ``fwd`` (written after session 35's last device call; not yet run): the forward kernels per
  activation. The Gluon forward's entries (``projection_ws``, ``forward_saving_ws``) were
  also chosen on SiLU, and its epilogue also runs on the warps that issue the other tile's
  wgmma. For Llama-3.2-1B's and Llama-3-8B's shapes at 2048 and 8192 tokens, bf16:
  ``swiglu_linear`` (the projection) and ``swiglu_mlp``'s training forward (which saves
  the pre-activation; the down projection is the same cuBLAS product in both) with the
  Gluon kernels on and off (``FLASH_SWIGLU_GLUON``), beside cuBLAS's ``x @ [Wg; Wu]^T``.
  ``do_bench`` medians (the L2 flushed before each call); outputs checked against an fp32
  reference. -> ``fwd.json``. A per-activation item in those entries (``null``: the Triton
  kernel) is the remedy where the Gluon kernel loses.

``--acts A [B ...]``: those activations only (call 7 re-ran gelu_tanh after its backward
helper went from two sigmoids to one exponential and one division, ``activations.py``).

GPU times of kernels are CUDA-graph replays with a cold L2 (``bench.timing``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

M, N, K = 8192, 14336, 4096
ALPHA, LIMIT = 1.702, 7.0
HANDOFF_P8 = dict(EPILOGUE_SPLIT=8, HANDOFF=True)
HANDOFF_P4 = dict(EPILOGUE_SPLIT=4, HANDOFF=True)
ACTS: tuple[str, ...] = ()  # --acts: these activations only (call 7: gelu_tanh, new helper)


def variants(committed: dict, activation: str) -> dict[str, dict]:
    """Name -> ``ws_mlp.mlp_backward_ws`` config, for ``activation``."""
    from flash_swiglu.ops import train as T

    # the ping-pong entry itself, without the per-activation items it carries since call 6
    pingpong = {key: v for key, v in committed.items() if key != "activations"}
    launched = T.ws_entry(pingpong, "mlp_backward_ws", activation, None)
    out = {"pp_launched": launched}
    if launched["EPILOGUE_SPLIT"] != 8:
        out["pp_p8"] = dict(launched, EPILOGUE_SPLIT=8)
    out["ho_p8"] = HANDOFF_P8
    if activation in ("silu", "gelu", "relu"):
        out["ho_p4"] = HANDOFF_P4
    return out


def acts(out: Path) -> list[str]:
    import explore_session5 as S5
    import torch

    from flash_swiglu import reference
    from flash_swiglu.bench.timing import measure_graph
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import train as T

    dt = torch.bfloat16
    committed = T.load_table(torch.cuda.get_device_name())["mlp_backward_ws"]
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
    dy, wd = r(M, K), r(K, N, sc=N**-0.5)
    g, u = r(M, N), r(M, N)
    h, dg, du = (torch.empty(M, N, device="cuda", dtype=dt) for _ in range(3))
    flops = 2 * M * N * K
    lines, rows = [], []

    def timed(act, name, fn, ref=None, config=None):
        dg.zero_()
        du.zero_()
        fn()
        torch.cuda.synchronize()
        ok = None
        if ref is not None:
            ok = S5._rel_err(dg, ref[0]) < 0.02 and S5._rel_err(du, ref[1]) < 0.02
        ms = measure_graph(fn).median_ms
        rows.append(dict(activation=act, name=name, ms=ms, tflops=flops / ms / 1e9, ok=ok,
                         config=config))  # fmt: skip
        lines.append(f"acts {act:10s} {name:12s} {ms:6.3f} ms {flops / ms / 1e9:4.0f} TF ok={ok}")
        print(lines[-1], flush=True)

    with torch.cuda.stream(torch.cuda.Stream()):
        timed("-", "cublas", lambda: dy @ wd)
        for act in ACTS or S5.ACTS:
            gf, uf = g.float(), u.float()
            ref = reference.glu_backward(gf, uf, dy.float() @ wd.float(), act, ALPHA, LIMIT)
            del gf, uf
            common = dict(activation=act, alpha=ALPHA, limit=LIMIT)
            tri = T.config("mlp_backward", dt, "tf32", act)
            timed(act, "triton", lambda: T.launch(M, N, K, dy=dy, wd=wd, g=g, u=u, h=h, dg=dg,
                                                  du=du, **common, _override=tri),
                  ref, tri)  # fmt: skip
            for name, cfg in variants(committed, act).items():
                try:
                    timed(act, name, lambda c=cfg: ws_mlp.mlp_backward_ws(
                        dy, wd, g, u, h, dg, du, **common, config=c), ref, cfg)  # fmt: skip
                except Exception as e:
                    lines.append(f"acts {act} {name}: {type(e).__name__}: {e}"[:400])
                    print(lines[-1], flush=True)
            ref = None
            torch.cuda.empty_cache()
    (out / "acts.json").write_text(json.dumps(rows, indent=1, default=str))
    return lines


def steps(out: Path) -> list[str]:
    import explore_session5 as S5
    import torch

    import flash_swiglu
    from flash_swiglu import reference
    from flash_swiglu.kernels import ws_mlp
    from flash_swiglu.ops import train as T

    dt = torch.bfloat16
    real_table = T.load_table
    committed = real_table(torch.cuda.get_device_name())["mlp_backward_ws"]
    handoff = dict(ws_mlp.HANDOFF_CONFIG, **HANDOFF_P8, MIN_M=committed["MIN_M"])
    routes = {
        "committed": {},
        "triton_bwd": {"mlp_backward_ws": dict(committed, MIN_M=1 << 40)},
        "handoff_p8": {"mlp_backward_ws": handoff},
    }

    def use(entries: dict) -> None:
        T.load_table = lambda gpu: {**real_table(gpu), **entries}
        T.L.clear_plans()

    lines, rows = [], []
    try:
        for act in ACTS or ("gelu_tanh", "swiglu_oai", "gelu"):
            for mm in (8192, 16384):
                rr = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
                dy = rr(mm, K)
                shapes = ((mm, K, 1.0), (N, K, K**-0.5), (N, K, K**-0.5), (K, N, N**-0.5))
                params = [rr(a, b, sc=c).requires_grad_() for a, b, c in shapes]

                def eager_step(act=act):
                    for t in params:
                        t.grad = None
                    xx, a_, b_, c_ = params
                    hh = reference.act_glu(xx @ a_.t(), xx @ b_.t(), act, ALPHA, LIMIT)
                    (hh @ c_.t()).backward(dy)

                def fused_step(act=act):
                    for t in params:
                        t.grad = None
                    flash_swiglu.swiglu_mlp(*params, activation=act).backward(dy)

                grads = {}
                for name, entries in routes.items():
                    use(entries)
                    fused_step()
                    grads[name] = [t.grad.clone() for t in params]
                for name in routes:
                    errs = [S5._rel_err(a, b) for a, b in zip(grads[name], grads["triton_bwd"],
                                                              strict=True)]  # fmt: skip
                    lines.append(f"steps {act} M={mm} grads {name} vs triton_bwd: {S5._fmt(errs)}")
                    print(lines[-1], flush=True)
                grads = None
                for again in ("", " again"):
                    for name in ("eager", *routes):
                        if name != "eager":
                            use(routes[name])
                        ms, peak = S5.measure_step(eager_step if name == "eager" else fused_step)
                        rows.append(dict(activation=act, m=mm, name=name + again, ms=ms,
                                         peak_mib=peak))  # fmt: skip
                        lines.append(f"steps {act:10s} M={mm:5d} {name + again:18s} {ms:7.3f} ms "
                                     f"peak {peak:6.0f} MiB")  # fmt: skip
                        print(lines[-1], flush=True)
                params = dy = None
                torch.cuda.empty_cache()
    finally:
        T.load_table = real_table
        T.L.clear_plans()
    (out / "steps.json").write_text(json.dumps(rows, indent=1))
    return lines


FWD_SHAPES = {"1b": (2048, 8192), "8b": (4096, 14336)}  # (K, N)


def fwd(out: Path) -> list[str]:
    import os

    import explore_session5 as S5
    import torch
    from triton.testing import do_bench

    import flash_swiglu
    from flash_swiglu import reference
    from flash_swiglu.ops import train as T

    dt = torch.bfloat16
    lines, rows = [], []
    env_before = os.environ.get(T.GLUON_ENV)

    def gluon(on: bool) -> None:
        os.environ[T.GLUON_ENV] = "1" if on else "0"
        T.L.clear_plans()

    try:
        for model, (k, n) in FWD_SHAPES.items():
            r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
            wg, wu, wd = r(n, k, sc=k**-0.5), r(n, k, sc=k**-0.5), r(k, n, sc=n**-0.5)
            wcat = torch.cat((wg, wu))
            leaves = [t.clone().requires_grad_() for t in (wg, wu, wd)]  # as in training
            for mm in (2048, 8192):
                x = r(mm, k)
                xg = x.clone().requires_grad_()
                gu = (x.float() @ wcat.float().t()).split(n, dim=1)
                ms = do_bench(lambda: x @ wcat.t(), warmup=25, rep=200, return_mode="median")
                rows.append(dict(model=model, m=mm, activation="-", name="cublas", ms=ms))
                lines.append(f"fwd {model} M={mm:5d} {'-':10s} cublas       {ms:7.3f} ms")
                print(lines[-1], flush=True)
                for act in ACTS or S5.ACTS:
                    ref = reference.act_glu(gu[0], gu[1], act, ALPHA, LIMIT)
                    for on in (True, False):
                        gluon(on)
                        tag = "gluon" if on else "triton"
                        proj = lambda a=act: flash_swiglu.swiglu_linear(x, wg, wu, activation=a)
                        h = proj()
                        ok = S5._rel_err(h, ref) < 0.02
                        ms = do_bench(proj, warmup=25, rep=200, return_mode="median")
                        rows.append(dict(model=model, m=mm, activation=act, name="proj_" + tag,
                                         ms=ms, ok=ok))  # fmt: skip
                        lines.append(f"fwd {model} M={mm:5d} {act:10s} proj_{tag:7s} {ms:7.3f} ms "
                                     f"ok={ok}")  # fmt: skip
                        print(lines[-1], flush=True)
                        train = lambda a=act: flash_swiglu.swiglu_mlp(xg, *leaves, activation=a)
                        ms = do_bench(train, warmup=25, rep=200, return_mode="median")
                        rows.append(dict(model=model, m=mm, activation=act,
                                         name="mlp_fwd_" + tag, ms=ms))  # fmt: skip
                        lines.append(
                            f"fwd {model} M={mm:5d} {act:10s} mlpfwd_{tag:6s} {ms:7.3f} ms"
                        )
                        print(lines[-1], flush=True)
                    ref = None
                x = xg = gu = None
                torch.cuda.empty_cache()
    finally:
        if env_before is None:
            os.environ.pop(T.GLUON_ENV, None)
        else:
            os.environ[T.GLUON_ENV] = env_before
        T.L.clear_plans()
    (out / "fwd.json").write_text(json.dumps(rows, indent=1))
    return lines


STAGES = {"acts": acts, "steps": steps, "fwd": fwd}


def main(argv=None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("stages", nargs="+", choices=tuple(STAGES))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--acts", nargs="+", default=())
    a = p.parse_args(argv)
    global ACTS
    ACTS = tuple(a.acts)
    a.out.mkdir(parents=True, exist_ok=True)
    lines = []
    for stage in a.stages:
        lines += STAGES[stage](a.out)
    print("\n".join(lines[-40:]))


if __name__ == "__main__":
    main()
