"""The ``benchmark-swiglu`` command: speed and correctness against the peers, on one GPU.

Modules, in the order data flows:

    cli        options, the device's suite of cases, what to print and store
    cases/     what each ``--op`` measures (``elementwise``, ``linear``) and its backends
    backends   the implementations compared and why one may be unavailable
    harness    the loop: float64 reference, error check, rotated timing rounds (on
               ``--copies`` copies of the inputs), result rows
    checks     DESIGN.md's tolerance rule
    timing     CUDA-graph replays (cold L2, settled first) on CUDA, a perf_counter loop on
               the CPU
    roofline   the ceilings measured in the run (copy bandwidth, GEMM rate)
    profile    DRAM bytes measured by Nsight Compute (``--profile``)
    report     the table and the stored files; plot: the ``--sweep`` PNG
    summary    the README's tables from ``benchmarks/results/`` (``summary_linear``: the
               projection's)
"""
