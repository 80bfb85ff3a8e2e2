"""Engine throughput against raw dlib on the example photos (repeated to >= 200 images).

Measures, in one run on this machine:

(a) raw dlib: HOG detect (upsample 1) + 68 points, a plain loop (the floor);
(r) raw dlib + facefeat's FFHQ alignment at 256 (the reference the engine is judged against);
(b) ``facefeat extract`` engine: decode + detect + landmarks + align(256) + landmark features
    + Parquet write (aligned-crop cache off, so nothing is reused), ``--jobs 1``;
(c) the same with ``--jobs 2``.

Prints images/s medians over repeats, the ratio of each to (r), and peak RSS.

    python benchmarks/bench_extract.py [--images 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def make_cohort(folder: Path, n: int) -> list[Path]:
    """n distinct files (the example photos re-saved with different PNG settings)."""
    srcs = sorted(p for p in (ROOT / "examples" / "faces").iterdir() if p.suffix in (".jpg", ".png"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = Image.open(srcs[i % len(srcs)])
        p = folder / f"S{i:04d}.jpg"
        img.convert("RGB").save(p, quality=95 - (i // len(srcs)) % 10)
        paths.append(p)
    return paths


def raw_dlib(paths: list[Path], align: bool) -> float:
    import dlib

    from facefeat.face.align import align_face
    from facefeat.face.dlib_models import dlib_model_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68")))
    t0 = time.perf_counter()
    for p in paths:
        rgb = np.asarray(Image.open(p).convert("RGB"))
        dets = detector(rgb, 1)
        if not len(dets):
            continue
        d = max(dets, key=lambda r: r.area())
        shape = predictor(rgb, d)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        if align:
            align_face(rgb, pts, output_size=256, transform_size=1024)
    return len(paths) / (time.perf_counter() - t0)


def engine(folder: Path, jobs: int) -> float:
    from facefeat.engine.run import run_extraction

    out = Path(tempfile.mkdtemp(prefix="bench_out_"))
    try:
        t0 = time.perf_counter()
        s = run_extraction({"input": str(folder), "out": str(out), "extractors": ["landmarks"], "jobs": jobs,
                            "batch_size": 16, "align": {"sizes": [256], "cache": False}}, progress=False)
        dt = time.perf_counter() - t0
        assert s.n_images == len(list(folder.iterdir()))
        return s.n_images / dt
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    import logging

    logging.disable(logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_in_"))
    try:
        paths = make_cohort(tmp / "cohort", args.images)
        rows = {}
        for label, fn in [("(a) raw dlib HOG + 68 points", lambda: raw_dlib(paths, align=False)),
                          ("(r) raw dlib + align 256", lambda: raw_dlib(paths, align=True)),
                          ("(b) facefeat extract, jobs 1", lambda: engine(tmp / "cohort", 1)),
                          ("(c) facefeat extract, jobs 2", lambda: engine(tmp / "cohort", 2))]:
            rows[label] = [fn() for _ in range(args.repeats)]
        ref = statistics.median(rows["(r) raw dlib + align 256"])
        import os

        print(f"\n{args.images} images (example photos repeated), {args.repeats} repeats, "
              f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
        print(f"{'step':34s} {'images/s (median)':>18s} {'min':>7s} {'max':>7s} {'vs (r)':>7s}")
        for label, vals in rows.items():
            med = statistics.median(vals)
            print(f"{label:34s} {med:18.2f} {min(vals):7.2f} {max(vals):7.2f} {med / ref:7.2f}")
        b = statistics.median(rows["(b) facefeat extract, jobs 1"])
        print(f"engine overhead over raw dlib + alignment (jobs 1): {100 * (ref / b - 1):+.1f} % time per image")
        print(f"peak RSS (this process): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB; "
              f"children: {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
