#!/usr/bin/env bash
# GPU runs written in session 13, which had no device time left: for the next session, from
# the repo root on the H200 (device tool), with Liger-Kernel on PYTHONPATH (the script installs
# its wheel from .whl/ where it does not import, see below). Stages (each with its own time
# limit; a tarball of benchmarks/results after each, $OUT/results.tgz; at the end the stages'
# logs go into $OUT/stage_logs.tgz, since session 43):
#   tests          GPU tier but the Gluon file: the test seeds changed in session 13 (each
#                  test's own id), and the moved last token tile (test_linear.py)
#   tests-linear   tests/test_linear.py alone (the moved tile: Triton and Gluon forwards)
#   tests-rest     the GPU tier but test_linear.py and test_ws_mlp.py
#   tests-ws       GPU tier of the Gluon kernels (test_ws_mlp.py; the forward's moved tile)
#   tests-multi    tests/test_multi_gpu.py (two GPUs: nvidia-h200-x2), first on a copy of src
#                  without the device guard (expected to fail), then on src (session 25)
#   rows           scripts/explore_session26.py rows -> $OUT/explore (session 26: decode tiles
#                  owning fewer weight rows than BLOCK_N, so N spreads over whole waves of 132
#                  SMs; the four models at 8 / 32 tokens, bf16 and fp16, three copies;
#                  ROWS_TOKENS=16: the m16 entries, 9-16 tokens, not run in session 26)
#   rows2          scripts/explore_session26.py rows2 (session 26: Qwen and 70B at 8 tokens, the
#                  row counts rows found with their neighbours and rotations, five copies)
#   rows3          scripts/explore_session26.py rows3 (session 26: Qwen and 70B at 32 tokens,
#                  pointer tiles with ROWS against the TMA entries, five copies)
#   tiles, host3   scripts/explore_session13.py STAGE -> $OUT/explore
#   order          scripts/explore_session15.py order -> $OUT/explore (written in session 14:
#                  does the backend a timing follows move it; does a settle phase help)
#   explore16      scripts/explore_session16.py glu-mid decode8b mid70b host small recompute
#                  -> $OUT/explore
#                  (written in session 16: the elementwise kernel at the unfused route's
#                  shapes, 8B decode tiles, 70B at 65-128 tokens, direct launches' host time,
#                  the MLP step at 1024-4096 tokens, recompute's slice widths)
#   explore17      scripts/explore_session17.py bwd-small fwd-shapes decode-narrow -> $OUT/explore
#                  (written in session 17, about 260 s by estimate: the 8B step's backward at
#                  1024 and 2048 tokens in other tiles and the Gluon one; the forward from 1024
#                  rows on the other three models; 16- and 32-row decode tiles at 8 and 32 tokens)
#   large          the four models at 2048, 8192 and 16384 tokens, bf16 (issue 3's M >= 2048
#                  target, three cases below 0.97 of cuBLAS in session 10's run; run
#                  h200-${RUN_TAG}-linear-bf16-large-tokens)
#   decode         the four models at 1, 8 and 32 tokens, bf16, every backend of the linear
#                  suite, max-autotune included (issue 3's M <= 32 target; written in session
#                  15: the decode runs before were on the fixed-order harness; run
#                  h200-${RUN_TAG}-linear-bf16-decode)
#   decode-copies-a, decode-copies-b
#                  the decode run (every backend, max-autotune included) with --copies
#                  ${COPIES:-3}: each backend timed on three copies of its inputs (session 23:
#                  70B's ranking moved with the copy); Qwen and 70B (a), 1B and 8B (b); runs
#                  h200-${RUN_TAG}-linear-bf16-decode-copies-a / -b (DECODE_DTYPE=float16:
#                  the same in fp16, runs -linear-fp16-decode-copies-a / -b; COPIES_BACKENDS=...:
#                  other backends, session 24's bisection of the 70B gap)
#   decode-fp16    the same in fp16 but max-autotune (written in session 16: the README's fp16
#                  decode rows are session 11's fixed-order run; h200-${RUN_TAG}-linear-fp16-decode)
#   mid-a, mid-b   1B and 8B (mid-a), Qwen and 70B (mid-b) at 65-1024 tokens, bf16, every
#                  backend of the linear suite but max-autotune (issue 3's "never slower than
#                  eager" between decode and 2048 tokens; written in session 15: the runs the
#                  README quotes there are sessions 11-12's, on the fixed-order harness; runs
#                  h200-${RUN_TAG}-linear-bf16-mid-a and -mid-b)
#   elementwise    the fused GLU alone, every backend: the brief's 4096 x 4096 and 8192 x
#                  14336, fp32 / fp16 / bf16, fwd / bwd / fwd+bwd (written in session 15: the
#                  README's elementwise rows are session 2's fixed-order runs; runs
#                  h200-${RUN_TAG}-brief-4096 and h200-${RUN_TAG}-8192x14336)
#   mlp            the Llama-3-8B MLP training step at 4096, 8192 and 16384 tokens, every
#                  backend (issue 4's target; run h200-s13-mlp-8b)
#   decode-nomax   the decode stage without max-autotune (session 20: the first run with the L2
#                  evicted by a read, on the device time left; run h200-${RUN_TAG}-linear-bf16-decode)
#   mlp-long       the 8B step at 4096, 8192 and 16384 tokens ($MLP_LONG_TOKENS), fwd+bwd only,
#                  with rounds of 2000 ms of steps (--step-ms, session 20: the clock of the
#                  step's sustained work; run h200-${RUN_TAG}-mlp-8b-long)
#   mlp-small      the same step at 1024 and 2048 tokens (written in session 16: the README's
#                  rows there are session 8's fixed-order run; run h200-${RUN_TAG}-mlp-8b-small)
#   lean           (session 28) scripts/explore_session28.py lean -> $OUT/explore: the 8B step
#                  at 1024-16384 tokens, recompute=True with and without its lean slices
#   compiled       (session 28) scripts/explore_session28.py compiled: torch.compile over our
#                  module at 4096 / 8192 tokens ($COMPILED_TOKENS), peak memory and time
#   compiled2      (session 29) scripts/explore_session29.py compiled2: the compiled step with
#                  the backward writing over the saved pre-activation (at run time where no
#                  graph is kept; or through ops that declare the mutation), 4096 / 8192 tokens
#   example        examples/train_tiny_llama.py, patched and not (h200-train-tiny-llama)
#   example-compile (session 30) the same under torch.compile: --compile default
#                  (h200-train-tiny-llama-compile) and --compile reduce-overhead, CUDA graphs
#                  (h200-train-tiny-llama-graphs)
#   host30         (session 30) scripts/explore_session30.py host -> $OUT/explore: the example's
#                  model and its MLP, unpatched and patched, uncompiled and compiled: host time
#                  per step, cProfile and torch.profiler of the patched step
#   gpu-small      (session 30) scripts/explore_session30.py gpu-small -> $OUT/explore: one MLP
#                  layer's kernels at the example's, 1B's and 8B's shapes, LlamaMLP eager and
#                  compiled, SwiGLUMLP uncompiled and compiled
#   split          (session 30) scripts/explore_session30.py split -> $OUT/explore: the MLP
#                  backward's split route (cuBLAS dh, then the epilogue as its own pass) against
#                  the fused kernel in whole steps, four models' MLPs, LlamaMLP beside them
#   launch31       (session 31) scripts/explore_session31.py launch -> $OUT/explore: host time
#                  of each piece of one MLP layer's forward + backward, and inside one launch
#   trace31        (session 31) scripts/explore_session31.py trace -> $OUT/explore: inclusive host
#                  time of each function of our MLP layer's real call path, per step
#   trace31i       (session 31) scripts/explore_session31.py trace-infer -> $OUT/explore: the same
#                  for inference (no gradient), two MLPs, 1 to 8192 rows
#   ab31           (session 31) scripts/explore_session31.py ab -> $OUT/explore: host time with
#                  ops._launch's compiled-kernel path on and off, alternating in one process
#   generate31     (session 31) scripts/explore_session31.py generate -> $OUT/explore: Hugging
#                  Face generate on a 1B-shaped model, unpatched / patched with and without
#                  the launch cache
#   ab32           (session 32) scripts/explore_session32.py ab -> $OUT/explore: host time with
#                  the projection launcher's plan cache on and off (FLASH_SWIGLU_PLAN_CACHE),
#                  LlamaMLP beside them, alternating in one process; plan / noplan outputs equal
#   generate32     (session 32) scripts/explore_session32.py generate -> $OUT/explore: Hugging
#                  Face generate on a 1B-shaped model, unpatched / patched with both caches,
#                  without the plan cache, without either
#   tests-merged   (session 39) test_ws_mlp.py -k merged: the merged backward's GPU tests
#   fp32dh         (session 39, written after its device time was spent) explore_session39.py
#                  fp32dh -> $OUT/fp32dh, then test_ws_mlp.py -k fp32_dh (160 s in
#                  session 40)
#   large-fp16     (session 39) the four models at 2048, 8192 and 16384 tokens in fp16, every
#                  backend of the large stage (runs h200-${RUN_TAG}-linear-fp16-large-a: 1B and
#                  8B, -b: Qwen and 70B)
#   tests-plans    (session 32) tests/test_plans.py and tests/test_launch.py (both tiers)
#   compiled33     (session 33) explore_session33.py compiled: host time of compiled MLP steps
#   ab33           (session 33) explore_session33.py ab: the training plans on and off
#   tests-ws-routes (session 33) test_ws_mlp.py's routing tests (the launches' prepare split)
#   tests-train-plans (session 33) tests/test_train_plans.py (both tiers), test_mlp.py's GPU tier
#   handoff256     (session 34, not yet run) explore_session34.py handoff256 -> $OUT/explore: the
#                  MLP backward's hand-off kernel on 256-row tiles, checked, timed alone and in
#                  8B steps against the committed ping-pong entry; about 200-300 s by estimate
#   handoff256k    (session 35) handoff256 without its accuracy checks (session 35's call 1
#                  ran them, all passed); the kernel timings and the 8B steps
#   handoff256s8   (session 35) handoff256 with ho128_p8, ho128_p16 and ho256_s8_c160_e152
#                  (checked): is the 8-column piece what made the 256-row tiles slow?
#   acts35         (session 35) explore_session35.py acts steps: each activation's backward
#                  kernel (Triton, ping-pong as launched / with 8 parts, hand-off with 8 / 4),
#                  then gelu_tanh and gpt-oss steps on three backward routes; about 300-400 s
#   mlp-gt         (session 35) mlp-acts for gelu_tanh alone (run h200-${RUN_TAG}-mlp-8b-gelu-tanh)
#   fwd35          (session 35, not yet run) explore_session35.py fwd: swiglu_linear and the
#                  training forward per activation with the Gluon kernels on and off, 1B and 8B
#                  at 2048 and 8192 tokens, beside cuBLAS; about 150-250 s by estimate
#   fwd36          (session 36) explore_session36.py fwd: the same forward cases as fwd35, settled
#                  CUDA-graph timings in three rotated rounds (the benchmark's timing)
#   linear-acts    (session 36) swiglu_linear for gelu_tanh, gelu, relu and gpt-oss's GLU: 1B and 8B
#                  at 2048 / 8192 tokens, eager, torch.compile, cuBLAS's product, ours (Liger's
#                  kernels compute SiLU only) (run h200-${RUN_TAG}-linear-bf16-acts)
#   host36         (session 36) explore_session36.py host: swiglu_linear's host time above the
#                  decode paths, launch plans on and off, and a cProfile of each
#   tests-plans-linear (session 36) tests/test_plans.py and tests/test_linear.py on the GPU
#   gelu37         (session 37) explore_session37.py gelu: GELU's CDF as a sigmoid against
#                  libdevice's erf (projection, training forward, 8B training step)
#   mlp-gelu       (session 37) the 8B MLP step at 8192 and 16384 tokens for GELU alone, every
#                  backend, after gelu_cdf (run h200-${RUN_TAG}-mlp-8b-gelu)
#   late37         (session 37; run in session 38, 156 s) explore_session37.py late: the Gluon
#                  forward with COALESCE_OUT (outputs moved to the store layout after the
#                  activation) against the committed entries; about 250-400 s by estimate
#   tiles37        (session 37) explore_session37.py tiles: Gluon forward entries for GELU and
#                  gelu_tanh (the launched one, its epilogue parts, ping-pong tiles)
#   gt35           (session 35) explore_session35.py acts steps --acts gelu_tanh
#   mlp-acts       (session 35) the 8B MLP step (fwd+bwd) at 8192 and 16384 tokens for gelu_tanh,
#                  gelu, relu and gpt-oss's GLU, every backend (run h200-${RUN_TAG}-mlp-8b-acts)
#   tests-launch   (session 31) tests/test_launch.py on the GPU
#   tests-split    (session 30) tests/test_mlp.py -k "split or gpu_bf16" on the GPU
#   mlp-1b         (session 30) the MLP training step of Llama-3.2-1B at 2048, 8192 and 16384
#                  tokens, every backend (the split route of mlp_backward_split; run
#                  h200-${RUN_TAG}-mlp-1b)
#   tests-mlp-gpu  (session 30) tests/test_mlp.py -m gpu
#   tests-examples (session 30) tests/test_examples.py on the GPU (not marked gpu: -m gpu
#                  deselects it), the example's bf16 smoke runs, compiled ones included
#   route70b       Llama-3-70B at 65, 96, 112, 120, 121 and 128 tokens, bf16, every backend but
#                  max-autotune (written in session 17: the unfused route at 65-120 tokens and the
#                  decode kernel's new 128-row tile at 121-128; run h200-${RUN_TAG}-linear-bf16-70b-65-128;
#                  RUN_TAG=s17b for the second table of session 17)
#   qwen-route     Qwen2.5-7B at 200, 256 and 300 tokens, the same backends (session 17: the route
#                  to 300 tokens set in session 16; run h200-${RUN_TAG}-linear-bf16-qwen-200-300)
#   mlp-1k-4k      the 8B MLP step at 1024, 2048 and 4096 tokens, every backend (session 17: the
#                  Gluon forward that saves the pre-activation from 1024 rows; run
#                  h200-${RUN_TAG}-mlp-8b-1k-4k)
#   route70b-fp16  Llama-3-70B at 65, 96, 120 and 121 tokens, fp16, the same backends (session 18:
#                  the fp16 route of session 17's table, measured then only through an override;
#                  run h200-${RUN_TAG}-linear-fp16-70b-65-121)
#   qwen-large     Qwen2.5-7B at 2048 and 8192 tokens, bf16, the large stage's backends (session 18:
#                  issue 3's one M >= 2048 case below 0.97 of cuBLAS in session 15; run
#                  h200-${RUN_TAG}-linear-bf16-qwen-large)
#   mlp-8192       the 8B MLP step at 8192 tokens, every backend (session 18: the count where
#                  torch.compile was 0.5% ahead in session 15; run h200-${RUN_TAG}-mlp-8b-8192)
#   explore18      scripts/explore_session18.py host fwd70b bwd70b -> $OUT/explore
#   explore19      scripts/explore_session19.py fwd-tiles host-parts -> $OUT/explore (written in
#                  session 18, not run: the forward that saves the pre-activation in six other
#                  Gluon tiles on 70B at 2048-8192 tokens, Qwen at 4096-8192, 8B at 8192; the host
#                  time of each layer of the MLP step at the example's size; about 170 s by estimate;
#                  run in session 19, call 1: 109 s)
#   host-sync      scripts/explore_session19.py host-sync -> $OUT/explore (session 19: GPU and host
#                  time of eager's step and ours at the example's MLP and 1B at 1024 tokens, with
#                  the CUDA runtime calls that can wait)
#   tests-items    the GPU tests of the saving forward's per-shape items (test_ws_mlp.py -k
#                  shape_item: the mechanism and each committed item on its model's weights)
#   host-split     scripts/explore_session19.py host-split -> $OUT/explore (session 19: our step's
#                  host time per layer inside the real step, garbage collector on and off)
#   max-autotune   Qwen2.5-7B at 2048 and Llama-3-8B at 8192 tokens, bf16, eager, cuBLAS,
#                  torch.compile in both modes and ours (session 19: max-autotune at M >= 2048 was
#                  last measured in session 7; runs h200-${RUN_TAG}-linear-bf16-max-qwen-2048 and
#                  -max-8b-8192)
#   large-max-a    Llama-3.2-1B and Llama-3-8B at 2048, 8192 and 16384 tokens, bf16, every
#   large-max-b    backend of the large stage plus max-autotune; Qwen2.5-7B and Llama-3-70B in
#                  -b (session 19: issue 3's M >= 2048 target against both compile modes in one
#                  run per pair, -b one per model; runs h200-${RUN_TAG}-linear-bf16-large-max-a,
#                  -b-qwen and -b-70b)
#   fwd40-next     (session 40, written after its device time was spent; run in session 41,
#                  121 s) explore_session40.py steps -> $OUT/steps, then mid -> $OUT/mid
#   tests-fwd-merged (session 40) test_ws_mlp.py's tests of the merged forward and of the
#                  committed ws entries (which set MERGED since session 40)
#   low41          (session 41) explore_session41.py low -> $OUT/low: the merged forward at 512,
#                  640 and 768 tokens against the launched and the 1024 bucket's old entries
#   low41-next     (session 41, run in session 42: 102 s) explore_session41.py low on 8B and Qwen at
#                  the 1024 bucket's other counts (520, 576, 896, 960; the merged entry since
#                  session 41) -> $OUT/low-b, then on 70B at 385-512 (its 512 bucket's
#                  cooperative entry against the merged forward: 0.943 against 0.984 at 512 in
#                  session 41's call 3, wide rounds) -> $OUT/low-70b; about 100 s by estimate
#   mid-eager      (session 42) 8B, Qwen and 70B at 520-1024 tokens against eager, torch.compile
#                  and cuBLAS (run h200-${RUN_TAG}-linear-bf16-mid)
#   between42      (session 42) the four models at 385-768 tokens, eager, cuBLAS and ours, on the
#                  committed table and with the unfused route widened to 385-768 (runs
#                  h200-${RUN_TAG}-linear-bf16-between-committed, -unfused)
#   between42b     (session 42) the same for 8B, Qwen and 70B at 400, 416, 432, 513, 544, 608 and
#                  704 tokens (runs h200-${RUN_TAG}-linear-bf16-between-b-committed, -b-unfused)
#   between42-fp16 (session 42, run in session 43) the pair in fp16 for 8B, Qwen and 70B at 385,
#                  432, 520, 576, 640 and 768 (runs h200-${RUN_TAG}-linear-fp16-between-committed,
#                  -unfused; fp16 keeps the fused projection above 384); about 200 s by estimate
#   check42        (session 42, run in session 43) test_linear.py -k unfused on the GPU, then the
#                  committed table in bf16 at 400-768 tokens on 8B, Qwen and 70B (run
#                  h200-${RUN_TAG}-linear-bf16-between-check); about 150 s by estimate
#   between43-bf16-a, -b, between43-fp16-a, -b  (session 43, prepared, not run) the committed
#                  table and the route widened to 769-2047 (scripts/widen_unfused.py) at 800,
#                  960, 1025, 1088, 1152, 1280, 1536, 1664, 1792 and 2047 tokens; -a 1B and
#                  8B, -b Qwen and 70B (runs h200-${RUN_TAG}-linear-{bf16,fp16}-late-{a,b}-
#                  {committed,unfused}); about 200 s each by estimate, two a call; read the
#                  pairs with scripts/compare_routes.py
#   check44-bf16, check44-fp16  (session 44, prepared, not run) the committed table of session
#                  44 at 769, 800, 832, 896, 960, 1025, 1064 and 1088 tokens on the four models,
#                  eager, torch.compile, cuBLAS and ours (runs h200-${RUN_TAG}-linear-{bf16,fp16}-
#                  late-check); -bf16 first runs tests-unfused's cases and test_ws_mlp.py's
#                  committed-entry case of 70B (the new m1024 bf16 key); about 300 s each
#   late44-70b     (session 44) 70B at 769-1088 tokens, bf16, eager and ours: the committed
#                  table, the merged Gluon forward given the 1024 bucket (769-992), the route
#                  widened to 769-1088 (runs h200-${RUN_TAG}-linear-bf16-late70-{committed,
#                  merged,unfused}); about 200 s by estimate
#   check45        (session 45) the session-45 table: tests-unfused's cases, test_ws_mlp.py's
#                  70B bucket entry (fp16 and the committed cases), then 70B fp16 at 769-1023
#                  tokens, eager, torch.compile, cuBLAS and ours (run
#                  h200-${RUN_TAG}-linear-fp16-late70-check); about 150 s
#   late45-70b-fp16 (session 45) 70B in fp16 at 769-1088 tokens, eager and ours: the committed
#                  table (the route at 769-1023), then the merged Gluon forward given the 1024
#                  bucket with the route dropped there (widen_unfused.py --ws-bucket --drop; runs
#                  h200-${RUN_TAG}-linear-fp16-late70-{committed,merged}); about 200 s
#   cover46-bf16, cover46-fp16  (session 46, run in its call 1) the route ranges the table
#                  took from counts at their ends (8B, Qwen and 70B at 1025-1087 in bf16,
#                  1025-1088 in fp16): 1025, 1040, 1056, 1072 and 1087 tokens on the committed
#                  table and on one with the route dropped there (the fused projection;
#                  widen_unfused.py --drop), eager, cuBLAS and ours (runs h200-${RUN_TAG}-linear-
#                  {bf16,fp16}-cover46-{committed,fused}); -bf16 first runs test_ws_mlp.py's
#                  committed 70B entries and 70B 1024-bucket tests through the helper of commit
#                  6897897; 182 / 168 s
#   peers46-bf16, peers46-fp16  (session 46) the four models at session 45's eight counts from
#                  769 to 1088 with Liger's two backends (its fused gemm_swiglu; two linears and
#                  its elementwise kernel) beside eager, cuBLAS and ours (runs h200-${RUN_TAG}-
#                  linear-{bf16,fp16}-late-peers). Session 46's call 6 ran each into its limit
#                  (then 280 s) at case 26-27 of 32, and no run came back: about 350 s each,
#                  one stage a call (limit now 420 s). Call 7 ran bf16 at 800, 1025 and 1088
#                  only, by hand (174 s with the machine's start). Session 47 ran both (calls
#                  3-4, 328 / 325 s)
#   check47        (session 47; run in session 48, 81 s) the table's new fp16 route on Qwen
#                  at 769-800 tokens as the benchmark runs it, each backend on three copies of
#                  its inputs: eager, torch.compile, the cuBLAS product, liger-mul and ours at
#                  769, 784 and 800 (run h200-${RUN_TAG}-linear-fp16-qwen-route47)
#   pdl49          (session 49, call 1, 161 s) scripts/explore_session49.py pdl -> $OUT/pdl:
#                  the four models at 1 / 8 / 32 tokens, bf16 and fp16, ours with the decode
#                  kernels' programmatic dependent launch on and off (FLASH_SWIGLU_PDL=0), the
#                  cuBLAS product and Liger's gemm_swiglu, five rotated rounds; outputs
#                  checked first
#   nowait49       (session 49, calls 4-6, about 20 s) explore_session49.py nowait
#                  (test_linear.py's PDL test scenario with the decode kernels' wait compiled
#                  out: can the test fail?), then that test (-k "waits_for or pdl")
#   dhgemm50       (session 50; ran in session 51, 26 s)
#                  scripts/explore_session50.py gate, then dhgemm -> $OUT/dhgemm: the backward's
#                  dh GEMM alone at 8192 x 14336 x 4096 (ws_mlp's loader and main loop, an
#                  epilogue that only stores dh, or nothing) against cuBLAS and the committed
#                  kernel, five rotated rounds; outputs checked first
#   epi51          (session 51) scripts/explore_session51.py gate, then epi -> $OUT/epi: the
#                  committed backward's epilogue with its arithmetic (SiLU or three multiplies),
#                  loads and stores switched on and off, against cuBLAS, the committed kernel
#                  and the store-only main loop; then 1.5 s of each with nvidia-smi's SM clock
#                  and power sampled; 76 s in session 51
#   tma51          (session 51) scripts/explore_session51.py tma -> $OUT/tma: the committed
#                  backward with its epilogue's stores by TMA (and g / u loaded by TMA), against
#                  cuBLAS, the committed kernel, the store-only main loop and the SiLU
#                  epilogue without memory; clocks and power as epi51; 62 s in session 51
#   hints51        (session 51) scripts/explore_session51.py hints -> $OUT/hints: the epilogue's
#                  loads and stores with cache hints (evict-first; .cg loads and .cs stores)
#   noh51          (session 51) scripts/explore_session51.py noh -> $OUT/noh: the SiLU epilogue
#                  with and without storing h (as if the forward's h were kept for dW_down)
#   configs51      (session 51) scripts/explore_session51.py configs -> $OUT/configs: the
#                  committed entry with PREFETCH 1 and 2, the hand-off (bf16 and fp32 dh) and
#                  merged backward kernels, against cuBLAS and the committed entry
#   gutma51        (session 51) scripts/explore_session51.py gutma -> $OUT/gutma: g and u loaded
#                  by TMA into 3 or 2 buffers per consumer, as many parts ahead, the stores as
#                  committed (5 ring slots), against the SiLU replica and the merged kernel
#   guasync51      (session 51) scripts/explore_session51.py guasync -> $OUT/guasync: g and u
#                  loaded by cp.async (not the TMA unit) 3 parts ahead (5 ring slots) or 1 part
#                  ahead (6 slots), against the SiLU replica and g, u by TMA 3 parts ahead
#   late44-mid     (session 44) 8B and Qwen at 1025-1120 tokens, bf16: route_pair with the
#                  route widened to 1025-1151 (runs h200-${RUN_TAG}-linear-bf16-late44-
#                  {committed,unfused}); about 80 s by estimate
#   tests-unfused  (session 43) test_linear.py -m gpu -k unfused: the route's GPU cases (the two
#                  1B fp16 cases added after session 43's device time have not run); ~20 s
#   check43        (session 43) the committed table in fp16 at 13 counts from 385 to 768 on 8B,
#                  Qwen and 70B (run h200-${RUN_TAG}-linear-fp16-between-check); 1B in fp16 on
#                  the committed and the widened table (-between-1b-committed, -unfused); about
#                  250 s by estimate
#   tests-s41      (session 41) the GPU tests of the committed ws entries (the 1024 bucket's and
#                  the training table's 8B item are merged since session 41) and the MLP's
#                  routing tests
#   large-max-fp16-a, large-max-fp16-b  (session 40) the same in fp16 (runs
#                  h200-${RUN_TAG}-linear-fp16-large-max-a, -b-qwen, -b-70b): fp16 at M >= 2048
#                  had not been timed against max-autotune
#   explore20      scripts/explore_session20.py direct example -> $OUT/explore (written in session
#                  19, not run: the two Gluon kernels launched through their CompiledKernel in the
#                  MLP step, bit for bit against the library and host time per step; the example
#                  with them; about 120 s by estimate)
#   floor          scripts/explore_session20.py floor -> $OUT/explore (written in session 20:
#                  eager's step, ours and eager's nine GEMMs alone at 4096-16384 tokens, timed
#                  and sustained with the SM clock and power; about 90 s by estimate)
#   sustain        scripts/explore_session20.py sustain -> $OUT/explore (written in session 20:
#                  every backend of the 8B step, two variants of ours and the nine GEMMs, each
#                  run back to back for 2 s, three rotated rounds, 8192 and 16384 tokens)
#   flush          scripts/explore_session20.py flush -> $OUT/explore (session 20: decode timed
#                  with the L2 evicted by a write and by a read, ours, cuBLAS, eager)
#   explore21      scripts/explore_session21.py decode-read -> $OUT/explore (written in session
#                  20, not run: 18 decode tiles at 8 and 32 tokens on the four models under the
#                  read eviction, ours, Liger and cuBLAS beside them; about 200 s by estimate)
#   readfloor      scripts/explore_session21.py read-floor -> $OUT/explore (session 21: a plain
#                  read and a same-size copy of each model's weights beside ours, Liger and
#                  cuBLAS at 8 tokens, read-evicted; the floor of 1B's decode)
#   decodemore     scripts/explore_session21.py decode-more -> $OUT/explore (session 21: 1B at
#                  1 / 8 / 32 tokens, 70B at one token, 8B at 8 / 32 tokens, more tiles)
#   decode8b-reps  the decode benchmark on Llama-3-8B at 8 and 32 tokens, cuBLAS, Liger and
#                  ours, three times, each in a process of its own (session 21: how far the
#                  ranking of ours and Liger moves between processes; runs
#                  h200-${RUN_TAG}-linear-8b-decode-rep1..3)
#   placement      scripts/explore_session21.py placement -> $OUT/explore (session 21: ours with
#                  the two weights at several offsets in one buffer, 8B and 1B decode)
#   explore22      scripts/explore_session22.py rotate copies -> $OUT/explore (written in session
#                  21, not run: the decode entries with K_ROTATE 1 / 2 / 5 / 11 on the nine
#                  decode-kernel cases; 8B at 8 / 32 tokens on six allocations of its inputs,
#                  ours, ours rotated, Liger and cuBLAS; about 250 s by estimate)
#   explore23      scripts/explore_session23.py harness70b allocs70b rot1b -> $OUT/explore
#                  (written in session 22, not run: Llama-3-70B at 8 / 32 tokens, ours against
#                  Liger in three arrangements of the rotation with SM clock and power sampled,
#                  and on three allocations; Llama-3.2-1B's decode with rotated narrow, split-K
#                  and short-step tiles; the board's UUID first; about 180 s by estimate)
#   swap70b        scripts/explore_session23.py swap70b -> $OUT/explore (session 23: 70B at 8 / 32
#                  tokens, ours, Liger and ours with K_ROTATE 5 each on three copies of the
#                  inputs, as the benchmark hands each backend a copy)
#   rotcopies      scripts/explore_session23.py rotcopies -> $OUT/explore (70B and 8B at 8 / 32
#                  tokens: K_ROTATE 1-11 on each entry, three copies of the inputs)
#   align70b       scripts/explore_session23.py align70b -> $OUT/explore (70B at 8 / 32 tokens,
#                  ours and Liger with both weights at byte offsets 0 to 2 MiB in one pair of
#                  buffers)
#   inproc70b      scripts/explore_session23.py inproc70b -> $OUT/explore (70B at 8 / 32 tokens,
#                  ours and Liger on three copies: the harness's way, the benchmark's loop,
#                  the harness's way again, in one process)
#   split1b        (session 27) scripts/explore_session27.py split1b -> $OUT/explore: 1B decode
#                  at 8 / 32 tokens, split-K 2-16 with 2-4 stages (more programs than places)
#   rows16         (session 27) scripts/explore_session27.py rows16: 70B at 16 tokens, ROWS
#                  109 / 110 on five copies
#   probe1b        (session 27) scripts/explore_session27.py probe1b: 1B at 1 / 8 / 32 tokens,
#                  instrumented kernels' start / end stamps per program (where the time goes)
#   tests-elementwise (session 27) tests/test_elementwise.py, every test, on the GPU (the
#                  COL_64 tests of session 26 are not marked gpu: -m gpu deselects them)
#   copies70b      (session 24) scripts/explore_session23.py copies70b -> $OUT/explore: 70B at 8 /
#                  32 tokens, ours and Liger on 10 copies, both reading the same copy
#   fp16one1b      (session 24, not run) scripts/explore_session23.py fp16one1b -> $OUT/explore:
#                  1B one token in fp16, the matrix-vector kernel against the decode entry
#   proc70b        (written in session 23, run in session 24) what in the full decode process slows ours on
#                  70B at 32 tokens (217.6-223.8 us there, 216.0-216.2 through the same loop in
#                  a process of its own on one board): the benchmark with --copies 3 in three
#                  processes: 70B at 32 tokens with cuBLAS, Liger and ours (few), with every
#                  backend (all), and Qwen and 70B at 1 / 8 / 32 with cuBLAS, Liger and ours
#                  (qwen-few); runs h200-${RUN_TAG}-70b32-few, -70b32-all, -70b-qwen-few
#   order70b       the bf16 benchmark, 70B at 8 / 32 tokens, in two processes: backends Liger
#                  then ours, and ours then Liger (each backend's copy of the inputs is
#                  allocated in that order; runs h200-${RUN_TAG}-70b-liger-triton and -triton-liger)
#   decode-procs   the bf16 decode benchmark (four models, 1 / 8 / 32 tokens) in $DECODE_PROCS
#                  processes (default 3), backends $DECODE_BACKENDS (default cuBLAS, Liger,
#                  ours), then scripts/process_spread.py over them (session 21: rankings
#                  within the spread between processes; runs h200-${RUN_TAG}-linear-decode-procN)
#   mlp70b         the Llama-3-70B MLP step at 2048 and 4096 tokens, eager, torch.compile,
#                  LigerSwiGLUMLP and ours (session 19: the 70B item of forward_saving_ws; run
#                  h200-${RUN_TAG}-mlp-70b)
# Set FLASH_SWIGLU_COMMIT=<the commit the tree is at> on the command line: the GPU machine's
# copy of the tree may carry an older .git, which the runs would otherwise name (dirty).
set -uo pipefail
# Liger-Kernel: where it does not import and its wheel travelled in .whl/ (the device call's
# `carry`), install it into /tmp/site first (session 18's first call ran without it).
if ! python3 -c "import liger_kernel" 2>/dev/null && compgen -G ".whl/liger_kernel-*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/liger_kernel-*.whl && PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[[ -n ${FLASH_SWIGLU_COMMIT:-} ]] || echo "warning: FLASH_SWIGLU_COMMIT is not set" >&2
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
# The board every call ran on (session 38: two calls' logs could not name theirs).
nvidia-smi --query-gpu=index,name,uuid,pci.bus_id --format=csv,noheader > "$OUT/gpu.txt" 2>&1
# DEADLINE (seconds from the start of this script, default 570): no stage runs past it, so a
# call's later stages are cut rather than the whole call.
DEADLINE=${DEADLINE:-570}
RUN_TAG=${RUN_TAG:-s13}  # run ids h200-$RUN_TAG-... (s14: the rotated rounds of session 14)
START=$(date +%s)
limit() {  # limit STAGE_MAX -> the seconds left for this stage
  local left=$(( DEADLINE - ($(date +%s) - START) ))
  (( left < $1 )) && echo $(( left > 1 ? left : 1 )) || echo "$1"
}
pytest="python3 -m pytest -q -p no:cacheprovider -rfE"
route_pair() {  # route_pair LO-HI STAGE_MAX RUN_ID LOG_STEM BENCH_ARGS...: the linear benchmark
  # (eager, cuBLAS, ours) on the committed table, then on a copy whose unfused route also takes
  # LO-HI tokens on the four shapes (scripts/widen_unfused.py); runs RUN_ID-committed and
  # RUN_ID-unfused, logs $OUT/LOG_STEM_committed.log and _unfused.log (scripts/compare_routes.py
  # reads the pair)
  local range=$1 most=$2 run=$3 stem=$4 variant
  shift 4
  python3 scripts/widen_unfused.py --tokens "$range" --out /tmp/widened.json
  for variant in committed unfused; do
    local table=""  # empty: the committed table (ops.linear reads it so)
    [[ $variant == unfused ]] && table=/tmp/widened.json
    FLASH_SWIGLU_LINEAR_CONFIGS=$table timeout $(limit "$most") python3 -m flash_swiglu.bench.cli \
      --op linear "$@" --backend torch,cublas,triton --run-id "$run-$variant" 2>&1 \
      | tee "$OUT/${stem}_$variant.log" | grep "^| triton" | cut -c1-120
  done
}
unfused_tests() {  # the unfused route's GPU cases (test_linear.py -k unfused)
  timeout $(limit 120) $pytest -m gpu tests/test_linear.py -k unfused 2>&1 | tail -n 8 \
    | tee "$OUT/pytest_unfused.log"
}
for stage in "$@"; do
  SECONDS=0
  case $stage in
    tests)
      timeout $(limit 420) $pytest -m gpu tests --ignore=tests/test_ws_mlp.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_gpu.log" ;;
    tests-linear)
      timeout $(limit 300) $pytest -m gpu tests/test_linear.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_linear_gpu.log" ;;
    tests-rest)
      timeout $(limit 300) $pytest -m gpu tests --ignore=tests/test_ws_mlp.py \
        --ignore=tests/test_linear.py 2>&1 | tail -n 15 | tee "$OUT/pytest_rest_gpu.log" ;;
    tests-multi)  # session 25, two GPUs: test_multi_gpu.py on a copy of src without the device
      # guard (ops._common.on_tensor_device made the identity: expected to fail), then on src
      rm -rf /tmp/noguard && mkdir -p /tmp/noguard && cp -r src /tmp/noguard/
      python3 - <<'PY'
