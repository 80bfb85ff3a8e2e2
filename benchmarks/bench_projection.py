"""Projection speed and time-to-quality (facefeat.inversion.project).

(1) Seconds per image per optimisation step (synthesis + MSE + noise regulariser + backward +
    Adam), at 32 px (the tiny NVIDIA fixture generator), 64 and 256 px (random-weight NVIDIA
    ``paper256``-style generators: channel_base 16384, channel_max 512), batch 1 and 8, in both
    modes: ``fast`` (the batch is one generator call) and ``invariant`` (``batch_invariant=True``:
    one generator call per image, bitwise batch-independent results; the extractor's default).
    Median over the steps after the first (warm-up).

(2) Time-to-quality on the tiny fixture generator (32 px): the reference is NVIDIA's projector
    schedule (space W, 1000 steps, noise maps optimised, MSE loss because no VGG weights are
    available offline). For each image, its PSNR after those 1000 steps is the bar. A run
    "reaches quality" at the first step where every image's PSNR (of the image rendered at that
    step) is at or above its bar; its time-to-quality is the wall time to that step. Compared:
    the reference itself, and facefeat's defaults (the extractor's default preset, see
    ``PRESETS`` in plugins/facefeat_builtins/stylegan2.py) as well as the same defaults in W. Two target sets: 8 generator images (rendered
    from style-mixed latents with the output scaled to [-1, 1] like the round-trip test) and the
    example photos, FFHQ-aligned at 32 px.

Prints medians and ratios against the reference measured in the same run; names the machine.

    python benchmarks/bench_projection.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from machine import machine  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "data" / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"


def generator(res: int):
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    if res == 32:
        return load_generator(TINY)
    torch.manual_seed(0)
    return Generator(GeneratorConfig.nvidia(res, channel_base=16384, channel_max=512)).eval().requires_grad_(False)


def step_times(G, batch: int, steps: int, invariant: bool, stats) -> float:
    from facefeat.inversion import project

    target = torch.rand(batch, 3, G.img_resolution, G.img_resolution) * 255
    stamps = []
    project(G, target, num_steps=steps, w_stats_cache=stats, batch_invariant=invariant, return_noises=False,
            callback=lambda *a: stamps.append(time.perf_counter()))
    gaps = np.diff(stamps)  # step k's time = stamp[k] - stamp[k-1]; the first step is warm-up
    return statistics.median(gaps.tolist()) / batch


def speed_table(quick: bool) -> None:
    from facefeat.inversion import w_stats

    print("\n(1) projection seconds per image per step (median)")
    print(f"{'res':>5} {'batch':>5} {'fast':>10} {'invariant':>10} {'inv/fast':>9} {'b8/b1 fast':>11}")
    plan = {32: 12, 64: 6, 256: 3} if not quick else {32: 6, 64: 3}
    for res, steps in plan.items():
        G = generator(res)
        stats = w_stats(G, 1000)
        per = {}
        for batch in (1, 8):
            for inv in (False, True):
                if batch == 1 and inv:
                    per[(1, True)] = per[(1, False)]  # identical computation
                    continue
                per[(batch, inv)] = step_times(G, batch, steps, inv, stats)
        for batch in (1, 8):
            f, i = per[(batch, False)], per[(batch, True)]
            rel = f"{per[(8, False)] / per[(1, False)]:.2f}" if batch == 8 else ""
            print(f"{res:>5} {batch:>5} {f:>10.4f} {i:>10.4f} {i / f:>9.2f} {rel:>11}")


def aligned_examples(size: int) -> np.ndarray:
    from facefeat.engine.config import resolve_run_config
    from facefeat.engine.preprocess import Preprocessor
    from facefeat.io.manifest import load_inputs

    cfg = resolve_run_config({"input": "-", "out": "-"})
    pre = Preprocessor(cfg["face"], cfg["align"], aligned_sizes=(size,))
    recs = load_inputs(ROOT / "examples" / "faces", recursive=False).records
    faces = [p.face.aligned[size] for p in map(pre.process, recs) if p.status == "ok"]
    return np.stack(faces)


def display_generator():
    G = generator(32)
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:
            torgb = getattr(G.synthesis, f"b{res}").torgb
            torgb.weight.mul_(0.25)
            torgb.bias.mul_(0.25)
    return G


def timed(G, target, stats, **kw):
    from facefeat.inversion import project

    stamps = []
    t0 = time.perf_counter()
    r = project(G, target, w_stats_cache=stats, batch_size=8, callback=lambda *a: stamps.append(time.perf_counter()),
                **kw)
    total = time.perf_counter() - t0
    return r, np.asarray(stamps) - t0, total


def robust_clock(stamps: np.ndarray) -> np.ndarray:
    """Cumulative time per step with each step's duration clipped at 2x the run's median step:
    the machine is shared, and a burst of foreign load should not decide a ratio."""
    gaps = np.diff(np.concatenate([[0.0], stamps]))
    if len(gaps) > 2:
        gaps = np.minimum(gaps, 2 * np.median(gaps[1:]))
    return np.cumsum(gaps)


def time_to_quality(run, bar: torch.Tensor) -> tuple[float | None, int | None]:
    r, stamps, total = run
    stamps = robust_clock(stamps)
    total = float(stamps[-1]) if len(stamps) else total
    ps = -10 * torch.log10(r.mse_history.double())  # [B, steps], NaN after an image stopped
    best = torch.cummax(torch.nan_to_num(ps, nan=-1.0), dim=1).values
    ok = (best >= bar[:, None] - 1e-9).all(0)
    if ok.any():
        k = int(ok.nonzero()[0])
        return float(stamps[k]), k + 1
    if bool((r.psnr.double() >= bar - 1e-9).all()):  # reached with the last update
        return total, int(r.steps.max())
    return None, None


def quality_table(quick: bool) -> None:
    from facefeat.inversion import NVIDIA_DEFAULTS, w_stats
    from facefeat.models.stylegan2 import style_mix
    from facefeat_builtins.stylegan2 import CONFIG_SCHEMA, projection_kwargs

    d = {k: v["default"] for k, v in CONFIG_SCHEMA["properties"].items() if "default" in v}
    ours = projection_kwargs(d, resolution=32)  # the extractor's default preset
    for key in ("w_avg_samples", "w_avg_seed"):
        ours.pop(key)
    ref = dict(NVIDIA_DEFAULTS)
    if quick:
        ref["num_steps"], ours["num_steps"] = 200, 100
    G = display_generator()
    stats = w_stats(G)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        ws = style_mix(G.mapping(torch.randn(8, G.z_dim, generator=g)), G.mapping(torch.randn(8, G.z_dim, generator=g)), 4)
        gen_targets = (G.synthesis(ws, noise_mode="const").clamp(-1, 1) + 1) * 127.5
    sets = {"generator images (8)": gen_targets, "example photos, aligned 32 px": aligned_examples(32)}
    print(f"\n(2) time-to-quality, tiny fixture generator (32 px), batch 8; reference = NVIDIA schedule "
          f"(W, {ref['num_steps']} steps, MSE)")
    print(f"{'targets':32} {'run':28} {'final PSNR':>10} {'steps':>6} {'total s':>8} {'steps to Q':>10} "
          f"{'TTQ s':>7} {'TTQ/ref':>8}")
    for name, target in sets.items():
        runs = {"reference (NVIDIA, W)": timed(G, target, stats, **ref)}
        bar = runs["reference (NVIDIA, W)"][0].psnr.double()
        ref_total = float(robust_clock(runs["reference (NVIDIA, W)"][1])[-1])
        runs["facefeat default (W+)"] = timed(G, target, stats, **ours)
        runs["facefeat default, fast mode"] = timed(G, target, stats, **{**ours, "batch_invariant": False})
        runs["facefeat schedule in W"] = timed(G, target, stats, **{**ours, "space": "w"})
        for label, run in runs.items():
            r, stamps, _ = run
            total = float(robust_clock(stamps)[-1])
            ttq, k = time_to_quality(run, bar)
            ttq_s = f"{ttq:7.1f}" if ttq is not None else "    n/a"
            k_s = f"{k:10d}" if k is not None else "       n/a"
            ratio = f"{ttq / ref_total:8.2f}" if ttq is not None else "  not reached"
            print(f"{name:32} {label:28} {r.psnr.mean():10.2f} {r.steps.double().mean():6.0f} {total:8.1f} {k_s} "
                  f"{ttq_s} {ratio}")
    print("Times are sums of per-step wall times, each clipped at 2x the run's median step (shared machine). "
          "steps = mean steps per image (early stopping); steps to Q = optimisation steps until quality.")
    print("TTQ = wall time until every image's PSNR reached its reference final PSNR; TTQ/ref divides by the "
          "reference's total time. facefeat default = the extractor's defaults (batch_invariant on); fast mode = the same "
          "with batch_invariant off, like the reference.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps and sizes (a smoke run)")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-quality", action="store_true")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    if not args.skip_speed:
        speed_table(args.quick)
    if not args.skip_quality:
        quality_table(args.quick)


if __name__ == "__main__":
    main()
