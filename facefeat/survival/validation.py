"""Cross-validation of survival models: stratified splitters, repeated CV, nested tuning.

``cross_validate`` runs repeated stratified k-fold CV (stratified on the event indicator so
that every fold has events), refitting *everything* (imputation, scaling, PCA, penalty
choice, stacking) inside each training fold. With a ``param_grid`` each outer training fold
runs its own ``GridSearchCV`` (nested CV), so the reported performance is not tuned on the
test folds.

Intervals: for each metric the summary gives the mean over all folds and repeats, a 95 %
interval by the corrected resampled t-test of Nadeau & Bengio (2003), which widens the naive
interval for the overlap between training sets, and the 2.5th/97.5th percentiles of the
per-fold values. For a confidence interval of one fixed model, evaluate it on held-out data
with ``evaluate(..., n_bootstrap=...)``.
"""

from __future__ import annotations

import logging
import math
import warnings
import time as _time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from facefeat.errors import DataError
from facefeat.survival.metrics import (
    METRICS,
    _metrics_core,
    assign_risk_groups,
    calibration_table,
    default_tau,
    default_times,
    get_scorer,
    risk_cutoffs,
    survival_at,
)
from facefeat.survival.guards import ModelWarning, collect_warnings
from facefeat.survival.intervals import summarise_folds
from facefeat.survival.markdown import markdown_table  # noqa: F401  (re-exported: simulate and old callers import it here)
from facefeat.survival.target import check_survival_target, to_structured, training_target  # noqa: F401

log = logging.getLogger("facefeat.survival")


def _event_of(y: Any) -> np.ndarray:
    event, _ = check_survival_target(y, allow_all_censored=True)
    return event


class SurvivalStratifiedKFold:
    """K-fold splits stratified on the event indicator of a survival target.

    Accepts the structured array (or DataFrame) ``y`` that survival estimators take, so it can
    be passed as ``cv=`` to ``GridSearchCV`` and ``cross_val_score``.
    """

    def __init__(self, n_splits: int = 5, *, shuffle: bool = True, random_state: int | None = None):
        self.n_splits = n_splits
        self.shuffle = shuffle
        self.random_state = random_state

    def split(self, X: Any, y: Any, groups: Any = None):
        from sklearn.model_selection import KFold, StratifiedKFold

        event = _event_of(y)
        n_ev, n_cens = int(event.sum()), int((~event).sum())
        if n_ev < self.n_splits:
            raise DataError(
                f"only {n_ev} event(s): cannot make {self.n_splits} folds with an event in each; use fewer folds"
            )
        if n_cens == 0 or n_cens < self.n_splits:
            # nothing (or too little) to stratify on: plain k-fold keeps the folds defined
            kf = KFold(self.n_splits, shuffle=self.shuffle, random_state=self.random_state if self.shuffle else None)
            yield from kf.split(np.zeros(len(event)))
            return
        skf = StratifiedKFold(self.n_splits, shuffle=self.shuffle, random_state=self.random_state if self.shuffle else None)
        yield from skf.split(np.zeros(len(event)), event)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def __repr__(self) -> str:
        return f"SurvivalStratifiedKFold(n_splits={self.n_splits}, random_state={self.random_state})"


class RepeatedSurvivalStratifiedKFold:
    """``n_repeats`` different :class:`SurvivalStratifiedKFold` partitions."""

    def __init__(self, n_splits: int = 5, n_repeats: int = 5, *, random_state: int | None = None):
        self.n_splits = n_splits
        self.n_repeats = n_repeats
        self.random_state = random_state

    def split(self, X: Any, y: Any, groups: Any = None):
        rng = np.random.RandomState(self.random_state)
        for _ in range(self.n_repeats):
            seed = rng.randint(np.iinfo(np.int32).max)
            yield from SurvivalStratifiedKFold(self.n_splits, random_state=seed).split(X, y)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits * self.n_repeats


def data_sha256(ids: Any, y: np.ndarray) -> str:
    """sha256 of the subjects (ids, in order) and their outcomes."""
    import hashlib

    h = hashlib.sha256()
    h.update("\x1f".join(str(i) for i in np.asarray(ids)).encode())
    h.update(np.ascontiguousarray(np.asarray(y["time"], np.float64)).tobytes())
    h.update(np.ascontiguousarray(np.asarray(y["event"], bool)).tobytes())
    return h.hexdigest()


