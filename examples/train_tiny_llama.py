"""Train a small LLaMA twice, as it is and with flash-swiglu's MLPs, and compare the two runs.

A LLaMA built from a ``transformers`` ``LlamaConfig`` (random initialisation with a fixed seed;
nothing is downloaded) learns a synthetic byte-level corpus (a pseudo-language generated
deterministically here: syllable words, a fixed bigram grammar, punctuation) for ``--steps``
AdamW steps, once unpatched and once after
``flash_swiglu.integrations.transformers.patch_hf_model(model)``: same seed, same initial
weights, same batches in the same order.

Precision: on CUDA the weights, activations and AdamW state are bf16 (the parameters are cast
to bf16; no autocast), so every MLP call of both runs is a bf16 call and the
two runs differ only in how the MLP computes; the loss is computed in fp32 from the bf16
logits (as Hugging Face's loss does). On the CPU everything is fp32; the patched MLPs run the
Triton kernels through Triton's interpreter when ``TRITON_INTERPRET=1`` is set before
``triton`` is imported, else flash-swiglu's PyTorch reference path.

Reports for each run the tokens per second (after ``WARMUP_STEPS`` steps that include the
kernels' compilation), the peak memory (``torch.cuda.max_memory_allocated`` from just before
the model moves to the GPU: weights, AdamW state, activations) and the final loss; then the
largest difference between the two loss curves. Writes ``loss_curves.json`` (both curves and
every number above) and ``loss_curves.png`` to ``--out``.

``--compile default`` or ``--compile reduce-overhead`` (CUDA graphs) runs both models under
``torch.compile`` with that mode, compiled after the patch (the run named "eager" is then the
compiled unpatched model); the optimizer stays eager in both. The warm-up steps include the
compilation.

    PYTHONPATH=src python examples/train_tiny_llama.py        # on a GPU: both runs < 90 s
    PYTHONPATH=src TRITON_INTERPRET=1 python examples/train_tiny_llama.py --device cpu \\
        --steps 3 --hidden 32 --layers 1 --seq 16 --batch 2     # a smoke run
    PYTHONPATH=src python examples/train_tiny_llama.py --compile reduce-overhead \\
        --out /tmp/tiny-llama-graphs                             # both models compiled
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
CUDA_OUT = ROOT / "benchmarks" / "results" / "h200-train-tiny-llama"
CPU_OUT = Path(tempfile.gettempdir()) / "train-tiny-llama"
WARMUP_STEPS = 5  # excluded from tokens/s: they compile the kernels
CORPUS_BYTES = 1 << 20
SEED = 0
RUNS = ("eager", "flash-swiglu")
COMPILE_MODES = ("none", "default", "reduce-overhead")


def synthetic_corpus(n_bytes: int, seed: int = SEED) -> bytes:
    """ASCII pseudo-text, the same for the same seed: ~600 words of one to three syllables,
    each with eight likely successors (a fixed random bigram grammar), sentences of 5 to 15
    words with capitals and punctuation, paragraphs of a few sentences. Something to learn at
    every scale (spelling, word order, sentence shape) and no download."""
    rng = random.Random(seed)
    onsets = ["", "b", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t"]
    onsets += ["v", "w", "z", "st", "tr", "pl", "ch", "sh", "br"]
    vowels = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
    codas = ["", "", "", "n", "r", "s", "t", "l", "nd", "st", "m"]

    def word() -> str:
        n = rng.choice((1, 1, 2, 2, 2, 3))  # syllables
        parts = (rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(n))
        return "".join(parts)

    words = sorted({word() for _ in range(700)})
    successors = {w: rng.sample(words, 8) for w in words}
    parts: list[str] = []
    size = 0
    while size < n_bytes:
        sentences = []
        for _ in range(rng.randint(2, 6)):
            w = rng.choice(words)
            sentence = [w]
            for _ in range(rng.randint(4, 14)):
                w = rng.choice(successors[w]) if rng.random() < 0.85 else rng.choice(words)
                sentence.append(w)
            text = " ".join(sentence)
            sentences.append(text[0].upper() + text[1:] + rng.choice(".....?!"))
        paragraph = " ".join(sentences) + "\n"
        parts.append(paragraph)
        size += len(paragraph)
    return "".join(parts).encode("ascii")[:n_bytes]


def intermediate_size(hidden: int) -> int:
    """LLaMA's rule: 8/3 of the hidden size, rounded up to a multiple of 256 (16 when tiny)."""
    multiple = 256 if hidden >= 256 else 16
    return -(-(8 * hidden // 3) // multiple) * multiple


def build_model(args: argparse.Namespace) -> torch.nn.Module:
    """A ``LlamaForCausalLM`` over bytes, initialised from ``args.seed`` on the CPU in fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    heads = max(1, args.hidden // 64)
    config = LlamaConfig(
        vocab_size=256,
        hidden_size=args.hidden,
        intermediate_size=args.intermediate,
        num_hidden_layers=args.layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=args.seq,
        hidden_act="silu",
        tie_word_embeddings=False,
        attn_implementation="sdpa",
    )
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(config)


def batches(data: torch.Tensor, args: argparse.Namespace) -> torch.Tensor:
    """``[steps, batch, seq]`` windows of ``data`` at random offsets: the same for both runs."""
    generator = torch.Generator().manual_seed(args.seed + 1)
    starts = torch.randint(0, len(data) - args.seq, (args.steps, args.batch), generator=generator)
    return data[starts[..., None] + torch.arange(args.seq)]


def lr_at(step: int, args: argparse.Namespace) -> float:
    """Linear warm-up over 10% of the steps, then cosine decay to a tenth."""
    warm = max(1, args.steps // 10)
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, args.steps - warm)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def train(args: argparse.Namespace, tokens: torch.Tensor, patched: bool) -> dict[str, Any]:
    """One training run; its loss curve, speed and memory."""
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    dtype = torch.bfloat16 if cuda else torch.float32
    model = build_model(args)
    if cuda:
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model.to(device).train()
    for param in model.parameters():  # the parameters only: RoPE's inv_freq stays fp32
        param.data = param.data.to(dtype)
    tokens = tokens.to(device)
    count = 0
    if patched:
        from flash_swiglu.integrations.transformers import patch_hf_model

        count = patch_hf_model(model)
        if count != args.layers:
            raise RuntimeError(f"patch_hf_model patched {count} MLPs, expected {args.layers}")
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, args))
    # --compile: the model's forward (and through AOTAutograd its backward) compiled after the
    # patch, so the patched run traces flash-swiglu's custom ops; optimizer and clipping stay
    # eager in both runs. "reduce-overhead" replays CUDA graphs (cudagraph trees): each step is
    # marked as a new one, and the loss is copied out of the graph's memory, which the next
    # replay writes over.
    graphs = args.compile == "reduce-overhead"
    run = model if args.compile == "none" else torch.compile(model, mode=args.compile)
    warm = min(WARMUP_STEPS, args.steps // 2)
    losses: list[torch.Tensor] = []
    start = time.perf_counter()
    for step in range(args.steps):
        if step == warm:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        ids = tokens[step]
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        loss = run(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        loss = loss.detach().clone() if graphs else loss.detach()
        losses.append(loss)  # no .item() here: it would wait for the GPU each step
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    curve = torch.stack(losses).float().cpu().tolist()
    timed = args.steps - warm
    result = {
        "patched_mlps": count,
        "losses": curve,
        "final_loss": sum(curve[-10:]) / len(curve[-10:]),
        "tokens_per_s": timed * args.batch * args.seq / seconds if timed else None,
        "timed_steps": timed,
        "timed_s": seconds,
        "peak_mib": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
    }
    del model, run, optimizer, schedule, losses
    if args.compile != "none":
        torch.compiler.reset()  # the next run compiles its own model, cudagraph trees freed
    return result


def compare(a: Sequence[float], b: Sequence[float]) -> dict[str, float]:
    """How far apart two loss curves are, and the curve's own step-to-step spread (over its
    last fifth: how much one batch's loss differs from the next, for scale)."""
    diffs = [abs(x - y) for x, y in zip(a, b, strict=True)]
    # b - a over the second half, and how often b is above: a drift one way, not noise
    late = [y - x for x, y in zip(a, b, strict=True)][len(a) // 2 :]
    tail = list(a[-max(2, len(a) // 5) :])
    mean = sum(tail) / len(tail)
    return {
        "max_abs_diff": max(diffs),
        "mean_abs_diff": sum(diffs) / len(diffs),
        "mean_diff_second_half": sum(late) / max(1, len(late)),
        "frac_above_second_half": sum(d > 0 for d in late) / max(1, len(late)),
        "final_abs_diff": diffs[-1],
        "eager_loss_std_last_fifth": (sum((x - mean) ** 2 for x in tail) / len(tail)) ** 0.5,
    }


def environment(device: torch.device) -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    # FLASH_SWIGLU_COMMIT first: a copy of a working tree may carry a .git whose HEAD is not
    # the tree's commit (as bench.env does).
    commit = os.environ.get("FLASH_SWIGLU_COMMIT", "")
    if not commit:
        try:
            commit = subprocess.run(
                ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
        except OSError:
            commit = ""
    return {
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "triton": version("triton"),
        "transformers": version("transformers"),
        "python": platform.python_version(),
        "commit": commit or None,
        "command": " ".join(["python", *sys.argv]),
    }


def plot(result: dict[str, Any], path: Path) -> str:
    """Both loss curves and their difference, as a PNG; or why not."""
    if importlib.util.find_spec("matplotlib") is None:
        return f"{path} not drawn: matplotlib is not installed"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["runs"]
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 6), sharex=True, gridspec_kw={"height_ratios": (3, 1)}
    )
    for name in RUNS:
        speed = runs[name]["tokens_per_s"]
        label = name if speed is None else f"{name} ({speed:,.0f} tokens/s)"
        top.plot(runs[name]["losses"], label=label, linewidth=1)
    top.set_ylabel("training loss (nats per byte)")
    config = result["config"]
    top.set_title(
        f"LLaMA {config['layers']} x {config['hidden']} (MLP {config['intermediate']}), "
        f"{config['dtype']}, batch {config['batch']} x {config['seq']} bytes"
        + ("" if config["compile"] == "none" else f", torch.compile {config['compile']}"),
        fontsize=10,
    )
    top.legend()
    top.grid(True, alpha=0.3)
    eager, ours = runs["eager"]["losses"], runs["flash-swiglu"]["losses"]
    diff = [b - a for a, b in zip(eager, ours, strict=True)]
    bottom.plot(diff, color="black", linewidth=0.8)
    bottom.axhline(0, color="gray", linewidth=0.5)
    bottom.set_ylabel("flash-swiglu - eager")
    bottom.set_xlabel("step")
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"plot saved to {path}"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--device", choices=("cuda", "cpu"), help="default: cuda if available")
    p.add_argument("--out", type=Path, help=f"default: {CUDA_OUT} (cuda), {CPU_OUT} (cpu)")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--intermediate", type=int, help="default: 8/3 hidden, LLaMA-rounded")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--seq", type=int, default=512, help="bytes per sequence")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=SEED, help="initial weights and batch order")
    p.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="none",
        help="torch.compile both models with this mode (reduce-overhead: CUDA graphs, cuda only)",
    )
    args = p.parse_args(argv)
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device is available")
    if args.compile == "reduce-overhead" and args.device != "cuda":
        p.error("--compile reduce-overhead replays CUDA graphs: it needs --device cuda")
    if min(args.steps, args.hidden, args.layers, args.seq, args.batch) < 1:
        p.error("--steps, --hidden, --layers, --seq and --batch must be positive")
    args.intermediate = args.intermediate or intermediate_size(args.hidden)
    args.out = args.out or (CUDA_OUT if args.device == "cuda" else CPU_OUT)
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    data = torch.frombuffer(bytearray(synthetic_corpus(CORPUS_BYTES)), dtype=torch.uint8)
    tokens = batches(data.long(), args)
    runs = {name: train(args, tokens, patched=name == "flash-swiglu") for name in RUNS}
    config = {k: v for k, v in vars(args).items() if k != "out"}
    config.update(dtype="bfloat16" if args.device == "cuda" else "float32")
    config.update(warmup_steps=min(WARMUP_STEPS, args.steps // 2), corpus_bytes=CORPUS_BYTES)
    result = {
        "config": config,
        "environment": environment(torch.device(args.device)),
        "comparison": compare(runs["eager"]["losses"], runs["flash-swiglu"]["losses"]),
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loss_curves.json").write_text(json.dumps(result, indent=1) + "\n")
    note = plot(result, args.out / "loss_curves.png")
    for name in RUNS:
        run = runs[name]
        speed = "-" if run["tokens_per_s"] is None else f"{run['tokens_per_s']:,.0f}"
        peak = "-" if run["peak_mib"] is None else f"{run['peak_mib']:,.0f}"
        print(
            f"{name:>12}: {speed} tokens/s, peak {peak} MiB, "
            f"final loss {run['final_loss']:.4f} (mean of the last 10 steps)"
        )
    c = result["comparison"]
    print(
        f"loss curves: max |diff| {c['max_abs_diff']:.4f}, mean {c['mean_abs_diff']:.4f}, "
        f"final {c['final_abs_diff']:.4f}; eager's own step-to-step spread (std over the last "
        f"fifth) {c['eager_loss_std_last_fifth']:.4f}; second half: flash-swiglu - eager "
        f"{c['mean_diff_second_half']:+.4f} on average, above in "
        f"{c['frac_above_second_half']:.0%} of the steps"
    )
    print(f"results written to {args.out / 'loss_curves.json'}; {note}")
    return result


if __name__ == "__main__":
    main()
