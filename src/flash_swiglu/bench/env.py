"""Where and with what a run was measured: GPU (its name and, since session 22, which board:
UUID and PCI address), driver, versions, commit, time, command, and the environment variables
that made the library run other than its committed configuration."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

_PACKAGE_DIR = Path(__file__).resolve().parents[1]


def collect(device: torch.device, command: str) -> dict[str, Any]:
    """The environment of this run, as JSON fields."""
    cuda = device.type == "cuda"
    commit, dirty = _git_commit()
    return {
        "gpu": torch.cuda.get_device_name(device) if cuda else None,
        "driver": _driver_version() if cuda else None,
        **gpu_identity(device),
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "liger_kernel": _version("liger-kernel"),
        "python": platform.python_version(),
        "commit": commit,
        "commit_dirty": dirty,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "library_env": library_env(),
    }


def gpu_identity(device: torch.device) -> dict[str, str | None]:
    """``gpu_uuid`` and ``gpu_pci`` (domain:bus:device) of the board the run used, None on the
    CPU. Two runs on the same model of GPU can differ by a few percent where they ran on
    different boards (session 22: Llama-3-70B decode, ours against Liger, 0.95-1.00x in some
    device calls and level in others, the boards unrecorded); the fields tell them apart."""
    if device.type != "cuda":
        return {"gpu_uuid": None, "gpu_pci": None}
    props = torch.cuda.get_device_properties(device)
    uuid = getattr(props, "uuid", None)
    pci = [getattr(props, f"pci_{part}_id", None) for part in ("domain", "bus", "device")]
    return {
        "gpu_uuid": str(uuid) if uuid is not None else None,
        "gpu_pci": "{:04x}:{:02x}:{:02x}".format(*pci) if None not in pci else None,
    }


def library_env() -> dict[str, str]:
    """The environment variables of this process that make the library run other than its
    committed configuration: a launch table of its own (``FLASH_SWIGLU_LINEAR_CONFIGS``,
    ``FLASH_SWIGLU_TRAIN_CONFIGS``) or the Gluon kernels off (``FLASH_SWIGLU_GLUON=0``), as
    ``{name: value}``; empty for the defaults. The README's summary leaves out the rows of
    runs that had any (``bench.summary.render_summary``)."""
    from flash_swiglu.ops import linear, train

    found = {
        name: os.environ[name]
        for name in (linear.CONFIG_ENV, train.TABLE_ENV)
        if os.environ.get(name)
    }
    if os.environ.get(train.GLUON_ENV, "1") == "0":
        found[train.GLUON_ENV] = "0"
    return found


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _run(*cmd: str) -> str | None:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _driver_version() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        match = re.search(r"Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s", text)
        if match:
            return match.group(1)
    except OSError:
        pass
    out = _run("nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader")
    return out.splitlines()[0].strip() if out else None


COMMIT_ENV = "FLASH_SWIGLU_COMMIT"


def _git_commit() -> tuple[str | None, bool | None]:
    """The commit of the checkout this package runs from, and whether it has local changes.
    ``FLASH_SWIGLU_COMMIT``, where set, wins: a copy of a tree (the GPU machine's) may carry
    no ``.git``, or an older commit's ``.git`` with the tree's changes on top, which would
    name the older commit as dirty."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV], None
    commit = _run("git", "-C", str(_PACKAGE_DIR), "rev-parse", "HEAD")
    if not commit:
        return None, None
    status = _run("git", "-C", str(_PACKAGE_DIR), "status", "--porcelain", "--untracked-files=no")
    return commit, bool(status) if status is not None else None
