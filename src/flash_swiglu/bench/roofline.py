"""The ceilings every result is held against, measured in the same run.

The memory ceiling is the rate of a device-to-device ``copy_`` between two large buffers,
counting the bytes read plus the bytes written: no elementwise kernel can move bytes faster
than a plain copy. The compute ceiling of the GEMM cases (``--op linear``) is the rate of a
large cuBLAS product on random data (``GEMM_SIZE``^3, bf16): what the matrix units deliver
in practice, well below the datasheet's (an H200 measures 680-800 of its ~990 TFLOP/s).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from flash_swiglu.bench.timing import measure, measure_call

GIB = 1 << 30
COPY_BYTES = {"cuda": 2 * GIB, "cpu": 32 << 20}  # each buffer
GEMM_SIZE = {"cuda": 8192, "cpu": 512}  # M = N = K
GEMM_DTYPE = torch.bfloat16


@dataclass(frozen=True)
class Ceilings:
    """The ceilings of one run: copy GB/s (read + write), and GEMM TFLOP/s where measured."""

    copy_gbps: float
    gemm_tflops: float | None = None


def gbps(nbytes: int, ms: float) -> float:
    """Bytes moved in ``ms`` milliseconds, as GB/s (10^9 bytes per second)."""
    return nbytes / (ms * 1e-3) / 1e9


def copy_bandwidth(device: torch.device) -> float:
    """GB/s of ``dst.copy_(src)`` (read + write) between two buffers of ``COPY_BYTES``."""
    nbytes = COPY_BYTES.get(device.type, COPY_BYTES["cpu"])
    ms = _copy_ms(nbytes, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()  # give the 4 GiB back to the cases
    return gbps(2 * nbytes, ms)


def gemm_ceiling(device: torch.device) -> float:
    """TFLOP/s of ``torch.mm`` of two random ``GEMM_SIZE`` square bf16 matrices."""
    n = GEMM_SIZE.get(device.type, GEMM_SIZE["cpu"])
    ms = _gemm_ms(n, device)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return 2 * n**3 / (ms * 1e-3) / 1e12


def _gemm_ms(n: int, device: torch.device) -> float:
    a, b = (torch.randn(n, n, device=device, dtype=GEMM_DTYPE) for _ in range(2))
    out = torch.empty_like(a)
    call = lambda: torch.mm(a, b, out=out)
    if device.type == "cuda":
        # Per call, like the copy: ~1.5 ms on an H200, so the host time of issuing it is hidden.
        return measure_call(call).median_ms
    return measure(call, device).median_ms


def _copy_ms(nbytes: int, device: torch.device) -> float:
    src = torch.randn(nbytes // 4, device=device)
    dst = torch.empty_like(src)
    if device.type == "cuda":
        # Per call, not from a CUDA graph: in a graph a same-dtype copy_ becomes a memcpy node
        # that may run on the copy engines (measured on an H200: 2.7 TB/s, against 4.27 TB/s
        # for the SM copy kernel that eager copy_ launches). A 2 GiB copy runs ~1 ms, so
        # the host time of issuing it does not show.
        return measure_call(lambda: dst.copy_(src)).median_ms
    return measure(lambda: dst.copy_(src), device).median_ms


def same_size_copy_gbps(nbytes: int, device: torch.device) -> float:
    """GB/s of a device copy moving ``nbytes`` in all (half read, half written), timed like
    the cases (on CUDA: graph replays, cold L2). This is the ceiling at the case's own size:
    a 100 MB pass cannot reach the rate of a 4 GiB copy, whose ramp-up and tail are amortised.

    The copy is ``torch.mul(src, 1, out=dst)``, an SM kernel like eager's ``copy_``: a
    captured ``copy_`` becomes a graph memcpy node that may use the copy engines instead.
    """
    n = max(nbytes // 8, 1)  # float32 elements in each buffer
    src = torch.randn(n, device=device)
    dst = torch.empty_like(src)
    ms = measure(lambda: torch.mul(src, 1, out=dst), device).median_ms
    return gbps(8 * n, ms)
