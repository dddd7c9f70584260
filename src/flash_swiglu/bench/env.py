"""Where and with what a run was measured: GPU, driver, versions, commit, time, command."""

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
        "cuda": torch.version.cuda,
        "torch": torch.__version__,
        "triton": _version("triton"),
        "liger_kernel": _version("liger-kernel"),
        "python": platform.python_version(),
        "commit": commit,
        "commit_dirty": dirty,
        "timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
    }


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
