"""The example study's acceptance figures: wall time per stage, the cost of a re-run and of an
edit, the known answer with a planted face effect, and the rejection rate without one.

Part 1 (``--example``): the bundled example (examples/study/study.yaml on the cohort of
make_cohort.py) run from scratch in a temporary folder: seconds per stage; the comparison it
prints; a second run of the finished study (every stage reused) as a ratio of the first; an
edit of one arm's parameters and which stages it recomputed.

Part 2 (``--null R``): R replicate studies without a face effect (``face_effect = 0``): the
same photos (so the extraction stage is computed once and reused by every replicate), a new
clinical table each time (age, sex and survival times drawn from their own seed, age and sex
with their true effects). Each replicate runs the study's data, arm (clinical, faces+clinical) and comparison stages.
A replicate *rejects* when the faces+clinical arm beats the clinical arm by both criteria of
the acceptance (difference in Harrell's C with an interval excluding 0, and likelihood-ratio
p < 0.05), and also counted separately for each criterion. Rates with Clopper-Pearson 95 %
intervals. With ``--planted R`` the same with the planted effect (power).

    python benchmarks/bench_study.py --example
    python benchmarks/bench_study.py --null 20 [--planted 5] \\
        [--cohort examples/study/cohort --extract examples/study/extract]
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import shutil
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import yaml

from machine import machine  # benchmarks/machine.py

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "study"


def _make_cohort_module():
    spec = importlib.util.spec_from_file_location("example_make_cohort", EXAMPLE / "make_cohort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _copy_config(folder: Path) -> Path:
    shutil.copy(EXAMPLE / "study.yaml", folder / "study.yaml")
    return folder / "study.yaml"


def example(folder: Path) -> None:
    from facefeat.study import Study

    mc = _make_cohort_module()
    t0 = time.perf_counter()
    mc.make_cohort(folder / "cohort")
    t_cohort = time.perf_counter() - t0
    path = _copy_config(folder)
    t0 = time.perf_counter()
    first = Study.from_yaml(path).run()
    t_first = time.perf_counter() - t0
    print(f"\n## Example study (240 subjects), first run; {machine()}\n")
    print(f"{'stage':<22} {'action':<9} {'wall s':>9} {'CPU s':>9}")
    print(f"{'(make_cohort.py)':<22} {'':<9} {t_cohort:>9.1f}")
    for s in first.stages:
        print(f"{s.name:<22} {s.action:<9} {s.seconds:>9.1f} {s.cpu_seconds:>9.1f}")
    print(f"{'total (study run)':<22} {'':<9} {t_first:>9.1f}\n")
    print(first.table())
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        again = Study.from_yaml(path).run()
        times.append(time.perf_counter() - t0)
    rerun = statistics.median(times)
    print(f"\n## Re-run of the finished study (median of 3); {machine()}\n")
    print(f"stages reused: {sum(s.action == 'reused' for s in again.stages)} of {len(again.stages)}")
    print(f"first run {t_first:.1f} s; re-run {rerun:.2f} s; ratio {rerun / t_first:.4f} (goal < 0.05)")
    cfg = yaml.safe_load(path.read_text())
    cfg["arms"][1]["params"] = {"alpha": 0.5}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    t0 = time.perf_counter()
    edited = Study.from_yaml(path).run()
    t_edit = time.perf_counter() - t0
    print(f"\n## Edit of arm '{cfg['arms'][1]['name']}' (params alpha 0.5); {machine()}\n")
    print(f"computed: {', '.join(s.name for s in edited.stages if s.action == 'computed')}")
    print(f"reused:   {', '.join(s.name for s in edited.stages if s.action == 'reused')}")
    print(f"{t_edit:.1f} s ({t_edit / t_first:.3f} of the first run)")


def _clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    lo = 0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k))
    return lo, hi


def replicates(folder: Path, n_rep: int, face_effect: float, label: str, *, cohort: Path, extract: Path,
               seed: int = 7) -> None:
    """``n_rep`` studies of the photos in ``cohort`` (rendered with ``seed``) with new clinical
    tables, sharing the extraction run folder ``extract`` (computed once)."""
    from facefeat.simulate import load_simulation_generator
    from facefeat.study import Study

    mc = _make_cohort_module()
    G, info = load_simulation_generator(None)
    cfg = yaml.safe_load((EXAMPLE / "study.yaml").read_text())
    cfg["inputs"]["photos"] = str(cohort / "photos")
    cfg["inputs"]["clinical"] = str(folder / "clinical" / "clinical.csv")
    cfg["extraction"]["extractors"]["stylegan2"]["checkpoint"] = str(cohort / "generator.safetensors")
    cfg["extraction"]["out"] = str(extract)
    cfg["outputs"] = {"report": False, "exports": False}
    # the test compares faces+clinical with clinical: the faces-only arm is not needed here
    cfg["arms"] = [a for a in cfg["arms"] if a["name"] != "faces"]
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    rows, seconds = [], []
    for r in range(n_rep):
        mc.make_cohort(folder / "clinical", seed=seed, face_effect=face_effect, clinical_seed=1000 + r, photos=False,
                       G=G, generator_info=info)
        t0 = time.perf_counter()
        res = Study.from_yaml(path).run()
        seconds.append(time.perf_counter() - t0)
        c = res.comparison
        d = c[(c["arm"] == "faces+clinical") & (c["metric"] == "c_index")].iloc[0]
        lrt = res.lrt.set_index("arm").loc["faces+clinical"]
        ci_rejects = bool(d["ci_low"] > 0)
        lrt_rejects = bool(lrt["p_value"] < 0.05)
        rows.append((ci_rejects, lrt_rejects))
        print(f"  replicate {r + 1:>2}: dC {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
              f"p {d['p_value']:.3g}; LRT p {lrt['p_value']:.3g}; {seconds[-1]:.1f} s", flush=True)
    n = len(rows)
    print(f"\n## {label}: {n} replicate studies, face effect {face_effect}; {machine()}\n")
    print(f"{'criterion':<44} {'rejections':>10} {'rate':>6} {'95% CI (Clopper-Pearson)':>26}")
    for name, k in (("dC interval above 0", sum(a for a, _ in rows)), ("LRT p < 0.05", sum(b for _, b in rows)),
                    ("both (the acceptance test)", sum(a and b for a, b in rows))):
        lo, hi = _clopper_pearson(k, n)
        print(f"{name:<44} {k:>10} {k / n:>6.3f} {f'[{lo:.3f}, {hi:.3f}]':>26}")
    print(f"median seconds per replicate study (extraction shared): {statistics.median(seconds):.1f}; "
          f"first {seconds[0]:.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--example", action="store_true", help="part 1: the example study's timings")
    ap.add_argument("--null", type=int, default=0, metavar="R", help="part 2: R replicate studies without effect")
    ap.add_argument("--planted", type=int, default=0, metavar="R", help="R replicate studies with the planted effect")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR (kept) instead of a temporary folder")
    ap.add_argument("--cohort", metavar="DIR", help="replicates: the photos of this cohort (default: rendered anew), "
                                                    "e.g. examples/study/cohort")
    ap.add_argument("--extract", metavar="DIR", help="replicates: share this extraction run folder, e.g. "
                                                     "examples/study/extract (its rows are reused)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    if not (args.example or args.null or args.planted):
        ap.error("choose --example and/or --null R / --planted R")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(args.keep or tmp)
        base.mkdir(parents=True, exist_ok=True)
        if args.example:
            (base / "example").mkdir(exist_ok=True)
            example(base / "example")
        if args.null or args.planted:
            # one cohort of photos, extracted once: the example's folder when it has been run
            # (--cohort), else rendered and extracted here by the first replicate
            cohort = Path(args.cohort) if args.cohort else base / "cohort"
            if not (cohort / "clinical.csv").is_file():
                _make_cohort_module().make_cohort(cohort)
            extract = Path(args.extract) if args.extract else base / "extract"
            for what, n_rep, effect, label in (("null", args.null, 0.0, "No face effect (type I error)"),
                                               ("planted", args.planted, 1.0, "Planted face effect (power)")):
                if n_rep:
                    (base / what).mkdir(exist_ok=True)
                    replicates(base / what, n_rep, effect, label, cohort=cohort, extract=extract)


if __name__ == "__main__":
    main()
