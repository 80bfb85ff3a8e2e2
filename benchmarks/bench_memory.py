"""Peak resident memory of ``facefeat extract`` vs input size (driver and workers).

Usage::

    .venv/bin/python benchmarks/bench_memory.py                       # 2,000 and 20,000 images
    .venv/bin/python benchmarks/bench_memory.py --sizes 500 5000 --executors local

Inputs: small PNGs made here, one in ``--face-every`` a 120 px crop of a real photo
(``examples/faces/Tom_Cruise_avp_2014_4.jpg``, one pixel changed so every file has its own
bytes), the others 32 px noise (no face). A manifest CSV lists the first N of them.

Each row runs the real command line (``python -m facefeat.cli extract MANIFEST -e landmarks
--batch-size 32``, aligned-crop cache off) in a subprocess and samples the resident set size
(RSS) of every process of its tree every 0.2 s with psutil: ``driver`` is the command's own
process, ``worker`` the largest other process (a Dask worker or nanny; with ``local`` the
chunks run in the driver). ``driver ru_maxrss`` is the kernel's high-water mark of the driver
and the processes it waited for (exact; the sampled figures can miss a peak shorter than 0.2 s).
Growth is the largest input's peak minus the smallest one's.

Timings and memory depend on what else runs on the machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def make_images(folder: Path, n: int, face_every: int) -> list[Path]:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    face = np.asarray(Image.open(ROOT / "examples" / "faces" / "Tom_Cruise_avp_2014_4.jpg").convert("RGB")
                      .crop((60, 120, 500, 560)).resize((120, 120)))
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"img{i:06d}.png"
        paths.append(path)
        if path.exists():
            continue
        if i % face_every == 0:
            a = face.copy()
            a[0, 0, 0], a[0, 1, 0], a[0, 2, 0] = i % 256, (i // 256) % 256, i // 65536
        else:
            a = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(a).save(path, compress_level=1)
    return paths


def write_manifest(path: Path, images: list[Path]) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "path"])
        for p in images:
            w.writerow([p.stem, str(p)])
    return path


def measure(cmd: list[str], env: dict) -> dict:
    """Run ``cmd``; peak RSS (MB) of its process and of its largest descendant, wall time."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks = {"driver": 0, "worker": 0}
    stop = threading.Event()

    def sample():
        try:
            me = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not stop.is_set():
            try:
                peaks["driver"] = max(peaks["driver"], me.memory_info().rss)
                for child in me.children(recursive=True):
                    try:
                        peaks["worker"] = max(peaks["worker"], child.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                return
            stop.wait(0.2)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    _, status, usage = os.wait4(proc.pid, 0)
    stop.set()
    thread.join()
    out = proc.stdout.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out}")
    return {"wall": time.perf_counter() - t0, "driver": peaks["driver"] / 2**20, "worker": peaks["worker"] / 2**20,
            "maxrss": usage.ru_maxrss / 1024,
            "summary": next((line for line in out.splitlines() if " images: " in line), "")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    ap.add_argument("--executors", nargs="+", default=["local", "local:2"],
                    help="local (chunks in the driver process) and/or local:N (Dask LocalCluster)")
    ap.add_argument("--face-every", type=int, default=20, help="one real face per this many images")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--work", default=None, help="folder for the images and runs (default: a temporary folder)")
    args = ap.parse_args(argv)

    work = Path(args.work or tempfile.mkdtemp(prefix="facefeat-bench-memory-"))
    images = make_images(work / "images", max(args.sizes), args.face_every)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                                        os.environ.get("PYTHONPATH", "")])}
    print(f"# bench_memory: {', '.join(map(str, args.sizes))} images (1 face in {args.face_every}), extractor "
          f"landmarks, batch {args.batch_size}; load avg {os.getloadavg()[0]:.2f} at start; {os.cpu_count()} CPUs")
    rows = []
    for executor in args.executors:
        for n in sorted(args.sizes):
            manifest = write_manifest(work / f"manifest_{n}.csv", images[:n])
            out = work / f"run_{n}_{executor.replace(':', '')}"
            cmd = [sys.executable, "-m", "facefeat.cli", "extract", str(manifest), "--out", str(out), "-e", "landmarks",
                   "--batch-size", str(args.batch_size), "--no-progress", "-s", "align.cache=false", "--overwrite"]
            if executor != "local":
                cmd += ["--cluster", executor]
            r = measure(cmd, env)
            r.update(executor=executor, n=n, load=os.getloadavg()[0])
            rows.append(r)
            print(f"  {executor} {n}: {r['summary']}", flush=True)
    print()
    print(f"{'executor':<9} {'images':>7} {'driver MB':>10} {'worker MB':>10} {'driver ru_maxrss MB':>20} "
          f"{'wall s':>8} {'load':>6}")
    for r in rows:
        worker = f"{r['worker']:.0f}" if r["executor"] != "local" else "-"
        print(f"{r['executor']:<9} {r['n']:>7} {r['driver']:>10.0f} {worker:>10} {r['maxrss']:>20.0f} "
              f"{r['wall']:>8.1f} {r['load']:>6.2f}")
    print()
    for executor in args.executors:
        rs = [r for r in rows if r["executor"] == executor]
        lo, hi = rs[0], rs[-1]
        growth = f"driver {hi['driver'] - lo['driver']:+.0f} MB (ru_maxrss {hi['maxrss'] - lo['maxrss']:+.0f} MB)"
        if executor != "local":
            growth += f", worker {hi['worker'] - lo['worker']:+.0f} MB"
        print(f"growth {lo['n']} -> {hi['n']} images, {executor}: {growth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