def _ids_of(X: Any, n: int) -> np.ndarray:
    """Subject ids of the rows: the DataFrame index, or row numbers for arrays."""
    return X.index.to_numpy() if isinstance(X, pd.DataFrame) else np.arange(n)


def splits_sha256(splits: list[tuple[np.ndarray, np.ndarray]], ids: Any, *, n_splits: int) -> str:
    """sha256 of the fold assignment: for every (repeat, fold) the sorted ids of its test subjects.

    Two cross-validations with equal hashes tested every model on the same subjects in the
    same folds, so their per-fold metrics can be compared pair by pair.
    """
    import hashlib
    import json

    ids = np.asarray(ids)
    folds = []
    for i, (_, te) in enumerate(splits):
        rep, fold = divmod(i, n_splits)
        folds.append([rep, fold, sorted(str(x) for x in ids[te])])
    return hashlib.sha256(json.dumps(folds, separators=(",", ":")).encode()).hexdigest()


def td_auc_summary(auc: pd.DataFrame, *, n: int, n_splits: int, level: float = 0.95) -> pd.DataFrame:
    """Time-dependent AUC per evaluation time over CV folds: mean and range-respecting interval.

    Parameters
    ----------
    auc : DataFrame with columns repeat, fold, time, auc (``CVResult.auc``)
    n : number of subjects; n_splits : folds per repeat (for the fold sizes of the correction)

    Returns
    -------
    DataFrame with columns time, mean, ci_low, ci_high, folds, method
    """
    from facefeat.survival.intervals import bounded_interval

    n_test = int(round(n / n_splits))
    rows = []
    for t, g in auc.groupby("time"):
        v = g["auc"].to_numpy(float)
        lo, hi, how = bounded_interval(v, n_train=n - n_test, n_test=n_test, bounds=(0.0, 1.0), level=level)
        fin = v[np.isfinite(v)]
        rows.append({"time": float(t), "mean": float(fin.mean()) if len(fin) else math.nan, "ci_low": lo,
                     "ci_high": hi, "folds": int(len(fin)), "method": how})
    return pd.DataFrame(rows, columns=["time", "mean", "ci_low", "ci_high", "folds", "method"])


@dataclass
class CVResult:
    """Results of :func:`cross_validate`.

    Attributes
    ----------
    folds : DataFrame, one row per (repeat, fold) with every metric, sizes, fit time and
        the chosen hyperparameters (nested CV)
    summary : DataFrame, per metric: mean, sd, corrected 95 % interval, fold percentiles
    oof : DataFrame, out-of-fold predictions of the first repeat (risk, risk group from the
        training fold's cut-offs, predicted survival at the calibration times)
    auc : DataFrame, time-dependent AUC per fold and time
    calibration : dict time -> DataFrame, pooled over the first repeat's test folds
    settings, notes
    """

    folds: pd.DataFrame
    summary: pd.DataFrame
    oof: pd.DataFrame
    auc: pd.DataFrame
    calibration: dict[float, pd.DataFrame] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "summary": self.summary.to_dict(orient="records"),
            "folds": self.folds.to_dict(orient="records"),
            "auc": self.auc.to_dict(orient="records"),
            "calibration": {str(t): df.to_dict(orient="records") for t, df in self.calibration.items()},
            "settings": self.settings,
            "notes": self.notes,
        }

    def auc_by_time(self, *, level: float = 0.95) -> pd.DataFrame:
        """Time-dependent AUC per time: mean over folds with its interval (see :func:`td_auc_summary`)."""
        return td_auc_summary(self.auc, n=int(self.settings["n"]), n_splits=int(self.settings["n_splits"]), level=level)

    def to_markdown(self) -> str:
        s = self.settings
        text = (
            f"{s.get('n_repeats')} x repeated {s.get('n_splits')}-fold cross-validation "
            f"(stratified on the event), {s.get('n')} subjects, {s.get('events')} events.\n\n"
        )
        text += markdown_table(self.summary.drop(columns=["method"], errors="ignore"))
        text += "\nci_low/ci_high by metric:\n" + "".join(
            f"- {r['metric']}: {r['method']}\n" for r in self.summary.to_dict(orient="records") if r.get("method"))
        text += "p2.5/p97.5: percentiles of the per-fold values (their spread, not a confidence interval).\n"
        if len(self.auc):
            by_time = self.auc_by_time()
            text += ("\nTime-dependent AUC by time (mean over folds; 95 % interval as for auc_mean above)\n\n"
                     + markdown_table(by_time.drop(columns=["method"])))
        for t, df in self.calibration.items():
            text += f"\nCalibration at t = {t:g} (first repeat, pooled test folds)\n\n" + markdown_table(df)
        if self.notes:
            uniq = sorted(set(self.notes))
            text += "\nNotes:\n" + "".join(f"- {n}\n" for n in uniq)
        return text


