"""The benchmark CLI (``benchmark-swiglu``) on tiny shapes: rows, checks, stored runs, summary.

On the CPU the kernels run in Triton's interpreter (conftest sets ``TRITON_INTERPRET=1``);
the shapes are tiny so the whole file takes seconds. ``torch.compile`` is left out (on the
CPU it needs minutes of C++ compilation).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from flash_swiglu import reference
from flash_swiglu.bench import cli, harness, plot, profile, timing
from flash_swiglu.bench.backends import Skip
from flash_swiglu.bench.cases.elementwise import ElementwiseCase
from flash_swiglu.bench.cases.linear import LinearCase
from flash_swiglu.bench.checks import check, max_abs_err
from flash_swiglu.bench.summary import load_rows, render_summary
from flash_swiglu.bench.timing import Timing

ROOT = Path(__file__).resolve().parents[1]
ROW_FIELDS = {
    "op", "case", "pass", "backend", "activation", "layout", "dtype", "shape", "n_elements",
    "median_ms", "p20_ms", "p80_ms", "median_ms_repeat", "median_ms_rounds", "ideal_bytes",
    "gbps", "frac_copy_bw", "copy_bw_gbps", "speedup_vs_eager", "max_abs_err", "err_torch",
    "passed", "skipped", "error", "sweep", "gpu", "driver", "torch", "triton", "python",
    "commit", "timestamp", "command",
}  # fmt: skip


def run(tmp_path: Path, device: str, *args: str) -> tuple[int, list[dict]]:
    out = tmp_path / "rows.json"
    status = cli.main(
        ["--device", device, "--rows", "8", "--cols", "33", *args, "--json", str(out)]
    )
    return status, json.loads(out.read_text())


def test_rounds_rotate_the_order():
    """Each round starts one label further along, so over as many rounds as labels every
    label takes every place once; a label that raises is reported and not measured again."""
    seen = []

    def measure(label):
        seen.append(label)
        if label == "c" and seen.count("c") == 2:
            raise RuntimeError("broken")
        return len(seen)

    out = timing.interleaved_rounds(["a", "b", "c"], measure, rounds=3)
    assert seen == ["a", "b", "c", "b", "c", "a", "a", "b"]  # round 3 skips the broken c
    assert out["a"] == [1, 6, 7] and out["b"] == [2, 4, 8]
    assert out["c"][0] == 3 and isinstance(out["c"][1], RuntimeError) and len(out["c"]) == 2
    order = []
    timing.interleaved_rounds(list("abcd"), order.append, rounds=4)
    firsts = [order[i * 4] for i in range(4)]
    assert firsts == list("abcd")
    for label in "abcd":  # every place once
        assert sorted(order.index(label, 4 * r) - 4 * r for r in range(4)) == [0, 1, 2, 3]


def test_summarize_rounds_takes_the_median_round():
    rounds = [Timing(2.0, 1.9, 2.1), Timing(1.0, 0.9, 1.1), Timing(1.5, 1.4, 1.8)]
    s = timing.summarize_rounds(rounds)
    assert (s["median_ms"], s["p20_ms"], s["p80_ms"]) == (1.5, 1.4, 1.8)
    assert s["median_ms_repeat"] in (1.0, 2.0) and s["median_ms_rounds"] == [2.0, 1.0, 1.5]
    s = timing.summarize_rounds(rounds[:2])  # even count: the lower middle
    assert s["median_ms"] == 1.0 and s["median_ms_repeat"] == 2.0


def test_l2_flush_option(tmp_path, device, monkeypatch):
    """``--l2-flush`` picks how the L2 is evicted (read by default), and the rows say which."""
    monkeypatch.setattr(timing, "L2_FLUSH", timing.L2_FLUSH)  # restored after the test
    assert cli.build_parser().parse_args([]).l2_flush == timing.L2_FLUSH == "read"
    assert timing.cold_l2_note() == "cold L2 (read-evicted)"
    args = ("--backend", "triton", "--pass", "fwd", "--dtype", "float32", "--activation", "silu")
    status, rows = run(tmp_path, device, *args, "--l2-flush", "write")
    assert status == 0 and timing.L2_FLUSH == "write" and timing.cold_l2_note() == "cold L2"
    if device == "cuda":
        assert "cold L2," in rows[0]["timing"]
    status, rows = run(tmp_path, device, *args)
    assert status == 0 and timing.L2_FLUSH == "read"
    if device == "cuda":
        assert "(read-evicted)" in rows[0]["timing"]
    buf = torch.zeros(8, dtype=torch.int32)
    timing.L2_FLUSH = "write"
    timing.evict_l2(buf.fill_(3))
    assert buf.eq(0).all()  # the write flush zeroes its buffer, the read one leaves it
    timing.L2_FLUSH = "read"
    timing.evict_l2(buf.fill_(3))
    assert buf.eq(3).all()
    timing.L2_FLUSH = "neither"
    with pytest.raises(ValueError, match="L2_FLUSH"):
        timing.evict_l2(buf)


def test_settle_option(tmp_path, device, monkeypatch):
    """``--settle-ms`` sets the settling of the run's timings, and the rows say which."""
    monkeypatch.setattr(timing, "SETTLE_MS", timing.SETTLE_MS)  # restored after the test
    assert cli.build_parser().parse_args([]).settle_ms == timing.SETTLE_MS == 300.0
    args = ("--backend", "triton", "--pass", "fwd", "--dtype", "float32", "--activation", "silu")
    status, rows = run(tmp_path, device, *args, "--settle-ms", "0")
    assert status == 0 and timing.SETTLE_MS == 0.0
    assert timing.settle_note() == "no settling"
    timing.SETTLE_MS = 12.5
    assert timing.settle_note() == "after 12.5 ms of the call's own untimed runs"
    if device == "cuda":
        assert rows[0]["timing"].endswith("no settling")


