"""Survival metrics, held-out evaluation with bootstrap intervals, and GridSearchCV scorers.

All metrics are scikit-survival's where it has them (Harrell's C, Uno's C, cumulative/dynamic
AUC, integrated Brier score); the hazard ratio per SD and the calibration table are here.

Defaults, recorded in every result:

- evaluation times (time-dependent AUC): the 10th, 20th, ..., 80th percentiles of the
  event times of the data being evaluated (in CV: of the whole data set, so every fold uses
  the same grid); times outside a test set's follow-up range are left out and counted;
- integrated Brier score: 40 times from the 5th to the 80th percentile of event times;
- Uno's C truncation ``tau``: the 80th percentile of observed times;
- calibration: at the 25th, 50th and 75th percentiles of event times, subjects grouped into
  deciles of predicted survival, mean predicted survival against the Kaplan-Meier estimate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError
from facefeat.survival.intervals import METRIC_BOUNDS, bounded_interval
from facefeat.survival.markdown import markdown_table
from facefeat.survival.target import check_survival_target, to_structured, training_target

log = logging.getLogger("facefeat.survival")

METRICS = ("c_index", "uno_c", "auc_mean", "ibs", "hr_per_sd")

NO_PAIRS = "no comparable pair of subjects (no event before another subject's follow-up ends): every metric is undefined"


def default_times(y: Any, *, kind: str = "auc") -> np.ndarray:
    """The default evaluation time grid of a target (see the module docstring)."""
    event, time = check_survival_target(y)
    t = time[event]
    if kind == "auc":
        q = np.linspace(0.1, 0.8, 8)
    elif kind == "ibs":
        q = np.linspace(0.05, 0.8, 40)
    elif kind == "calibration":
        q = np.array([0.25, 0.5, 0.75])
    else:
        raise ConfigError(f"unknown time grid kind {kind!r}")
    return np.unique(np.quantile(t, q))


def default_tau(y: Any) -> float:
    """Default truncation time of Uno's C: the 80th percentile of observed times."""
    _, time = check_survival_target(y, allow_all_censored=True)
    return float(np.quantile(time, 0.8))


def risk_cutoffs(risk: np.ndarray, n_groups: int) -> np.ndarray:
    """Cut-offs splitting ``risk`` into ``n_groups`` groups of equal size (its inner quantiles).

    Computed on training risks and applied to new subjects with :func:`assign_risk_groups`, so no
    subject is grouped by its own prediction's rank in the test data.
    """
    return np.quantile(np.asarray(risk, float), np.linspace(0, 1, n_groups + 1)[1:-1])


