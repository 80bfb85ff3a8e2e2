"""facefeat's statistics next to lifelines' on public data sets (issue 12 acceptance figures).

    .venv/bin/python benchmarks/stats_reference.py [--repeats 5]

Prints and writes benchmarks/results/stats_reference.md:

1. hazard-ratio tables (``hazard_ratio_table``) of unpenalised Cox models on rossi and lung
   (complete cases) beside lifelines' ``CoxPHFitter.summary`` (default convergence and
   ``precision=1e-10``), with the largest absolute difference of HR, CI bounds and p;
2. GBSG2, all clinical covariates with and without tumour grade: the paired comparison of
   5 x ``--repeats`` cross-validations on identical folds and the likelihood-ratio test,
   beside lifelines' ``log_likelihood_ratio_test`` and the manual ``2 (ll_full - ll_red)``;
3. the subgroup audit of the out-of-fold risk (with grade) by menopausal status and age
   bands (< 45, 45-60, >= 60).

Timings are the wall time of each part (with the load average).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "stats_reference.md"))
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    sys.path.insert(0, str(Path(__file__).parent))
    from lifelines import CoxPHFitter, datasets
    from machine import machine

    from facefeat.survival import FeatureBlock, SurvivalEstimator, cross_validate
    from facefeat.survival.compare import comparison_markdown, likelihood_ratio_test, paired_comparison
    from facefeat.survival.dataset import load_reference_dataset
    from facefeat.survival.hazard import hazard_ratio_table
    from facefeat.survival.markdown import markdown_table
    from facefeat.survival.subgroups import subgroup_markdown, subgroup_audit
    from facefeat.survival.target import to_structured

    out = [f"# facefeat statistics beside lifelines\n\n{machine()}\n"]

    # 1. hazard-ratio tables
    for name, d, T, E in (("rossi", datasets.load_rossi(), "week", "arrest"),
                          ("lung", datasets.load_lung().dropna(), "time", "status")):
        t0 = time.perf_counter()
        X = d.drop(columns=[T, E]).astype(float)
        y = to_structured(d[E].to_numpy() > 0, d[T].to_numpy(float))
        tab = hazard_ratio_table(SurvivalEstimator("coxph").fit(X, y))
        cols = ["exp(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%", "p"]
        ours = tab[["hr", "ci_low", "ci_high", "p_value"]].to_numpy()
        diffs = {}
        for label, opts in (("lifelines default", {}), ("lifelines precision 1e-10", {"precision": 1e-10})):
            ref = CoxPHFitter().fit(d, T, E, fit_options=opts).summary
            diffs[label] = np.abs(ours - ref[cols].to_numpy()).max()
        ref = CoxPHFitter().fit(d, T, E, fit_options={"precision": 1e-10}).summary
        side = pd.DataFrame({
            "term": tab["term"], "unit": tab["unit"], "HR": tab["hr"], "HR lifelines": ref["exp(coef)"].to_numpy(),
            "CI low": tab["ci_low"], "low lifelines": ref["exp(coef) lower 95%"].to_numpy(),
            "CI high": tab["ci_high"], "high lifelines": ref["exp(coef) upper 95%"].to_numpy(),
            "p": tab["p_value"], "p lifelines": ref["p"].to_numpy()})
        out.append(f"\n## Hazard ratios: {name} ({len(d)} subjects, {int(y['event'].sum())} events)\n\n"
                   + markdown_table(side, floatfmt=".5g")
                   + f"\nMethod: {tab['method'].iloc[0]}.\n"
                   + "".join(f"Largest |difference| (HR, CI bounds, p) vs {k}: {v:.2e}.\n" for k, v in diffs.items())
                   + f"({time.perf_counter() - t0:.1f} s)\n")

    # 2. GBSG2 with vs without grade
    t0 = time.perf_counter()
    X, y = load_reference_dataset("gbsg2")
    full = list(X.columns)
    reduced = [c for c in full if c != "tgrade"]

    def spec(cols):
        return SurvivalEstimator("coxph", blocks={"clinical": FeatureBlock(columns=cols)})

    arm = cross_validate(spec(full), X, y, n_splits=5, n_repeats=args.repeats, random_state=0)
    ref = cross_validate(spec(reduced), X, y, n_splits=5, n_repeats=args.repeats, random_state=0)
    table = paired_comparison(arm, ref)
    lrt = likelihood_ratio_test(X, y, full=full, reduced=reduced)
    dm = pd.get_dummies(X, drop_first=True, dtype=float).assign(T=y["time"], E=y["cens"].astype(int))
    grade = [c for c in dm.columns if c.startswith("tgrade")]
    f = CoxPHFitter().fit(dm, "T", "E", fit_options={"precision": 1e-10})
    r = CoxPHFitter().fit(dm.drop(columns=grade), "T", "E", fit_options={"precision": 1e-10})
    from lifelines.statistics import StatisticalResult  # noqa: F401
    from scipy.stats import chi2

    manual = 2 * (f.log_likelihood_ - r.log_likelihood_)
    try:
        ll_test = f.log_likelihood_ratio_test()  # lifelines: the full model against the null model
        ll_note = (f"lifelines' CoxPHFitter.log_likelihood_ratio_test() tests a model against the null model: full "
                   f"{ll_test.test_statistic:.4f} on {ll_test.degrees_freedom} df; ours against the null model "
                   f"{likelihood_ratio_test(X, y, full=full, reduced=[])['statistic']:.4f}")
    except Exception as exc:  # pragma: no cover - depends on the lifelines version
        ll_note = f"lifelines log_likelihood_ratio_test unavailable: {exc}"
    out.append(
        f"\n## GBSG2: clinical covariates with vs without tumour grade ({arm.settings['n']} subjects, "
        f"{arm.settings['events']} events; 5 x {args.repeats} CV, seed 0)\n\n" + comparison_markdown(table, lrt)
        + f"\nlifelines on the same models: 2 (ll_full - ll_red) = {manual:.6f} on {len(grade)} df, "
          f"p = {chi2.sf(manual, len(grade)):.6g} (ll_full {f.log_likelihood_:.6f}, ll_red {r.log_likelihood_:.6f}); "
          f"facefeat statistic {lrt['statistic']:.6f}, p = {lrt['p_value']:.6g}; |difference| "
          f"{abs(manual - lrt['statistic']):.2e}.\n{ll_note}.\n({time.perf_counter() - t0:.1f} s)\n")

    # 3. subgroup audit
    t0 = time.perf_counter()
    oof = arm.oof.sort_values("row")
    audit = subgroup_audit(oof["risk"].to_numpy(), y, X[["menostat", "age"]], bands={"age": [45, 60]})
    out.append("\n## GBSG2 subgroup audit (out-of-fold risk, first repeat, model with grade)\n\n"
               + subgroup_markdown(audit) + f"({time.perf_counter() - t0:.1f} s)\n")
    text = "".join(out)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