def test_copies_option(tmp_path, device, monkeypatch):
    """``--copies N``: each backend timed on N copies of its inputs, their rounds pooled, each
    copy's median kept; the rows say so."""
    monkeypatch.setattr(harness, "COPIES", harness.COPIES)  # restored after the test
    assert cli.build_parser().parse_args([]).copies == 1
    args = ("--backend", "torch,triton", "--pass", "fwd", "--dtype", "float32")
    status, rows = run(tmp_path, device, *args, "--activation", "silu", "--copies", "3")
    assert status == 0 and harness.COPIES == 3 and len(rows) == 2
    for row in rows:
        assert row["copies"] == 3 and row["timing"].endswith(
            ", each backend on 3 copies of its inputs"
        )
        assert len(row["median_ms_rounds"]) == 3 * timing.ROUNDS
        assert row["median_ms"] in row["median_ms_rounds"]
        copies = row["median_ms_copies"]
        assert len(copies) == 3 and min(copies) <= row["median_ms"] <= max(copies)
        # each copy's median is the median of that copy's rounds (pooled copy by copy)
        for c, median in enumerate(copies):
            own = sorted(row["median_ms_rounds"][c * timing.ROUNDS : (c + 1) * timing.ROUNDS])
            assert median == own[(timing.ROUNDS - 1) // 2]
    status, rows = run(tmp_path, device, *args, "--activation", "gelu")
    assert status == 0 and harness.COPIES == 1
    assert rows[0]["copies"] == 1 and rows[0]["median_ms_copies"] is None
    assert "copies" not in rows[0]["timing"]


@pytest.mark.parametrize("args", [["--copies", "0"], ["--op", "mlp", "--copies", "2"]])
def test_copies_rejected(args):
    with pytest.raises(SystemExit):
        cli.main(["--device", "cpu", *args])


@pytest.mark.gpu
def test_measure_steps_settles_first(monkeypatch):
    """The untimed calls before the timed ones, each after its setup: none without settling;
    with more settling than ``STEP_SETTLE_MAX`` calls fill, exactly that many."""
    device = torch.device("cuda")
    a = torch.randn(1024, 1024, device=device)
    monkeypatch.setattr(timing, "STEP_MIN_REPS", 5)
    monkeypatch.setattr(timing, "STEP_MAX_REPS", 5)  # the timed calls: exactly 5
    for settle, untimed in ((0.0, 0), (1e9, timing.STEP_SETTLE_MAX)):
        monkeypatch.setattr(timing, "SETTLE_MS", settle)
        calls: list[torch.Tensor] = []
        setups: list[int] = []
        timing.measure_steps(lambda c=calls: c.append(a @ a), device, lambda s=setups: s.append(1))
        assert len(calls) == len(setups) == 1 + untimed + 5  # the first call sizes the rest


def test_rows_and_fields(tmp_path, device):
    args = ("--dtype", "float32", "--activation", "silu", "--backend", "torch,triton")
    status, rows = run(tmp_path, device, *args, "--pass", "fwd", "--pass", "bwd")
    assert status == 0
    assert [(r["pass"], r["backend"]) for r in rows] == [
        ("fwd", "torch"),
        ("fwd", "triton"),
        ("bwd", "torch"),
        ("bwd", "triton"),
    ]
    n = 8 * 33
    for row in rows:
        assert row.keys() >= ROW_FIELDS
        assert row["shape"] == [8, 33] and row["n_elements"] == n and row["dtype"] == "float32"
        assert row["ideal_bytes"] == {"fwd": 3, "bwd": 5}[row["pass"]] * n * 4
        assert row["ideal_read_bytes"] + row["ideal_write_bytes"] == row["ideal_bytes"]
        assert row["passed"] is True and row["skipped"] is None and row["error"] is None
        assert 0 < row["p20_ms"] <= row["median_ms"] <= row["p80_ms"]
        assert row["median_ms_repeat"] > 0
        assert len(row["median_ms_rounds"]) == timing.ROUNDS
        assert row["median_ms"] in row["median_ms_rounds"]
        assert row["median_ms_repeat"] in row["median_ms_rounds"]
        assert row["gbps"] == pytest.approx(row["ideal_bytes"] / row["median_ms"] / 1e6)
        assert row["frac_copy_bw"] == pytest.approx(row["gbps"] / row["copy_bw_gbps"])
        assert row["max_abs_err"] < 1e-5 and row["err_torch"] < 1e-5
        assert "--rows 8" in row["command"]
    eager = {r["pass"]: r["median_ms"] for r in rows if r["backend"] == "torch"}
    for row in rows:
        assert row["speedup_vs_eager"] == pytest.approx(eager[row["pass"]] / row["median_ms"])


@pytest.mark.parametrize("layout", ["separate", "concat", "interleaved"])
def test_layouts(tmp_path, device, layout):
    args = ("--layout", layout, "--dtype", "float16", "--activation", "swiglu_oai")
    status, rows = run(tmp_path, device, *args, "--backend", "triton", "--pass", "fwd+bwd")
    assert status == 0
    assert {r["backend"] for r in rows} == {"torch", "triton"}  # eager always measured
    assert all(r["layout"] == layout and r["passed"] for r in rows)
    assert rows[0]["ideal_bytes"] == 8 * 8 * 33 * 2


def _glu_inputs(dtype):
    gen = torch.Generator().manual_seed(0)
    gate, up = (torch.randn(64, 100, generator=gen).to(dtype) for _ in range(2))
    expected = reference.act_glu(gate.double(), up.double())
    eager_err = max_abs_err(reference.act_glu(gate, up), expected)
    return gate, up, expected, eager_err


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_check_passes_good_and_fails_corrupted(dtype):
    gate, up, expected, eager_err = _glu_inputs(dtype)
    good = reference.glu_forward(gate, up)
    assert check([good], [expected], [eager_err]).passed
    wrong = good.clone()
    wrong[3, 7] += 0.05 * expected.abs().max().item()
    assert not check([wrong], [expected], [eager_err]).passed
    nan = good.clone()
    nan[0, 0] = float("nan")
    assert not check([nan], [expected], [eager_err]).passed
    assert not check([good[:, :50]], [expected], [eager_err]).passed


def test_wrong_backend_fails_the_run(tmp_path, device, monkeypatch):
    original = ElementwiseCase.function

    def function(self, backend):
        if backend == "triton":  # 1% too large: far beyond fp32 rounding
            return lambda gate, up: reference.act_glu(gate, up, self.activation) * 1.01
        return original(self, backend)

    monkeypatch.setattr(ElementwiseCase, "function", function)
    args = ("--dtype", "float32", "--activation", "silu", "--backend", "triton", "--pass", "fwd")
    status, rows = run(tmp_path, device, *args)
    assert status == 1
    assert [r["passed"] for r in rows] == [True, False]


def test_run_id_stores_the_run(tmp_path, device, capsys):
    results = tmp_path / "results"
    args = ["--device", device, "--rows", "4", "--cols", "16", "--dtype", "float32"]
    args += ["--activation", "relu", "--backend", "torch,triton", "--pass", "fwd"]
    if device == "cpu":  # on a GPU --profile would run the whole case again under ncu
        args.append("--profile")
    assert cli.main([*args, "--run-id", "tiny", "--results-dir", str(results)]) == 0
    printed = capsys.readouterr().out
    run_dir = results / "tiny"
    rows = json.loads((run_dir / "rows.json").read_text())
    env = json.loads((run_dir / "env.json").read_text())
    table = (run_dir / "table.md").read_text()
    assert len(rows) == 2 and env["command"].startswith("benchmark-swiglu --device")
    assert {"gpu", "driver", "torch", "triton", "python", "commit", "timestamp"} <= env.keys()
    assert {"gpu_uuid", "gpu_pci"} <= env.keys() and rows[0]["gpu_uuid"] == env["gpu_uuid"]
    if device == "cpu":
        assert env["gpu_uuid"] is None and env["gpu_pci"] is None
    else:  # which board: a UUID and a domain:bus:device PCI address
        assert len(env["gpu_uuid"]) >= 32 and env["gpu_pci"].count(":") == 2
    assert "Copy bandwidth" in table and "relu/separate/float32/4x16" in table
    assert printed.rstrip().endswith(table.rstrip())  # the table is printed last
    if device == "cpu":
        assert "not profiled on the CPU" in printed
    assert not (run_dir / cli.PARTIAL).exists()  # stored whole: no partial rows left
    with pytest.raises(SystemExit):  # an existing run is never overwritten
        cli.main([*args, "--run-id", "tiny", "--results-dir", str(results)])


def test_run_cut_short_leaves_its_rows_so_far(tmp_path, device, monkeypatch):
    """A ``--run-id`` run that stops before its end (here the second case raises; on the GPU
    machine, a time limit) leaves the rows of the cases it finished in ``partial.json``, and
    no ``rows.json``: the summary never reads a run that is not whole."""
    calls = []

    def run_case(case, *rest):
        calls.append(case)
        if len(calls) == 2:
            raise RuntimeError("cut short")
        return harness.run_case(case, *rest)

    monkeypatch.setattr(cli, "run_case", run_case)
    results = tmp_path / "results"
    args = ["--device", device, "--rows", "4", "--cols", "16", "--dtype", "float32"]
    args += ["--activation", "relu,silu", "--backend", "torch,triton", "--pass", "fwd"]
    with pytest.raises(RuntimeError, match="cut short"):
        cli.main([*args, "--run-id", "cut", "--results-dir", str(results)])
    so_far = json.loads((results / "cut" / cli.PARTIAL).read_text())
    assert so_far["cases_done"] == 1 and so_far["cases"] == 2
    assert so_far["command"].startswith("benchmark-swiglu --device")
    env = so_far["environment"]  # where it ran and at what code, as the run started
    assert {"torch", "triton", "commit", "command"} <= set(env)
    assert env["command"] == so_far["command"]
    assert [(r["activation"], r["backend"]) for r in so_far["rows"]] == [
        ("relu", "torch"),
        ("relu", "triton"),
    ]
    assert all(r["passed"] for r in so_far["rows"])
    assert not (results / "cut" / "rows.json").exists()
    assert load_rows(results) == []
    # The same name can be run again: a partial run is not a stored one.
    monkeypatch.setattr(cli, "run_case", harness.run_case)
    assert cli.main([*args, "--run-id", "cut", "--results-dir", str(results)]) == 0
    assert not (results / "cut" / cli.PARTIAL).exists()
    assert len(json.loads((results / "cut" / "rows.json").read_text())) == 4


def test_library_env_recorded_and_left_out_of_summary(tmp_path, device, monkeypatch):
    """A run made with the library away from its committed configuration says so
    (``library_env`` in env.json and in every row), and the README's summary leaves its rows
    out even where it is the newest run of a case."""
    from flash_swiglu.bench import env as run_env
    from flash_swiglu.ops import linear as L
    from flash_swiglu.ops import train as T

    for name in (L.CONFIG_ENV, T.TABLE_ENV, T.GLUON_ENV):
        monkeypatch.delenv(name, raising=False)
    assert run_env.library_env() == {}
    monkeypatch.setenv(T.GLUON_ENV, "1")  # the default, said aloud: not an override
    assert run_env.library_env() == {}
    monkeypatch.setenv(T.GLUON_ENV, "0")
    results = tmp_path / "results"
    args = ["--device", device, "--rows", "4", "--cols", "16", "--dtype", "float32"]
    args += ["--backend", "torch,triton", "--pass", "fwd", "--results-dir", str(results)]
    assert cli.main([*args, "--run-id", "gluon-off"]) == 0
    env = json.loads((results / "gluon-off" / "env.json").read_text())
    rows = json.loads((results / "gluon-off" / "rows.json").read_text())
    assert env["library_env"] == {T.GLUON_ENV: "0"}
    assert all(row["library_env"] == {T.GLUON_ENV: "0"} for row in rows)

    shipped = [_fake_row("2026-11-01T00:00:00Z", "triton", 0.90, 1.5, run="shipped")]
    other = [_fake_row("2026-11-02T00:00:00Z", "triton", 0.99, 1.9, run="other",
                       library_env={L.CONFIG_ENV: "/tmp/table.json"})]  # fmt: skip
    table = render_summary(shipped + other)
    assert "`shipped`" in table and "`other`" not in table and "1.90x" not in table


def test_superseded_run_left_out_of_summary(tmp_path):
    """A run whose directory holds ``SUPERSEDED.md`` keeps its rows on disk but leaves the
    README's summary, even where it is the newest run of a case."""
    from flash_swiglu.bench.summary import SUPERSEDED, load_rows

    for name, stamp, speedup in (
        ("old", "2026-11-01T00:00:00Z", 1.5),
        ("new", "2026-11-02T00:00:00Z", 1.9),
    ):
        (tmp_path / name).mkdir()
        row = _fake_row(stamp, "triton", 0.9, speedup, run=name)
        (tmp_path / name / "rows.json").write_text(json.dumps([row]))
    assert "`new`" in render_summary(load_rows(tmp_path))
    (tmp_path / "new" / SUPERSEDED).write_text("the launch table changed at this count\n")
    rows = load_rows(tmp_path)
    assert [r.get("superseded", False) for r in rows] == [True, False]  # sorted: new, old
    table = render_summary(rows)
    assert "`old`" in table and "`new`" not in table and "1.90x" not in table


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="Liger installed")
def test_liger_skipped_with_reason(tmp_path, device):
    args = ("--dtype", "float32", "--activation", "silu", "--backend", "liger", "--pass", "fwd")
    status, rows = run(tmp_path, device, *args)
    assert status == 0
    (liger,) = [r for r in rows if r["backend"] == "liger"]
    assert liger["skipped"] == "liger_kernel not installed"
    assert liger["median_ms"] is None and liger["passed"] is None