def assign_risk_groups(risk: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    """Risk group 1 (lowest) to ``len(cutoffs) + 1`` of each risk; a risk equal to a cut-off goes up."""
    return np.searchsorted(np.asarray(cutoffs, float), np.asarray(risk, float), side="right") + 1


def survival_at(estimator: Any, X: Any, times: np.ndarray) -> np.ndarray:
    """Predicted survival probabilities, shape (n_samples, len(times))."""
    times = np.asarray(times, float)
    grid = getattr(estimator, "unique_times_", None)
    if grid is not None:
        arr = np.asarray(estimator.predict_survival_function(X, return_array=True))
        if arr.ndim == 2 and arr.shape[1] == len(grid):
            idx = np.searchsorted(grid, times, side="right") - 1
            out = np.ones((arr.shape[0], len(times)))
            ok = idx >= 0
            out[:, ok] = arr[:, idx[ok]]
            return out
    fns = estimator.predict_survival_function(X)
    out = np.empty((len(fns), len(times)))
    for i, f in enumerate(fns):
        lo, hi = f.domain
        out[i] = f(np.clip(times, lo, hi))
    return out


def _valid_times(times: np.ndarray, y_train: np.ndarray, y_test: np.ndarray) -> np.ndarray:
    t_test, t_train = y_test["time"], y_train["time"]
    keep = (times >= t_test.min()) & (times < t_test.max()) & (times < t_train.max())
    return times[keep]


def calibration_table(surv_t: np.ndarray, y_test: np.ndarray, t: float, *, n_groups: int = 10) -> pd.DataFrame:
    """Predicted vs Kaplan-Meier observed survival at time ``t`` by group of predicted survival.

    Groups are quantiles (deciles by default) of predicted survival at ``t``; each row has the
    group's size, events, mean predicted survival and the Kaplan-Meier estimate at ``t`` with
    its 95 % (log-log) interval.
    """
    from sksurv.nonparametric import kaplan_meier_estimator

    n_groups = max(1, min(n_groups, len(surv_t) // 5))
    ranks = pd.Series(surv_t).rank(method="first").to_numpy()
    group = np.minimum(((ranks - 1) * n_groups / len(surv_t)).astype(int), n_groups - 1)
    rows = []
    for g in range(n_groups):
        m = group == g
        e, tt = y_test["event"][m], y_test["time"][m]
        obs = lo = hi = math.nan
        if m.sum() and e.any():
            x, s, ci = kaplan_meier_estimator(e, tt, conf_type="log-log")
            k = np.searchsorted(x, t, side="right") - 1
            obs, lo, hi = (1.0, 1.0, 1.0) if k < 0 else (s[k], ci[0][k], ci[1][k])
            if t > tt.max():
                obs = lo = hi = math.nan  # no one in the group followed that long
        elif m.sum():
            obs = lo = hi = 1.0 if tt.max() >= t else math.nan
        rows.append({
            "group": g + 1, "n": int(m.sum()), "events": int(e.sum()), "predicted": float(np.mean(surv_t[m])) if m.any() else math.nan,
            "observed": float(obs), "observed_low": float(lo), "observed_high": float(hi),
        })
    return pd.DataFrame(rows)


def _metrics_core(
    risk: np.ndarray, surv_ibs: np.ndarray | None, y_train: np.ndarray, y_test: np.ndarray,
    auc_times: np.ndarray, ibs_times: np.ndarray, tau: float, notes: list[str],
) -> tuple[dict[str, float], pd.DataFrame]:
    """Metrics of one set of predictions; problems become NaN plus a note, never an exception."""
    from sksurv.metrics import (
        concordance_index_censored,
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )

    from facefeat.survival.cox import hazard_ratio_per_sd

    out: dict[str, float] = {"n": int(len(y_test)), "events": int(y_test["event"].sum())}
    curve = pd.DataFrame({"time": [], "auc": []})
    if not y_test["event"].any():
        notes.append("test set has no event: every metric is undefined (NaN)")
        return {**out, **{m: math.nan for m in ("c_index", "uno_c", "auc_mean", "ibs", "hr_per_sd")}}, curve
    try:
        out["c_index"] = float(concordance_index_censored(y_test["event"], y_test["time"], risk)[0])
    except ValueError:  # sksurv's NoComparablePairException: no event before another subject's time
        notes.append(NO_PAIRS)
        return {**out, **{m: math.nan for m in ("c_index", "uno_c", "auc_mean", "ibs", "hr_per_sd")}}, curve
    tau_eff = min(tau, float(np.nextafter(y_train["time"].max(), 0)))
    try:
        out["uno_c"] = float(concordance_index_ipcw(y_train, y_test, risk, tau=tau_eff)[0])
    except (ValueError, ZeroDivisionError) as exc:
        out["uno_c"] = math.nan
        notes.append(f"Uno's C undefined: {exc}")
    at = _valid_times(auc_times, y_train, y_test)
    if len(at) < len(auc_times):
        notes.append(f"{len(auc_times) - len(at)} AUC time(s) outside this test set's follow-up were left out")
    if len(at):
        try:
            auc, mean_auc = cumulative_dynamic_auc(y_train, y_test, risk, at)
            out["auc_mean"] = float(mean_auc)
            curve = pd.DataFrame({"time": at, "auc": auc})
        except ValueError as exc:
            out["auc_mean"] = math.nan
            notes.append(f"time-dependent AUC undefined: {exc}")
    else:
        out["auc_mean"] = math.nan
    out["ibs"] = math.nan
    if surv_ibs is not None:
        keep = np.isin(ibs_times, _valid_times(ibs_times, y_train, y_test))
        if keep.sum() >= 2:
            try:
                out["ibs"] = float(integrated_brier_score(y_train, y_test, surv_ibs[:, keep], ibs_times[keep]))
            except ValueError as exc:
                notes.append(f"integrated Brier score undefined: {exc}")
    hr = hazard_ratio_per_sd(risk, y_test["time"], y_test["event"])
    if math.isnan(hr["hr"]):
        notes.append("hazard ratio per SD undefined on this test set (constant risk or perfect separation)")
    out["hr_per_sd"] = hr["hr"]
    out["hr_per_sd_low"] = hr["ci_low"]
    out["hr_per_sd_high"] = hr["ci_high"]
    out["hr_per_sd_p"] = hr["p"]
    return out, curve


@dataclass
class EvaluationResult:
    """Metrics of a model on held-out data, with bootstrap intervals and curves."""

    metrics: dict[str, float]
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    auc_curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    calibration: dict[float, pd.DataFrame] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    risk: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metrics": self.metrics,
            "intervals_95": {k: list(v) for k, v in self.intervals.items()},
            "auc_curve": self.auc_curve.to_dict(orient="list"),
            "calibration": {str(t): df.to_dict(orient="records") for t, df in self.calibration.items()},
            "settings": self.settings,
            "notes": self.notes,
        }

    def to_markdown(self) -> str:
        rows = []
        for m in METRICS:
            v = self.metrics.get(m, math.nan)
            lo, hi = self.intervals.get(m, (math.nan, math.nan))
            how = "bootstrap percentile" if m in self.intervals else ""
            if m == "hr_per_sd" and m not in self.intervals:
                lo, hi = self.metrics.get("hr_per_sd_low", math.nan), self.metrics.get("hr_per_sd_high", math.nan)
                how = "Wald, log scale"
            rows.append({"metric": m, "value": v, "95% low": lo, "95% high": hi, "interval": how})
        text = markdown_table(pd.DataFrame(rows))
        text += f"\n{self.metrics.get('n')} subjects, {self.metrics.get('events')} events. "
        text += ", ".join(f"{k}: {v}" for k, v in self.settings.items() if k in ("tau", "n_bootstrap")) + "\n"
        n_boot = self.settings.get("n_bootstrap") or 0
        text += ("\nIntervals: " + (f"95 % bootstrap percentile intervals over {n_boot} resamples of the subjects "
                 "(the model fixed), inside each metric's range by construction" if n_boot else
                 "none for the C-indices, AUC and Brier score (pass --bootstrap N for percentile intervals)")
                 + "; hazard ratio per SD of the risk score: "
                 + ("bootstrap percentile" if n_boot else "95 % Wald interval of a one-covariate Cox model, log scale")
                 + ".\n")
        for t, df in self.calibration.items():
            text += f"\nCalibration at t = {t:g}\n\n" + markdown_table(df)
        if self.notes:
            text += "\nNotes:\n" + "".join(f"- {n}\n" for n in self.notes)
        return text


def evaluate(
    estimator: Any, X: Any, y: Any, *, y_train: Any = None, times: Any = None, ibs_times: Any = None,
    tau: float | None = None, calibration_times: Any = None, n_groups: int = 10,
    n_bootstrap: int = 0, random_state: int | None = None,
) -> EvaluationResult:
    """Evaluate a fitted survival model on held-out data.

    Parameters
    ----------
    estimator : fitted estimator with ``predict`` (risk, higher = worse) and, for the Brier
        score and calibration, ``predict_survival_function``.
    X, y : held-out features and target.
    y_train : target the model was trained on (censoring distribution for IPCW metrics);
        defaults to ``estimator.y_train_``.
    times, ibs_times, tau, calibration_times : evaluation settings, defaults in the module doc.
    n_groups : int, default 10
        Calibration groups (deciles).
    n_bootstrap : int, default 0
        Bootstrap replicates of the held-out set for percentile 95 % intervals of every metric
        (the model is fixed; the interval reflects the finite test set).
    random_state : int, optional

    Returns
    -------
    EvaluationResult
    """
    event, time = check_survival_target(y, allow_all_censored=True)
    y_test = to_structured(event, time)
    y_tr = training_target(estimator) if y_train is None else to_structured(*check_survival_target(y_train))
    times = default_times(y_test) if times is None else np.unique(np.asarray(times, float))
    ibs_times = default_times(y_test, kind="ibs") if ibs_times is None else np.unique(np.asarray(ibs_times, float))
    tau = default_tau(y_test) if tau is None else float(tau)
    cal_times = default_times(y_test, kind="calibration") if calibration_times is None else np.asarray(calibration_times, float)
    notes: list[str] = []
    risk = np.asarray(estimator.predict(X), dtype=float)
    surv = None
    cal_all = np.unique(cal_times)
    if hasattr(estimator, "predict_survival_function"):
        surv_all = survival_at(estimator, X, np.concatenate([ibs_times, cal_all]))
        surv, surv_cal = surv_all[:, : len(ibs_times)], surv_all[:, len(ibs_times):]
    metrics, curve = _metrics_core(risk, surv, y_tr, y_test, times, ibs_times, tau, notes)
    if NO_PAIRS in notes or not y_test["event"].any():
        raise DataError(
            f"the evaluation data ({len(y_test)} subjects, {int(y_test['event'].sum())} events) have no comparable pair "
            "of subjects (an event before another subject's follow-up ends), so no metric is defined. If subjects "
            "were dropped as unmatched, check that the clinical table's id column holds the same subject ids as the "
            "feature tables; otherwise evaluate on more subjects.")
    calibration = {}
    if surv is not None:
        for j, t in enumerate(cal_all):
            calibration[float(t)] = calibration_table(surv_cal[:, j], y_test, t, n_groups=n_groups)
    intervals = {}
    if n_bootstrap:
        intervals = bootstrap_intervals(
            risk, surv, y_tr, y_test, times, ibs_times, tau, n_bootstrap=n_bootstrap, random_state=random_state, notes=notes
        )
    settings = {
        "times": times.tolist(), "ibs_times": [float(ibs_times.min()), float(ibs_times.max()), len(ibs_times)],
        "tau": tau, "calibration_times": cal_all.tolist(), "n_groups": n_groups, "n_bootstrap": n_bootstrap,
    }
    return EvaluationResult(metrics, intervals, curve, calibration, settings, notes, risk)


def bootstrap_intervals(
    risk: np.ndarray, surv: np.ndarray | None, y_train: np.ndarray, y_test: np.ndarray, times: np.ndarray,
    ibs_times: np.ndarray, tau: float, *, n_bootstrap: int = 1000, random_state: int | None = None,
    notes: list[str] | None = None,
) -> dict[str, tuple[float, float]]:
    """Percentile 95 % intervals of each metric over bootstrap resamples of the test set.

    Every resample's metric lies in the metric's range, so the percentile interval does too
    (:func:`facefeat.survival.intervals.bounded_interval` with ``method="percentile"``).
    """
    rng = np.random.default_rng(random_state)
    vals: dict[str, list[float]] = {m: [] for m in METRICS}
    n = len(y_test)
    for _ in range(int(n_bootstrap)):
        idx = rng.integers(0, n, n)
        m, _ = _metrics_core(risk[idx], None if surv is None else surv[idx], y_train, y_test[idx], times, ibs_times, tau, [])
        for k in METRICS:
            vals[k].append(m.get(k, math.nan))
    out = {}
    for k, v in vals.items():
        a = np.asarray(v, float)
        a = a[np.isfinite(a)]
        if len(a) < 0.9 * n_bootstrap and notes is not None:
            notes.append(f"bootstrap: {k} undefined in {n_bootstrap - len(a)} of {n_bootstrap} resamples")
        lo, hi, _ = bounded_interval(a, method="percentile", bounds=METRIC_BOUNDS.get(k))
        out[k] = (lo, hi)
    return out


# -- scorers -----------------------------------------------------------------------------------

class SurvivalScorer:
    """A scorer for ``GridSearchCV`` / ``cross_val_score`` that knows the training target.

    IPCW metrics (Uno's C, time-dependent AUC, Brier score) need the censoring distribution
    of the training data. Like scikit-survival's ``as_concordance_index_ipcw_scorer``, this
    scorer reads it from the fitted estimator: ``y_train_`` of a
    :class:`~facefeat.survival.SurvivalEstimator` (also as the last step of a ``Pipeline`` or
    inside a fitted search). Higher is always better (the Brier score is negated).

    Parameters
    ----------
    metric : {"c_index", "uno_c", "auc_mean", "neg_ibs"}
    times : array-like, optional
        Evaluation times for ``auc_mean`` / ``neg_ibs``; by default the grid of
        :func:`default_times` on the training target, restricted to the test fold's follow-up.
    tau : float, optional
        Truncation time of Uno's C; default: :func:`default_tau` of the training target.
    """

    def __init__(self, metric: str = "uno_c", *, times: Any = None, tau: float | None = None):
        if metric not in ("c_index", "uno_c", "auc_mean", "neg_ibs"):
            raise ConfigError(f"unknown scorer metric {metric!r}")
        self.metric = metric
        self.times = times
        self.tau = tau

    def __call__(self, estimator: Any, X: Any, y: Any) -> float:
        event, time = check_survival_target(y, allow_all_censored=True)
        y_test = to_structured(event, time)
        risk = np.asarray(estimator.predict(X), dtype=float)
        if self.metric == "c_index":
            from sksurv.metrics import concordance_index_censored

            return float(concordance_index_censored(event, time, risk)[0]) if event.any() else math.nan
        y_tr = training_target(estimator)
        kind = "ibs" if self.metric == "neg_ibs" else "auc"
        times = default_times(y_tr, kind=kind) if self.times is None else np.asarray(self.times, float)
        tau = default_tau(y_tr) if self.tau is None else self.tau
        surv = survival_at(estimator, X, times) if self.metric == "neg_ibs" else None
        m, _ = _metrics_core(risk, surv, y_tr, y_test, times, times, tau, [])
        return -m["ibs"] if self.metric == "neg_ibs" else m[self.metric]

    def __repr__(self) -> str:
        return f"SurvivalScorer({self.metric!r}, times={self.times!r}, tau={self.tau!r})"


def get_scorer(name: str, **kwargs: Any) -> SurvivalScorer:
    """A :class:`SurvivalScorer` by metric name (``c_index``, ``uno_c``, ``auc_mean``, ``neg_ibs``)."""
    return SurvivalScorer(name, **kwargs)
