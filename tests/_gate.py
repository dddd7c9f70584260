"""Running a compile-gate script (``compile_gate*.py``) in a subprocess for the tests.

The scripts must run where ``TRITON_INTERPRET`` is unset (under the interpreter
``@triton.jit`` yields functions that cannot be compiled), so the tests start them in a
process of their own and read one JSON object per compiled variant from its output.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SMEM_LIMIT = 232448  # shared memory of one Hopper block, bytes


def run_gate(script: str, *args: str) -> list[dict]:
    """Run ``script`` (relative to ``tests/``) with ``args``; its JSON lines."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent / "src"), env.get("PYTHONPATH", "")])
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert rows, proc.stderr[-4000:]
    return rows
