"""Session 30: in a fresh process, one bf16 MLP training step at a hidden size that takes the
split backward, with warnings as errors: no "no current CUDA context" warning. The gradient
goes in through ``torch.autograd.grad``, so our backward is the first node autograd's device
thread runs and cuBLAS may be that thread's first CUDA work. Prints the route and "ok".

    PYTHONPATH=src python scripts/check_split_context.py
"""

import warnings

import torch

import flash_swiglu
from flash_swiglu.ops import train as T

warnings.simplefilter("error")
x = torch.randn(2048, 1024, device="cuda", dtype=torch.bfloat16, requires_grad=True)
w = [torch.randn(s, device="cuda", dtype=torch.bfloat16, requires_grad=True) * 0.03
     for s in ((2816, 1024), (2816, 1024), (1024, 2816))]  # fmt: skip
w = [t.detach().requires_grad_(True) for t in w]
print("split route:", T.split_dh(1024, torch.bfloat16, x.device))
y = flash_swiglu.swiglu_mlp(x, *w)
torch.autograd.grad(y, [x, *w], torch.randn_like(y))
torch.cuda.synchronize()
print("ok")
