"""Comparing two survival models: paired differences on identical folds, likelihood-ratio tests.

:func:`paired_comparison` takes two :class:`~facefeat.survival.validation.CVResult` of the
same subjects in the same folds (checked through ``settings["splits_sha256"]``) and, for each
metric, forms the per-fold difference *arm - reference*. The mean difference gets the
corrected resampled t interval and test of Nadeau & Bengio (2003), which accounts for the
overlap of training sets across folds; it is computed on the logit scale of the difference's
range [-1, 1] so that the interval never leaves it, and the test on the same scale, so the
interval excludes 0 exactly when p < 1 - level.

:func:`likelihood_ratio_test` compares nested unpenalised Cox models on the full data:
``2 (loglik_full - loglik_reduced)`` against chi-square with the difference in the number of
parameters.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError

#: Metrics compared, and which direction is better.
COMPARED = {"c_index": "higher", "uno_c": "higher", "auc_mean": "higher", "ibs": "lower"}


def paired_comparison(cv_arm: Any, cv_ref: Any, *, level: float = 0.95,
                      metrics: Sequence[str] = tuple(COMPARED)) -> pd.DataFrame:
    """Difference in each metric between two models cross-validated on identical folds.

    Parameters
    ----------
    cv_arm, cv_ref : CVResult
        Cross-validations of the model of interest and of the reference model, made with the
        same subjects, ``n_splits``, ``n_repeats`` and ``random_state`` (equal
        ``settings["splits_sha256"]``).
    level : float, default 0.95
    metrics : sequence of str
        Among ``c_index``, ``uno_c``, ``auc_mean``, ``ibs``.

    Returns
    -------
    DataFrame with columns metric, arm, reference, difference (arm - reference), ci_low,
    ci_high, p_value, better (which sign of the difference favours the arm), folds, method.

    Raises
    ------
    DataError
        When the two cross-validations did not use the same folds.
    """
    h_arm = cv_arm.settings.get("splits_sha256")
    h_ref = cv_ref.settings.get("splits_sha256")
    if not h_arm or not h_ref:
        raise DataError("a cross-validation lacks settings['splits_sha256'] (made by an older facefeat): "
                        "re-run both with facefeat.survival.cross_validate")
    if h_arm != h_ref:
        raise DataError(
            "the two cross-validations used different folds (splits_sha256 differ): a paired comparison needs the same "
            "subjects in the same folds. Run both on the same subjects with equal n_splits, n_repeats and "
            f"random_state (arm: {cv_arm.settings.get('n')} subjects, {cv_arm.settings.get('n_splits')} folds x "
            f"{cv_arm.settings.get('n_repeats')} repeats, seed {cv_arm.settings.get('random_state')}; reference: "
            f"{cv_ref.settings.get('n')} subjects, {cv_ref.settings.get('n_splits')} folds x "
            f"{cv_ref.settings.get('n_repeats')} repeats, seed {cv_ref.settings.get('random_state')})")
    from facefeat.survival.intervals import corrected_t_test

    key = ["repeat", "fold"]
    a = cv_arm.folds.set_index(key)
    r = cv_ref.folds.set_index(key)
    n = int(cv_arm.settings["n"])
    rows = []
    for m in metrics:
        if m not in COMPARED:
            raise ConfigError(f"cannot compare metric {m!r}; choose among {list(COMPARED)}")
        d = (a[m] - r[m]).to_numpy(float)
        ok = np.isfinite(d)
        n_test = int(round(float(np.mean(a["n"])))) if "n" in a else n // int(cv_arm.settings["n_splits"])
        n_train = int(round(float(np.mean(a["n_train"])))) if "n_train" in a else n - n_test
        t = corrected_t_test(d[ok], n_train=n_train, n_test=n_test, bounds=(-1.0, 1.0), level=level)
        rows.append({
            "metric": m, "arm": float(np.nanmean(a[m].to_numpy(float)[ok])) if ok.any() else math.nan,
            "reference": float(np.nanmean(r[m].to_numpy(float)[ok])) if ok.any() else math.nan,
            "difference": t["estimate"], "ci_low": t["ci_low"], "ci_high": t["ci_high"], "p_value": t["p_value"],
            "better": "arm if difference > 0" if COMPARED[m] == "higher" else "arm if difference < 0 (lower is better)",
            "folds": int(ok.sum()), "method": f"paired per-fold differences; {t['method']}",
        })
    return pd.DataFrame(rows)


def paired_bootstrap_comparison(
    arm: Any, reference: Any, X_arm: Any, X_ref: Any, y: Any, *, n_bootstrap: int = 1000, level: float = 0.95,
    random_state: int | None = 0, times: Any = None, ibs_times: Any = None, tau: float | None = None,
) -> pd.DataFrame:
    """Difference in each metric between two fitted models on the same held-out subjects.

    Both models are fixed; the subjects are resampled with replacement (the same resample for
    both), so the interval reflects the finite test set. Percentile intervals of the
    differences (inside [-1, 1] by construction); the two-sided p-value is twice the smaller
    share of resampled differences on either side of 0 (at least ``1 / n_bootstrap``).

    Parameters
    ----------
    arm, reference : fitted estimators remembering their training target (``y_train_``)
    X_arm, X_ref : the same subjects in the same order, as each model needs them
    y : their survival target

    Returns
    -------
    DataFrame with the columns of :func:`paired_comparison`.
    """
    from facefeat.survival.intervals import bounded_interval
    from facefeat.survival.metrics import _metrics_core, default_tau, default_times, survival_at
    from facefeat.survival.target import check_survival_target, to_structured, training_target

    event, time = check_survival_target(y, n_samples=len(X_arm))
    yt = to_structured(event, time)
    times = default_times(yt) if times is None else np.unique(np.asarray(times, float))
    ibs_times = default_times(yt, kind="ibs") if ibs_times is None else np.unique(np.asarray(ibs_times, float))
    tau = default_tau(yt) if tau is None else float(tau)
    parts = []
    for est, X in ((arm, X_arm), (reference, X_ref)):
        risk = np.asarray(est.predict(X), float)
        surv = survival_at(est, X, ibs_times) if hasattr(est, "predict_survival_function") else None
        parts.append((risk, surv, training_target(est)))
    point = [_metrics_core(r, s, ytr, yt, times, ibs_times, tau, [])[0] for r, s, ytr in parts]
    rng = np.random.default_rng(random_state)
    diffs = {m: [] for m in COMPARED}
    for _ in range(int(n_bootstrap)):
        idx = rng.integers(0, len(yt), len(yt))
        ma, mr = (_metrics_core(r[idx], None if s is None else s[idx], ytr, yt[idx], times, ibs_times, tau, [])[0]
                  for r, s, ytr in parts)
        for m in COMPARED:
            diffs[m].append(ma.get(m, math.nan) - mr.get(m, math.nan))
    rows = []
    for m, better in COMPARED.items():
        d = np.asarray(diffs[m], float)
        d = d[np.isfinite(d)]
        lo, hi, text = bounded_interval(d, method="percentile", bounds=(-1.0, 1.0), level=level)
        p = max(2 * min((d <= 0).mean(), (d >= 0).mean()), 1 / max(len(d), 1)) if len(d) else math.nan
        rows.append({
            "metric": m, "arm": point[0].get(m, math.nan), "reference": point[1].get(m, math.nan),
            "difference": point[0].get(m, math.nan) - point[1].get(m, math.nan), "ci_low": lo, "ci_high": hi,
            "p_value": min(p, 1.0),
            "better": "arm if difference > 0" if better == "higher" else "arm if difference < 0 (lower is better)",
            "folds": 0, "method": (f"paired bootstrap over the held-out subjects (models fixed): {text} of the "
                                   "difference; p = twice the smaller share of resampled differences on one side of 0"),
        })
    return pd.DataFrame(rows)


def _design(X: pd.DataFrame, columns: Sequence[str], categorical: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
    """Numeric design of ``columns``: numbers as given, text/categorical columns one-hot (first level dropped)."""
    parts, names = [], []
    for c in columns:
        s = X[c]
        if c not in categorical and (pd.api.types.is_numeric_dtype(s) or pd.api.types.is_bool_dtype(s)):
            parts.append(s.to_numpy(float)[:, None])
            names.append(str(c))
        else:
            d = pd.get_dummies(s.astype("category"), prefix=str(c), prefix_sep="=", drop_first=True, dtype=float)
            parts.append(d.to_numpy())
            names.extend(d.columns)
    if not parts:
        return np.empty((len(X), 0)), []
    return np.hstack(parts), names


def likelihood_ratio_test(X: Any, y: Any, *, full: Sequence[str], reduced: Sequence[str],
                          ties: str = "efron", categorical: Sequence[str] = ()) -> dict[str, Any]:
    """Likelihood-ratio test of two nested unpenalised Cox models on the full data.

    Parameters
    ----------
    X : DataFrame
        Covariates; text and categorical columns are one-hot coded (first level as reference).
    y : survival target (structured array or DataFrame)
    full, reduced : list of str
        Columns of the larger and of the nested model (``reduced`` may be empty: the null model).
    ties : {"efron", "breslow"}
    categorical : list of str
        Numeric columns to one-hot code as well (e.g. a stage coded 1-4).

    Returns
    -------
    dict with statistic, df, p_value, loglik_full, loglik_reduced, n, events, rows_dropped,
    terms_full, terms_reduced, method
    """
    from scipy.stats import chi2

    from facefeat.survival.cox import fit_cox
    from facefeat.survival.target import check_survival_target

    if not isinstance(X, pd.DataFrame):
        raise ConfigError("likelihood_ratio_test needs X as a DataFrame with named columns")
    full, reduced = [str(c) for c in full], [str(c) for c in reduced]
    missing = [c for c in full if c not in X.columns]
    if missing:
        raise DataError(f"column(s) {missing} of the full model are not in the data")
    extra = [c for c in reduced if c not in full]
    if extra:
        raise ConfigError(f"the models are not nested: {extra} of the reduced model are not in the full model")
    if len(reduced) >= len(set(full)):
        raise ConfigError("the reduced model must leave out at least one column of the full model")
    event, time = check_survival_target(y, n_samples=len(X))
    # both models on the same rows: complete cases of the full model's columns
    keep = X[full].notna().all(axis=1).to_numpy()
    Xk = X.loc[keep, full]
    categorical = [str(c) for c in categorical]
    Xf, names_f = _design(Xk, full, categorical)
    Xr, names_r = _design(Xk, reduced, categorical)
    if not event[keep].any():
        raise DataError("no event among the complete cases: no likelihood-ratio test")
    fit_f = fit_cox(Xf, time[keep], event[keep], ties=ties)
    fit_r = fit_cox(Xr, time[keep], event[keep], ties=ties)
    df = Xf.shape[1] - Xr.shape[1]
    stat = 2 * (fit_f["loglik"] - fit_r["loglik"])
    stat = max(stat, 0.0) if stat > -1e-8 else stat  # rounding below 0 for identical fits
    return {
        "statistic": float(stat), "df": int(df), "p_value": float(chi2.sf(stat, df)) if df > 0 else math.nan,
        "loglik_full": float(fit_f["loglik"]), "loglik_reduced": float(fit_r["loglik"]), "n": int(keep.sum()),
        "events": int(event[keep].sum()), "rows_dropped": int((~keep).sum()), "terms_full": names_f,
        "terms_reduced": names_r, "converged": bool(fit_f["converged"] and fit_r["converged"]),
        "method": (f"likelihood-ratio test of nested unpenalised Cox models ({ties} ties) on the "
                   f"{int(keep.sum())} complete cases: 2 (loglik_full - loglik_reduced) ~ chi-square({df})"),
    }


def comparison_markdown(table: pd.DataFrame, lrt: dict | None = None) -> str:
    """The paired comparison (and the LRT) as Markdown, with the method under the table."""
    from facefeat.survival.markdown import markdown_table

    text = markdown_table(table.drop(columns=["method"]), floatfmt=".4f")
    text += "".join(f"\nMethod: {m}.\n" for m in dict.fromkeys(table["method"]))
    if lrt:
        text += (f"\nLikelihood-ratio test (full data): statistic {lrt['statistic']:.4f} on {lrt['df']} df, "
                 f"p = {lrt['p_value']:.4g} (loglik full {lrt['loglik_full']:.4f}, reduced {lrt['loglik_reduced']:.4f}; "
                 f"{lrt['n']} subjects, {lrt['events']} events). {lrt['method']}.\n")
    return text
