"""``benchmark-swiglu``: speed and correctness of flash-swiglu against its peers.

Examples::

    benchmark-swiglu                      # the suite: 4096 x 4096, fp16/bf16/fp32, fwd and bwd
    benchmark-swiglu --backend all --device cuda --rows 4096 --cols 4096 --dtype float32
    benchmark-swiglu --sweep --dtype bfloat16 --plot sweep.png
    benchmark-swiglu --run-id h200-2026-11-22 --profile
    benchmark-swiglu --op linear          # gate/up projection: 4 models x 8 token counts
    benchmark-swiglu --op linear --model llama-3-8b --tokens 1,2048 --dtype bfloat16
    benchmark-swiglu --op linear --sweep --plot linear.png   # TFLOP/s against M
    benchmark-swiglu --op mlp             # MLP training step, Llama-3-8B, 1k..16k tokens
    benchmark-swiglu --op mlp --model llama-3.2-1b --tokens 4096 --pass fwd+bwd

Every number is measured in the run that reports it: the copy bandwidth and, for
``--op linear`` and ``--op mlp``, the GEMM ceiling (the roofline), each backend in three
rotated rounds (``bench.timing.ROUNDS``), and each backend's error against a float64
reference. See ``flash_swiglu.bench.harness`` (and ``cases.mlp`` for the training step) for
the procedure and ``bench.timing``'s module docstring for the reasons.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from flash_swiglu import _names
from flash_swiglu.bench import env as run_env
from flash_swiglu.bench import harness, plot, profile, report, timing
from flash_swiglu.bench.cases import OPS, linear, mlp
from flash_swiglu.bench.harness import PASSES, run_case
from flash_swiglu.bench.progress import Progress
from flash_swiglu.bench.roofline import Ceilings, copy_bandwidth, gemm_ceiling

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
LAYOUTS = ("separate", *_names.LAYOUTS)
SWEEP_COLS = 4096
PARTIAL = "partial.json"  # a --run-id run's rows so far, until the run is stored whole

CPU_NOTE = (
    "NOTE: this run is on the CPU through Triton's interpreter. Its timings mean nothing; "
    "it checks correctness only."
)

EPILOG = f"""\
Options that take names accept several, comma-separated or repeated, or "all".
Left out, the options come from the op's suite for the device:
  --op elementwise (act(gate) * up; --rows, --cols):
    cuda: 4096 x 4096; float16, bfloat16, float32; silu; fwd, bwd; all backends
    cpu:  64 x 1000; float32, float16; every activation; fwd, bwd; torch, triton, liger
  --op linear (act(x w_gate^T) * (x w_up^T); --model, --tokens):
    cuda: models {", ".join(linear.MODELS)};
          tokens {",".join(map(str, linear.TOKENS))}; bfloat16, float16; silu; fwd;
          backends {", ".join(linear.BACKENDS)}
    cpu:  K=64, N=96; tokens 1,80; float32, float16; silu; fwd; torch, torch-packed,
          cublas, triton
    --tp R: each model's shard on one of R tensor-parallel ranks (intermediate / R rows
          of the gate and up weights; results named MODEL-tpR)
  --op mlp (one training step of down(act(x w_gate^T) * (x w_up^T)); --model, --tokens):
    cuda: model llama-3-8b; tokens {",".join(map(str, mlp.TOKENS))}; bfloat16; silu;
          fwd, bwd, fwd+bwd; backends {", ".join(mlp.BACKENDS)};
          time and peak memory per pass
    cpu:  K=32, N=48; tokens 5,70; float32, float16; silu; fwd, bwd, fwd+bwd; torch,
          triton, triton-recompute