def _fit_fold(estimator, X, y, tr, te, param_grid, inner_cv, scoring, random_state):
    rows = X.iloc if isinstance(X, pd.DataFrame) else X
    est = clone(estimator)
    chosen = None
    t0 = _time.perf_counter()
    if param_grid:
        from sklearn.model_selection import GridSearchCV

        search = GridSearchCV(
            est, param_grid, cv=SurvivalStratifiedKFold(inner_cv, random_state=random_state),
            scoring=get_scorer(scoring) if isinstance(scoring, str) else scoring, refit=True, error_score="raise",
        )
        search.fit(rows[tr], y[tr])
        chosen = search.best_params_
        est = search.best_estimator_
    else:
        est.fit(rows[tr], y[tr])
    return est, chosen, _time.perf_counter() - t0


def cross_validate(
    estimator: Any, X: Any, y: Any, *, n_splits: int = 5, n_repeats: int = 5, param_grid: Any = None,
    inner_cv: int = 3, scoring: str = "c_index", times: Any = None, ibs_times: Any = None, tau: float | None = None,
    calibration_times: Any = None, n_groups: int = 10, risk_groups: int = 2, random_state: int | None = 0,
    n_jobs: int = 1,
) -> CVResult:
    """Repeated stratified k-fold cross-validation with every metric.

    Parameters
    ----------
    estimator : unfitted survival estimator (e.g. :class:`~facefeat.survival.SurvivalEstimator`)
    X, y : features and target (structured array or DataFrame)
    n_splits, n_repeats : int, default 5 and 5
    param_grid : dict or list of dicts, optional
        Tune these hyperparameters by ``GridSearchCV`` inside each outer training fold
        (nested CV); the chosen values are in ``folds``.
    inner_cv : int, default 3
        Inner folds of the nested search.
    scoring : str or scorer, default "c_index"
        Score maximised by the nested search (see :class:`SurvivalScorer`).
    times, ibs_times, tau, calibration_times, n_groups :
        Evaluation settings (defaults in :mod:`facefeat.survival.metrics`), computed once on
        the whole target so that every fold uses the same grid.
    risk_groups : int, default 2
        Risk groups of the out-of-fold predictions (by quantiles of the training fold's risk).
    random_state : int, default 0
    n_jobs : int, default 1
        Folds run in parallel with joblib.

    Returns
    -------
    CVResult
    """
    from joblib import Parallel, delayed

    event, time = check_survival_target(y, n_samples=X.shape[0])
    y = to_structured(event, time)
    times = default_times(y) if times is None else np.unique(np.asarray(times, float))
    ibs_times = default_times(y, kind="ibs") if ibs_times is None else np.unique(np.asarray(ibs_times, float))
    tau = default_tau(y) if tau is None else float(tau)
    cal_times = default_times(y, kind="calibration") if calibration_times is None else np.unique(np.asarray(calibration_times, float))
    if len(y) < 2 * n_splits:
        # every test fold needs two subjects for a concordance (events are checked by the splitter)
        raise DataError(f"{n_splits}-fold cross-validation needs at least {2 * n_splits} subjects; the data have "
                        f"{len(y)}. Use fewer folds (n_splits <= {max(len(y) // 2, 1)}) or more data.")
    splits = list(RepeatedSurvivalStratifiedKFold(n_splits, n_repeats, random_state=random_state).split(X, y))
    has_surv = hasattr(estimator, "predict_survival_function")

    def run(i: int, tr: np.ndarray, te: np.ndarray):
        rows = X.iloc if isinstance(X, pd.DataFrame) else X
        notes: list[str] = []
        if not y["event"][tr].any():
            raise DataError(f"fold {i}: the training part has no event; use fewer folds")
        # the guards' warnings (separation, null model, unseen levels) become fold notes, reported
        # once each with the number of folds, instead of one warning per fold
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ModelWarning)
            est, chosen, fit_s = _fit_fold(estimator, X, y, tr, te, param_grid, inner_cv, scoring, random_state)
            risk_tr = np.asarray(est.predict(rows[tr]), float)
            risk = np.asarray(est.predict(rows[te]), float)
            surv = survival_at(est, rows[te], np.concatenate([ibs_times, cal_times])) if has_surv else None
        guard_notes = collect_warnings(caught)
        for w in caught:
            if not issubclass(w.category, ModelWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        m, curve = _metrics_core(
            risk, None if surv is None else surv[:, : len(ibs_times)], y[tr], y[te], times, ibs_times, tau, notes
        )
        group = assign_risk_groups(risk, risk_cutoffs(risk_tr, risk_groups))
        cal = None if surv is None else surv[:, len(ibs_times):]
        return m, curve, chosen, fit_s, risk, group, cal, notes, guard_notes

    results = Parallel(n_jobs=n_jobs)(delayed(run)(i, tr, te) for i, (tr, te) in enumerate(splits))
    fold_rows, auc_rows, notes = [], [], []
    guard_count: dict[str, int] = {}
    guard_text: dict[str, str] = {}
    for r in results:
        for key, text in r[-1].items():
            guard_count[key] = guard_count.get(key, 0) + 1
            guard_text.setdefault(key, text)
    for key, k in guard_count.items():
        msg = f"in {k} of {len(splits)} folds (first occurrence): {guard_text[key]}"
        notes.append(msg)
        warnings.warn(msg, ModelWarning, stacklevel=2)
    results = [r[:-1] for r in results]
    oof_parts = []
    for i, ((tr, te), (m, curve, chosen, fit_s, risk, group, cal, fnotes)) in enumerate(zip(splits, results)):
        rep, fold = divmod(i, n_splits)
        fold_rows.append({"repeat": rep, "fold": fold, **m, "n_train": len(tr), "fit_seconds": fit_s,
                          **({"params": chosen} if chosen is not None else {})})
        notes.extend(f"repeat {rep} fold {fold}: {n}" for n in fnotes)
        for t, a in zip(curve["time"], curve["auc"]):
            auc_rows.append({"repeat": rep, "fold": fold, "time": t, "auc": a})
        if rep == 0:
            part = pd.DataFrame({"row": te, "fold": fold, "risk": risk, "risk_group": group,
                                 "time": y["time"][te], "event": y["event"][te]})
            if cal is not None:
                for j, t in enumerate(cal_times):
                    part[f"surv_{t:g}"] = cal[:, j]
            oof_parts.append(part)
    folds = pd.DataFrame(fold_rows)
    n_test = int(round(np.mean([len(te) for _, te in splits])))
    summary_rows = []
    for metric in METRICS:
        v = folds[metric].to_numpy(float)
        fin = v[np.isfinite(v)]
        s = summarise_folds(fin, metric=metric, n_train=len(y) - n_test, n_test=n_test)
        summary_rows.append({
            "metric": metric, "mean": s["mean"],
            "sd": fin.std(ddof=1) if len(fin) > 1 else math.nan, "ci_low": s["ci_low"], "ci_high": s["ci_high"],
            "p2.5": np.quantile(fin, 0.025) if len(fin) else math.nan,
            "p97.5": np.quantile(fin, 0.975) if len(fin) else math.nan, "folds": len(fin), "method": s["method"],
        })
        if len(fin) < len(v):
            notes.append(f"{metric}: undefined in {len(v) - len(fin)} of {len(v)} folds (left out of the summary)")
    oof = pd.concat(oof_parts).sort_values("row").reset_index(drop=True)
    if isinstance(X, pd.DataFrame):
        oof.insert(0, "id", X.index.to_numpy()[oof["row"].to_numpy()])
    calibration = {}
    if has_surv:
        yo = to_structured(oof["event"].to_numpy(bool), oof["time"].to_numpy(float))
        for t in cal_times:
            calibration[float(t)] = calibration_table(oof[f"surv_{t:g}"].to_numpy(), yo, t, n_groups=n_groups)
    settings = {
        "n_splits": n_splits, "n_repeats": n_repeats, "random_state": random_state, "n": int(len(y)),
        "events": int(event.sum()), "times": times.tolist(), "ibs_times": [float(ibs_times.min()), float(ibs_times.max()), len(ibs_times)],
        "tau": tau, "calibration_times": cal_times.tolist(), "risk_groups": risk_groups,
        "param_grid": param_grid, "inner_cv": inner_cv if param_grid else None, "scoring": str(scoring),
        "splits_sha256": splits_sha256(splits, _ids_of(X, len(y)), n_splits=n_splits),
        "data_sha256": data_sha256(_ids_of(X, len(y)), y),
    }
    return CVResult(folds, pd.DataFrame(summary_rows), oof, pd.DataFrame(auc_rows), calibration, settings, notes)