def test_liger_has_no_relu():
    with pytest.raises(Skip, match="Liger has no fused relu"):
        ElementwiseCase("relu", "separate", torch.float16, 4, 4).function("liger")


def test_summary_names_the_board():
    """The list of runs under the summary names the board of runs that recorded it (its
    UUID's first 8 characters) and leaves it out for older runs, which did not."""
    with_uuid = _fake_row("2026-11-21T00:00:00Z", "triton", 0.9, 1.5, run="with")
    with_uuid["gpu_uuid"] = "cf60d5a3-cb9c-5fe3-dd55-20ba72063832"
    older = _fake_row("2026-11-20T00:00:00Z", "triton", 0.9, 1.5, run="older")
    older["case"] = "silu/separate/float16/8x8"
    table = render_summary([with_uuid, older])
    assert "- `with`: NVIDIA H200 (board cf60d5a3), driver 580" in table
    assert "- `older`: NVIDIA H200, driver 580" in table


def _fake_row(run_ts: str, backend: str, frac: float, speedup: float, **extra) -> dict:
    row = {"op": "elementwise", "case": "silu/separate/float16/4096x4096", "pass": "fwd"}
    row.update(backend=backend, device="cuda", sweep=False, timestamp=run_ts, gpu="NVIDIA H200")
    row.update(frac_copy_bw=frac, speedup_vs_eager=speedup, passed=True, skipped=None)
    row.update(copy_bw_gbps=4270.0, commit="0123456789abcdef", driver="580", torch="2.11")
    return {**row, **extra}


