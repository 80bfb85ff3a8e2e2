"""Coverage of facefeat's 95 % intervals on data sets drawn from a known Cox model.

    .venv/bin/python benchmarks/bench_coverage.py [--datasets 200] [--n 150] [--folds 5] [--repeats 2]

Design: ``x1, x2 ~ N(0, 1)`` independent, ``beta = (0.8, 0.4)``, exponential event times with
baseline hazard 0.1 (``T ~ Exp(0.1 exp(x beta))``), independent exponential censoring with
rate 0.04 plus administrative censoring at t = 20. The true values:

- C-index: Harrell's C of the true linear predictor on one large sample (200,000 subjects)
  drawn from the same model and censoring (the C that a model with the true coefficients has);
- hazard ratio per SD of the risk score: ``exp(sd(x beta)) = exp(|beta|)``;
- hazard ratio of ``x1`` per unit (= per SD): ``exp(0.8)``.

With ``--noise-features N`` the data get N pure-noise columns and the unpenalised model
overfits; cross-validation then estimates the performance of the *fitted* model, so the truth
of the CV rows is the expected C-index (and HR per SD) on new subjects of a coxph fitted on
``n_train`` subjects (60 fits, each scored on 50,000 new subjects).

For every data set: one ``cross_validate`` (coxph, ``--folds`` x ``--repeats``) giving the C-index
and the HR per SD with facefeat's intervals (corrected resampled t on the logit / log scale),
the same fold values with the old symmetric raw-scale interval (the reference), the Wald
interval of the hazard-ratio table (``hazard_ratio_table``, full data), and Harrell's C of
the true risk score with its jackknife Wald interval (the subgroup audit's interval). Printed:
empirical coverage with its binomial standard error, median interval width, the share of
intervals leaving the quantity's range, and median seconds per data set (with the load).
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

BETA = np.array([0.8, 0.4])
BASE_HAZARD = 0.1
CENSOR_RATE = 0.04
END = 20.0


def draw(n: int, rng: np.random.Generator, noise: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X = rng.normal(size=(n, len(BETA) + noise))
    t = rng.exponential(1 / (BASE_HAZARD * np.exp(X[:, : len(BETA)] @ BETA)))
    c = np.minimum(rng.exponential(1 / CENSOR_RATE, n), END)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = t <= c, np.minimum(t, c)
    return X, y


def true_c(rng: np.random.Generator, n: int = 200_000) -> tuple[float, float]:
    """Harrell's C of the true linear predictor on a large sample, and its censoring share."""
    # lifelines' O(n log n) concordance (scikit-survival's is O(n^2) in time: minutes at this size);
    # it takes a score where higher means longer survival, hence -risk. Times are continuous: no ties.
    from lifelines.utils import concordance_index

    X, y = draw(n, rng)
    return float(concordance_index(y["time"], -(X @ BETA), y["event"])), float(1 - y["event"].mean())


def fitted_model_truth(rng: np.random.Generator, *, n_train: int, noise: int, fits: int = 60,
                       n_large: int = 50_000) -> tuple[float, float]:
    """What cross-validation estimates when the model overfits: the expected C-index and HR per SD
    on new subjects of a coxph model fitted on ``n_train`` subjects (mean over ``fits`` fits)."""
    from lifelines.utils import concordance_index

    from facefeat.survival.cox import fit_cox, hazard_ratio_per_sd

    Xb, yb = draw(n_large, rng, noise)
    cs, hrs = [], []
    for _ in range(fits):
        X, y = draw(n_train, rng, noise)
        risk = Xb @ fit_cox(X, y["time"], y["event"])["coef"]
        cs.append(concordance_index(yb["time"], -risk, yb["event"]))
        hrs.append(hazard_ratio_per_sd(risk, yb["time"], yb["event"])["hr"])
    return float(np.mean(cs)), float(np.exp(np.mean(np.log(hrs))))


