"""Session 9: the kernel torch.compile max-autotune generates for Llama-3-8B gate/up at one
token (its output code, with TORCH_LOGS=output_code), to see what makes it fast."""

import torch

torch.manual_seed(0)
k, n = 4096, 14336
x = torch.randn(1, k, device="cuda", dtype=torch.bfloat16)
wg = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / 64
wu = torch.randn(n, k, device="cuda", dtype=torch.bfloat16) / 64


def eager(x, wg, wu):
    return torch.nn.functional.silu(x @ wg.T) * (x @ wu.T)


f = torch.compile(eager, mode="max-autotune-no-cudagraphs", dynamic=False)
f(x, wg, wu)
torch.cuda.synchronize()
print("done")