def test_summary_and_readme_update(tmp_path):
    results = tmp_path / "results"
    runs = {
        "old": [_fake_row("2026-11-01T00:00:00Z", "triton", 0.50, 1.10)],
        "new": [
            _fake_row("2026-11-21T00:00:00Z", "torch", 0.48, 1.0),
            _fake_row("2026-11-21T00:00:00Z", "triton", 0.97, 2.02),
            _fake_row("2026-11-21T00:00:00Z", "liger", None, None, skipped="not installed"),
        ],
        "cpu": [_fake_row("2026-11-22T00:00:00Z", "triton", 0.1, 0.1, device="cpu")],
    }
    for name, rows in runs.items():
        (results / name).mkdir(parents=True)
        (results / name / "rows.json").write_text(json.dumps(rows))
    table = render_summary(load_rows(results))
    line = next(x for x in table.splitlines() if "silu/separate/float16" in x)
    assert "97% · 2.02x" in line and "48% · 1.00x" in line and "`new`" in line
    assert "50%" not in table and "`cpu`" not in table  # older run, CPU run left out

    spec = importlib.util.spec_from_file_location("update", ROOT / "scripts/update_readme_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- results:start -->\nstale\n<!-- results:end -->\ntail\n")
    assert script.main(["--readme", str(readme), "--results", str(results)]) == 0
    text = readme.read_text()
    assert "stale" not in text and "97% · 2.02x" in text and text.endswith("tail\n")
    readme.write_text("# no markers\n")
    assert script.main(["--readme", str(readme), "--results", str(results)]) == 1


