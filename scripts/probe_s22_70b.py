"""Session 22 probe: Llama-3-70B decode at 8 / 32 tokens, ours against Liger, through
explore_session15.decode (100 ms settle, rotated rounds) with no extra candidate, in one
process, to set beside the benchmark CLI's rows of the same call."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import explore_session15 as S15

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
S15.decode(out, [("llama-3-70b", 8), ("llama-3-70b", 32)], lambda: [], "probe70b")
