"""Session 22 probe: Llama-3-70B decode at 8 / 32 tokens, ours against Liger and the cuBLAS
product, through explore_session15.decode (100 ms settle, rotated rounds) with no extra
candidate, to set beside the benchmark CLI's rows of the same device call.
``python scripts/probe_s22_70b.py probe70b --out DIR``."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explore_session12 as S12
import explore_session15 as S15


def probe70b(out: Path) -> list[dict]:
    return S15.decode(out, [("llama-3-70b", 8), ("llama-3-70b", 32)], lambda: [], "probe70b")


if __name__ == "__main__":
    S12.run_stages({"probe70b": probe70b}, ["probe70b"])
