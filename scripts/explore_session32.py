"""Explorations of session 32.

    PYTHONPATH=src python scripts/explore_session32.py ab --out DIR

The projection launcher gains a second host-time switch, ``FLASH_SWIGLU_PLAN_CACHE``
(``ops.linear.PLAN_ENV``): "1" (default) reuses a cached per-shape plan on the decode paths
(1-128 tokens), "0" runs the full launcher logic on every call. ``FLASH_SWIGLU_FAST_LAUNCH``
(``ops._launch.FAST_ENV``) is the launch cache of session 31.

- ``ab``: host time per call in one process, as session 31's ``ab``: blocks of 50 calls of
  "plan" (both switches on), "noplan" (plan cache off, launch cache on) and "Llama" (the
  ``LlamaMLP`` the ``SwiGLUMLP`` was made from), in rotated order, 10 rounds; medians of the
  rounds, the median of the per-round ratios plan / noplan and the rounds plan was faster.
  Items, all without gradient and back to back: Llama-3.2-1B's MLP at 1, 8, 32 and 64
  tokens, the example's at 8, Llama-3-8B's at 8, and ``swiglu_linear`` alone at 1B's shape
  and 8 tokens (its "Llama" is eager ``silu(x wg^T) * (x wu^T)``). Before timing, whether
  plan's outputs (the call that makes the plan and one that reuses it) are bit-identical to
  noplan's. -> ``ab.json``, and a table on stdout.
- ``generate``: session 31's Hugging Face ``generate`` (1B-shaped ``LlamaForCausalLM``, 16
  layers, random weights, bf16, batch 1, 32-token prompt, 64 new tokens, greedy, 5 rotated
  rounds): unpatched, patched (both switches on), patched without the plan cache, patched
  with neither, and "eager on the instance" (each ``LlamaMLP`` given an instance ``forward``
  that computes what its class's does: the patch's mechanism without our ops); tokens per
  second (median), the ratio to unpatched (also as the median of the rounds' ratios), and
  whether the patched variants generate identical tokens. -> ``generate.json``. Environment:
  ``GENERATE_ROUNDS`` (5), ``GENERATE_BATCH`` (1), ``GENERATE_MODEL`` (``1B`` or ``8B``,
  Llama-3-8B's sizes) and ``GENERATE_VARIANTS`` (names separated by ``;``, or by ``,`` where
  none holds one, starting with ``unpatched`` and ``patched``; the first four by default).

EXPLORE_CPU=1 (with TRITON_INTERPRET=1): a smoke run on the CPU at tiny sizes, to check the
script before a device call; its numbers mean nothing.
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

sys.path.insert(0, str(Path(__file__).resolve().parent))

import explore_session31 as S31

CPU, DEV, DTYPE = S31.CPU, S31.DEV, S31.DTYPE
_sync, say, _host_and_wall_us = S31._sync, S31.say, S31._host_and_wall_us


def _envs() -> tuple[str, str]:
    """The plan cache's and the launch cache's environment variables."""
    from flash_swiglu.ops import _launch
    from flash_swiglu.ops import linear as L

    return getattr(L, "PLAN_ENV", "FLASH_SWIGLU_PLAN_CACHE"), _launch.FAST_ENV


def _switches(plan: bool, fast: bool) -> None:
    """Sets the plan cache and the launch cache on or off (read by the library per call)."""
    for name, on in zip(_envs(), (plan, fast), strict=True):
        os.environ[name] = "1" if on else "0"


def _saved_env() -> dict[str, str | None]:
    return {name: os.environ.get(name) for name in _envs()}


def _restore_env(saved: dict[str, str | None]) -> None:
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _rotated(names: list[str], r: int) -> list[str]:
    """Round ``r``'s order: ``names`` rotated left by ``r`` (modulo their number)."""
    k = r % len(names)
    return names[k:] + names[:k]


