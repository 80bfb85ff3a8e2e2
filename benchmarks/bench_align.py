"""FFHQ alignment: milliseconds per face, reference vs fast path, same run, same faces.

Faces, landmarks and source photos come from the test fixture (tests/data/ffhq_align,
tests/data/faces); images are decoded once, before timing, so the figures are alignment only
(no decode, no PNG write). Each configuration runs in its own child process so that its peak
RSS is its own. Per face the median over repeats is taken; the table shows the mean and median
of those over the faces, wall and CPU time, and the ratio fast / reference (lower is better).
The pixels of every fast run are compared with the reference run of the same face.

Usage::

    .venv/bin/python benchmarks/bench_align.py                 # both settings, default faces
    .venv/bin/python benchmarks/bench_align.py --repeats 5 --faces-1024 70
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "ffhq_align"
FACES = ROOT / "tests" / "data" / "faces"

SETTINGS = {"256/1024": (256, 1024), "1024/4096": (1024, 4096)}
CONFIGS = {"reference": ("reference", 1), "fast, 1 thread": ("fast", 1), "fast, 2 threads": ("fast", 2)}


def _faces(n: int) -> list[dict]:
    faces = json.loads((FIXTURE / "faces.json").read_text())["faces"]
    if n >= len(faces):
        return faces
    step = len(faces) / n  # evenly spread over the fixture (mixes crop-only and padded faces)
    return [faces[int(i * step)] for i in range(n)]


def _worker(setting: str, config: str, n_faces: int, repeats: int, out_dir: Path) -> dict:
    import numpy as np
    import PIL.Image

    from facefeat.face.align import align_face

    output_size, transform_size = SETTINGS[setting]
    method, workers = CONFIGS[config]
    faces = _faces(n_faces)
    images = {}
    for f in faces:
        if f["image"] not in images:
            sub = "skimage_astronaut" if f["image"] == "astronaut.png" else "dlib_examples"
            with PIL.Image.open(FACES / sub / f["image"]) as im:
                images[f["image"]] = np.asarray(im.convert("RGB"))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # warm-up (lazy imports of PIL plugins and SciPy) on a crop-only and a padded face
    for f in (faces[0], next(f for f in json.loads((FIXTURE / "faces.json").read_text())["faces"]
                             if f["id"] == "2008_002079_f05")):
        if f["image"] not in images:
            with PIL.Image.open(FACES / "dlib_examples" / f["image"]) as im:
                images[f["image"]] = np.asarray(im.convert("RGB"))
        align_face(images[f["image"]], f["landmarks"], output_size=output_size,
                   transform_size=transform_size, method=method, workers=workers)
    wall, cpu, padded = [], [], []
    for f in faces:
        w_runs, c_runs = [], []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            res = align_face(images[f["image"]], f["landmarks"], output_size=output_size,
                             transform_size=transform_size, method=method, workers=workers)
            w_runs.append(time.perf_counter() - t0)
            c_runs.append(time.process_time() - c0)
        wall.append(float(np.median(w_runs)) * 1e3)
        cpu.append(float(np.median(c_runs)) * 1e3)
        padded.append(res.pad is not None)
        np.save(out_dir / f"{f['id']}.npy", res.image)
    return {"wall": wall, "cpu": cpu, "padded": padded, "ids": [f["id"] for f in faces],
            "rss_before_mib": rss_before / 1024, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs per face (median taken); default 3")
    ap.add_argument("--faces-256", type=int, default=70, help="faces at 256/1024 (of 70); default all")
    ap.add_argument("--faces-1024", type=int, default=14, help="faces at 1024/4096 (of 70); default 14")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--_worker", nargs=4, metavar=("SETTING", "CONFIG", "N", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._worker:
        setting, config, n, out = args._worker
        print(json.dumps(_worker(setting, config, int(n), args.repeats, Path(out))))
        return 0

    import tempfile

    import numpy as np

    print(f"FFHQ alignment benchmark  (cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start; "
          f"repeats {args.repeats}, median per face)")
    rows = []
    for setting in args.settings:
        n = args.faces_256 if setting == "256/1024" else args.faces_1024
        results = {}
        with tempfile.TemporaryDirectory() as tmp:
            for config in CONFIGS:
                out = Path(tmp) / config.replace(" ", "_").replace(",", "")
                out.mkdir()
                proc = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), "--_worker",
                                       setting, config, str(n), str(out)], capture_output=True, text=True, check=True)
                results[config] = json.loads(proc.stdout.strip().splitlines()[-1])
                results[config]["dir"] = out
            ref = results["reference"]
            for config, r in results.items():
                maxdiff, ndiff = 0, 0
                for face_id in r["ids"]:
                    a = np.load(r["dir"] / f"{face_id}.npy").astype(np.int16)
                    b = np.load(ref["dir"] / f"{face_id}.npy")
                    maxdiff = max(maxdiff, int(np.abs(a - b).max()))
                    ndiff += int(np.count_nonzero(a != b))
                wall, cpu = np.asarray(r["wall"]), np.asarray(r["cpu"])
                pad = np.asarray(r["padded"])
                rows.append({
                    "setting": setting, "config": config, "faces": len(wall), "padded": int(pad.sum()),
                    "mean": wall.mean(), "median": float(np.median(wall)), "cpu": cpu.mean(),
                    "pad_mean": wall[pad].mean() if pad.any() else float("nan"),
                    "crop_mean": wall[~pad].mean() if (~pad).any() else float("nan"),
                    "ratio": wall.mean() / np.mean(ref["wall"]),
                    "ratio_median": float(np.median(wall / np.asarray(ref["wall"]))),
                    "rss": r["peak_rss_mib"], "rss0": r["rss_before_mib"], "maxdiff": maxdiff, "ndiff": ndiff,
                })

    head = (f"{'setting':<10} {'config':<16} {'faces':>5} {'mean ms':>8} {'median':>8} {'cpu ms':>8} "
            f"{'padded':>8} {'crop-only':>9} {'fast/ref':>8} {'med ratio':>9} {'peak RSS MiB':>13} {'vs ref px':>12}")
    print(head)
    print("-" * len(head))
    for r in rows:
        pixels = "equal" if r["ndiff"] == 0 else f"{r['ndiff']} off, max {r['maxdiff']}"
        print(f"{r['setting']:<10} {r['config']:<16} {r['faces']:>5} {r['mean']:>8.1f} {r['median']:>8.1f} "
              f"{r['cpu']:>8.1f} {r['pad_mean']:>8.1f} {r['crop_mean']:>9.1f} {r['ratio']:>8.2f} "
              f"{r['ratio_median']:>9.2f} {r['rss']:>6.0f} ({r['rss0']:>4.0f}) {pixels:>12}")
    print("columns: mean/median over faces of the per-face median wall time; cpu = mean process CPU time "
          "(threads add up); padded / crop-only = mean wall ms of faces with / without the pad+blur branch; "
          "fast/ref = mean wall ratio, med ratio = median of per-face ratios; peak RSS of the child process "
          "(in brackets: before the first alignment); vs ref px = pixels compared with the reference run.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
