"""The examples run: ``examples/train_tiny_llama.py`` on tiny settings (CPU: through Triton's
interpreter, which conftest turns on)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _smoke(tmp_path, device, *extra: str) -> dict:
    pytest.importorskip("transformers")
    pytest.importorskip("flash_swiglu.integrations.transformers")
    example = _load("train_tiny_llama")
    args = ["--device", device, "--steps", "3", "--hidden", "32", "--layers", "1"]
    args += ["--seq", "16", "--batch", "2", "--out", str(tmp_path), *extra]
    result = example.main(args)
    saved = json.loads((tmp_path / "loss_curves.json").read_text())
    assert saved["comparison"] == result["comparison"]
    assert saved["config"]["intermediate"] == 96 and saved["config"]["steps"] == 3
    eager, ours = (saved["runs"][name] for name in ("eager", "flash-swiglu"))
    assert eager["patched_mlps"] == 0 and ours["patched_mlps"] == 1
    for run in (eager, ours):
        assert len(run["losses"]) == 3 and all(math.isfinite(x) for x in run["losses"])
        assert run["losses"][0] == pytest.approx(math.log(256), abs=0.3)  # random init
        assert run["tokens_per_s"] > 0
    # Same initial weights, same batches: the curves differ by the MLP's rounding alone.
    tolerance = 1e-3 if device == "cpu" else 0.05  # fp32 on the CPU, bf16 on a GPU
    assert saved["comparison"]["max_abs_diff"] < tolerance
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "loss_curves.png").stat().st_size > 0
    return saved


def test_train_tiny_llama_smoke(tmp_path, device):
    saved = _smoke(tmp_path, device)
    assert saved["config"]["compile"] == "none"


def test_train_tiny_llama_compiled(tmp_path, device):
    """``--compile``: both models under ``torch.compile`` (the patched one through the custom
    ops); on a GPU also with CUDA graphs (cudagraph trees), whose losses must be copied out
    of the graph's memory before the next replay: three distinct finite losses say they
    were."""
    modes = ["default"] + (["reduce-overhead"] if device == "cuda" else [])
    for mode in modes:
        saved = _smoke(tmp_path / mode, device, "--compile", mode)
        assert saved["config"]["compile"] == mode
        for run in saved["runs"].values():
            assert len(set(run["losses"])) == 3


def test_reduce_overhead_needs_cuda():
    example = _load("train_tiny_llama")
    with pytest.raises(SystemExit):
        example.parse_args(["--device", "cpu", "--compile", "reduce-overhead"])


def test_synthetic_corpus_is_deterministic():
    example = _load("train_tiny_llama")
    text = example.synthetic_corpus(5000)
    assert text == example.synthetic_corpus(5000) != example.synthetic_corpus(5000, seed=1)
    assert len(text) == 5000 and text.isascii() and b". " in text
