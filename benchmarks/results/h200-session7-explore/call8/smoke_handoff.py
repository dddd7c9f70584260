import torch
from flash_swiglu import reference
from flash_swiglu.kernels import ws_mlp
for (m, n, k, sms) in ((300, 200, 192, 3), (1000, 1000, 512, None)):
    dt = torch.bfloat16
    r = lambda *s, sc=1.0: torch.randn(*s, device="cuda", dtype=dt) * sc
    dy, wd, g, u = r(m, k), r(k, n, sc=n**-0.5), r(m, n), r(m, n)
    h, dg, du = (torch.empty(m, n, device="cuda", dtype=dt) for _ in range(3))
    ws_mlp.mlp_backward_handoff(dy, wd, g, u, h, dg, du, activation="silu", alpha=1.702, limit=7.0, sms=sms)
    torch.cuda.synchronize()
    dgr, dur = reference.glu_backward(g.float(), u.float(), dy.float() @ wd.float(), "silu", 1.702, 7.0)
    e = lambda a, b: ((a.float() - b).abs().max() / b.abs().max()).item()
    print("smoke", m, n, k, "dg", e(dg, dgr), "du", e(du, dur), flush=True)
