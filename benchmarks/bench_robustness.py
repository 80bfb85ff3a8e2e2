"""Robustness overhead: wall time per perturbation relative to one extraction run of the originals.

Photos come from tests/data/ffhq_align (256 px aligned crops of public photos). Each repeat
times, in a fresh output folder (no cache), (a) the reference: ``run_extraction`` over the N
originals, and (b) for each condition: writing its N copies plus ``run_extraction`` over them
alone. Conditions and the reference are interleaved within a repeat so that load from other
processes on a shared machine hits them alike. The table shows per condition the median over
repeats and the ratio to the reference's median (1.0: a perturbation costs one more run).
The statistics step is timed once on the full set of conditions.

Usage::

    .venv/bin/python benchmarks/bench_robustness.py                       # 8 photos, landmarks, 3 repeats
    .venv/bin/python benchmarks/bench_robustness.py --photos 16 --extractors landmarks,attributes
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTOS = ROOT / "tests" / "data" / "ffhq_align"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--extractors", default="landmarks")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from facefeat.engine.run import run_extraction
    from facefeat.io.manifest import load_inputs
    from facefeat.robustness.perturb import resolve_perturbations
    from facefeat.robustness.study import analyse, write_copies, write_manifest

    files = sorted(PHOTOS.glob("*_256.png"))[: args.photos]
    work = Path(tempfile.mkdtemp(prefix="bench_robustness_"))
    src = work / "photos"
    src.mkdir()
    for f in files:
        shutil.copy(f, src / f.name)
    records = load_inputs(src).records
    conditions = resolve_perturbations(None)
    extractors = args.extractors.split(",")
    times: dict[str, list[float]] = {"reference (originals)": []}
    for c in conditions:
        times[c.name] = []
    for rep in range(args.repeats):
        out = work / f"ref{rep}"
        t = time.perf_counter()
        run_extraction({"input": str(src), "out": str(out), "extractors": extractors}, progress=False)
        times["reference (originals)"].append(time.perf_counter() - t)
        for c in conditions:
            out = work / f"{c.name}{rep}"
            t = time.perf_counter()
            rows, _ = write_copies(records, [c], out)
            manifest = write_manifest([r for r in rows if r["perturbation"] != "none"], out / "manifest.csv")
            run_extraction({"input": str(manifest), "out": str(out / "run"), "extractors": extractors}, progress=False)
            times[c.name].append(time.perf_counter() - t)
    # statistics over every condition once (engine run of originals + all copies)
    out = work / "all"
    rows, _ = write_copies(records, conditions, out)
    run_extraction({"input": str(write_manifest(rows, out / "manifest.csv")), "out": str(out / "run"),
                    "extractors": extractors}, progress=False)
    t = time.perf_counter()
    table, _ = analyse(out / "run", rows, conditions)
    t_stats = time.perf_counter() - t

    ref = statistics.median(times["reference (originals)"])
    load = os.getloadavg()
    print(f"{len(files)} photos, extractors {','.join(extractors)}, {args.repeats} repeats; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'run':<24}{'median s':>10}{'ratio':>8}")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:<24}{m:>10.2f}{m / ref:>8.2f}")
    total = sum(statistics.median(v) for k, v in times.items() if k != "reference (originals)")
    print(f"{'all 13 conditions':<24}{total:>10.2f}{total / ref:>8.2f}")
    print(f"{'statistics (all scopes)':<24}{t_stats:>10.2f}{t_stats / ref:>8.2f}   ({len(table)} rows)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
