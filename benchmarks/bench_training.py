"""StyleGAN2 training on the CPU: seconds per kimg, the share of R1 and path-length steps, memory.

For each resolution (32 and 64 px by default) two configurations run in their own child
process (so that each peak RSS is its own), on the same random 'real' images:

* ``full``: the published loop (Gmain, Greg every 4, Dmain, Dreg every 16, style mixing 0.9,
  ADA with p = 0.2, G EMA);
* ``reference``: the same networks and batch with R1, path length, style mixing and
  augmentation off (Gmain + Dmain + EMA only), the cost of a bare GAN step.

Networks are small (``--channel-base 1024 --channel-max 64``, 2 mapping layers, z/w 64: the
size of the NVIDIA test fixture) because full-size StyleGAN2 is GPU work; ratios to the
reference carry over better than the absolute numbers. Each measurement times a whole
regularisation cycle (16 minibatches, after 16 warm-up minibatches); the table prints the
median over ``--repeats`` cycles. The R1 and path-length shares are the time spent in the
``Dreg`` and ``Greg`` phases over the whole step time. Wall and CPU time are both printed:
on a shared machine the CPU time of a one-thread run is the steadier figure.

Usage::

    .venv/bin/python benchmarks/bench_training.py                    # 32 and 64 px, 1 thread
    .venv/bin/python benchmarks/bench_training.py --res 32 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CYCLE = 16  # minibatches per measurement: one R1 step, four path-length steps


def _worker(res: int, mode: str, batch: int, repeats: int, threads: int, channel_base: int, channel_max: int,
            device: str) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(ROOT))
    from facefeat.models.stylegan2 import Discriminator, DiscriminatorConfig, Generator, GeneratorConfig
    from facefeat.training import Trainer, TrainingConfig, TrainingImages

    torch.manual_seed(0)
    gcfg = GeneratorConfig.nvidia(res, z_dim=64, w_dim=64, mapping_layers=2, channel_base=channel_base,
                                  channel_max=channel_max)
    dcfg = DiscriminatorConfig.nvidia(res, channel_base=channel_base, channel_max=channel_max)
    G, D, G_ema = Generator(gcfg), Discriminator(dcfg), Generator(gcfg)
    G_ema.load_state_dict(G.state_dict())
    rng = np.random.default_rng(0)
    images = TrainingImages(resolution=res, arrays=rng.integers(0, 256, (64, res, res, 3), dtype=np.uint8))
    if mode == "full":
        cfg = TrainingConfig(batch_size=batch, augment="fixed", augment_p=0.2, metrics=())
    else:
        cfg = TrainingConfig(batch_size=batch, augment="none", r1_gamma=0.0, pl_weight=0.0, style_mixing_prob=0.0,
                             metrics=())
    trainer = Trainer(G, D, G_ema, images, cfg, device=device)
    for _ in range(CYCLE):  # warm-up: first-call overheads, allocator
        trainer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    per_kimg, cpu_per_kimg, share_r1, share_pl = [], [], [], []
    for _ in range(repeats):
        phases0, train0 = dict(trainer.phase_seconds), trainer.train_seconds
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(CYCLE):
            trainer.step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        train = trainer.train_seconds - train0
        per_kimg.append(wall / (CYCLE * batch / 1000))
        cpu_per_kimg.append(cpu / (CYCLE * batch / 1000))
        share_r1.append((trainer.phase_seconds.get("Dreg", 0) - phases0.get("Dreg", 0)) / train)
        share_pl.append((trainer.phase_seconds.get("Greg", 0) - phases0.get("Greg", 0)) / train)
    import resource

    out = {"res": res, "mode": mode, "batch": batch, "threads": threads,
           "sec_per_kimg": per_kimg, "cpu_sec_per_kimg": cpu_per_kimg, "share_r1": share_r1, "share_pl": share_pl,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "g_params": sum(p.numel() for p in G.parameters()), "d_params": sum(p.numel() for p in D.parameters())}
    if device.startswith("cuda"):
        out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--res", type=int, nargs="+", default=[32, 64])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--channel-base", type=int, default=1024)
    ap.add_argument("--channel-max", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        res, mode = args.worker.split(":")
        print(json.dumps(_worker(int(res), mode, args.batch, args.repeats, args.threads, args.channel_base,
                                 args.channel_max, args.device)))
        return 0
    rows = []
    for res in args.res:
        for mode in ("reference", "full"):
            cmd = [sys.executable, __file__, "--worker", f"{res}:{mode}", "--batch", str(args.batch),
                   "--repeats", str(args.repeats), "--threads", str(args.threads),
                   "--channel-base", str(args.channel_base), "--channel-max", str(args.channel_max),
                   "--device", args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"  measured {res} px {mode}", file=sys.stderr)
    import torch

    print(f"\nStyleGAN2 training, device {args.device}, torch {torch.__version__}, {args.threads} thread(s), "
          f"batch {args.batch}, channel_base {args.channel_base} / max {args.channel_max}, "
          f"median of {args.repeats} cycles of {CYCLE} minibatches")
    head = (f"{'res':>4} {'config':<10} {'G/D params':>13} {'s/kimg':>8} {'x ref':>6} {'CPU s/kimg':>11} {'x ref':>6} "
            f"{'R1 %':>6} {'PL %':>6} {'peak RSS MB':>12}")
    print(head)
    print("-" * len(head))
    ref, ref_cpu = {}, {}
    for r in rows:
        med, cpu = statistics.median(r["sec_per_kimg"]), statistics.median(r["cpu_sec_per_kimg"])
        if r["mode"] == "reference":
            ref[r["res"]], ref_cpu[r["res"]] = med, cpu
        params = f"{r['g_params'] / 1e3:.0f}k/{r['d_params'] / 1e3:.0f}k"
        mem = f"{r['peak_rss_mb']:.0f}" + (f" (cuda {r['cuda_peak_mb']:.0f})" if "cuda_peak_mb" in r else "")
        print(f"{r['res']:>4} {r['mode']:<10} {params:>13} {med:>8.1f} {med / ref[r['res']]:>6.2f} "
              f"{cpu:>11.1f} {cpu / ref_cpu[r['res']]:>6.2f} "
              f"{100 * statistics.median(r['share_r1']):>6.1f} {100 * statistics.median(r['share_pl']):>6.1f} "
              f"{mem:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
