"""Benchmark of facefeat.survival: overhead of SurvivalEstimator over scikit-survival, DeepSurv
seconds per epoch, and cross-validation wall time on GBSG2.

    .venv/bin/python benchmarks/bench_survival.py [--repeats 3] [--quick]

Every ratio compares against a reference measured in the same run, interleaved (reference,
ours, reference, ours, ...). Medians are printed.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np


def timeit(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def interleaved(ref, ours, repeats):
    tr, to = [], []
    for _ in range(repeats):
        tr += timeit(ref, 1)
        to += timeit(ours, 1)
    return statistics.median(tr), statistics.median(to)


def cox_data(n, p, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    beta = np.zeros(p)
    k = min(10, p)
    beta[:k] = np.linspace(0.5, -0.5, k)
    t = rng.exponential(np.exp(-X @ beta)) * 10
    c = rng.exponential(15, n)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = t <= c, np.minimum(t, c) + 1e-3
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="skip the 9,216-feature inner-CV case")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis

    from facefeat.survival import SurvivalEstimator

    rows = []
    for p in (512, 9216):
        X, y = cox_data(1000, p)
        ref = lambda: CoxnetSurvivalAnalysis(n_alphas=50, l1_ratio=0.5).fit(X, y)  # noqa: E731
        ours = lambda: SurvivalEstimator("coxnet", model_params={"cv": None}).fit(X, y)  # noqa: E731
        r, o = interleaved(ref, ours, args.repeats + 2)
        rows.append((f"coxnet 1000x{p}, one path (same work)", "CoxnetSurvivalAnalysis", r, o))
        if p == 9216 and args.quick:
            continue

        def ref_cv():
            # the same inner 5-fold penalty choice written directly with scikit-survival
            from sklearn.model_selection import StratifiedKFold

            full = CoxnetSurvivalAnalysis(n_alphas=50, l1_ratio=0.5).fit(X, y)
            for tr, te in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y["event"]):
                m = CoxnetSurvivalAnalysis(alphas=full.alphas_, l1_ratio=0.5).fit(X[tr], y[tr])
                _ = X[te] @ m.coef_

        ours_cv = lambda: SurvivalEstimator("coxnet", random_state=0).fit(X, y)  # noqa: E731
        r, o = interleaved(ref_cv, ours_cv, 1 if p == 9216 else args.repeats)
        rows.append((f"coxnet 1000x{p}, penalty by inner 5-fold CV", "path + 5 fold paths by hand", r, o))

    from sksurv.datasets import load_gbsg2

    from facefeat.survival import FeatureBlock, cross_validate

    Xg, yg = load_gbsg2()
    import pandas as pd

    D = pd.get_dummies(Xg, drop_first=True, dtype=float).to_numpy()
    blocks = {"all": FeatureBlock(impute=None, scale=False)}
    r, o = interleaved(lambda: CoxPHSurvivalAnalysis(ties="efron").fit(D, yg),
                       lambda: SurvivalEstimator("coxph", blocks=blocks).fit(Xg, yg), max(args.repeats, 5))
    rows.append(("coxph GBSG2 fit (one-hot inside)", "CoxPHSurvivalAnalysis on one-hot", r, o))

    def ref_cv_gbsg2():
        from sklearn.model_selection import RepeatedStratifiedKFold
        from sksurv.metrics import concordance_index_censored

        for tr, te in RepeatedStratifiedKFold(n_splits=5, n_repeats=5, random_state=0).split(D, yg["cens"]):
            m = CoxPHSurvivalAnalysis(ties="efron").fit(D[tr], yg[tr])
            concordance_index_censored(yg["cens"][te], yg["time"][te], m.predict(D[te]))

    ours_cv = lambda: cross_validate(SurvivalEstimator("coxph", blocks={"all": FeatureBlock()}), Xg, yg)  # noqa: E731
    r, o = interleaved(ref_cv_gbsg2, ours_cv, args.repeats)
    rows.append(("5x5 CV GBSG2 coxph, all metrics + calibration", "25 sksurv fits + Harrell's C only", r, o))

    print(f"\n{'case':<50} {'reference':<36} {'ref s':>9} {'ours s':>9} {'ratio':>7}")
    for case, refname, r, o in rows:
        print(f"{case:<50} {refname:<36} {r:9.3f} {o:9.3f} {o / r:7.2f}")

    from facefeat.survival import DeepSurv

    DeepSurv(max_epochs=1, validation_fraction=0).fit(*cox_data(50, 9))  # warm-up: torch import and first-call costs

    head = "DeepSurv (CPU, n_threads=1, 30 epochs)"
    print(f"\n{head:<50} {'s/epoch':>9}")
    for n, p, hidden, bs in ((1000, 512, (256, 256), None), (1000, 512, (256, 256), 128), (686, 9, (32, 32), None)):
        X, y = cox_data(n, p, seed=1)
        ep = 30
        times = timeit(lambda: DeepSurv(hidden_layers=hidden, batch_size=bs, max_epochs=ep, validation_fraction=0).fit(X, y), args.repeats)
        label = f"{n}x{p}, hidden {hidden}, batch {bs or 'full'}"
        print(f"{label:<50} {statistics.median(times) / ep:9.4f}")


if __name__ == "__main__":
    main()