def test_newer_timing_method_replaces_fuller_runs():
    """A run timed the newer way (rotated rounds, then settled) supplies a case even when an
    older run measured it with more backends; within one method the fuller run wins."""
    from flash_swiglu.bench.summary_linear import latest_cases, timing_generation

    settled = "cuda-graph replay, cold L2, after 300 ms of the call's own untimed runs"
    fixed = [_fake_row("2026-11-01T00:00:00Z", b, 0.9, 1.0, run="fixed") for b in "abcd"]
    rotated = [_fake_row("2026-11-02T00:00:00Z", b, 0.9, 1.0, run="rotated",
                         median_ms_rounds=[1.0, 1.0, 1.0]) for b in "abc"]  # fmt: skip
    small = [_fake_row("2026-11-03T00:00:00Z", b, 0.9, 1.0, run="small",
                       median_ms_rounds=[1.0], timing=settled) for b in "a"]  # fmt: skip
    full = [_fake_row("2026-11-02T12:00:00Z", b, 0.9, 1.0, run="full",
                      median_ms_rounds=[1.0], timing=settled) for b in "ab"]  # fmt: skip
    assert [timing_generation(r[0]) for r in (fixed, rotated, small)] == [0, 1, 2]
    assert timing_generation({**small[0], "timing": "cuda-graph replay, cold L2, no settling"}) == 1
    read = {**small[0], "timing": small[0]["timing"].replace("cold L2", "cold L2 (read-evicted)")}
    assert timing_generation(read) == 3

    def chosen(rows):
        (case,) = latest_cases(rows).values()
        return {r["run"] for r in case.values()}

    assert chosen(fixed + rotated) == {"rotated"}
    assert chosen(fixed + rotated + small + full) == {"full"}  # most backends among settled
    assert chosen(fixed) == {"fixed"}


