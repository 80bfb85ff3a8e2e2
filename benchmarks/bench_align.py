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


def _load(faces: list[dict]) -> dict:
    import numpy as np
    import PIL.Image

    images = {}
    for f in faces:
        if f["image"] not in images:
            sub = "skimage_astronaut" if f["image"] == "astronaut.png" else "dlib_examples"
            with PIL.Image.open(FACES / sub / f["image"]) as im:
                images[f["image"]] = np.asarray(im.convert("RGB"))
    return images


def _time_worker(setting: str, n_faces: int, repeats: int) -> dict:
    """All configurations interleaved face by face, so that load from other processes on a
    shared machine hits them alike; pixels of each fast run are checked against the reference."""
    import numpy as np

    from facefeat.face.align import align_face

    output_size, transform_size = SETTINGS[setting]
    faces = _faces(n_faces)
    warm = [f for f in _faces(70) if f["id"] in ("2008_001009_f00", "2008_002079_f05")]
    images = _load(faces + warm)
    for f in warm:  # lazy imports (PIL plugins, SciPy) happen here, not in the timings
        for method, workers in CONFIGS.values():
            align_face(images[f["image"]], f["landmarks"], output_size=output_size,
                       transform_size=transform_size, method=method, workers=workers)
    names = list(CONFIGS)
    out = {c: {"wall": [], "cpu": [], "maxdiff": 0, "ndiff": 0} for c in names}
    padded = []
    for f in faces:
        runs = {c: ([], []) for c in names}
        images_out = {}
        for r in range(repeats):
            for c in names[r % len(names):] + names[:r % len(names)]:  # rotate the order
                method, workers = CONFIGS[c]
                t0, c0 = time.perf_counter(), time.process_time()
                res = align_face(images[f["image"]], f["landmarks"], output_size=output_size,
                                 transform_size=transform_size, method=method, workers=workers)
                runs[c][0].append(time.perf_counter() - t0)
                runs[c][1].append(time.process_time() - c0)
                images_out[c] = res.image
        padded.append(res.pad is not None)
        for c in names:
            out[c]["wall"].append(float(np.median(runs[c][0])) * 1e3)
            out[c]["cpu"].append(float(np.median(runs[c][1])) * 1e3)
            diff = np.abs(images_out[c].astype(np.int16) - images_out["reference"])
            out[c]["maxdiff"] = max(out[c]["maxdiff"], int(diff.max()))
            out[c]["ndiff"] += int(np.count_nonzero(diff))
    return {"configs": out, "padded": padded}


def _rss_worker(setting: str, config: str) -> dict:
    """Peak RSS of one configuration on the largest faces of the fixture (its own process)."""
    from facefeat.face.align import align_face

    output_size, transform_size = SETTINGS[setting]
    method, workers = CONFIGS[config]
    faces = [f for f in _faces(70) if f["id"] in ("Tom_Cruise_avp_2014_4_f00", "bald_guys_f19", "bald_guys_f10")]
    images = _load(faces)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for f in faces:
        align_face(images[f["image"]], f["landmarks"], output_size=output_size, transform_size=transform_size,
                   method=method, workers=workers)
    return {"before_mib": before / 1024, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="runs per face (median taken); default 3")
    ap.add_argument("--faces-256", type=int, default=70, help="faces at 256/1024 (of 70); default all")
    ap.add_argument("--faces-1024", type=int, default=14, help="faces at 1024/4096 (of 70); default 14")
    ap.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--_time", nargs=2, metavar=("SETTING", "N"), help=argparse.SUPPRESS)
    ap.add_argument("--_rss", nargs=2, metavar=("SETTING", "CONFIG"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args._time:
        print(json.dumps(_time_worker(args._time[0], int(args._time[1]), args.repeats)))
        return 0
    if args._rss:
        print(json.dumps(_rss_worker(*args._rss)))
        return 0

    import numpy as np

    def child(*extra: str) -> dict:
        proc = subprocess.run([sys.executable, __file__, "--repeats", str(args.repeats), *extra],
                              capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    print(f"FFHQ alignment benchmark  (cpus {os.cpu_count()}, load average {os.getloadavg()[0]:.2f} at start; "
          f"repeats {args.repeats}, configurations interleaved per face, median per face)")
    rows = []
    for setting in args.settings:
        n = args.faces_256 if setting == "256/1024" else args.faces_1024
        timing = child("--_time", setting, str(n))
        pad = np.asarray(timing["padded"])
        ref_wall, ref_cpu = np.asarray(timing["configs"]["reference"]["wall"]), np.asarray(timing["configs"]["reference"]["cpu"])
        for config, r in timing["configs"].items():
            wall, cpu = np.asarray(r["wall"]), np.asarray(r["cpu"])
            rss = child("--_rss", setting, config)
            rows.append({
                "setting": setting, "config": config, "faces": len(wall), "npad": int(pad.sum()),
                "mean": wall.mean(), "median": float(np.median(wall)), "cpu": cpu.mean(),
                "pad_mean": wall[pad].mean() if pad.any() else float("nan"),
                "crop_mean": wall[~pad].mean() if (~pad).any() else float("nan"),
                "ratio": wall.mean() / ref_wall.mean(), "cpu_ratio": cpu.mean() / ref_cpu.mean(),
                "pad_ratio": wall[pad].mean() / ref_wall[pad].mean() if pad.any() else float("nan"),
                "crop_ratio": wall[~pad].mean() / ref_wall[~pad].mean() if (~pad).any() else float("nan"),
                "rss": rss["peak_mib"], "rss0": rss["before_mib"], "maxdiff": r["maxdiff"], "ndiff": r["ndiff"],
            })
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    head = (f"{'setting':<10} {'config':<16} {'faces':>9} {'mean ms':>8} {'median':>7} {'cpu ms':>7} "
            f"{'fast/ref':>8} {'cpu f/r':>7} {'padded ms (f/r)':>16} {'crop-only ms (f/r)':>19} "
            f"{'peak RSS MiB':>13} {'vs ref px':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        pixels = "equal" if r["ndiff"] == 0 else f"{r['ndiff']} off, max {r['maxdiff']}"
        faces = f"{r['faces']} ({r['npad']}p)"
        print(f"{r['setting']:<10} {r['config']:<16} {faces:>9} {r['mean']:>8.1f} {r['median']:>7.1f} "
              f"{r['cpu']:>7.1f} {r['ratio']:>8.2f} {r['cpu_ratio']:>7.2f} "
              f"{r['pad_mean']:>9.1f} ({r['pad_ratio']:.2f}) {r['crop_mean']:>12.1f} ({r['crop_ratio']:.2f}) "
              f"{r['rss']:>6.0f} ({r['rss0']:>4.0f}) {pixels:>10}")
    print("columns: faces (Np = with the pad+blur branch); mean/median over faces of the per-face median wall "
          "time; cpu = mean process CPU time (threads add up); fast/ref and cpu f/r = ratios of the means "
          "(lower is faster); padded / crop-only = mean wall ms of each group and its ratio to the reference; "
          "peak RSS of a separate process aligning Tom Cruise and two large bald_guys faces (in brackets: "
          "before aligning); vs ref px = every fast image compared with the reference image of the same face.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
