"""Projection throughput by executor, on a quiet and a busy machine; the walk-through's simulate.

Usage::

    .venv/bin/python benchmarks/bench_cluster.py                      # 16 photos, stylegan2 defaults
    .venv/bin/python benchmarks/bench_cluster.py --images 32 --steps 100
    .venv/bin/python benchmarks/bench_cluster.py --simulate            # also README's simulate, before/after

Every row runs the product's command line in a subprocess (``python -m facefeat.cli extract
PHOTOS -e stylegan2 -s stylegan2.checkpoint=<bundled 32 px NVIDIA generator>``, extractor
defaults otherwise: 500 steps, early stopping, batch-invariant), so the runtime settings are the
ones users get (:func:`facefeat.runtime.configure_runtime`; ``OMP_NUM_THREADS`` is removed from
the environment except where a row sets the thread count):

``1 process x 1 thread``  the reference (``OMP_NUM_THREADS=1``)
``1 process x 2 threads`` (``OMP_NUM_THREADS=2``)
``--jobs 2``              two local processes, one thread each (the product's choice on 2 cores)
``--cluster local:2``     a Dask LocalCluster of two worker processes, one thread each

Throughput is measured from the part files the workers write (one per chunk of
``--batch-size`` photos): the time each part appears is recorded by polling the run folder; the
first part of each worker is warm-up (process start, imports, generator load, mean w) and is
left out: ``img/s = photos in later parts / (last part time - time of the workers' first part)``.
``wall`` is the whole command. ``busy`` repeats each row with two background processes
spinning on the CPU (``while True: pass``). Ratios: vs the reference row of the same load, and
busy vs quiet of the same row.

``--simulate`` times ``facefeat simulate --n 200 --effect 2.0 --steps 200 -o DIR`` (README's
walk-through) with this checkout and with the code at ``--before`` (a git commit from before the
runtime settings, extracted with ``git archive``).

The machine is shared: figures are noisy. The load average is printed with every row.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tests" / "data" / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"

CONFIGS = [
    ("1 process x 1 thread", [], {"OMP_NUM_THREADS": "1"}),
    ("1 process x 2 threads", [], {"OMP_NUM_THREADS": "2"}),
    ("--jobs 2", ["--jobs", "2"], {}),
    ("--cluster local:2", ["--cluster", "local:2"], {}),
]


def make_photos(folder: Path, n: int) -> Path:
    """``n`` photos with their own bytes: example faces at most 320 px wide (face detection stays a
    small share of the time), re-encoded with a changed pixel."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    srcs = [p for p in sorted((ROOT / "examples" / "faces").glob("*")) if p.stem in
            ("Tom_Cruise_avp_2014_4", "astronaut", "2009_004587")]
    for i in range(n):
        img = Image.open(srcs[i % len(srcs)]).convert("RGB")
        img.thumbnail((320, 320))
        a = np.asarray(img).copy()
        a[0, 0, 0] = i % 256
        Image.fromarray(a).save(folder / f"P{i:03d}.png", compress_level=1)
    return folder


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins")])
    env.update(extra)
    return env


def run_extract(photos: Path, out: Path, args: list[str], env: dict, *, batch: int, steps: int | None,
                workers: int) -> dict:
    cmd = [sys.executable, "-m", "facefeat.cli", "extract", str(photos), "--out", str(out), "-e", "stylegan2",
           "-s", f"stylegan2.checkpoint={GENERATOR}", "--batch-size", str(batch), "--no-progress", "--overwrite",
           *(["-s", f"stylegan2.steps={steps}"] if steps else []), *args]
    seen: dict[str, float] = {}
    stop = threading.Event()
    parts = out / ".parts" / "stylegan2"

    def watch():
        while not stop.is_set():
            now = time.perf_counter()
            for p in parts.glob("part-*.parquet") if parts.is_dir() else ():
                seen.setdefault(p.name, now)
            stop.wait(0.05)

    t0 = time.perf_counter()
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    stop.set()
    thread.join()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stdout}\n{proc.stderr}")
    times = sorted(seen.values())
    n_parts = len(times)
    if n_parts <= workers:
        raise SystemExit(f"only {n_parts} part(s) seen: use more --images than {workers} x --batch-size")
    later = times[workers:]
    rate = len(later) * batch / (later[-1] - times[workers - 1])
    return {"wall": wall, "rate": rate, "parts": n_parts}