import pathlib, re
p = pathlib.Path("/tmp/noguard/src/flash_swiglu/ops/_common.py")
s = p.read_text()
s = s.replace("def on_tensor_device(fn: Callable) -> Callable:\n",
              "def on_tensor_device(fn: Callable) -> Callable:\n    return fn\n", 1)
p.write_text(s)
PY
      echo "-- without the device guard:"
      PYTHONPATH=/tmp/noguard/src${PYTHONPATH#src} timeout $(limit 150) $pytest -m gpu \
        --tb=line tests/test_multi_gpu.py 2>&1 | grep -E "^/|Error|passed|failed" | cut -c1-200 \
        | tail -n 14 | tee "$OUT/pytest_multi_noguard.log"
      echo "-- with it:"
      timeout $(limit 200) $pytest -m gpu --tb=line tests/test_multi_gpu.py 2>&1 | tail -n 14 \
        | tee "$OUT/pytest_multi_gpu.log" ;;
    tests-ws)
      timeout $(limit 585) $pytest -m gpu tests/test_ws_mlp.py 2>&1 | tail -n 40 \
        | tee "$OUT/pytest_ws_gpu.log" ;;
    tiles|host3)
      timeout $(limit 540) python3 scripts/explore_session13.py $stage --out "$OUT/explore" 2>&1 \
        | tail -n 30 ;;
    order)
      timeout $(limit 400) python3 scripts/explore_session15.py order --out "$OUT/explore" 2>&1 \
        | tail -n 30 ;;
    explore16)
      timeout $(limit 540) python3 scripts/explore_session16.py glu-mid decode8b mid70b host \
        small recompute --out "$OUT/explore" 2>&1 | tail -n 40 ;;
    explore17)
      timeout $(limit 540) python3 scripts/explore_session17.py bwd-small fwd-shapes \
        decode-narrow --out "$OUT/explore" 2>&1 | tail -n 30 ;;
    large)
      timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 \
        --tokens 2048,8192,16384 --backend torch,torch-packed,compile,cublas,liger,triton \
        --run-id h200-${RUN_TAG}-linear-bf16-large-tokens 2>&1 | tee "$OUT/linear_large.log" \
        | tail -n 4 ;;
    decode)
      timeout $(limit 480) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 --tokens 1,8,32 \
        --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton,compile-max \
        --run-id h200-${RUN_TAG}-linear-bf16-decode 2>&1 | tee "$OUT/linear_decode.log" \
        | tail -n 4 ;;
    decode-copies-a|decode-copies-b)
      part=${stage: -1} dt=${DECODE_DTYPE:-bfloat16}
      tag=${dt/bfloat16/bf16}; tag=${tag/float16/fp16}
      [[ $part == a ]] && models=qwen2.5-7b,llama-3-70b || models=llama-3.2-1b,llama-3-8b
      timeout $(limit 480) python3 -m flash_swiglu.bench.cli --op linear --model $models \
        --dtype $dt --tokens 1,8,32 --copies ${COPIES:-3} \
        --backend ${COPIES_BACKENDS:-torch,torch-packed,compile,cublas,liger,liger-mul,triton,compile-max} \
        --run-id h200-${RUN_TAG}-linear-$tag-decode-copies-$part 2>&1 \
        | tee "$OUT/linear_decode_copies_$part.log" \
        | grep -E "^\| (liger|triton|cublas|compile-max) " | cut -c1-100 ;;
    decode-nomax)
      timeout $(limit 330) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 \
        --tokens ${DECODE_TOKENS:-1,8,32} --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton \
        --run-id h200-${RUN_TAG}-linear-bf16-decode 2>&1 | tee "$OUT/linear_decode.log" \
        | tail -n 40 ;;
    decode-fp16)
      timeout $(limit 420) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype float16 --tokens 1,8,32 \
        --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton \
        --run-id h200-${RUN_TAG}-linear-fp16-decode 2>&1 | tee "$OUT/linear_decode_fp16.log" \
        | tail -n 4 ;;
    mid-a|mid-b)
      models=llama-3.2-1b,llama-3-8b
      [[ $stage == mid-b ]] && models=qwen2.5-7b,llama-3-70b
      timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op linear --model $models \
        --dtype bfloat16 --tokens 65,96,128,160,200,256,300,384,512,640,1024 \
        --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton \
        --run-id h200-${RUN_TAG}-linear-bf16-$stage 2>&1 | tee "$OUT/linear_$stage.log" \
        | tail -n 4 ;;
    elementwise)
      for shape in 4096x4096 8192x14336; do
        run=h200-${RUN_TAG}-${shape}; [[ $shape == 4096x4096 ]] && run=h200-${RUN_TAG}-brief-4096
        timeout $(limit 300) python3 -m flash_swiglu.bench.cli --backend all \
          --rows ${shape%x*} --cols ${shape#*x} --dtype float32,float16,bfloat16 \
          --pass fwd,bwd,fwd+bwd --run-id $run 2>&1 | tee "$OUT/elementwise_$shape.log" \
          | tail -n 4
      done ;;
    mlp)
      timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens 4096,8192,16384 --run-id h200-${RUN_TAG}-mlp-8b 2>&1 | tee "$OUT/mlp.log" \
        | tail -n 4 ;;
    mlp-acts)  # session 35: the 8B step for the four other activations (their backward routes)
      timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens ${MLP_ACTS_TOKENS:-8192,16384} --activation gelu_tanh,gelu,relu,swiglu_oai \
        --pass fwd+bwd --run-id h200-${RUN_TAG}-mlp-8b-acts 2>&1 | tee "$OUT/mlp_acts.log" \
        | tail -n 12 ;;
    linear-acts)  # session 36: the projection for the four other activations
      timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b --dtype bfloat16 --tokens 2048,8192 \
        --activation gelu_tanh,gelu,relu,swiglu_oai --backend torch,compile,cublas,triton \
        --run-id h200-${RUN_TAG}-linear-bf16-acts 2>&1 | tee "$OUT/linear_acts.log" | tail -n 24 ;;
    mlp-gelu)  # session 37: mlp-acts for GELU alone (after its CDF became gelu_cdf)
      timeout $(limit 260) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens 8192,16384 --activation gelu --pass fwd+bwd \
        --run-id h200-${RUN_TAG}-mlp-8b-gelu 2>&1 | tee "$OUT/mlp_gelu.log" | tail -n 10 ;;
    mlp-gt)  # session 35: mlp-acts for gelu_tanh alone (after its backward helper changed)
      timeout $(limit 200) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens 8192,16384 --activation gelu_tanh --pass fwd+bwd \
        --run-id h200-${RUN_TAG}-mlp-8b-gelu-tanh 2>&1 | tee "$OUT/mlp_gt.log" | tail -n 10 ;;
    mlp-long)
      timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens ${MLP_LONG_TOKENS:-4096,8192,16384} --pass fwd+bwd --step-ms 2000 \
        --run-id h200-${RUN_TAG}-mlp-8b-long 2>&1 | tee "$OUT/mlp_long.log" | tail -n 12 ;;
    mlp-small)
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens 1024,2048 --run-id h200-${RUN_TAG}-mlp-8b-small 2>&1 | tee "$OUT/mlp_small.log" \
        | tail -n 4 ;;
    route70b|qwen-route|route70b-fp16)
      args=(--dtype bfloat16 --model llama-3-70b --tokens 65,96,112,120,121,128
        --run-id h200-${RUN_TAG}-linear-bf16-70b-65-128)
      [[ $stage == qwen-route ]] && args=(--dtype bfloat16 --model qwen2.5-7b --tokens 200,256,300
        --run-id h200-${RUN_TAG}-linear-bf16-qwen-200-300)
      [[ $stage == route70b-fp16 ]] && args=(--dtype float16 --model llama-3-70b
        --tokens 65,96,120,121 --run-id h200-${RUN_TAG}-linear-fp16-70b-65-121)
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear \
        --backend torch,torch-packed,compile,cublas,liger,liger-mul,triton "${args[@]}" 2>&1 \
        | tee "$OUT/linear_$stage.log" | tail -n 4 ;;
    qwen-large)
      timeout $(limit 400) python3 -m flash_swiglu.bench.cli --op linear --model qwen2.5-7b \
        --dtype bfloat16 --tokens 2048,8192 --backend torch,torch-packed,compile,cublas,liger,triton \
        --run-id h200-${RUN_TAG}-linear-bf16-qwen-large 2>&1 | tee "$OUT/linear_$stage.log" \
        | tail -n 4 ;;
    mlp-8192)
      timeout $(limit 400) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens 8192 --run-id h200-${RUN_TAG}-mlp-8b-8192 2>&1 | tee "$OUT/mlp_8192.log" \
        | tail -n 4 ;;
    explore18)
      timeout $(limit 540) python3 scripts/explore_session18.py host fwd70b bwd70b \
        --out "$OUT/explore" 2>&1 | tail -n 30 ;;
    explore19)
      timeout $(limit 540) python3 scripts/explore_session19.py fwd-tiles host-parts \
        --out "$OUT/explore" 2>&1 | tail -n 40 ;;
    host-sync)
      timeout $(limit 200) python3 scripts/explore_session19.py host-sync \
        --out "$OUT/explore" 2>&1 | tail -n 10 ;;
    tests-items)
      timeout $(limit 200) $pytest -m gpu tests/test_ws_mlp.py -k shape_item 2>&1 \
        | tail -n 15 | tee "$OUT/pytest_items_gpu.log" ;;
    host-split)
      timeout $(limit 200) python3 scripts/explore_session19.py host-split \
        --out "$OUT/explore" 2>&1 | tail -n 10 ;;
    max-autotune)
      for case in "qwen2.5-7b 2048 qwen-2048" "llama-3-8b 8192 8b-8192"; do
        set -- $case
        timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear --model $1 \
          --dtype bfloat16 --tokens $2 --backend torch,cublas,compile,compile-max,triton \
          --run-id h200-${RUN_TAG}-linear-bf16-max-$3 2>&1 | tee "$OUT/linear_max_$3.log" \
          | tail -n 6
      done ;;
    large-max-a|large-max-b|large-max-fp16-a|large-max-fp16-b)
      # -b: one run per model, so that Qwen's is kept where 70B's runs past the deadline
      dtype=bfloat16 short=bf16
      [[ $stage == *fp16* ]] && dtype=float16 short=fp16
      [[ $stage == *-a ]] && runs="llama-3.2-1b,llama-3-8b:a" \
        || runs="qwen2.5-7b:b-qwen llama-3-70b:b-70b"
      for run in $runs; do
        timeout $(limit 540) python3 -m flash_swiglu.bench.cli --op linear --model ${run%%:*} \
          --dtype $dtype --tokens 2048,8192,16384 \
          --backend torch,torch-packed,compile,compile-max,cublas,liger,triton \
          --run-id h200-${RUN_TAG}-linear-${short}-large-max-${run##*:} 2>&1 \
          | tee "$OUT/linear_${short}_large-max-${run##*:}.log" | tail -n 4
      done ;;
    explore20)
      timeout $(limit 400) python3 scripts/explore_session20.py direct example \
        --out "$OUT/explore" 2>&1 | tail -n 20 ;;
    floor)
      timeout $(limit 300) python3 scripts/explore_session20.py floor \
        --out "$OUT/explore" 2>&1 | tail -n 20 ;;
    sustain)
      timeout $(limit 420) python3 scripts/explore_session20.py sustain \
        --out "$OUT/explore" 2>&1 | tail -n 20 ;;
    flush)
      timeout $(limit 300) python3 scripts/explore_session20.py flush \
        --out "$OUT/explore" 2>&1 | tail -n 20 ;;
    explore21)
      timeout $(limit 420) python3 scripts/explore_session21.py decode-read \
        --out "$OUT/explore" 2>&1 | tail -n 20 ;;
    readfloor)
      timeout $(limit 200) python3 scripts/explore_session21.py read-floor \
        --out "$OUT/explore" 2>&1 | tail -n 8 ;;
    decodemore)
      timeout $(limit 400) python3 scripts/explore_session21.py decode-more \
        --out "$OUT/explore" 2>&1 | tail -n 8 ;;
    decode8b-reps)
      for rep in 1 2 3; do
        timeout $(limit 120) python3 -m flash_swiglu.bench.cli --op linear --model llama-3-8b \
          --dtype bfloat16 --tokens 8,32 --backend cublas,liger,triton \
          --run-id h200-${RUN_TAG}-linear-8b-decode-rep$rep 2>&1 | tail -n 8
      done ;;
    placement)
      timeout $(limit 200) python3 scripts/explore_session21.py placement \
        --out "$OUT/explore" 2>&1 | tail -n 8 ;;
    explore22)
      timeout $(limit 480) python3 scripts/explore_session22.py rotate copies \
        --out "$OUT/explore" 2>&1 | tail -n 30 ;;
    explore23)
      timeout $(limit 420) python3 scripts/explore_session23.py harness70b allocs70b rot1b \
        --out "$OUT/explore" 2>&1 | tail -n 20 ;;
    split1b|rows16|probe1b)  # session 27
      timeout $(limit 300) python3 scripts/explore_session27.py $stage --out "$OUT/explore" \
        2>&1 | tail -n 16 ;;
    lean|compiled)  # session 28: recompute=True's lean slices on and off; torch.compile over ours
      timeout $(limit 400) python3 scripts/explore_session28.py $stage --out "$OUT/explore" \
        2>&1 | tail -n 12 ;;
    compiled2)  # session 29: the compiled step writing over the saved pre-activation
      timeout $(limit 400) python3 scripts/explore_session29.py $stage --out "$OUT/explore" \
        2>&1 | tail -n 12 ;;
    tests-elementwise)  # session 27: every test of test_elementwise.py on the GPU (COL_64)
      timeout $(limit 300) $pytest tests/test_elementwise.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_elementwise_gpu.log" ;;
    swap70b|rotcopies|align70b|inproc70b|copies70b|fp16one1b)
      timeout $(limit 200) python3 scripts/explore_session23.py $stage --out "$OUT/explore" \
        2>&1 | tail -n 16 ;;
    proc70b)
      for v in few all qwen-few; do
        models=llama-3-70b tokens=32 backends=cublas,liger,triton run=70b32-$v
        [[ $v == all ]] && backends=torch,torch-packed,compile,cublas,liger,liger-mul,triton,compile-max
        [[ $v == qwen-few ]] && models=qwen2.5-7b,llama-3-70b tokens=1,8,32 run=70b-qwen-few
        timeout $(limit 200) python3 -m flash_swiglu.bench.cli --op linear --model $models \
          --dtype bfloat16 --tokens $tokens --backend $backends --copies 3 \
          --run-id h200-${RUN_TAG}-$run 2>&1 | grep -E "^\| (liger|triton) .*70b/M32" \
          | cut -c1-90
      done ;;
    order70b)
      for order in liger,triton triton,liger; do
        timeout $(limit 150) python3 -m flash_swiglu.bench.cli --op linear --model llama-3-70b \
          --dtype bfloat16 --tokens 8,32 --backend $order \
          --run-id h200-${RUN_TAG}-70b-${order/,/-} 2>&1 | grep -E "^\| (liger|triton) " \
          | cut -c1-90
      done ;;
    decode-procs)
      runs=()
      for p in $(seq 1 ${DECODE_PROCS:-3}); do
        timeout $(limit 200) python3 -m flash_swiglu.bench.cli --op linear \
          --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 \
          --tokens 1,8,32 --backend ${DECODE_BACKENDS:-cublas,liger,triton} \
          --run-id h200-${RUN_TAG}-linear-decode-proc$p 2>&1 | tail -n 2
        runs+=(benchmarks/results/h200-${RUN_TAG}-linear-decode-proc$p)
      done
      python3 scripts/process_spread.py "${runs[@]}" | tee "$OUT/process_spread.txt" \
        | grep -v "^  " ;;
    rows)  # session 26: decode tiles owning fewer rows than BLOCK_N (ROWS), whole waves
      timeout $(limit 500) python3 scripts/explore_session26.py rows --out "$OUT/explore" 2>&1 \
        | tail -n 40 ;;
    rows2)  # session 26: Qwen and 70B at 8 tokens, ROWS with its neighbours, five copies
      timeout $(limit 300) python3 scripts/explore_session26.py rows2 --out "$OUT/explore" 2>&1 \
        | tail -n 10 ;;
    rows3)  # session 26: Qwen and 70B at 32 tokens, pointer tiles with ROWS, five copies
      timeout $(limit 300) python3 scripts/explore_session26.py rows3 --out "$OUT/explore" 2>&1 \
        | tail -n 10 ;;
    gemv1)
      timeout $(limit 400) python3 scripts/explore_session25.py gemv1 --out "$OUT/explore" 2>&1 \
        | tail -n 12 ;;
    inductor1b)  # session 25: a fresh Inductor cache, so max-autotune tunes in this process
      TORCHINDUCTOR_CACHE_DIR=$(mktemp -d) timeout $(limit 300) python3 \
        scripts/explore_session25.py inductor1b --out "$OUT/explore" 2>&1 | tail -n 40 ;;
    max1b)  # session 25: 1B one token, max-autotune's pick anew in each of MAX1B_PROCS processes
      runs=()
      for p in $(seq 1 ${MAX1B_PROCS:-3}); do
        timeout $(limit 200) python3 -m flash_swiglu.bench.cli --op linear \
          --model llama-3.2-1b --dtype ${DECODE_DTYPE:-bfloat16} --tokens 1 --copies 3 \
          --backend cublas,triton,compile-max --run-id h200-${RUN_TAG}-1b1-max-proc$p 2>&1 \
          | grep -E "^\| (cublas|triton|compile-max) " | cut -c1-100
        runs+=(benchmarks/results/h200-${RUN_TAG}-1b1-max-proc$p)
      done
      python3 scripts/process_spread.py "${runs[@]}" | tee "$OUT/max1b_spread.txt" \
        | grep -v "^  " ;;
    mlp70b)
      timeout $(limit 480) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-70b \
        --tokens 2048,4096 --backend torch,compile,liger,triton \
        --run-id h200-${RUN_TAG}-mlp-70b 2>&1 | tee "$OUT/mlp_70b.log" | tail -n 4 ;;
    mlp-1k-4k)
      timeout $(limit 420) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3-8b \
        --tokens 1024,2048,4096 --run-id h200-${RUN_TAG}-mlp-8b-1k-4k 2>&1 \
        | tee "$OUT/mlp_1k_4k.log" | tail -n 4 ;;
    example)
      timeout $(limit 300) python3 examples/train_tiny_llama.py 2>&1 | tail -n 12 \
        | tee "$OUT/train_tiny_llama.log" ;;
    example-compile)
      for mode in default reduce-overhead; do
        name=$([[ $mode == default ]] && echo compile || echo graphs)
        timeout $(limit 300) python3 examples/train_tiny_llama.py --compile $mode \
          --out benchmarks/results/h200-train-tiny-llama-$name 2>&1 | tail -n 12 \
          | tee "$OUT/train_tiny_llama_$name.log"
      done ;;
    host30)
      timeout $(limit 400) python3 scripts/explore_session30.py host --out "$OUT/explore" \
        2>&1 | tail -n 20 | tee "$OUT/host30.log" ;;
    gpu-small)
      timeout $(limit 450) python3 scripts/explore_session30.py gpu-small --out "$OUT/explore" \
        2>&1 | tail -n 30 | tee "$OUT/gpu_small.log" ;;
    split)
      timeout $(limit 400) python3 scripts/explore_session30.py split --out "$OUT/explore" \
        2>&1 | tail -n 30 | tee "$OUT/split.log" ;;
    launch31)
      timeout $(limit 300) python3 scripts/explore_session31.py launch --out "$OUT/explore" \
        2>&1 | tail -n 60 | tee "$OUT/launch31.log" ;;
    trace31)
      timeout $(limit 300) python3 scripts/explore_session31.py trace --out "$OUT/explore" \
        2>&1 | tee "$OUT/trace31.log" | tail -n 5 ;;
    trace31i)
      timeout $(limit 300) python3 scripts/explore_session31.py trace-infer --out "$OUT/explore" \
        2>&1 | tee "$OUT/trace31i.log" | tail -n 5 ;;
    ab31)
      timeout $(limit 300) python3 scripts/explore_session31.py ab --out "$OUT/explore" \
        2>&1 | tee "$OUT/ab31.log" | tail -n 12 ;;
    generate31)
      timeout $(limit 300) python3 scripts/explore_session31.py generate --out "$OUT/explore" \
        2>&1 | tee "$OUT/generate31.log" | tail -n 6 ;;
    ab32)
      timeout $(limit 300) python3 scripts/explore_session32.py ab --out "$OUT/explore" \
        2>&1 | tee "$OUT/ab32.log" | tail -n 12 ;;
    generate32)
      timeout $(limit 300) python3 scripts/explore_session32.py generate --out "$OUT/explore" \
        2>&1 | tee "$OUT/generate32.log" | tail -n 6 ;;
    handoff256)
      timeout $(limit 450) python3 scripts/explore_session34.py handoff256 --out "$OUT/explore" \
        2>&1 | tee "$OUT/handoff256.log" | tail -n 40 ;;
    handoff256k)  # session 35: handoff256 without its checks (call 1 ran them: all passed)
      timeout $(limit 450) python3 scripts/explore_session34.py handoff256 --no-check \
        --out "$OUT/explore" 2>&1 | tee "$OUT/handoff256.log" | tail -n 40 ;;
    handoff256s8)  # session 35: 8 epilogue parts on 256-row tiles, 16 on 128-row ones
      timeout $(limit 450) python3 scripts/explore_session34.py handoff256 --candidates \
        ho128_p8 ho128_p16 ho256_s8_c160_e152 --out "$OUT/explore" 2>&1 \
        | tee "$OUT/handoff256s8.log" | tail -n 40 ;;
    acts35)  # session 35: the MLP backward's kernel for each activation, then steps
      timeout $(limit 520) python3 scripts/explore_session35.py acts steps --out "$OUT/explore" \
        2>&1 | tee "$OUT/acts35.log" | tail -n 40 ;;
    gt35)  # session 35: explore_session35.py acts steps for gelu_tanh alone (its new helper)
      timeout $(limit 300) python3 scripts/explore_session35.py acts steps --acts gelu_tanh \
        --out "$OUT/explore" 2>&1 | tee "$OUT/gt35.log" | tail -n 30 ;;
    fwd35)  # session 35 (not yet run): the forward kernels per activation, Gluon on and off
      timeout $(limit 400) python3 scripts/explore_session35.py fwd --out "$OUT/explore" \
        2>&1 | tee "$OUT/fwd35.log" | tail -n 50 ;;
    gelu37)  # session 37: GELU's CDF, sigmoid form against the erf form
      timeout $(limit 400) python3 scripts/explore_session37.py gelu --out "$OUT/explore" \
        2>&1 | tee "$OUT/gelu37.log" | tail -n 20 ;;
    late37)  # session 37 (prepared): the Gluon forward with COALESCE_OUT
      timeout $(limit 540) python3 scripts/explore_session37.py late --out "$OUT/explore" \
        2>&1 | tee "$OUT/late37.log" | tail -n 10 ;;
    tiles37)  # session 37: Gluon forward entries for GELU and gelu_tanh
      timeout $(limit 400) python3 scripts/explore_session37.py tiles --out "$OUT/explore" \
        2>&1 | tee "$OUT/tiles37.log" | tail -n 8 ;;
    fwd36)  # session 36: fwd35's cases, settled and rotated
      timeout $(limit 400) python3 scripts/explore_session36.py fwd --out "$OUT/explore" \
        2>&1 | tee "$OUT/fwd36.log" | tail -n 40 ;;
    host36)  # session 36: host time of the projection above the decode paths, plans on / off
      timeout $(limit 200) python3 scripts/explore_session36.py host --out "$OUT/explore" \
        2>&1 | tee "$OUT/host36.log" | tail -n 12 ;;
    tests-plans-linear)  # session 36: test_plans.py and test_linear.py on the GPU
      timeout $(limit 300) $pytest -m gpu tests/test_plans.py tests/test_linear.py 2>&1 \
        | tail -n 15 | tee "$OUT/pytest_plans_linear_gpu.log" ;;
    steps35)  # session 35: explore_session35.py steps alone
      timeout $(limit 520) python3 scripts/explore_session35.py steps --out "$OUT/explore" \
        2>&1 | tee "$OUT/steps35.log" | tail -n 40 ;;
    compiled33)
      timeout $(limit 300) python3 scripts/explore_session33.py compiled --out "$OUT/explore" \
        2>&1 | tee "$OUT/compiled33.log" | tail -n 6 ;;
    ab33)
      timeout $(limit 300) python3 scripts/explore_session33.py ab --out "$OUT/explore" \
        2>&1 | tee "$OUT/ab33.log" | tail -n 12 ;;
    tests-train-plans)  # session 33: the training plans, and the MLP's GPU tier with them
      timeout $(limit 240) $pytest tests/test_train_plans.py 2>&1 | tail -n 8 \
        | tee "$OUT/pytest_train_plans.log"
      timeout $(limit 200) $pytest -m gpu tests/test_mlp.py 2>&1 | tail -n 8 \
        | tee -a "$OUT/pytest_train_plans.log" ;;
    tests-ws-routes)  # session 33: the Gluon tests that route through ops.train / ops.linear
      timeout $(limit 200) $pytest -m gpu tests/test_ws_mlp.py -k "rout or shape_item or committed" \
        2>&1 | tail -n 8 | tee "$OUT/pytest_ws_routes.log" ;;
    fp32dh)  # session 39 (run in session 40): the hand-off with dh in fp32, against the ping-pong
      # kernel bit for bit, alone and in whole steps; then its GPU tests
      timeout $(limit 360) python3 scripts/explore_session39.py fp32dh --out "$OUT/fp32dh" \
        2>&1 | tail -n 40
      timeout $(limit 150) $pytest -m gpu tests/test_ws_mlp.py -k fp32_dh 2>&1 | tail -n 8 \
        | tee "$OUT/pytest_fp32dh.log" ;;
    fwd40-next)  # session 40 (run in session 41): the merged forward in whole 8B steps as the
      # training table's forward_saving_ws entry, then 1024 / 1536 tokens on the four models
      timeout $(limit 330) python3 scripts/explore_session40.py steps --out "$OUT/steps" \
        2>&1 | tail -n 25
      timeout $(limit 200) python3 scripts/explore_session40.py mid --out "$OUT/mid" \
        2>&1 | tail -n 10 ;;
    tests-fwd-merged)  # session 40: the merged forward's GPU tests and the committed ws entries
      timeout $(limit 200) $pytest -m gpu tests/test_ws_mlp.py -k "merged_forward or \
        (forward_within_rule and config2) or (forward_fp16 and config2) or committed_projection" \
        2>&1 | tail -n 15 | tee "$OUT/pytest_fwd_merged.log" ;;
    low41)  # session 41: the merged forward below 1025 tokens
      timeout $(limit 150) python3 scripts/explore_session41.py low --out "$OUT/low" \
        2>&1 | tail -n 14 ;;
    low41-next)  # session 41, prepared: the rest of 8B's and Qwen's 1024 bucket, 70B's 512
      timeout $(limit 150) python3 scripts/explore_session41.py low --models 8b,qwen \
        --tokens 520,576,896,960 --out "$OUT/low-b" 2>&1 | tail -n 8
      timeout $(limit 100) python3 scripts/explore_session41.py low --models 70b \
        --tokens 385,448,512 --out "$OUT/low-70b" 2>&1 | tail -n 3 ;;
    mid-eager)  # session 42: between the buckets against eager and torch.compile (issue 3's
      # "never slower than eager"), the 1024 bucket's counts on 8B and Qwen (merged since
      # session 41) and 70B's at 520-1024
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 --tokens 520,640,768,896,1024 \
        --backend torch,compile,cublas,triton --run-id h200-${RUN_TAG}-linear-bf16-mid \
        2>&1 | tee "$OUT/linear_mid.log" | grep "^| triton" | cut -c1-140 ;;
    between42|between42b|between42-fp16)  # session 42: counts at 385-768 on the committed
      # table, then with the unfused route widened to 385-768 on the four shapes
      # (scripts/widen_unfused.py); -b: the counts between (8B, Qwen, 70B); -fp16 (prepared in
      # session 42, run in session 43): fp16, whose ranges then stopped at 384
      models=llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b tokens=385,448,520,576,640,768 tag=""
      dtype=bfloat16 short=bf16
      [[ $stage == *b ]] && models=llama-3-8b,qwen2.5-7b,llama-3-70b \
        tokens=400,416,432,513,544,608,704 tag=-b
      [[ $stage == *fp16 ]] && models=llama-3-8b,qwen2.5-7b,llama-3-70b \
        tokens=385,432,520,576,640,768 dtype=float16 short=fp16
      route_pair 385-768 260 h200-${RUN_TAG}-linear-$short-between$tag \
        linear_${short}_between$tag --model $models --dtype $dtype --tokens $tokens ;;
    check42)  # session 42, run in session 43: the committed table's new unfused ranges (bf16) on the GPU:
      # test_linear.py's unfused-route tests, then a benchmark run of the table itself at counts
      # on both sides of the ranges, every backend but max-autotune and Liger
      unfused_tests
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3-8b,qwen2.5-7b,llama-3-70b --dtype bfloat16 \
        --tokens 400,432,448,520,576,608,704,768 --backend torch,compile,cublas,triton \
        --run-id h200-${RUN_TAG}-linear-bf16-between-check 2>&1 \
        | tee "$OUT/linear_between_check.log" | grep "^| triton" | cut -c1-120 ;;
    between43-bf16-a|between43-bf16-b|between43-fp16-a|between43-fp16-b)  # session 43,
      # prepared: the counts between 769 and 2047 tokens (only 896 and 1024 measured), where
      # the fused projection's 128-row token tiles step at 1025 as they did at 385 and 513;
      # the committed table, then the route widened to 769-2047; -a: 1B and 8B, -b: Qwen and
      # 70B
      dtype=bfloat16 short=bf16 models=llama-3.2-1b,llama-3-8b
      [[ $stage == *fp16* ]] && dtype=float16 short=fp16
      [[ $stage == *-b ]] && models=qwen2.5-7b,llama-3-70b
      route_pair 769-2047 270 h200-${RUN_TAG}-linear-$short-late-${stage##*-} $stage \
        --model $models --dtype $dtype --tokens 800,960,1025,1088,1152,1280,1536,1664,1792,2047 ;;
    tests-unfused)  # session 43: the unfused route's GPU tests alone (test_linear.py -k unfused)
      unfused_tests ;;
    check44-bf16|check44-fp16)  # session 44, prepared: the table of session 44 itself at the
      # counts around its new ranges (769 and 1025 steps), the four models, eager,
      # torch.compile, cuBLAS and ours; -bf16 first runs the route's GPU tests and the 70B
      # bf16 bucket entry's (test_ws_mlp.py)
      dtype=bfloat16 short=bf16
      [[ $stage == *fp16 ]] && dtype=float16 short=fp16
      if [[ $short == bf16 ]]; then
        unfused_tests
        timeout $(limit 120) $pytest -m gpu tests/test_ws_mlp.py -k \
          "committed_projection_entries and n28672" 2>&1 | tail -n 4 | tee "$OUT/pytest_ws70b.log"
      fi
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype $dtype \
        --tokens 769,800,832,896,960,1025,1064,1088 --backend torch,compile,cublas,triton \
        --run-id h200-${RUN_TAG}-linear-$short-late-check 2>&1 \
        | tee "$OUT/linear_${short}_late_check.log" | grep "^| triton" | cut -c1-120 ;;
    check45)  # session 45: the table of session 45 (70B fp16 routes 769-831 and runs the
      # 1024 bucket's merged forward at 832-1023): the route's GPU cases, the bucket entry's
      # fp16 test, then 70B fp16 around the new edge, eager, torch.compile, cuBLAS and ours
      # (run h200-${RUN_TAG}-linear-fp16-late70-check)
      unfused_tests
      timeout $(limit 120) $pytest -m gpu tests/test_ws_mlp.py -k \
        "70b_1024_bucket or (committed_projection_entries and n28672)" 2>&1 | tail -n 4 \
        | tee "$OUT/pytest_ws70b.log"
      timeout $(limit 150) python3 -m flash_swiglu.bench.cli --op linear --model llama-3-70b \
        --dtype float16 --tokens 769,800,831,832,864,896,960,992,1023 \
        --backend torch,compile,cublas,triton --run-id h200-${RUN_TAG}-linear-fp16-late70-check \
        2>&1 | tee "$OUT/late70_fp16_check.log" | grep "^| triton" | cut -c1-120 ;;
    late44-70b|late45-70b-fp16)  # 70B between 769 and 1088 tokens; eager and ours.
      # Session 44 (bf16): the committed table's Triton kernel (no ws entry below 1024) ran
      # 0.93-0.96x eager at 800 / 960 / 1025 in both dtypes: the committed table, then the
      # merged Gluon forward given the 1024 bucket (widen_unfused.py --ws-bucket; 769-992
      # only: from 1024 it is the committed path), then the unfused route widened to 769-1088
      # (runs h200-${RUN_TAG}-linear-bf16-late70-{committed,merged,unfused}).
      # Session 45 (fp16): the committed table routed 769-1023 and 1025-1088 (the route
      # 0.969-1.015x eager in session 44): the committed table, then the merged forward given
      # the 1024 bucket with the route dropped at 769-1023 (runs
      # h200-${RUN_TAG}-linear-fp16-late70-{committed,merged})
      if [[ $stage == late44-70b ]]; then
        dtype=bfloat16 short=bf16 stem=late44_70b merged=/tmp/merged.json drop=""
        variants=${LATE70_VARIANTS:-committed merged unfused}  # a subset: fewer runs
        python3 scripts/widen_unfused.py --tokens 769-1088 --out /tmp/widened.json
      else
        dtype=float16 short=fp16 stem=late45_70b_fp16 merged=/tmp/merged16.json
        drop="--drop 769-1023" variants="committed merged"
      fi
      python3 scripts/widen_unfused.py --ws-bucket n28672_k8192:1024 $drop --out $merged
      for variant in $variants; do
        table="" tokens=769,800,832,864,896,928,960,992,1025,1088
        [[ $variant == merged ]] && table=$merged tokens=769,800,832,864,896,928,960,992
        [[ $variant == unfused ]] && table=/tmp/widened.json
        FLASH_SWIGLU_LINEAR_CONFIGS=$table timeout $(limit 120) python3 -m flash_swiglu.bench.cli \
          --op linear --model llama-3-70b --dtype $dtype --tokens $tokens \
          --backend torch,triton --run-id h200-${RUN_TAG}-linear-$short-late70-$variant 2>&1 \
          | tee "$OUT/${stem}_$variant.log" | grep "^| triton" | cut -c1-110
      done ;;
    cover46-bf16|cover46-fp16)  # session 46: inside the route ranges of 1025-1088 tokens,
      # the committed table (the route) and the fused projection (the range dropped)
      dtype=bfloat16 short=bf16
      [[ $stage == *fp16 ]] && dtype=float16 short=fp16
      if [[ $short == bf16 ]]; then
        timeout $(limit 150) $pytest -m gpu tests/test_ws_mlp.py -k \
          "70b_1024_bucket or (committed_projection_entries and n28672)" 2>&1 | tail -n 4 \
          | tee "$OUT/pytest_ws70b.log"
      fi
      python3 scripts/widen_unfused.py --drop 1025-1088 --out /tmp/fused46.json
      for variant in committed fused; do
        table=""
        [[ $variant == fused ]] && table=/tmp/fused46.json
        FLASH_SWIGLU_LINEAR_CONFIGS=$table timeout $(limit 150) python3 -m flash_swiglu.bench.cli \
          --op linear --model llama-3-8b,qwen2.5-7b,llama-3-70b --dtype $dtype \
          --tokens 1025,1040,1056,1072,1087 --backend torch,cublas,triton \
          --run-id h200-${RUN_TAG}-linear-$short-cover46-$variant 2>&1 \
          | tee "$OUT/cover46_${short}_$variant.log" | grep "^| triton" | cut -c1-120
      done ;;
    check47)  # session 47: Qwen fp16's route at 769-800, three copies (call 8 timed it alone)
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear --model qwen2.5-7b \
        --dtype float16 --tokens 769,784,800 --backend torch,compile,cublas,liger-mul,triton \
        --copies 3 --run-id h200-${RUN_TAG}-linear-fp16-qwen-route47 2>&1 \
        | tee "$OUT/check47.log" | grep -E "^\| (torch|compile|liger-mul|triton) " | cut -c1-120 ;;
    peers46-bf16|peers46-fp16)  # session 46: Liger at 769-1088 tokens (not in session 45's runs)
      dtype=bfloat16 short=bf16
      [[ $stage == *fp16 ]] && dtype=float16 short=fp16
      timeout $(limit 420) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3.2-1b,llama-3-8b,qwen2.5-7b,llama-3-70b --dtype $dtype \
        --tokens 769,800,832,896,960,1025,1064,1088 --backend torch,cublas,liger,liger-mul,triton \
        --run-id h200-${RUN_TAG}-linear-$short-late-peers 2>&1 \
        | tee "$OUT/late_peers_$short.log" | grep "^| triton" | cut -c1-120 ;;
    late44-mid)  # session 44: 8B and Qwen at 1025-1120 tokens (a ninth row of 128-row tiles in
      # the merged forward), the committed table and the route widened to 1025-1151
      route_pair 1025-1151 120 h200-${RUN_TAG}-linear-bf16-late44 late44_mid \
        --model llama-3-8b,qwen2.5-7b --dtype bfloat16 --tokens 1025,1040,1064,1088,1120 ;;
    check43)  # session 43: the committed table in fp16 at 385-768 tokens (the :float16 keys
      # of the unfused section) on 8B, Qwen and 70B; then 1B, which has no key, in fp16 on
      # the committed table and with the route widened to 385-768
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear \
        --model llama-3-8b,qwen2.5-7b,llama-3-70b --dtype float16 \
        --tokens 385,400,416,432,448,513,520,544,576,608,640,704,768 \
        --backend torch,cublas,triton --run-id h200-${RUN_TAG}-linear-fp16-between-check 2>&1 \
        | tee "$OUT/linear_fp16_between_check.log" | grep "^| triton" | cut -c1-120
      route_pair 385-768 120 h200-${RUN_TAG}-linear-fp16-between-1b linear_fp16_between_1b \
        --model llama-3.2-1b --dtype float16 --tokens 385,448,520,576,640,768 ;;
    tests-s41)  # session 41: the committed ws entries (launch and training tables) on the GPU
      timeout $(limit 300) $pytest -m gpu tests/test_ws_mlp.py -k "committed or routing" \
        2>&1 | tail -n 15 | tee "$OUT/pytest_s41.log" ;;
    tests-merged)  # session 39: the merged backward's GPU tests (test_ws_mlp.py -k merged)
      timeout $(limit 300) $pytest -m gpu tests/test_ws_mlp.py -k merged 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_merged.log" ;;
    large-fp16)  # session 39: the large stage in fp16 (the latest fp16 run at M >= 2048 was
      # session 18's, on 8B alone); one run per model pair, as large-max-a / -b
      for run in llama-3.2-1b,llama-3-8b:a qwen2.5-7b,llama-3-70b:b; do
        timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op linear --model ${run%%:*} \
          --dtype float16 --tokens 2048,8192,16384 \
          --backend torch,torch-packed,compile,cublas,liger,triton \
          --run-id h200-${RUN_TAG}-linear-fp16-large-${run##*:} 2>&1 \
          | tee "$OUT/linear_fp16_large_${run##*:}.log" | tail -n 4
      done ;;
    tests-launch)
      timeout $(limit 150) $pytest tests/test_launch.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_launch.log" ;;
    tests-plans)
      timeout $(limit 150) $pytest tests/test_plans.py tests/test_launch.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_plans.log" ;;
    tests-split)
      timeout $(limit 200) $pytest tests/test_mlp.py -k "split or gpu_bf16" 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_split_gpu.log" ;;
    mlp-1b)
      timeout $(limit 300) python3 -m flash_swiglu.bench.cli --op mlp --model llama-3.2-1b \
        --tokens 2048,8192,16384 --run-id h200-${RUN_TAG}-mlp-1b 2>&1 | tee "$OUT/mlp_1b.log" \
        | tail -n 4 ;;
    tests-mlp-gpu)
      timeout $(limit 200) $pytest -m gpu tests/test_mlp.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_mlp_gpu.log" ;;
    pdl49)  # session 49: the decode kernels as programmatic dependent launches, on and off
      timeout $(limit 420) python3 scripts/explore_session49.py pdl --out "$OUT/pdl" 2>&1 \
        | grep -E "^pdl|Error|error" | cut -c1-200 ;;
    nowait49)  # session 49: the PDL test's scenario with the wait compiled out, then the test
      timeout $(limit 120) python3 scripts/explore_session49.py nowait --out "$OUT/nowait" 2>&1 \
        | grep -E "^nowait|Error|error" | cut -c1-200
      timeout $(limit 120) $pytest -m gpu tests/test_linear.py -k "waits_for or pdl" 2>&1 \
        | tail -n 8 | tee "$OUT/pytest_pdl.log" ;;
    dhgemm50)  # session 50: the backward's main loop alone against cuBLAS's dy @ W_down
      timeout $(limit 120) python3 scripts/explore_session50.py gate 2>&1 | grep "^{" \
        | cut -c1-200
      timeout $(limit 300) python3 scripts/explore_session50.py dhgemm --out "$OUT/dhgemm" 2>&1 \
        | grep -E "^dhgemm|Error|error" | cut -c1-220 ;;
    epi51|tma51|hints51|noh51|configs51|gutma51|guasync51)  # session 51: explore_session51 MODE
      mode=${stage%51}
      if [ "$mode" = epi ]; then
        timeout $(limit 120) python3 scripts/explore_session51.py gate 2>&1 | grep "^{" \
          | cut -c1-200
      fi
      timeout $(limit 300) python3 scripts/explore_session51.py "$mode" --out "$OUT/$mode" \
        2>&1 | grep -E "^$mode|Error|error" | cut -c1-260 ;;
    tests-examples)
      timeout $(limit 240) $pytest tests/test_examples.py 2>&1 | tail -n 15 \
        | tee "$OUT/pytest_examples_gpu.log" ;;
    *)
      echo "unknown stage $stage" >&2; continue ;;
  esac
  echo "== $stage: ${SECONDS} s" | tee -a "$OUT/stages.log"
  tar czf "$OUT/results.tgz" benchmarks/results/h200-train-tiny-llama* \
    benchmarks/results/h200-${RUN_TAG}-* 2>/dev/null
done
# The device returns at most eight files of $OUT; session 43's call 2 left nine there and lost
# its results.tgz. So the stages' own logs (each stage tees its full output to one; stdout has
# a filtered part) travel in one tarball, stage_logs.tgz. stages.log stays: the calls append it
# to their log.txt.
shopt -s nullglob
logs=()
for f in "$OUT"/*.log; do [[ ${f##*/} != stages.log ]] && logs+=("${f##*/}"); done
if (( ${#logs[@]} )); then
  tar czf "$OUT/stage_logs.tgz" -C "$OUT" "${logs[@]}" && (cd "$OUT" && rm -f "${logs[@]}")
fi