NCU_CSV = """\
==PROF== Connected to process 491 (/usr/bin/python3.12)
"ID","Process ID","Process Name","Host Name","thread Domain:Push/Pop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg","Id:Domain:Start/Stop_Range:PL_Type:PL_Value:CLR_Type:Color:Msg_Type:Msg","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"
"0","491","python3.12","h","491  ""<default domain>:fsb_unit_0:none"" ","","_glu_fwd_kernel","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","byte","67,108,864"
"0","491","python3.12","h","491  ""<default domain>:fsb_unit_0:none"" ","","_glu_fwd_kernel","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_write.sum","byte","33,554,432"
"0","491","python3.12","h","491  ""<default domain>:fsb_unit_0:none"" ","","_glu_fwd_kernel","1","7","(256, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","gpu__time_duration.sum","ns","31,456"
"1","491","python3.12","h","491  ""<default domain>:fsb_unit_1:none"" ","","void silu_kernel<float>(int)","1","7","(128, 1, 1)","(4096, 1, 1)","0","9.0","Command line profiler metrics","dram__bytes_read.sum","Kbyte","1,000"
==PROF== Disconnected from process 491
"""  # noqa: E501


def test_parse_ncu_csv():
    units = profile.parse_ncu_csv(NCU_CSV)
    assert units[0].read == 67_108_864 and units[0].write == 33_554_432
    assert units[0].ms == pytest.approx(0.031456)
    assert list(units[0].kernels.values()) == ["_glu_fwd_kernel"]
    assert units[1].read == 1_000_000 and units[1].write == 0
    with pytest.raises(ValueError):
        profile.parse_ncu_csv("==ERROR== ERR_NVGPUCTRPERM\n")


# ----------------------------------------------------------------------------------------
# --op linear
# ----------------------------------------------------------------------------------------

LINEAR_FIELDS = ROW_FIELDS | {
    "model", "tokens", "hidden", "intermediate", "memory_bound", "flops", "tflops",
    "frac_cublas", "gemm_tflops", "frac_gemm_ceiling", "checked_against",
}  # fmt: skip
LINEAR_FIELDS -= {"n_elements"}


def run_linear(tmp_path: Path, device: str, *args: str) -> tuple[int, list[dict]]:
    out = tmp_path / "rows.json"
    status = cli.main(["--op", "linear", "--device", device, *args, "--json", str(out)])
    return status, json.loads(out.read_text())


def test_linear_rows_and_fields(tmp_path, device, capsys):
    k, n = 32, 48
    args = ("--shape", f"{k},{n}", "--tokens", "3,70", "--dtype", "float32")
    status, rows = run_linear(tmp_path, device, *args, "--backend", "triton,cublas")
    assert status == 0
    assert [(r["tokens"], r["backend"]) for r in rows] == [
        (m, b) for m in (3, 70) for b in ("torch", "triton", "cublas")
    ]
    gemm_ms = {r["tokens"]: r["median_ms"] for r in rows if r["backend"] == "cublas"}
    eager_ms = {r["tokens"]: r["median_ms"] for r in rows if r["backend"] == "torch"}
    for row in rows:
        m, ms = row["tokens"], row["median_ms"]
        assert row.keys() >= LINEAR_FIELDS
        assert row["op"] == "linear" and row["pass"] == "fwd" and row["model"] == "custom"
        assert row["shape"] == [m, k, n] and row["memory_bound"] == (m <= 64)
        assert row["ideal_bytes"] == (m * k + 2 * n * k + m * n) * 4
        assert row["flops"] == 4 * m * n * k
        assert row["tflops"] == pytest.approx(4 * m * n * k / ms / 1e9)
        assert row["gbps"] == pytest.approx(row["ideal_bytes"] / ms / 1e6)
        assert row["frac_cublas"] == pytest.approx(gemm_ms[m] / ms)
        assert row["speedup_vs_eager"] == pytest.approx(eager_ms[m] / ms)
        assert row["gemm_tflops"] > 0
        assert row["frac_gemm_ceiling"] == pytest.approx(row["tflops"] / row["gemm_tflops"])
        assert row["passed"] is True and row["error"] is None and row["skipped"] is None
        # Only the bare product is checked against something else than the SwiGLU.
        assert (row["checked_against"] is not None) == (row["backend"] == "cublas")
    printed = capsys.readouterr().out
    assert "GEMM ceiling" in printed and "TFLOP/s" in printed and "vs cuBLAS" in printed


