"""StyleGAN2 generator forward speed: facefeat's fast path vs the straightforward reference path.

Usage::

    .venv/bin/python benchmarks/bench_generator.py                 # 32, 64, 256 px; batch 1 and 8
    .venv/bin/python benchmarks/bench_generator.py --sizes 256 --batches 1 --repeats 7
    .venv/bin/python benchmarks/bench_generator.py --threads 1      # on a busy machine

Networks: ``GeneratorConfig.nvidia(size, channel_base=16384, channel_max=512)`` (at 256 px this is
NVIDIA's ``paper256``: 512 channels up to 32 px, then 256/128/64), random weights with non-zero
noise strengths, ``noise_mode="const"``, float32, ``torch.inference_mode()``.

Compared in the same run, interleaved (one call of each per round):

* ``fast``: facefeat's default path (weight-derived tensors cached while the weights are frozen,
  modulation on the smaller of weight and activations, channels_last from 64 px, FIR upsampling
  as a strided transposed depthwise conv, 1x1 ToRGB as a matmul, in-place epilogues, large
  batches chunked at high resolution).
* ``reference``: the textbook path that both official code bases run on CPU: per-sample
  modulated weights in one grouped convolution (NVIDIA ``fused_modconv=True``) and
  ``upfirdn2d`` by zero insertion + depthwise FIR.
* ``fast-bf16`` (only with ``--impls``): the fast path with bfloat16 convolutions, for CPUs
  with AVX512-BF16/AMX; about 2% relative error, so not for exact feature extraction.

Columns: median wall time per call, images/s, achieved GFLOP/s (convolution FLOPs counted
analytically: ``2 * k^2 * C_in * C_out * H_in * W_in`` per modulated conv, ToRGB included;
FIR filters, bias, noise and the mapping network not counted), the share of a conv peak
measured in this run (the best of a 3x3 512->512 convolution at 32x32, batch 1 and 8,
channels_last), system-CPU share (page faults from large allocations show up here), and
ratios: fast vs reference, and batch-8 per-image speed vs batch 1.

Timings depend on what else runs on the machine: compare rows of one run, not across runs.
On a shared machine, OpenMP threads that spin while waiting lose their core to other processes
and every parallel op then waits for a descheduled thread; the script therefore uses the
product's runtime settings (:func:`facefeat.runtime.configure_runtime`: ``OMP_WAIT_POLICY=PASSIVE``
before torch loads unless the environment sets it, e.g. ``OMP_WAIT_POLICY=ACTIVE`` to compare),
and prints the policy and the load average in its header.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time


#: synthesis() keyword arguments of each timed path (filled in once torch is imported).
PATHS: dict[str, dict] = {}


def conv_flops(cfg) -> int:
    """FLOPs (2 per multiply-add) of the modulated convolutions of one image."""
    total = 0
    for res in cfg.block_resolutions:
        c_out = cfg.channels[res]
        if res == 4:
            total += 2 * 9 * c_out * c_out * 16
        else:
            c_in = cfg.channels[res // 2]
            total += 2 * 9 * c_in * c_out * (res // 2) ** 2  # transposed conv: per input pixel
            total += 2 * 9 * c_out * c_out * res * res
        total += 2 * c_out * cfg.img_channels * res * res  # ToRGB
    return total


def build(size: int, seed: int = 0):
    import torch

    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(seed)
    G = Generator(GeneratorConfig.nvidia(size, channel_base=16384, channel_max=512)).eval()
    with torch.no_grad():  # non-trivial noise strengths and biases, as in a trained network
        for name, p in G.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G.requires_grad_(False)


def timed(fn, *, rounds: int, warm: bool = True) -> list[tuple[float, float, float]]:
    """(wall, user, sys) seconds of ``rounds`` calls (after one warm-up call if ``warm``)."""
    if warm:
        fn()
    out = []
    for _ in range(rounds):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        fn()
        t1, r1 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
        out.append((t1 - t0, r1.ru_utime - r0.ru_utime, r1.ru_stime - r0.ru_stime))
    return out


def conv_peak(rounds: int) -> float:
    """Best median GFLOP/s of a 3x3 512->512 conv at 32x32 (batch 1 and 8, channels_last)."""
    import torch
    import torch.nn.functional as F

    best = 0.0
    w = torch.randn(512, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    for b in (1, 8):
        x = torch.randn(b, 512, 32, 32).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            t = statistics.median(r[0] for r in timed(lambda: F.conv2d(x, w, padding=1), rounds=rounds))
        best = max(best, 2 * 9 * 512 * 512 * 1024 * b / t / 1e9)
    return best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="32,64,256", help="comma-separated resolutions (default 32,64,256)")
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default 1,8)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch intra-op threads")
    ap.add_argument("--repeats", type=int, default=0,
                    help="rounds per size (default: 7 below 256 px, 4 at 256 px); each round times every "
                         "(batch, path) once, smaller batches several times")
    ap.add_argument("--impls", default="fast,reference",
                    help="paths to time: fast, reference, fast-bf16 (bfloat16 convolutions; not exact, "
                         "about 2%% relative error) (default fast,reference)")
    args = ap.parse_args(argv)
    # The product's settings (threads, OMP_WAIT_POLICY=PASSIVE unless set in the environment,
    # subnormal flushing), set before torch loads, as the command line does.
    from facefeat.runtime import configure_runtime

    configure_runtime(threads=args.threads)
    import torch

    PATHS.update({"fast": {"impl": "fast"}, "reference": {"impl": "reference"},
                  "fast-bf16": {"impl": "fast", "compute_dtype": torch.bfloat16}})
    sizes = [int(s) for s in args.sizes.split(",")]
    batches = [int(b) for b in args.batches.split(",")]
    impls = args.impls.split(",")
    unknown = sorted(set(impls) - set(PATHS))
    if unknown:
        ap.error(f"unknown --impls {unknown}; choose from {sorted(PATHS)}")

    policy = os.environ.get("OMP_WAIT_POLICY", "(unset)")
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} cpu(s), "
          f"{platform.processor() or platform.machine()}, OMP_WAIT_POLICY={policy}, "
          f"load average {os.getloadavg()[0]:.2f} (start)")
    peak = conv_peak(rounds=5)
    print(f"conv peak (3x3 512->512 @32x32, channels_last, best of batch 1/8): {peak:.0f} GFLOP/s\n")

    rows = []
    for size in sizes:
        G = build(size)
        flops = conv_flops(G.config)
        gen = torch.Generator().manual_seed(1)
        ws = {b: G.mapping(torch.randn(b, G.z_dim, generator=gen)) for b in batches}
        rounds = args.repeats or (7 if size < 256 else 4)
        # Every round times each (batch, path) pair once, small batches several times, so that
        # load changes on a shared machine hit all rows alike.
        calls = {b: max(1, max(batches) // (2 * b)) if b < max(batches) else 1 for b in batches}
        samples: dict[tuple[int, str], list] = {(b, i): [] for b in batches for i in impls}
        with torch.inference_mode():
            for b in batches:  # warm-up (weight caches, allocator)
                for impl in impls:
                    G.synthesis(ws[b], **PATHS[impl])
            for _ in range(rounds):
                for b in batches:
                    for impl in impls:
                        fn = lambda: G.synthesis(ws[b], noise_mode="const", **PATHS[impl])  # noqa: E731
                        samples[(b, impl)] += [timed(fn, rounds=1, warm=False)[0] for _ in range(calls[b])]
        for b in batches:
            for impl in impls:
                got = samples[(b, impl)]
                wall = statistics.median(s[0] for s in got)
                cpu = sum(s[1] + s[2] for s in got)
                sys_share = sum(s[2] for s in got) / cpu if cpu else 0.0
                total_ips = b * len(got) / sum(s[0] for s in got)
                rows.append(dict(size=size, batch=b, impl=impl, ms=wall * 1e3, ips=b / wall, total_ips=total_ips,
                                 gflops=flops * b / wall / 1e9, sys=sys_share))
        del G

    by = {(r["size"], r["batch"], r["impl"]): r for r in rows}
    hdr = (f"{'px':>4} {'batch':>5} {'path':<9} {'ms/call':>9} {'img/s':>7} {'GFLOP/s':>8} {'% peak':>7} "
           f"{'sys %':>6} {'vs ref':>7} {'B/B1 per img':>12} {'(totals)':>8}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        ref = by.get((r["size"], r["batch"], "reference"))
        b1 = by.get((r["size"], 1, r["impl"]))
        vs_ref = f"{r['ips'] / ref['ips']:.2f}x" if ref and r["impl"] != "reference" else ""
        per_img = f"{r['ips'] / b1['ips']:.2f}x" if b1 and r["batch"] != 1 else ""
        per_tot = f"{r['total_ips'] / b1['total_ips']:.2f}x" if b1 and r["batch"] != 1 else ""
        print(f"{r['size']:>4} {r['batch']:>5} {r['impl']:<9} {r['ms']:>9.1f} {r['ips']:>7.2f} {r['gflops']:>8.0f} "
              f"{100 * r['gflops'] / peak:>6.0f}% {100 * r['sys']:>5.0f}% {vs_ref:>7} {per_img:>12} {per_tot:>8}")
    print(f"\nload average {os.getloadavg()[0]:.2f} (end)")
    print("vs ref: images/s relative to the reference path at the same size and batch (medians). "
          "B/B1 per img: images/s at this batch relative to batch 1 (>= 1: batching does not slow an image "
          "down), from medians and, in '(totals)', from all images / all wall time of the interleaved "
          "rounds (less biased when the load fluctuates: a short batch-1 call is more likely than a long "
          "batch-8 call to fall into a quiet moment).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
