"""Edit grids: seconds to render a 7-frame edit grid at 256 px on CPU, against plain forwards.

Measured per repeat, interleaved so that load from other processes hits every row alike:

- ``edit grid``: :func:`facefeat.explain.edit.edit_latents` (7 steps along a direction),
  :func:`~facefeat.explain.edit.render_edits` (one batch) and
  :func:`~facefeat.explain.edit.edit_grid` with risk labels (the PNG encoding included);
- ``7 forwards, batch 7``: ``G.synthesis`` of the same 7 W+ codes in one call (the reference);
- ``7 forwards, batch 1``: seven single-image ``G.synthesis`` calls.

The generator is a checkpoint (``--checkpoint``) or, by default, a randomly initialised 256 px
facefeat ``Generator`` (NVIDIA ``paper256`` channel table: channel_base 16384, 512 max), which
costs the same as a trained one. The risk per frame (one ``predict`` of 7 rows) is not included:
it is milliseconds next to the rendering.

Usage::

    .venv/bin/python benchmarks/bench_explain.py                    # 256 px random G, 5 repeats
    .venv/bin/python benchmarks/bench_explain.py --repeats 9 --threads 2
    .venv/bin/python benchmarks/bench_explain.py --checkpoint ffhq-256.pkl
"""

from __future__ import annotations

import argparse
import io
import statistics
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", help="generator file (default: random 256 px generator)")
    ap.add_argument("--resolution", type=int, default=256, help="random generator resolution (default 256)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    args = ap.parse_args()

    import numpy as np
    import torch

    from facefeat.explain.edit import edit_grid, edit_latents, render_edits, risk_labels

    torch.set_num_threads(args.threads)
    if args.checkpoint:
        from facefeat.models.checkpoints import load_generator

        G = load_generator(args.checkpoint)
        source = args.checkpoint
    else:
        from facefeat.models.stylegan2 import Generator, GeneratorConfig

        torch.manual_seed(0)
        G = Generator(GeneratorConfig.nvidia(args.resolution, channel_base=16384)).eval().requires_grad_(False)
        source = f"random {args.resolution} px Generator (paper256 channels)"
    rng = np.random.default_rng(0)
    with torch.no_grad():
        w = G.mapping(torch.from_numpy(rng.normal(size=(1, G.z_dim)).astype(np.float32)))[0].numpy()
    v = rng.normal(size=(1, G.w_dim)) * 0.1
    steps = np.arange(-3, 4, dtype=float)
    ws = torch.from_numpy(edit_latents(w, v, steps, num_ws=G.num_ws).astype(np.float32))

    def grid() -> None:
        lat = edit_latents(w, v, steps, num_ws=G.num_ws)
        frames = render_edits(G, lat, batch_size=8)
        img = edit_grid(frames, risk_labels(steps, steps * 1.0))
        img.save(io.BytesIO(), format="PNG")

    def batch7() -> None:
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")

    def batch1() -> None:
        with torch.no_grad():
            for i in range(len(ws)):
                G.synthesis(ws[i:i + 1], noise_mode="const")

    rows = {"edit grid (7 frames)": grid, "7 forwards, batch 7": batch7, "7 forwards, batch 1": batch1}
    batch7()  # warm-up
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(args.repeats):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    ref = statistics.median(times["7 forwards, batch 7"])
    print(f"generator: {source}, {G.img_resolution} px, num_ws {G.num_ws}; torch {torch.__version__}, "
          f"{args.threads} thread(s), {args.repeats} repeats")
    print(f"{'':24s} {'median s':>9s} {'min s':>8s} {'ratio':>6s}")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"{name:24s} {med:9.3f} {min(ts):8.3f} {med / ref:6.2f}")


if __name__ == "__main__":
    main()