def test_linear_forward_only_backends_are_skipped(tmp_path, device):
    args = ("--shape", "16,24", "--tokens", "2", "--dtype", "float32", "--pass", "bwd")
    status, rows = run_linear(tmp_path, device, *args, "--backend", "torch-packed,cublas")
    assert status == 0
    by_backend = {r["backend"]: r for r in rows}
    assert by_backend["torch"]["passed"] and by_backend["torch-packed"]["passed"]
    assert "no SwiGLU backward" in by_backend["cublas"]["skipped"]
    assert by_backend["cublas"]["median_ms"] is None and by_backend["torch"]["flops"] == (
        8 * 2 * 24 * 16
    )


@pytest.mark.parametrize("layout", ["concat", "interleaved"])
def test_linear_packed_layout(tmp_path, device, layout):
    args = ("--shape", "32,40", "--tokens", "5", "--dtype", "float16", "--layout", layout)
    status, rows = run_linear(tmp_path, device, *args, "--backend", "triton")
    assert status == 0
    assert [(r["backend"], r["layout"], r["passed"]) for r in rows] == [
        ("torch", layout, True),
        ("triton", layout, True),
    ]


def test_linear_wrong_results_fail(tmp_path, device, monkeypatch):
    original = LinearCase.function

    def function(self, backend):
        if backend == "triton":  # 1% too large: far beyond fp32 rounding
            fn = original(self, backend)
            return lambda *args: fn(*args) * 1.01
        if backend == "cublas":  # up before gate: the wrong packing
            return lambda x, w: x @ torch.cat(w.chunk(2)[::-1]).T
        return original(self, backend)

    monkeypatch.setattr(LinearCase, "function", function)
    args = ("--shape", "16,24", "--tokens", "3", "--dtype", "float32")
    status, rows = run_linear(tmp_path, device, *args, "--backend", "triton,cublas")
    assert status == 1
    assert {r["backend"]: r["passed"] for r in rows} == {
        "torch": True,
        "triton": False,
        "cublas": False,
    }


@pytest.mark.parametrize(
    "args",
    [
        ["--op", "linear", "--rows", "4"],
        ["--op", "linear", "--shape", "8,8", "--model", "llama-3-8b"],
        ["--op", "linear", "--tokens", "0"],
        ["--op", "linear", "--model", "gpt-5"],
        ["--op", "linear", "--backend", "cublas,nope"],
        ["--tokens", "8"],
        ["--backend", "cublas"],  # not a peer of the elementwise GLU
        ["--op", "linear", "--model", "qwen2.5-7b", "--tp", "3"],  # 18944 / 3 columns
        ["--op", "linear", "--shape", "8,8", "--tp", "2"],
        ["--op", "linear", "--model", "llama-3-8b", "--tp", "0"],
        ["--tp", "2"],
        ["--settle-ms", "-1"],
        ["--settle-ms", "nan"],
        ["--l2-flush", "none"],
    ],
)
def test_linear_options_rejected(args):
    with pytest.raises(SystemExit):
        cli.main(["--device", "cpu", *args])


@pytest.mark.parametrize("op", ["linear", "mlp"])
def test_tensor_parallel_shards(op):
    # --tp N: one rank's shard of each model, its intermediate size split over N ranks.
    parser = cli.build_parser()
    argv = ["--op", op, "--device", "cpu", "--model", "llama-3-8b,llama-3-70b", "--tp", "8"]
    args = parser.parse_args(argv)
    cli.resolve(parser, args)
    assert args.shapes == [("llama-3-8b-tp8", 4096, 1792), ("llama-3-70b-tp8", 8192, 3584)]
    args = parser.parse_args(["--op", op, "--device", "cpu", "--model", "llama-3-8b", "--tp", "1"])
    cli.resolve(parser, args)
    assert args.shapes == [("llama-3-8b", 4096, 14336)]


def _linear_row(run_ts: str, backend: str, tokens: int, ms: float, **extra) -> dict:
    row = {"op": "linear", "pass": "fwd", "backend": backend, "device": "cuda", "sweep": True}
    row.update(case=f"silu/separate/bfloat16/llama-3-8b/M{tokens}", model="llama-3-8b")
    row.update(dtype="bfloat16", activation="silu", layout="separate", tokens=tokens)
    row.update(median_ms=ms, passed=True, skipped=None, timestamp=run_ts, gpu="NVIDIA H200")
    row.update(frac_copy_bw=0.005 / ms, copy_bw_gbps=4270.0, commit="abc", gemm_tflops=700.0)
    return {**row, **extra}


