"""e4e encoder throughput: images/s of ``facefeat.models.e4e.encode`` at several batch sizes.

Random weights at full size (1024 px generator, 18 styles; the cost does not depend on the
values). Input: uint8 256x256 aligned-face-sized images, so e4e's normalisation is included.
Prints the median over repetitions and the ratio of images/s to the first batch size (the
reference, measured in the same run).

    .venv/bin/python benchmarks/bench_encoder.py                 # batch 1 and 16, CPU
    .venv/bin/python benchmarks/bench_encoder.py --device cuda --batch-sizes 1 16 64
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from facefeat.models.e4e import Encoder4Editing, encode


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions per batch size (after one warm-up)")
    ap.add_argument("--resolution", type=int, default=1024, help="generator resolution (sets n_styles)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    torch.manual_seed(0)
    t0 = time.perf_counter()
    enc = Encoder4Editing(args.resolution).to(device).eval()
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in enc.parameters())
    print(f"Encoder4Editing({args.resolution}): {enc.n_styles} styles, {n_params / 1e6:.1f} M parameters, "
          f"built in {build_s:.1f} s; device={device}, torch {torch.__version__}, threads={torch.get_num_threads()}")

    rng = np.random.default_rng(0)
    latent_avg = torch.zeros(enc.n_styles, 512, device=device)
    rows = []
    for bs in args.batch_sizes:
        imgs = rng.integers(0, 256, size=(bs, 256, 256, 3), dtype=np.uint8)
        times = []
        for rep in range(args.reps + 1):
            _sync(device)
            t = time.perf_counter()
            encode(enc, imgs, latent_avg=latent_avg, batch_size=bs, device=device)
            _sync(device)
            if rep:  # the first call is a warm-up
                times.append(time.perf_counter() - t)
        med = statistics.median(times)
        rows.append((bs, med, bs / med))

    ref = rows[0][2]
    print(f"\n{'batch':>5} {'median s/batch':>15} {'images/s':>9} {'ms/image':>9} {'vs batch ' + str(rows[0][0]):>11}")
    for bs, med, ips in rows:
        print(f"{bs:>5} {med:>15.3f} {ips:>9.2f} {1000 / ips:>9.0f} {ips / ref:>10.2f}x")
    print(f"\n(median of {args.reps} runs after one warm-up)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