def _summary(per: dict[str, list[float]], a: str, b: str) -> dict:
    """Each variant's median over the rounds, the median of the per-round ratios ``a / b``,
    and the rounds where ``a`` took less time than ``b``."""
    row: dict = {v: statistics.median(t) for v, t in per.items()}
    row[f"{a}/{b} (median of rounds)"] = statistics.median(
        x / y for x, y in zip(per[a], per[b], strict=True)
    )
    row[f"rounds {a} faster"] = sum(x < y for x, y in zip(per[a], per[b], strict=True))
    row["rounds"] = per
    return row


# Variant -> (plan cache, launch cache, ours or the reference). "noinfer": as "plan" with
# ``modules.mlp_forward``'s shortcut ``ops.mlp.infer`` off (the MLP's full call path).
AB_VARIANTS = {"plan": (True, True, "ours"), "noplan": (False, True, "ours"),
               "Llama": (True, True, "ref"), "noinfer": (True, True, "ours")}  # fmt: skip
NO_INFER = ("noinfer", "patched, no infer")


def _set_infer(on: bool) -> None:
    """``modules.mlp_forward``'s shortcut through ``ops.mlp.infer`` on or off (where it exists)."""
    from flash_swiglu import modules
    from flash_swiglu.ops import mlp

    if hasattr(modules, "_infer"):
        modules._infer = mlp.infer if on else (lambda *a: None)


def ab(out: Path) -> None:
    import triton
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    from flash_swiglu import SwiGLUMLP, swiglu_linear
    from flash_swiglu.ops import linear as L

    clear_plans = getattr(L, "clear_plans", lambda: None)
    plan_env, fast_env = _envs()
    saved = _saved_env()
    rounds, block = (2, 3) if CPU else (10, 50)
    results: dict = {"torch": torch.__version__, "triton": triton.__version__,
                     "device": "cpu" if CPU else torch.cuda.get_device_name(),
                     "switches": {"plan": plan_env, "launch": fast_env},
                     "rounds": rounds, "block": block, "items": {}}  # fmt: skip
    mods = {}
    for shape, hidden, inter in (("1B", 2048, 8192), ("example", 1024, 2816), ("8B", 4096, 14336)):
        if CPU:
            hidden, inter = 32, 64
        torch.manual_seed(0)
        ref = LlamaMLP(LlamaConfig(hidden_size=hidden, intermediate_size=inter)).to(DEV, DTYPE)
        mods[shape] = (ref, SwiGLUMLP.from_module(ref), hidden)

    def no_grad(fn):
        def call():
            with torch.no_grad():
                return fn()

        return call

    def mlp_item(shape: str, m: int):
        ref, ours, hidden = mods[shape]
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        return no_grad(lambda: ours(x)), no_grad(lambda: ref(x))

    def linear_item(m: int):
        ref, _, hidden = mods["1B"]
        wg, wu = ref.gate_proj.weight.detach(), ref.up_proj.weight.detach()
        x = torch.randn(m, hidden, device=DEV, dtype=DTYPE)
        return (no_grad(lambda: swiglu_linear(x, wg, wu)),
                no_grad(lambda: F.silu(F.linear(x, wg)) * F.linear(x, wu)))  # fmt: skip

    items = {**{f"1B no-grad m={m}": ("1B", m) for m in (1, 8, 32, 64)},
             "example no-grad m=8": ("example", 8), "8B no-grad m=8": ("8B", 8),
             "swiglu_linear 1B m=8": (None, 8)}  # fmt: skip
    names = list(AB_VARIANTS)
    say(f"ab: host us per call, median of {rounds} rounds of {block}-call blocks (back to back)")
    head = (f"{'item':24} {'plan':>8} {'noplan':>8} {'Llama':>8} {'noinfer':>8} "
            f"{'plan/noplan':>12} {'wins':>5} {'plan/noinfer':>12}")  # fmt: skip
    lines = [head]
    say(head + "  identical")
    for name, (shape, m) in items.items():
        ours, ref = linear_item(m) if shape is None else mlp_item(shape, m)
        _switches(plan=False, fast=True)
        want = ours()
        _switches(plan=True, fast=True)
        clear_plans()  # so the first call below makes its plan (an item before may have)
        got = [ours(), ours()]  # the call that makes the plan, then one that reuses it
        same = all(torch.equal(g, want) for g in got)
        fns = {"ours": ours, "ref": ref}
        per: dict[str, list[float]] = {v: [] for v in names}
        for v, (plan, fast, which) in AB_VARIANTS.items():
            _switches(plan, fast)
            _set_infer(v not in NO_INFER)
            for _ in range(3):
                fns[which]()
        _sync()
        for r in range(rounds):
            for v in _rotated(names, r):
                plan, fast, which = AB_VARIANTS[v]
                _switches(plan, fast)
                _set_infer(v not in NO_INFER)
                per[v].append(_host_and_wall_us(fns[which], block, idle=False)[0])
        _set_infer(True)
        _restore_env(saved)
        row_infer = statistics.median(
            a / b for a, b in zip(per["plan"], per["noinfer"], strict=True)
        )
        row = _summary(per, "plan", "noplan")
        row["plan/noinfer (median of rounds)"] = row_infer
        row["plan and noplan outputs identical"] = same
        row["tokens"] = m
        results["items"][name] = row
        wins = f"{row['rounds plan faster']}/{rounds}"
        lines.append(f"{name:24} {row['plan']:8.1f} {row['noplan']:8.1f} {row['Llama']:8.1f} "
                     f"{row['noinfer']:8.1f} {row['plan/noplan (median of rounds)']:12.3f} "
                     f"{wins:>5} {row_infer:12.3f}")  # fmt: skip
        say(f"{lines[-1]}  {same}")
    (out / "ab.json").write_text(json.dumps(results, indent=1))
    say("")
    say("plan/noplan: median of the per-round ratios; wins: rounds plan was faster")
    for line in lines:
        say(line)
    same_all = all(r["plan and noplan outputs identical"] for r in results["items"].values())
    say(f"plan and noplan outputs bit-identical in every item: {same_all}")


