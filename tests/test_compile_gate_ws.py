"""Compile gate for the warp-specialized (Gluon) kernels: the MLP backward with every
committed ``mlp_backward_ws`` entry and the forward with its built-in configuration compile
for sm_90 on the CPU, for every activation, with ``wgmma``, bulk tensor copies, the warp
groups' register split (``setmaxnreg``), no spills and shared memory within a Hopper block's
232448 bytes."""

from __future__ import annotations

import json

import pytest

from _gate import SMEM_LIMIT, run_gate


@pytest.fixture(scope="module")
def compiled():
    return run_gate("compile_gate_ws.py")


def test_every_entry_and_activation_compiled(compiled):
    from flash_swiglu._names import ACTIVATIONS
    from flash_swiglu.ops import train as T

    tables = {
        p.name for p in T.L.CONFIG_DIR.glob("*_train.json")
        if "mlp_backward_ws" in json.loads(p.read_text())
    }  # fmt: skip
    assert tables, "no committed mlp_backward_ws entry"
    backward = [r for r in compiled if r["kernel"] == "mlp_backward"]
    handoff = [r for r in compiled if r["kernel"] == "mlp_backward_handoff"]
    forward = [r for r in compiled if r["kernel"] == "forward"]
    forward_merged = [r for r in compiled if r["kernel"] == "forward_merged"]
    builtin = {"builtin handoff", "builtin handoff fp32 dh"}
    assert {r["source"] for r in backward + handoff} == tables | builtin
    for r in handoff:  # dh handed over in fp32 (session 39) only where the source says so
        assert r["config"]["DH_FP32"] == (r["source"] == "builtin handoff fp32 dh"), r
    merged = [r for r in compiled if r["kernel"] == "mlp_backward_merged"]
    assert {r["source"] for r in merged} == {"builtin merged"}
    # the merged forward (session 40): built-in, and the committed entries that set MERGED
    assert "builtin merged" in {r["source"] for r in forward_merged}
    assert {(r["store_gu"], r["bias"]) for r in forward_merged} == {(True, False), (False, True)}
    for rows in (handoff, merged, forward, forward_merged):
        assert {r["activation"] for r in rows} == set(ACTIVATIONS)
        assert {r["dtype"] for r in rows} == {"torch.bfloat16", "torch.float16"}
    # Each table's backward entry for every activation it launches a Gluon kernel for (its
    # ``activations`` items: the hand-off kernel for some, none for others), in bf16, and for
    # SiLU in fp16; the kernel the row compiled is the one the entry launches.
    for name in tables:
        entry = json.loads((T.L.CONFIG_DIR / name).read_text())["mlp_backward_ws"]
        launched = {a: T.ws_entry(entry, "mlp_backward_ws", a, None) for a in ACTIVATIONS}
        expected = {(a, "torch.bfloat16") for a, cfg in launched.items() if cfg is not None}
        # fp16: SiLU, and each activation launching a configuration other than SiLU's
        expected |= {
            (a, "torch.float16") for a, cfg in launched.items()
            if cfg is not None and (a == "silu" or cfg != launched["silu"])
        }  # fmt: skip
        rows = [r for r in backward + handoff if r["source"] == name]
        assert {(r["activation"], r["dtype"]) for r in rows} == expected
        for r in rows:
            assert (r["kernel"] == "mlp_backward_handoff") == bool(
                launched[r["activation"]].get("HANDOFF")), r  # fmt: skip
    assert {(r["store_gu"], r["bias"]) for r in forward} == {(True, False), (False, True)}
    # Every committed forward entry: the training tables' (each per-shape item too) and the
    # launch tables' ws sections.
    train = {p.name: json.loads(p.read_text()) for p in T.L.CONFIG_DIR.glob("*_train.json")}
    committed = {name for name, table in train.items() if "forward_saving_ws" in table} | {
        f"{name}:{key}" for name, table in train.items()
        for key in table.get("forward_saving_ws", {}).get("shapes", {})
    } | {
        f"{p.name}:{key}" for p in T.L.CONFIG_DIR.glob("*_linear.json")
        for key in json.loads(p.read_text()).get("ws", {})
    }  # fmt: skip
    assert len(committed) >= 2, committed
    late = {"builtin coalesce_out", "cooperative coalesce_out"}
    launched = {r["source"] for r in forward + forward_merged}
    assert committed | {"builtin", "builtin merged"} | late == launched
    for r in forward:  # h alone moved after the activation: bf16, every activation
        assert r["config"].get("COALESCE_OUT", False) == (r["source"] in late), r
    rows = [r for r in forward if r["source"] in late]
    assert {(r["source"], r["activation"], r["store_gu"]) for r in rows} == {
        (s, a, False) for s in late for a in ACTIVATIONS
    }


def test_wgmma_bulk_copies_and_register_split(compiled):
    for r in compiled:
        assert r["wgmma"] and r["bulk_tensor"], r
        # Three warp groups: the loader's gives registers up, each consumer's takes them; the
        # hand-off kernel has a fourth, its epilogue's, and launches capped at maxnreg. (The
        # merged kernel, three groups, runs the epilogue in the loader's.)
        if r["kernel"] == "mlp_backward_handoff":
            assert r["warps"] == 16 and r["regs"] <= r["config"]["maxnreg"], r
            assert r["config"]["EPILOGUE_REGS"] in r["setmaxnreg"], r
        else:
            assert r["warps"] == 12, r
        assert r["config"]["CONSUMER_REGS"] in r["setmaxnreg"], r


def test_no_spills_and_shared_memory_fits(compiled):
    for r in compiled:
        assert not r["ptx_local"], r
        assert r["sass_checked"], "nvdisasm from Triton's wheel did not run"
        assert r["sass_spills"] == 0, r
        assert r["shared"] <= SMEM_LIMIT, r
