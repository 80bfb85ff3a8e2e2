"""5 x repeated 5-fold CV tables of every model on the real data sets shipped with scikit-survival.

    .venv/bin/python benchmarks/cv_tables.py [--jobs 2] [--datasets gbsg2,veterans] [--models coxph,rsf]

Each (data set, model) result is appended to benchmarks/results/cv_tables.json as soon as it
is done (a rerun skips finished pairs; --fresh starts over); the Markdown table is printed at
the end and written to benchmarks/results/cv_tables.md.

Preprocessing (inside each training fold): median imputation, one-hot encoding (first level
dropped), standardisation. flchain: 'chapter' (cause of death) removed, complete cases of
creatinine, zero follow-up times set to half a day. Models use facefeat's defaults
(``facefeat.survival.estimator.MODEL_DEFAULTS``).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
DATASETS = ("veterans", "whas500", "gbsg2", "flchain")
MODELS = ("coxph", "coxnet", "rsf", "gbsa", "deepsurv")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=",".join(DATASETS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--splits", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fresh", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from facefeat.survival import FeatureBlock, SurvivalEstimator, cross_validate
    from facefeat.survival.dataset import load_reference_dataset

    RESULTS.mkdir(exist_ok=True)
    store = RESULTS / "cv_tables.json"
    done = {} if args.fresh or not store.exists() else json.loads(store.read_text())
    for ds in args.datasets.split(","):
        X, y = load_reference_dataset(ds)
        for model in args.models.split(","):
            key = f"{ds}/{model}"
            if key in done:
                continue
            est = SurvivalEstimator(model, blocks={"all": FeatureBlock()}, random_state=0)
            t0 = time.perf_counter()
            res = cross_validate(est, X, y, n_splits=args.splits, n_repeats=args.repeats, random_state=0, n_jobs=args.jobs)
            wall = time.perf_counter() - t0
            s = res.summary.set_index("metric")
            done[key] = {
                "n": int(len(y)), "events": int(res.settings["events"]), "wall_s": wall,
                **{m: {k: float(s.loc[m, k]) for k in ("mean", "sd", "ci_low", "ci_high", "p2.5", "p97.5")}
                   for m in ("c_index", "uno_c", "auc_mean", "ibs")},
                "folds": int(s.loc["c_index", "folds"]), "splits": args.splits, "repeats": args.repeats,
            }
            store.write_text(json.dumps(done, indent=2))
            print(f"{key}: C {done[key]['c_index']['mean']:.3f}, Uno {done[key]['uno_c']['mean']:.3f}, "
                  f"IBS {done[key]['ibs']['mean']:.3f} ({wall:.0f} s)", flush=True)

    def cell(d, m):
        return f"{d[m]['mean']:.3f} [{d[m]['ci_low']:.3f}, {d[m]['ci_high']:.3f}]"

    lines = ["| data set (n, events) | model | Harrell's C | Uno's C | integrated Brier | wall s |",
             "| --- | --- | --- | --- | --- | ---: |"]
    for key, d in done.items():
        ds, model = key.split("/")
        lines.append(f"| {ds} ({d['n']}, {d['events']}) | {model} | {cell(d, 'c_index')} | {cell(d, 'uno_c')} | "
                     f"{cell(d, 'ibs')} | {d['wall_s']:.0f} |")
    text = ("Mean over 5 x 5 folds [95 % corrected resampled t interval, Nadeau & Bengio]\n\n"
            + "\n".join(lines) + "\n")
    (RESULTS / "cv_tables.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