# GENERATE_MODEL: the LlamaConfig sizes (random weights).
GENERATE_MODELS = {
    "1B": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=32000),
    "8B": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
               num_attention_heads=32, num_key_value_heads=8, vocab_size=32000),
}  # fmt: skip

# Variant -> (patched, plan cache, launch cache).
GENERATE_VARIANTS = {"unpatched": (False, True, True), "patched": (True, True, True),
                     "patched, no plan": (True, False, True),
                     "patched, neither": (True, False, False),
                     "eager on the instance": (None, True, True),
                     "patched, no infer": (True, True, True)}  # fmt: skip


def _eager_on_instances(model) -> list:
    """Give each ``LlamaMLP`` an instance ``forward`` that computes what its class's does
    (the patch's mechanism without our ops); returns the modules, to undo it."""
    import types

    def forward(self, x):
        return self.down_proj(self.act_fn(self.gate_proj(x)) * self.up_proj(x))

    mlps = [m for m in model.modules() if type(m).__name__ == "LlamaMLP"]
    for m in mlps:
        m.forward = types.MethodType(forward, m)
    return mlps


def generate(out: Path) -> None:
    import triton
    from transformers import LlamaConfig, LlamaForCausalLM

    from flash_swiglu.integrations.transformers import patch_hf_model, unpatch_hf_model

    saved = _saved_env()
    model_name = os.environ.get("GENERATE_MODEL", "1B")
    size = (
        dict(
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=512,
        )
        if CPU
        else dict(GENERATE_MODELS[model_name])
    )
    new_tokens, rounds = (4, 1) if CPU else (64, int(os.environ.get("GENERATE_ROUNDS", "5")))
    batch = int(os.environ.get("GENERATE_BATCH", "1"))
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**size)).to(DEV, DTYPE).eval()
    prompt = torch.randint(0, size["vocab_size"], (batch, 32), device=DEV)
    wanted = os.environ.get("GENERATE_VARIANTS")
    # ";" between names that hold commas ("patched, no plan"), else ","
    names = wanted.split(";" if ";" in wanted else ",") if wanted else list(GENERATE_VARIANTS)[:4]
    if names[:2] != ["unpatched", "patched"] or not set(names) <= set(GENERATE_VARIANTS):
        raise ValueError(f"GENERATE_VARIANTS: unpatched,patched[,...] of {list(GENERATE_VARIANTS)}")
    times: dict[str, list[float]] = {n: [] for n in names}

    def run() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(prompt, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                                  do_sample=False, pad_token_id=0)  # fmt: skip

    def variant(name: str) -> torch.Tensor:
        patched, plan, fast = GENERATE_VARIANTS[name]
        if patched:
            patch_hf_model(model)
        instanced = _eager_on_instances(model) if patched is None else []
        _switches(plan, fast)
        _set_infer(name not in NO_INFER)
        try:
            _sync()
            t0 = time.perf_counter()
            toks = run()
            _sync()
            dt = time.perf_counter() - t0
        finally:
            if patched:
                unpatch_hf_model(model)
            for m in instanced:
                del m.__dict__["forward"]
            _set_infer(True)
            _restore_env(saved)
        times[name].append(new_tokens / dt)
        return toks[0, prompt.shape[1] :]

    outs = {n: variant(n) for n in names}  # warm-up, compiles
    for n in names:
        times[n].clear()
    for r in range(rounds):
        for n in _rotated(names, r):
            outs[n] = variant(n)
    same_plan = torch.equal(outs["patched"], outs.get("patched, no plan", outs["patched"]))
    same_all = all(torch.equal(outs["patched"], outs[n]) for n in names[2:] if "patch" in n)
    agree = (outs["unpatched"] == outs["patched"]).float().mean().item()
    row = {n: statistics.median(t) for n, t in times.items()}
    per_round = [p / u for p, u in zip(times["patched"], times["unpatched"], strict=True)]
    results = {"torch": torch.__version__, "triton": triton.__version__, "config": size,
               "model": model_name, "batch": batch,
               "patched / unpatched, median of the rounds' ratios": statistics.median(per_round),
               "rounds patched faster": sum(r > 1 for r in per_round),
               "device": "cpu" if CPU else torch.cuda.get_device_name(),
               "switches": dict(zip(("plan", "launch"), _envs(), strict=True)),
               "new_tokens": new_tokens, "rounds": times, "median_tokens_per_s": row,
               "ratio_to_unpatched": {n: row[n] / row["unpatched"] for n in names},
               "patched and patched, no plan identical": same_plan,
               "patched variants all identical": same_all,
               "patched tokens equal to unpatched": agree}  # fmt: skip
    (out / "generate.json").write_text(json.dumps(results, indent=1))
    say(f"generate: {model_name}-shaped LlamaForCausalLM, batch {batch}, {new_tokens} new tokens,"
        f" greedy, median of {rounds} rounds (tokens/s)")  # fmt: skip
    for n in names:
        say(f"  {n:20} {row[n]:8.1f}  ({row[n] / row['unpatched']:.3f}x unpatched)")
    say(f"  patched / unpatched, median of the rounds' ratios: {statistics.median(per_round):.3f}"
        f" (patched faster in {sum(r > 1 for r in per_round)} of {rounds})")  # fmt: skip
    if "patched, no plan" in row:
        say(f"  plan / no plan: {row['patched'] / row['patched, no plan']:.3f}")
    say(f"  tokens identical across patched variants: {same_plan} (all: {same_all}); patched "
        f"tokens equal to unpatched: {agree:.3f}")  # fmt: skip


STAGES = {"ab": ab, "generate": generate}


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
