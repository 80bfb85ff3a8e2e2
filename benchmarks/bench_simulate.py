"""Wall time of the planted-signal simulation pipeline (facefeat.simulate.simulate).

For N = 200 / 400 / 800 subjects on the bundled tiny generator (32 px, output calibrated),
space W projection with ``--steps`` steps (all images in one batch of up to 400), the default
survival model (coxnet, l1_ratio 0.05, penalty by inner CV) with 5-fold CV on the recovered
latents and again on the true latents (oracle): seconds spent rendering, inverting, fitting
with CV (recovered), fitting with CV (oracle), and the total (which includes the generator
statistics and the full-data fits). Medians over ``--repeats`` runs (seeds 0, 1, ...);
ratios against N = 200 measured in the same run; inversion also as milliseconds per image
and step, so a run with other ``--steps`` can be extrapolated (inversion time is linear in
steps and in N).

    python benchmarks/bench_simulate.py [--steps 100] [--repeats 3] [--sizes 200,400,800] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

from facefeat.runtime import configure_runtime

from machine import machine  # benchmarks/machine.py


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--sizes", default="200,400,800")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--effect", type=float, default=2.0)
    args = ap.parse_args()
    configure_runtime(threads=args.threads)  # the product's settings, before torch loads
    logging.basicConfig(level=logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    from facefeat.simulate.pipeline import load_simulation_generator, simulate

    sizes = [int(s) for s in args.sizes.split(",")]
    G, info = load_simulation_generator(None)
    simulate(n=40, steps=2, folds=2, G=G, generator_info=info)  # warm-up: imports, caches
    keys = ("render", "invert", "fit_cv", "oracle_fit_cv", "total")
    times: dict[int, dict[str, list[float]]] = {n: {k: [] for k in keys} for n in sizes}
    figures: dict[int, list[tuple[float, float, float]]] = {n: [] for n in sizes}
    for rep in range(args.repeats):
        for n in sizes:  # interleaved, so slow load phases hit every size alike
            t0 = time.perf_counter()
            res = simulate(n=n, steps=args.steps, seed=rep, effect=args.effect, G=G, generator_info=info)
            t = res.summary["timings"]
            for k in keys:
                times[n][k].append(t[k] if k != "total" else time.perf_counter() - t0)
            figures[n].append((res.summary["recovered"]["c_index"], res.summary["oracle"]["c_index"],
                               res.summary["recovered"]["cosine"]))
            print(f"  rep {rep} N={n}: " + ", ".join(f"{k} {t.get(k, 0):.1f}s" for k in keys[:-1]), flush=True)
    med = {n: {k: statistics.median(v) for k, v in times[n].items()} for n in sizes}
    ref = med[sizes[0]]
    print(f"\nfacefeat simulate wall time, tiny generator (32 px), W projection {args.steps} steps, coxnet 5-fold CV; "
          f"medians of {args.repeats} repeat(s)\n{machine()}\n")
    print("| N | render s | invert s | ms / image / step | fit+CV s | oracle fit+CV s | total s | total / N=%d |"
          % sizes[0])
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for n in sizes:
        m = med[n]
        print(f"| {n} | {m['render']:.2f} | {m['invert']:.1f} | {1000 * m['invert'] / (n * args.steps):.2f} | "
              f"{m['fit_cv']:.1f} | {m['oracle_fit_cv']:.1f} | {m['total']:.1f} | {m['total'] / ref['total']:.2f} |")
    print("\nfigures (median over repeats; effect %.1f log-HR/SD, censoring 0.3):" % args.effect)
    for n in sizes:
        c, o, cos = (statistics.median(x[i] for x in figures[n]) for i in range(3))
        print(f"  N={n}: recovered C {c:.3f}, oracle C {o:.3f}, cosine {cos:.3f}")


if __name__ == "__main__":
    main()