def raw_interval(values: np.ndarray, n_train: int, n_test: int) -> tuple[float, float]:
    """The old interval: symmetric corrected resampled t on the raw scale (the reference)."""
    from scipy.stats import t as t_dist

    v = values[np.isfinite(values)]
    half = t_dist.ppf(0.975, len(v) - 1) * math.sqrt(np.var(v, ddof=1) * (1 / len(v) + n_test / n_train))
    return v.mean() - half, v.mean() + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", type=int, default=200)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--noise-features", type=int, default=0,
                    help="add this many pure-noise N(0, 1) features: the fitted model overfits, and the truth of the "
                         "CV rows becomes the expected C / HR per SD on new subjects of a model fitted on n_train "
                         "subjects (60 fits, 50,000 new subjects)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bench_coverage"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(Path(__file__).parent))
    from machine import machine

    from facefeat.survival import SurvivalEstimator, cross_validate
    from facefeat.survival.hazard import hazard_ratio_table
    from facefeat.survival.intervals import harrell_c_se, wald_interval

    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    c_true, cens_large = true_c(rng)
    truth = {"c_index": c_true, "hr_per_sd": math.exp(float(np.linalg.norm(BETA))), "hr_x1": math.exp(BETA[0])}
    print(f"true C (Harrell, true risk score, 200,000 subjects): {c_true:.4f}; censoring {cens_large:.1%}; "
          f"true HR per SD of the risk score {truth['hr_per_sd']:.4f}; true HR of x1 per SD {truth['hr_x1']:.4f} "
          f"({time.perf_counter() - t0:.1f} s)")
    noise = args.noise_features
    if noise:
        n_train = args.n - args.n // args.folds
        truth["c_index"], truth["hr_per_sd"] = fitted_model_truth(rng, n_train=n_train, noise=noise)
        print(f"{noise} noise features: expected C of a coxph fitted on {n_train} subjects {truth['c_index']:.4f}, "
              f"expected HR per SD of its risk {truth['hr_per_sd']:.4f} (the CV rows' truth)")
    rows, seconds, events = [], [], []
    for k in range(args.datasets):
        X, y = draw(args.n, rng, noise)
        events.append(int(y["event"].sum()))
        t1 = time.perf_counter()
        cv = cross_validate(SurvivalEstimator("coxph"), X, y, n_splits=args.folds, n_repeats=args.repeats,
                            random_state=k)
        s = cv.summary.set_index("metric")
        n_test = int(round(cv.folds["n"].mean()))
        n_train = int(round(cv.folds["n_train"].mean()))
        for metric in ("c_index", "hr_per_sd"):
            lo, hi = s.loc[metric, "ci_low"], s.loc[metric, "ci_high"]
            rows.append({"quantity": metric, "method": "facefeat (corrected t, logit/log scale)", "low": lo, "high": hi,
                         "truth": truth[metric], "bounds": (0, 1) if metric == "c_index" else (0, math.inf)})
            rlo, rhi = raw_interval(cv.folds[metric].to_numpy(float), n_train, n_test)
            rows.append({"quantity": metric, "method": "reference: corrected t, raw scale (old)", "low": rlo,
                         "high": rhi, "truth": truth[metric],
                         "bounds": (0, 1) if metric == "c_index" else (0, math.inf)})
        tab = hazard_ratio_table(SurvivalEstimator("coxph").fit(X, y)).set_index("term")
        rows.append({"quantity": "hr_x1", "method": "hazard_ratio_table Wald (full data)", "low": tab.loc["x0", "ci_low"],
                     "high": tab.loc["x0", "ci_high"], "truth": truth["hr_x1"], "bounds": (0, math.inf)})
        c, se, _ = harrell_c_se(X[:, : len(BETA)] @ BETA, y["time"], y["event"])
        lo, hi, _ = wald_interval(c, se)
        rows.append({"quantity": "c_true_score", "method": "jackknife Wald, logit scale (subgroup audit)", "low": lo,
                     "high": hi, "truth": c_true, "bounds": (0, 1)})
        seconds.append(time.perf_counter() - t1)
        if (k + 1) % 25 == 0:
            print(f"  {k + 1} data sets, {statistics.median(seconds):.2f} s each (median)", flush=True)
    df = pd.DataFrame(rows)
    df["covered"] = (df["low"] <= df["truth"]) & (df["truth"] <= df["high"])
    df["outside_range"] = [(lo < b[0]) or (hi > b[1]) for lo, hi, b in zip(df["low"], df["high"], df["bounds"])]
    df["width"] = df["high"] - df["low"]
    out = []
    for (q, m), g in df.groupby(["quantity", "method"], sort=False):
        p = g["covered"].mean()
        out.append({"quantity": q, "interval": m, "truth": g["truth"].iloc[0], "data sets": len(g),
                    "coverage": p, "coverage SE": math.sqrt(p * (1 - p) / len(g)),
                    "median width": g["width"].median(), "outside range": g["outside_range"].mean()})
    table = pd.DataFrame(out)
    from facefeat.survival.markdown import markdown_table

    head = (f"bench_coverage: {args.datasets} data sets of n = {args.n} from a Cox model (beta = {BETA.tolist()}, "
            f"baseline hazard {BASE_HAZARD}, censoring Exp({CENSOR_RATE}) and at t = {END}"
            + (f", plus {noise} noise features; CV truth: expected performance of the fitted model" if noise else "")
            + "); events per data set "
            f"median {statistics.median(events):.0f} (range {min(events)}-{max(events)}); CV {args.folds} folds x "
            f"{args.repeats} repeats, coxph; nominal level 95 %.\n"
            f"median {statistics.median(seconds):.2f} s per data set; total {time.perf_counter() - t0:.0f} s; "
            f"{machine()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n\n")
    text = head + markdown_table(table, floatfmt=".4f")
    print()
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out + ".csv", index=False)
    Path(args.out + ".md").write_text(text)
    print(f"written {args.out}.csv and {args.out}.md")


if __name__ == "__main__":
    main()
