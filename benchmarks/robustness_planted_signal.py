"""Does filtering features by ICC change the recovered C-index? A planted-signal study on real photos.

Input: a folder written by ``facefeat robustness`` (photos, their perturbed copies and the
ICC table). Design, per replicate:

1. The *true* value of every feature of a photo is its mean over the original and all its
   copies (classical test theory: the true score is the expectation over measurement
   conditions); features are standardised over photos.
2. ``--signal`` features are drawn at random among those with a defined ICC; the log hazard is
   ``effect * sum(true z) / sqrt(signal)`` (SD ``effect`` when the features are uncorrelated).
3. Survival times: Weibull proportional hazards (shape 1.5, scale 5) with 30 % uniform
   censoring (``facefeat.simulate.design.simulate_times``).
4. What the model sees: each subject's features from *one* randomly drawn condition (the
   original or any copy) -- a cohort photographed under mixed conditions.
5. Cross-validated C-index (5-fold x 2 repeats, the simulation's default coxnet with
   standardised inputs) with every feature, and with the features whose ICC (pooled ``all``
   perturbations, ICC(2,1)) reaches ``--min-icc`` (``facefeat.robustness.filter_features``).

The table gives, per arm, the mean C-index over replicates, and the paired difference with a
t interval over replicates. The photos are few (the subjects of the ICC are the photos): say so
when quoting.

Usage::

    .venv/bin/python benchmarks/robustness_planted_signal.py runs/robust --replicates 10
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("robust", help="folder written by facefeat robustness")
    ap.add_argument("--extractors", default="landmarks,face_descriptor")
    ap.add_argument("--signal", type=int, default=5, help="features carrying the planted signal")
    ap.add_argument("--effect", type=float, default=1.0, help="SD of the log hazard")
    ap.add_argument("--min-icc", type=float, nargs="+", default=[0.75, 0.9])
    ap.add_argument("--replicates", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pandas as pd
    from scipy import stats

    from facefeat.robustness import filter_features
    from facefeat.robustness.study import read_matrix
    from facefeat.simulate.design import simulate_times
    from facefeat.simulate.pipeline import make_estimator
    from facefeat.survival.validation import cross_validate

    robust = Path(args.robust)
    man = pd.read_csv(robust / "manifest.csv", dtype=str, keep_default_na=False)
    conds = list(dict.fromkeys(man["perturbation"]))
    sources = list(dict.fromkeys(man["source_image_id"]))
    image = {(r.source_image_id, r.perturbation): r.image_id for r in man.itertuples()}
    blocks, names = [], []
    for ext in args.extractors.split(","):
        fm = read_matrix(robust / "run" / f"{ext}.parquet")
        arr = np.full((len(sources), len(conds), len(fm.meta)), np.nan)
        for i, s in enumerate(sources):
            for j, c in enumerate(conds):
                row = fm.row_of.get(image.get((s, c), ""))
                if row is not None:
                    arr[i, j] = fm.values[row]
        blocks.append(arr)
        names += [m[2] for m in fm.meta]
    data = np.concatenate(blocks, axis=2)  # (photos, conditions, features)
    complete = ~np.isnan(data).any(axis=(1, 2))
    data = data[complete]
    n = len(data)
    true = data.mean(axis=1)
    sd = true.std(axis=0)
    usable = sd > 0
    table = pd.read_parquet(robust / "robustness.parquet")
    all_rows = table[(table["perturbation"] == "all") & table["feature"].isin(names)].set_index("feature")
    defined = np.array([usable[k] and all_rows.loc[f, "status"] == "ok" for k, f in enumerate(names)])
    cols = [f for f, d in zip(names, defined) if d]
    arms = {"all features": cols}
    for t in args.min_icc:
        kept, rec = filter_features(cols, robust, min_icc=t)
        arms[f"ICC(2,1) >= {t:g}"] = kept
    rng = np.random.default_rng(args.seed)
    z_true = (true - true.mean(axis=0)) / np.where(sd > 0, sd, 1)
    idx = {f: k for k, f in enumerate(names)}
    results = {a: [] for a in arms}
    signal_icc = []
    for r in range(args.replicates):
        sig = rng.choice(len(cols), size=args.signal, replace=False)
        sig_idx = [idx[cols[s]] for s in sig]
        signal_icc.append(float(all_rows.loc[[cols[s] for s in sig], "icc"].mean()))
        eta = args.effect * z_true[:, sig_idx].sum(axis=1) / np.sqrt(args.signal)
        sim = simulate_times(eta, seed=args.seed * 1000 + r)
        y = np.empty(n, dtype=[("event", bool), ("time", float)])
        y["event"], y["time"] = sim["event"], sim["time"]
        pick = rng.integers(0, data.shape[1], size=n)  # one condition per subject
        observed = data[np.arange(n), pick]
        X_all = pd.DataFrame(observed, columns=names)
        for arm, keep in arms.items():
            est = make_estimator(columns=keep, seed=r)
            cv = cross_validate(est, X_all[keep], y, n_splits=5, n_repeats=2, random_state=r)
            results[arm].append(float(cv.summary.set_index("metric").loc["c_index", "mean"]))
    load = os.getloadavg()
    print(f"{n} photos (complete in every condition) x {data.shape[1]} conditions; {len(cols)} features with a "
          f"defined ICC; signal in {args.signal} random features (mean ICC of the signal features "
          f"{np.mean(signal_icc):.3f}), effect {args.effect}; {args.replicates} replicates; "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'arm':<22}{'features':>9}{'mean C':>9}{'SD':>7}{'diff vs all':>13}{'95 % CI (t)':>20}")
    ref = np.array(results["all features"])
    for arm, vals in results.items():
        v = np.array(vals)
        line = f"{arm:<22}{len(arms[arm]):>9}{v.mean():>9.3f}{v.std(ddof=1):>7.3f}"
        if arm != "all features":
            d = v - ref
            half = stats.t.ppf(0.975, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
            line += f"{d.mean():>13.3f}{f'[{d.mean() - half:.3f}, {d.mean() + half:.3f}]':>20}"
        print(line)


if __name__ == "__main__":
    main()