The cpu suites are correctness runs through Triton's interpreter (TRITON_INTERPRET=1; their
timings mean nothing; torch.compile would need minutes of C++ compilation per case).
The torch backend (PyTorch eager) is always measured: it is the baseline of the error check
and of the speedup. Exit status: 0 when every result passed its check, 1 otherwise.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="benchmark-swiglu",
        description="Benchmark and check flash-swiglu against PyTorch eager, torch.compile "
        "and Liger-Kernel.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--op", choices=sorted(OPS), default="elementwise", help="what to measure")
    add = p.add_argument
    backends = dict.fromkeys(b for op in OPS.values() for b in op.backends)
    add("--backend", action="append", metavar="NAMES", help=f"{', '.join(backends)}, all")
    add("--pass", dest="passes", action="append", metavar="NAMES", help=", ".join(PASSES))
    add("--activation", action="append", metavar="NAMES", help=", ".join(_names.ACTIVATIONS))
    add("--layout", action="append", metavar="NAMES", help=f"{', '.join(LAYOUTS)} (separate)")
    add("--dtype", action="append", metavar="NAMES", help=", ".join(DTYPES))
    add("--rows", type=_positive, help="rows of each operand")
    add("--cols", type=_positive, help="columns of each operand (gate and up)")
    models = ", ".join(linear.MODELS)
    add("--model", action="append", metavar="NAMES", help=f"linear, mlp: {models}")
    add("--tokens", action="append", metavar="M", help="linear, mlp: token counts, e.g. 1,2048")
    add("--shape", type=_shape, help=argparse.SUPPRESS)  # linear, mlp: one custom K,N (tests)
    tp_help = "linear, mlp: one rank's shard of each --model, its intermediate size split"
    add("--tp", type=_positive, metavar="RANKS", help=tp_help + " over RANKS ranks")
    add("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    settle = "GPU time each timing first runs its call untimed, so a backend is timed at the "
    settle += "clock its own work sets, not its predecessor's (default %(default)g; 0: none)"
    add("--settle-ms", type=_non_negative, default=timing.SETTLE_MS, metavar="MS", help=settle)
    step = "mlp: GPU time of each round of timed training steps (default "
    step += f"{timing.STEP_ROUND_MS_DEFAULT:g}). At an "
    step += "H200's power limit the clock follows seconds of work: rounds of 2000 ms time the "
    step += "step at the clock its sustained work sets, as in training"
    add("--step-ms", type=_positive_ms, metavar="MS", help=step)
    flush = "how the L2 is evicted before each timed call: read (default) a 256 MB buffer, or "
    flush += "write it (zero_, as do_bench; its dirty lines are written back while the call runs)"
    add("--l2-flush", choices=timing.L2_FLUSHES, default=timing.L2_FLUSHES[0], help=flush)
    copies = "elementwise, linear: time each backend on N copies of its inputs, each a call "
    copies += "of its own in the rounds, and pool their rounds (default 1): a kernel's time can "
    copies += "depend on where its operands landed in memory"
    add("--copies", type=_positive, default=1, metavar="N", help=copies)
    sweep = "elementwise: 2^16..2^28 elements per operand; linear: the --tokens (M)"
    add("--sweep", action="store_true", help=sweep)
    add("--json", type=Path, metavar="PATH", help="write every result row to PATH")
    plot_help = "with --sweep: PNG of GB/s (elementwise) or TFLOP/s (linear) against size"
    add("--plot", type=Path, metavar="PATH", help=plot_help)
    run_id = (
        f"store the run under RESULTS_DIR/NAME/; while it runs, NAME/{PARTIAL} holds the rows of"
        " the cases done so far (removed once the run is stored whole)"
    )
    add("--run-id", metavar="NAME", help=run_id)
    add("--results-dir", type=Path, default=Path("benchmarks/results"), help="(%(default)s)")
    add("--profile", action="store_true", help="add DRAM bytes measured by Nsight Compute")
    add("--profile-child", type=Path, help=argparse.SUPPRESS)
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def _positive_ms(text: str) -> float:
    value = float(text)
    if not 0 < value < float("inf"):  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be a positive number of ms, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError(f"must be zero or more, got {text}")
    return value


def _shape(text: str) -> tuple[int, int]:
    k, n = (_positive(v) for v in text.split(","))
    return k, n


def _names_of(
    parser: argparse.ArgumentParser,
    option: str,
    given: list[str] | None,
    allowed: Sequence[str],
    default: Sequence[str],
) -> list[str]:
    """The names given to ``option`` (comma lists, repeats, "all"), checked and deduplicated."""
    if not given:
        return list(default)
    names = [n.strip() for value in given for n in value.split(",") if n.strip()]
    if "all" in names:
        return list(allowed)
    unknown = [n for n in names if n not in allowed]
    if unknown:
        parser.error(f"{option}: unknown {', '.join(unknown)} (choose from {', '.join(allowed)})")
    return list(dict.fromkeys(names))


def resolve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill in the device, the suite defaults and the name lists; reject contradictions."""
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if device == "cpu" and "triton" not in sys.modules:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # the kernels run in the interpreter
    op = OPS[args.op]
    suite = op.suites[device]
    args.device = torch.device(device)
    args.backends = _names_of(parser, "--backend", args.backend, op.backends, suite["backends"])
    args.passes = _names_of(parser, "--pass", args.passes, PASSES, suite["passes"])
    args.activations = _names_of(
        parser, "--activation", args.activation, _names.ACTIVATIONS, suite["activations"]
    )
    args.layouts = _names_of(parser, "--layout", args.layout, LAYOUTS, ("separate",))
    dtypes = _names_of(parser, "--dtype", args.dtype, tuple(DTYPES), suite["dtypes"])
    args.dtypes = [DTYPES[d] for d in dtypes]
    if args.sweep and device == "cpu":
        parser.error("--sweep needs CUDA (the interpreter would take hours)")
    if args.plot and not args.sweep:
        parser.error("--plot draws a rate against size: it needs --sweep")
    if args.step_ms is not None and args.op != "mlp":
        parser.error("--step-ms: only --op mlp times training steps")
    if args.step_ms is None:
        args.step_ms = timing.STEP_ROUND_MS_DEFAULT
    if args.op == "mlp":
        _resolve_mlp(parser, args, suite)
    elif args.op == "linear":
        _resolve_linear(parser, args, suite)
    else:
        _resolve_elementwise(parser, args, suite)
    if args.plot and plot.matplotlib_missing():
        parser.error(f"--plot: {plot.matplotlib_missing()}")
    if args.run_id is not None:
        if not args.run_id or Path(args.run_id).name != args.run_id:
            parser.error(f"--run-id must be a plain directory name, got {args.run_id!r}")
        if (args.results_dir / args.run_id / "rows.json").exists() and not args.profile_child:
            parser.error(f"{args.results_dir / args.run_id} already holds a run; pick a new name")


def _resolve_elementwise(
    parser: argparse.ArgumentParser, args: argparse.Namespace, suite: dict[str, Any]
) -> None:
    """``args.rows``, ``args.cols``."""
    given = [o for o, v in (("--model", args.model), ("--tokens", args.tokens), ("--tp", args.tp))
             if v]  # fmt: skip
    if given or args.shape:
        parser.error(f"{', '.join(given) or '--shape'}: only for --op linear and --op mlp")
    if args.sweep:
        if args.rows:
            parser.error("--sweep chooses the rows itself; give --cols only")
        args.cols = args.cols or SWEEP_COLS
    else:
        args.rows = args.rows or suite["rows"]
        args.cols = args.cols or suite["cols"]


def _resolve_linear(
    parser: argparse.ArgumentParser, args: argparse.Namespace, suite: dict[str, Any]
) -> None:
    """``args.shapes`` (``[(model, K, N)]``) and ``args.tokens``."""
    if args.rows or args.cols:
        parser.error("--rows/--cols: only for --op elementwise (linear, mlp: --model, --tokens)")
    if args.shape and args.model:
        parser.error("--shape replaces --model; give one of them")
    if args.shape or (not args.model and "shape" in suite):
        if args.tp:
            parser.error("--tp shards a --model; with --shape give the shard's K,N itself")
        args.shapes = [(linear.CUSTOM, *(args.shape or suite["shape"]))]
    else:
        names = tuple(linear.MODELS)
        models = _names_of(parser, "--model", args.model, names, suite.get("models", names))
        args.shapes = [(m, *linear.MODELS[m]) for m in models]
        if args.tp and args.tp > 1:
            uneven = [m for m, _, n in args.shapes if n % args.tp]
            if uneven:
                parser.error(f"--tp {args.tp}: the intermediate size of {', '.join(uneven)} "
                             f"does not split evenly over {args.tp} ranks")  # fmt: skip
            args.shapes = [(f"{m}-tp{args.tp}", k, n // args.tp) for m, k, n in args.shapes]
    if args.tokens:
        try:
            tokens = [_positive(t) for v in args.tokens for t in v.split(",") if t.strip()]
        except (ValueError, argparse.ArgumentTypeError) as e:
            parser.error(f"--tokens: {e}")
        args.tokens = list(dict.fromkeys(tokens))
    else:
        args.tokens = list(suite["tokens"])


def _resolve_mlp(
    parser: argparse.ArgumentParser, args: argparse.Namespace, suite: dict[str, Any]
) -> None:
    """As ``--op linear`` (``args.shapes``, ``args.tokens``), less what a step does not have."""
    if args.sweep:
        parser.error("--sweep: not for --op mlp (its --tokens are the sweep; no plot)")
    if args.profile:
        parser.error("--profile: not for --op mlp")
    if args.copies > 1:
        parser.error("--copies: not for --op mlp (its loop times each backend on one copy)")
    if args.layouts != ["separate"]:
        parser.error("--layout: --op mlp has separate gate_proj and up_proj weights only")
    _resolve_linear(parser, args, suite)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; return 0 when every result passed its check, else 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    resolve(parser, args)
    timing.SETTLE_MS = args.settle_ms
    timing.STEP_ROUND_MS = args.step_ms
    timing.L2_FLUSH = args.l2_flush
    harness.COPIES = args.copies
    device = args.device
    cases = OPS[args.op].cases(args)
    if args.profile_child:
        return profile.child_main(cases, args.backends, args.passes, device, args.profile_child)

    gemm = gemm_ceiling(device) if any(c.flops("fwd") for c in cases) else None
    ceilings = Ceilings(copy_bandwidth(device), gemm)
    progress = Progress(len(cases) * len(args.passes))
    run = OPS[args.op].run or run_case
    command = shlex.join(["benchmark-swiglu", *argv])
    partial = args.results_dir / args.run_id / PARTIAL if args.run_id else None
    # The partial file's environment (GPU, versions, commit) as the run starts; the stored
    # run's rows get theirs when it ends.
    started = run_env.collect(device, command) if partial is not None else None
    rows = []
    for done, case in enumerate(cases, 1):
        rows += run(case, args.backends, args.passes, device, ceilings, progress.step)
        if partial is not None:  # what a run cut short (a time limit, a crash) still leaves
            so_far = dict(command=command, cases_done=done, cases=len(cases),
                          environment=started, rows=rows)  # fmt: skip
            report.write_json(partial, so_far)
    progress.close()
    environment = run_env.collect(device, command)
    for row in rows:
        row.update(sweep=args.sweep, **environment)

    notes = _profile(argv, rows, device) if args.profile else []
    table = report.format_table(rows, ceilings, environment["gpu"] or "the CPU")
    notes += _save(args, rows, environment, table, ceilings.copy_gbps)
    if partial is not None:
        partial.unlink(missing_ok=True)  # the run is whole: rows.json has every row
    if device.type == "cpu":
        notes.append(CPU_NOTE)
    for note in notes:
        print(note)
    print(f"\n{table}" if notes else table)
    return 0 if all(row["passed"] is not False for row in rows) else 1


def _profile(argv: list[str], rows: list[dict[str, Any]], device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["--profile: Nsight Compute measures CUDA kernels only; not profiled on the CPU."]
    ncu = profile.find_ncu()
    if ncu is None:
        return [
            "--profile: Nsight Compute (ncu) not found on PATH, in /opt/nvidia/nsight-compute/*/ "
            "or /usr/local/cuda/bin; continuing without DRAM measurements."
        ]
    print(f"--profile: re-running the cases under {ncu} ...", file=sys.stderr)
    return [f"--profile: {note}" for note in profile.profile_rows(ncu, argv, rows)]


def _save(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    environment: dict[str, Any],
    table: str,
    copy_bw: float,
) -> list[str]:
    """Write what the options ask for; return what was written (or why not)."""
    notes = []
    if args.json:
        report.write_json(args.json, rows)
        notes.append(f"rows written to {args.json}")
    plots = [args.plot] if args.plot else []
    if args.run_id:
        run_dir = args.results_dir / args.run_id
        report.save_run(run_dir, rows, environment, table)
        notes.append(f"run stored in {run_dir}/ (rows.json, env.json, table.md)")
        if args.sweep:
            plots.append(run_dir / "sweep.png")
    for path in plots:
        missing = plot.matplotlib_missing()
        if missing:
            notes.append(f"{path} not drawn: {missing}")
            continue
        try:
            plot.plot_sweep(rows, path, copy_bw)
            notes.append(f"plot saved to {path}")
        except ValueError as e:
            notes.append(f"{path} not drawn: {e}")
    return notes


if __name__ == "__main__":
    sys.exit(main())
