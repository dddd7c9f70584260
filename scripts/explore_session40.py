"""Session 40's exploration: the gate/up forward with the activation in the loader's partition.

    PYTHONPATH=src python scripts/explore_session40.py fwd --out DIR      (H200)
    PYTHONPATH=src python scripts/explore_session40.py steps --out DIR    (H200)
    PYTHONPATH=src python scripts/explore_session40.py mid --out DIR      (H200)

Why. Above 1024 tokens ``swiglu_linear`` runs the cooperative Gluon forward: both consumer
warp groups share one 128 x (128 + 128) tile, so while they apply the activation and store h
no wgmma runs. SiLU's activation is two MUFU operations an element (ex2, rcp): 32768 for a
128 x 128 tile of h, some 2000 cycles at 16 a cycle an SM, against about 33000 cycles of
wgmma per tile at K = 2048 (Llama-3.2-1B) and 66000 at K = 4096 (Llama-3-8B). That is the
size of 1B's gap to cuBLAS at 2048 tokens (0.93-0.98 over sessions 37-39), and GELU's is
larger (0.94-0.96 on 1B). ``ws_mlp.glu_forward_merged_kernel`` hands gate and up, rounded to
the storage dtype as eager's two ``F.linear`` round them, to the loader's partition through
64 KB of shared memory; the loader applies the activation and stores h in pieces between its
TMA loads, while the consumers run the next tile's main loop. The price: 3 ring slots (of 48
KB) where the committed entries of 1B and 8B take 4.

``fwd``:
  (1) correctness of ``m_p4``: every activation at 777 x 520 x 320 on 7 programs (tiles
      that wrap, a last tile of partial rows and columns), SiLU at 50 x 384 x 256 (M below
      one tile); biases for SiLU and gpt-oss's GLU; with and without g and u stored. h
      against the float64 reference under DESIGN.md's rule (``bench.checks``: twice eager's
      error plus two ulps), beside the cooperative kernel's error; g and u bit for bit the
      cooperative kernel's; h the same with and without g and u stored.
  (2) timing: ``swiglu_linear``'s launched entry (``explore_session37._launched``), the
      merged candidates below and cuBLAS's ``x @ [Wg; Wu]^T``, settled CUDA-graph replays in
      five rotated rounds (``explore_session37._rounds``), at 1B, 8B, Qwen and 70B shapes,
      SiLU and (1B, 8B) GELU; at 8192 tokens on 1B and 8B also the training forward that
      saves g and u (``save/``: the training table's ``forward_saving_ws`` entry against the
      candidates). -> ``fwd.json``, ``fwd.txt``, ``smi_fwd.csv``.

Written after the session's device time was spent (stage ``fwd40-next``; run in session 41's
call 1, 121 s, ``benchmarks/results/h200-session41-explore/call1``):

``steps``: whole 8B MLP steps at 4096, 8192 and 16384 tokens with ``m_p4`` as the training
  table's ``forward_saving_ws`` entry (``MIN_M`` 1024) against the committed table (the
  ping-pong forward) and eager (``explore_session34.compare_steps``). Alone the merged
  forward saving g and u ran at 0.994 of cuBLAS against 0.966 (8B, 8192 tokens, ``fwd``);
  the step runs at the power limit, so only whole steps decide. The gradients differ from
  the committed table's where h enters (``dW_down``: h from the rounded g and u). ->
  ``steps.txt``, ``step.json``.
``mid``: the tokens between the buckets the benchmark runs. At 1024 tokens 1B, 8B and Qwen
  have ping-pong entries of their own (``m1024_...``) and 70B runs the shape-wide entry,
  now merged; 1025-2047 tokens run the shape-wide entries, now merged, and no run timed
  them. Per model at 1024 and 1536 tokens: the launched entry, ``m_p4``, the cooperative
  entry the shape-wide ones replaced (``COOP``, GROUP_M 16 and 4 slots for 1B / 8B, GROUP_M 8
  and 3 slots for Qwen / 70B), the 1024 bucket's entry where there is one, and cuBLAS; five
  rotated rounds. -> ``mid.txt``, ``mid.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# ``ws_mlp.FORWARD_MERGED_CONFIG`` with these keys, each with ``MERGED``.
CANDIDATES = {
    "m_p4": dict(EPILOGUE_SPLIT=4, LAG=3, EVERY=2),
    "m_p8": dict(EPILOGUE_SPLIT=8, LAG=3, EVERY=1),
    "m_p4_l5e3": dict(EPILOGUE_SPLIT=4, LAG=5, EVERY=3),
}
ROUNDS = 5
# (model, K, N, token counts, activations)
CASES = (
    ("1b", 2048, 8192, (2048, 8192), ("silu", "gelu")),
    ("8b", 4096, 14336, (2048, 8192), ("silu", "gelu")),
    ("qwen", 3584, 18944, (2048,), ("silu",)),
    ("70b", 8192, 28672, (2048,), ("silu",)),
)


def entry(name: str) -> dict:
    from flash_swiglu.kernels import ws_mlp

    return dict(ws_mlp.FORWARD_MERGED_CONFIG, **CANDIDATES[name], MERGED=True)


COOP = dict(BLOCK_M=128, BLOCK_H=128, BLOCK_K=64, GROUP_M=16, STAGES=4, EPILOGUE_SPLIT=4,
            COALESCE=True, CONSUMER_REGS=232, COOP=True)  # fmt: skip


def _forward(x, wg, wu, h, act: str, cfg: dict, g=None, u=None):
    """A call of ``ws_mlp.glu_forward_ws`` with ``cfg`` (no biases; g and u saved where
    given), for ``explore_session37._rounds``."""
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    return lambda: glu_forward_ws(x, wg, wu, None, None, h, g, u, activation=act, alpha=1.702,
                                  limit=7.0, config=cfg)  # fmt: skip


def _time_and_record(calls: dict, out_json: Path, rows: list, lines: list, model: str, m: int,
                     n: int, k: int, **fields) -> None:  # fmt: skip
    """Times ``calls`` (with a ``cublas`` label) in ``ROUNDS`` rotated rounds; appends their row
    (``fields`` after the rounds and failures) to ``rows`` and rewrites ``out_json`` with all
    rows; appends the line against cuBLAS, and one per failed label, to ``lines`` and prints
    them."""
    import explore_session37 as S37
    import explore_session38 as S38

    ms, failed = S37._rounds(calls, rounds=ROUNDS)
    rows.append(dict(model=model, m=m, n=n, k=k, ms=ms, failed=failed, **fields))
    out_json.write_text(json.dumps(rows, indent=1))
    lines.append(S38.against_cublas(model, m, ms, {}))
    print(lines[-1], flush=True)
    for lb, err in failed.items():
        lines.append(f"  {lb} FAILED: {err}"[:300])
        print(lines[-1], flush=True)


def check(lines: list[str]) -> bool:
    """(1) of the module doc; True when every case passed."""
    import explore_session5 as S5
    import torch
    import torch.nn.functional as F

    from flash_swiglu import reference
    from flash_swiglu.bench import checks as C
    from flash_swiglu.kernels.ws_mlp import glu_forward_ws

    gen = torch.Generator(device="cuda").manual_seed(40)
    ok_all = True
    for m, n, k, sms in ((777, 520, 320, 7), (50, 384, 256, None)):
        r = lambda *s, sc=1.0: (torch.randn(*s, device="cuda", generator=gen) * sc).to(
            torch.bfloat16)  # fmt: skip
        x, wg, wu = r(m, k), r(n, k, sc=k**-0.5), r(n, k, sc=k**-0.5)
        bg, bu = r(n, sc=0.5), r(n, sc=0.5)
        for act in S5.ACTS if sms else ("silu",):  # (fewer builds: each takes seconds)
            for bias in (False, True) if act in ("silu", "swiglu_oai") else (False,):
                b = (bg, bu) if bias else (None, None)
                gate = x.double() @ wg.double().t() + (bg.double() if bias else 0)
                up = x.double() @ wu.double().t() + (bu.double() if bias else 0)
                ref = reference.act_glu(gate, up, act, 1.702, 7.0)
                eager = reference.act_glu(F.linear(x, wg, b[0]), F.linear(x, wu, b[1]), act,
                                          1.702, 7.0)  # fmt: skip
                tol = C.tolerance(C.max_abs_err(eager, ref), ref, torch.bfloat16)
                outs = {}
                for label, cfg in (("coop", COOP), ("m_p4", entry("m_p4"))):
                    h = torch.full((m, n), float("nan"), device="cuda", dtype=torch.bfloat16)
                    g, u = torch.full_like(h, float("nan")), torch.full_like(h, float("nan"))
                    glu_forward_ws(x, wg, wu, *b, h, g, u, activation=act, alpha=1.702,
                                   limit=7.0, config=cfg, sms=sms)  # fmt: skip
                    h2 = torch.full_like(h, float("nan"))
                    glu_forward_ws(x, wg, wu, *b, h2, activation=act, alpha=1.702, limit=7.0,
                                   config=cfg, sms=sms)  # fmt: skip
                    outs[label] = (h, g, u, h2)
                ch, cg, cu, _ = outs["coop"]
                for label in ("m_p4",):
                    h, g, u, h2 = outs[label]
                    err, err_c = C.max_abs_err(h, ref), C.max_abs_err(ch, ref)
                    same_gu = torch.equal(g, cg) and torch.equal(u, cu)
                    same_h = torch.equal(h, h2)
                    # DESIGN.md's rule (NaN fails it: every output was filled with NaN first)
                    ok = same_gu and same_h and err <= tol
                    ok_all &= ok
                    lines.append(
                        f"check {m}x{n}x{k} {act:10s} bias={bias:d} {label}: h err {err:.2e} "
                        f"(coop {err_c:.2e}, tolerance {tol:.2e}), h vs coop "
                        f"{S5._rel_err(h, ch.float()):.1e}, g/u same {same_gu}, h with/without "
                        f"g,u same {same_h}{'' if ok else '  FAIL'}"
                    )
                    print(lines[-1], flush=True)
    return ok_all


def fwd(out: Path) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi_fwd.csv"):
        return _fwd(out)


def _fwd(out: Path) -> list[str]:
    import explore_session37 as S37
    import torch

    from flash_swiglu import swiglu_linear

    lines: list[str] = []
    ok = check(lines)
    lines.append(f"every check passed: {ok}")
    print(lines[-1], flush=True)
    dt = torch.bfloat16
    rows = []
    for model, k, n, tokens, acts in CASES:
        r, wg, wu, wcat = S37._draws(k, n)
        for m in tokens:
            x = r(m, k)
            h = torch.empty(m, n, device="cuda", dtype=dt)
            calls = {"cublas": lambda x=x: x @ wcat.t()}
            configs, same = {}, {}
            for act in acts:
                table = S37._launched(m, n, k, act)
                cands = {"table": table, **{nm: entry(nm) for nm in CANDIDATES}}
                for name, cfg in cands.items():
                    label = f"{act}/{name}"
                    calls[label] = _forward(x, wg, wu, h, act, cfg)
                    configs[label] = cfg
                calls[f"{act}/library"] = lambda a=act, x=x: swiglu_linear(x, wg, wu, activation=a)
                calls[f"{act}/table"]()
                first = h.clone()
                for name in CANDIDATES:
                    calls[f"{act}/{name}"]()
                    # not bit-identical by design (g, u rounded first): how far, over the max
                    same[f"{act}/{name}"] = (h.float() - first.float()).abs().max().item() / (
                        first.float().abs().max().item())  # fmt: skip
            if m == 8192 and model in ("1b", "8b"):  # the training forward: g and u saved too
                from flash_swiglu.ops import train as T

                g, u = torch.empty_like(h), torch.empty_like(h)
                saving = T.ws_config(dt, x.device, "silu", m, "forward_saving_ws", (n, k))
                for name, cfg in {"table": saving, **{nm: entry(nm) for nm in CANDIDATES}}.items():
                    calls[f"save/{name}"] = _forward(x, wg, wu, h, "silu", cfg, g, u)
                    configs[f"save/{name}"] = cfg
            _time_and_record(calls, out / "fwd.json", rows, lines, model, m, n, k,
                             diff_vs_table=same, configs=configs)  # fmt: skip
            x = h = calls = g = u = None
            torch.cuda.empty_cache()
    return lines


def steps(out: Path) -> list[str]:
    import explore_session34 as S34

    cfg = dict(entry("m_p4"), MIN_M=1024)
    return S34.compare_steps("fwd_merged", cfg, out / "step.json", kind="forward_saving_ws")


MID_TOKENS = (1024, 1536)


def mid(out: Path) -> list[str]:
    import explore_session14 as S14

    with S14.clock_samples(out / "smi_mid.csv"):
        return _mid(out)


def _mid(out: Path) -> list[str]:
    import explore_session37 as S37
    import torch

    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    dt = torch.bfloat16
    table = L.load_table(L._device_name(0)).get("ws", {})
    rows, lines = [], []
    for model, k, n, _, _ in CASES:
        coop = dict(COOP, GROUP_M=16, STAGES=4) if model in ("1b", "8b") else dict(
            COOP, GROUP_M=8, STAGES=3)  # fmt: skip
        r, wg, wu, wcat = S37._draws(k, n)
        for m in MID_TOKENS:
            x = r(m, k)
            h = torch.empty(m, n, device="cuda", dtype=dt)
            cands = {"launched": S37._launched(m, n, k, "silu"), "m_p4": entry("m_p4"),
                     "coop": coop}  # fmt: skip
            bucket = table.get(f"m1024_n{n}_k{k}")
            if bucket is not None:
                cands["m1024_entry"] = T.ws_entry(bucket, "projection_ws", "silu", None)
            calls = {"cublas": lambda x=x: x @ wcat.t()}
            for name, cfg in cands.items():
                if cfg is None:  # no Gluon entry launched at this count
                    continue
                calls[name] = _forward(x, wg, wu, h, "silu", cfg)
            _time_and_record(calls, out / "mid.json", rows, lines, model, m, n, k, configs=cands)
            x = h = calls = None
            torch.cuda.empty_cache()
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("fwd", "steps", "mid"))
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    lines = {"fwd": fwd, "steps": steps, "mid": mid}[args.mode](args.out)
    (args.out / f"{args.mode}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