def test_summary_linear_section(tmp_path):
    ts = "2026-11-23T00:00:00Z"
    rows = []
    for m, scale in ((1, 0.01), (32, 0.01), (2048, 1.0), (8192, 4.0)):
        eager, cublas, triton, compiled = 1.2 * scale, 0.95 * scale, 1.0 * scale, 1.1 * scale
        rows += [
            _linear_row(ts, "torch", m, eager, speedup_vs_eager=1.0, frac_cublas=cublas / eager),
            _linear_row(ts, "cublas", m, cublas, speedup_vs_eager=eager / cublas, frac_cublas=1),
            _linear_row(ts, "compile", m, compiled, frac_cublas=cublas / compiled),
            _linear_row(
                ts,
                "triton",
                m,
                triton,
                speedup_vs_eager=eager / triton,
                frac_cublas=cublas / triton,
            ),
        ]
    elementwise = _fake_row(ts, "triton", 0.97, 2.02)
    results = tmp_path / "results"
    (results / "lin").mkdir(parents=True)
    (results / "lin" / "rows.json").write_text(json.dumps([*rows, {**elementwise, "run": "x"}]))
    table = render_summary(load_rows(results))
    assert "97% · 2.02x" in table  # the elementwise table is still there
    line = next(x for x in table.splitlines() if x.startswith("| llama-3-8b"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[:3] == ["llama-3-8b", "bfloat16", "fwd"]
    assert cells[3] == "0.95"  # vs cuBLAS at M >= 2048
    assert cells[4] == "1.20x"  # vs eager
    # vs the fastest peer, and the peers these rows lack (the fixture times eager, cuBLAS,
    # torch.compile and ours only)
    assert (
        cells[5]
        == "1.10 (compile); not timed at every M: torch-packed, compile-max, liger, liger-mul"
    )
    assert cells[6] == "50%" and cells[7] == "45%"  # decode: copy BW, fastest peer's
    assert "`lin`" in cells[8]


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="no matplotlib")
def test_plot_linear_sweep(tmp_path):
    rows = [
        _linear_row("t", backend, m, 1.0, tflops=float(m), gbps=None)
        for backend in ("torch", "triton")
        for m in (1, 8, 2048)
    ]
    path = tmp_path / "linear.png"
    plot.plot_sweep(rows, path, 4270.0)
    assert path.stat().st_size > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU suite's rule")
def test_bf16_products_on_the_cpu_are_not_reported_as_kernels():
    """On the CPU the library computes bf16 products with PyTorch (the interpreter's bf16
    ``tl.dot`` is wrong), so a bf16 projection or MLP case skips the triton backends rather
    than report the reference path as a passing kernel; the elementwise case still runs."""
    from flash_swiglu.bench.backends import unavailable
    from flash_swiglu.kernels import interpreting

    cpu = torch.device("cpu")
    if not interpreting():
        pytest.skip("needs TRITON_INTERPRET=1 (the CPU tier sets it)")
    assert "PyTorch path" in unavailable("triton", cpu, torch.bfloat16)
    assert "PyTorch path" in unavailable("triton-recompute", cpu, torch.bfloat16)
    assert unavailable("triton", cpu, torch.float16) is None
    assert unavailable("triton", cpu) is None  # elementwise: no products
    case = LinearCase("custom", 64, 96, 1, torch.bfloat16)
    functions, skipped = harness.backend_functions(case, ["torch", "triton"], cpu)
    assert list(functions) == ["torch"] and "PyTorch path" in skipped["triton"]


def test_the_timed_calls_are_checked_too(monkeypatch, capsys):
    """A backend right on its first call (the one ``_check`` compares) and wrong on the calls
    that are timed fails its row, and the run exits 1: the outputs the last timing round left
    are compared with the same float64 reference."""
    import flash_swiglu

    real, calls = flash_swiglu.swiglu, [0]

    def first_right(gate, up, activation="silu", **kw):
        calls[0] += 1
        out = real(gate, up, activation=activation, **kw)
        return out if calls[0] == 1 else out + 1.0

    monkeypatch.setattr(flash_swiglu, "swiglu", first_right)
    argv = ["--rows", "8", "--cols", "64", "--dtype", "float32", "--pass", "fwd"]
    assert cli.main([*argv, "--backend", "torch,triton"]) == 1
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| triton"))
    assert "FAIL (copy 0's timed call failed its check)" in line
    monkeypatch.setattr(flash_swiglu, "swiglu", real)
    assert cli.main([*argv, "--backend", "torch,triton"]) == 0