class Busy:
    """Two processes spinning on the CPU while the block runs."""

    def __enter__(self):
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        time.sleep(1.0)
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            p.kill()
            p.wait()


def bench_throughput(args, work: Path) -> None:
    photos = make_photos(work / "photos", args.images)
    rows = []
    n_run = 0
    for load in (["quiet", "busy"] if not args.quiet_only else ["quiet"]):
        for rep in range(args.repeats):
            for label, extra_args, extra_env in CONFIGS:
                n_run += 1
                workers = 2 if extra_args else 1
                ctx = Busy() if load == "busy" else _Null()
                with ctx:
                    r = run_extract(photos, work / f"out{n_run}", extra_args, _env(extra_env), batch=args.batch_size,
                                    steps=args.steps, workers=workers)
                r.update(config=label, load=load, loadavg=os.getloadavg()[0], rep=rep)
                rows.append(r)
                print(f"  {load:<5} {label:<22} {r['rate']:.3f} img/s, wall {r['wall']:.1f} s, "
                      f"load avg {r['loadavg']:.2f}", flush=True)
    med = {}
    for load in {r["load"] for r in rows}:
        for label, *_ in CONFIGS:
            rs = [r for r in rows if r["load"] == load and r["config"] == label]
            med[load, label] = (statistics.median(r["rate"] for r in rs), statistics.median(r["wall"] for r in rs),
                                statistics.median(r["loadavg"] for r in rs))
    print()
    print(f"{'load':<6} {'executor':<22} {'img/s':>8} {'x 1 thread':>11} {'busy/quiet':>11} {'wall s':>8} {'load avg':>9}")
    for (load, label), (rate, wall, la) in sorted(med.items(), key=lambda kv: (kv[0][0] != "quiet",
                                                                                [c[0] for c in CONFIGS].index(kv[0][1]))):
        ref = med[load, CONFIGS[0][0]][0]
        bq = f"{rate / med['quiet', label][0]:.2f}" if load == "busy" else "-"
        print(f"{load:<6} {label:<22} {rate:>8.3f} {rate / ref:>11.2f} {bq:>11} {wall:>8.1f} {la:>9.2f}")


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def bench_simulate(args, work: Path) -> None:
    before = work / "before"
    if not before.exists():
        before.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before], capture_output=True, check=True)
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive.stdout, check=True)
    print(f"\n# simulate --n 200 --effect 2.0 --steps 200 (README walk-through); before = {args.before}")
    for label, code in (("before", before), ("after", ROOT)):
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        env["PYTHONPATH"] = os.pathsep.join([str(code), str(code / "plugins")])
        out = work / f"sim_{label}"
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "facefeat.cli", "simulate", "--n", "200", "--effect", "2.0",
                               "--steps", "200", "-o", str(out)], env=env, capture_output=True, text=True, cwd=code)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"simulate ({label}) failed:\n{proc.stderr[-3000:]}")
        print(f"  {label:<6} {wall:8.1f} s   load avg {os.getloadavg()[0]:.2f}", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=2, help="photos per chunk (one part file each)")
    ap.add_argument("--steps", type=int, default=None, help="projection steps (default: the extractor's, 500)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--quiet-only", action="store_true", help="skip the busy-machine rows")
    ap.add_argument("--simulate", action="store_true", help="also time the README simulate, before and after")
    ap.add_argument("--before", default="0e69d64", help="git commit for the simulate 'before' run")
    ap.add_argument("--work", default=None)
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="facefeat-bench-cluster-"))
    print(f"# bench_cluster: {args.images} photos, chunks of {args.batch_size}, stylegan2 defaults"
          f"{f', {args.steps} steps' if args.steps else ''}, generator {GENERATOR.name}; {os.cpu_count()} CPUs "
          f"(affinity {len(os.sched_getaffinity(0))}); load avg {os.getloadavg()[0]:.2f} at start; shared machine: noisy")
    bench_throughput(args, work)
    if args.simulate:
        bench_simulate(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
