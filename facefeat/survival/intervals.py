"""Confidence intervals that stay inside the range of their quantity.

One implementation for every interval the survival layer prints:

- **Cross-validation means** (per-fold values of one metric): the corrected resampled
  variance of Nadeau & Bengio (2003), ``var * (1/J + n_test/n_train)`` over ``J`` folds and
  repeats, with a t quantile on ``J - 1`` degrees of freedom, computed on a scale where the
  quantity is unbounded and mapped back (delta method): logit for quantities in ``[a, b]``
  (C-indices, AUC, Brier scores in [0, 1]; differences of them in [-1, 1]), log for positive
  quantities (hazard ratios). The interval is always inside the range and always contains the
  point estimate (the plain mean of the fold values).
- **Bootstrap replicates** (``method="percentile"``): the percentile interval, inside the
  range because every replicate is.
- **One estimate with a standard error** (:func:`wald_interval`): a normal interval on the
  same transformed scale.

Each function returns the method as a short sentence, to print beside the table.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from facefeat.errors import ConfigError

#: Range of each metric the toolkit reports (used to choose the interval's scale).
METRIC_BOUNDS: dict[str, tuple[float, float] | None] = {
    "c_index": (0.0, 1.0), "uno_c": (0.0, 1.0), "auc_mean": (0.0, 1.0), "auc": (0.0, 1.0), "ibs": (0.0, 1.0),
    "brier": (0.0, 1.0), "hr_per_sd": (0.0, math.inf),
}

Bounds = tuple[float, float] | None


def _check_bounds(bounds: Bounds) -> Bounds:
    if bounds is None:
        return None
    lo, hi = (float(b) for b in bounds)
    if not lo < hi or math.isinf(lo):
        raise ConfigError(f"bounds must be (low, high) with a finite low < high, or None; got {bounds!r}")
    return lo, hi


def scale_name(bounds: Bounds) -> str:
    """The scale on which an interval for a quantity with these bounds is computed."""
    bounds = _check_bounds(bounds)
    if bounds is None:
        return "raw scale"
    lo, hi = bounds
    if math.isinf(hi):
        return "log scale" if lo == 0 else f"log(x - {lo:g}) scale"
    if (lo, hi) == (0.0, 1.0):
        return "logit scale"
    shift = f"x - {lo:g}" if lo > 0 else f"x + {-lo:g}"
    return f"logit scale of ({shift}) / {hi - lo:g}"


def _forward(x: float, bounds: Bounds) -> tuple[float, float]:
    """Transformed value and its derivative at ``x`` (for the delta method)."""
    if bounds is None:
        return x, 1.0
    lo, hi = bounds
    if math.isinf(hi):
        u = x - lo
        return math.log(u), 1.0 / u
    w = hi - lo
    u = (x - lo) / w
    return math.log(u / (1 - u)), 1.0 / (w * u * (1 - u))


def _backward(z: float, bounds: Bounds) -> float:
    if bounds is None:
        return z
    lo, hi = bounds
    if math.isinf(hi):
        return lo + math.exp(min(z, 700.0))
    # expit without overflow for large |z|
    e = math.exp(-abs(z))
    u = 1 / (1 + e) if z >= 0 else e / (1 + e)
    return lo + (hi - lo) * u


def _on_scale(estimate: float, se: float, q: float, bounds: Bounds) -> tuple[float, float]:
    """``estimate +- q * se`` on the transformed scale (delta method), mapped back."""
    if not (math.isfinite(estimate) and math.isfinite(se)):
        return math.nan, math.nan
    if bounds is not None:
        lo, hi = bounds
        if estimate <= lo or estimate >= hi:
            # on the boundary (e.g. every fold's C is 1): no finite transformed value and no
            # spread (all values equal the bound); the interval collapses to the point
            return estimate, estimate
    z, dz = _forward(estimate, bounds)
    half = q * se * abs(dz)
    return _backward(z - half, bounds), _backward(z + half, bounds)


def corrected_variance(values: Sequence[float], *, n_train: int, n_test: int) -> float:
    """Nadeau & Bengio's corrected resampled variance of the mean of ``J`` fold values.

    ``var(values) * (1/J + n_test/n_train)``; the second term accounts for the overlap of the
    training sets, which makes fold values positively correlated.
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return math.nan
    return float(np.var(v, ddof=1) * (1 / len(v) + n_test / max(n_train, 1)))


def bounded_interval(
    values: Sequence[float], *, n_train: int | None = None, n_test: int | None = None,
    bounds: Bounds = (0.0, 1.0), level: float = 0.95, method: str = "corrected_t",
    estimate: float | None = None,
) -> tuple[float, float, str]:
    """Confidence interval of a metric that respects the metric's range.

    Parameters
    ----------
    values : sequence of float
        ``method="corrected_t"``: the per-fold values of a (repeated) cross-validation;
        ``method="percentile"``: bootstrap replicates. Non-finite values are left out.
    n_train, n_test : int
        Training and test fold sizes (corrected_t only; mean sizes when folds differ).
    bounds : (low, high), (low, inf) or None, default (0, 1)
        Range of the quantity; chooses the scale (logit, log or raw, see the module doc).
    level : float, default 0.95
    method : {"corrected_t", "percentile"}
    estimate : float, optional
        Point estimate around which the corrected t interval is built (default: the mean of
        ``values``); ignored by the percentile method.

    Returns
    -------
    (low, high, method) : float, float, str
        NaN bounds when fewer than two finite values; ``method`` describes what was done.
    """
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    bounds = _check_bounds(bounds)
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    pct = f"{level:.0%}"
    if method == "percentile":
        text = f"{pct} bootstrap percentile interval ({len(v)} replicates)"
        if len(v) < 2:
            return math.nan, math.nan, text
        a = (1 - level) / 2
        return float(np.quantile(v, a)), float(np.quantile(v, 1 - a)), text
    if method != "corrected_t":
        raise ConfigError(f"method must be 'corrected_t' or 'percentile', not {method!r}")
    if n_train is None or n_test is None:
        raise ConfigError("the corrected resampled t interval needs n_train and n_test (fold sizes)")
    from scipy.stats import t as t_dist

    text = (f"{pct} corrected resampled t interval (Nadeau & Bengio) on the {scale_name(bounds)}, "
            f"{len(v)} folds, n_train {n_train}, n_test {n_test}")
    if len(v) < 2:
        return math.nan, math.nan, text
    centre = float(v.mean()) if estimate is None else float(estimate)
    se = math.sqrt(corrected_variance(v, n_train=n_train, n_test=n_test))
    q = float(t_dist.ppf(0.5 + level / 2, len(v) - 1))
    lo, hi = _on_scale(centre, se, q, bounds)
    if bounds is not None and (centre <= bounds[0] or centre >= bounds[1]):
        text += "; the mean is on the boundary of the range, so the interval collapses to it"
    return lo, hi, text


def corrected_t_test(
    values: Sequence[float], *, n_train: int, n_test: int, bounds: Bounds = None, null: float = 0.0,
    level: float = 0.95,
) -> dict[str, float | str]:
    """Corrected resampled t test and interval of the mean of per-fold values (e.g. differences).

    The test and the interval are computed on the same scale (see ``bounds``), so the interval
    excludes ``null`` exactly when ``p_value < 1 - level``.

    Returns
    -------
    dict with ``estimate``, ``ci_low``, ``ci_high``, ``t``, ``df``, ``p_value``, ``method``
    """
    from scipy.stats import t as t_dist

    bounds = _check_bounds(bounds)
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    lo, hi, text = bounded_interval(v, n_train=n_train, n_test=n_test, bounds=bounds, level=level)
    out: dict[str, float | str] = {"estimate": float(v.mean()) if len(v) else math.nan, "ci_low": lo, "ci_high": hi,
                                   "t": math.nan, "df": float(len(v) - 1), "p_value": math.nan,
                                   "method": text + "; two-sided corrected resampled t test"}
    if len(v) < 2:
        return out
    se = math.sqrt(corrected_variance(v, n_train=n_train, n_test=n_test))
    mean = float(v.mean())
    if bounds is not None and not bounds[0] < mean < bounds[1]:
        return out
    z, dz = _forward(mean, bounds)
    z0, _ = _forward(null, bounds)
    if se == 0:
        out["p_value"] = 0.0 if mean != null else 1.0
        return out
    t = (z - z0) / (se * abs(dz))
    out["t"] = t
    out["p_value"] = float(2 * t_dist.sf(abs(t), len(v) - 1))
    return out


def wald_interval(estimate: float, se: float, *, bounds: Bounds = (0.0, 1.0), level: float = 0.95) -> tuple[float, float, str]:
    """Normal (Wald) interval of one estimate with standard error ``se``, on the bounded scale.

    Used for a single C-index with its jackknife standard error (subgroups) and any other
    estimate whose standard error is known; hazard ratios are better given on the log scale
    directly (``exp(coef +- z * se)``), which is what this does with ``bounds=(0, inf)`` and
    ``se`` of the hazard ratio (delta method).
    """
    from scipy.stats import norm

    bounds = _check_bounds(bounds)
    q = float(norm.ppf(0.5 + level / 2))
    lo, hi = _on_scale(float(estimate), float(se), q, bounds)
    return lo, hi, f"{level:.0%} Wald interval on the {scale_name(bounds)}"


def harrell_c_se(risk: np.ndarray, time: np.ndarray, event: np.ndarray) -> tuple[float, float, int]:
    """Harrell's C with its jackknife (first-order) standard error and the number of comparable pairs.

    Pairs are comparable as in :func:`sksurv.metrics.concordance_index_censored` (the shorter
    time is an event; an event and a censoring at the same time count with the event first;
    two events at the same time do not count); ties in risk count one half. With ``a_i`` and
    ``b_i`` the concordance and the number of comparable pairs subject ``i`` takes part in,
    ``C = sum(a)/sum(b)`` and removing subject ``i`` changes C by about
    ``-(a_i - C b_i) / B``, so the jackknife variance is ``sum((a_i - C b_i)^2) / B^2`` with
    ``B`` the number of comparable pairs.

    Returns
    -------
    (c, se, pairs) : float, float, int
        NaN C and SE when no pair is comparable.
    """
    r = np.asarray(risk, float)
    t = np.asarray(time, float)
    e = np.asarray(event, bool)
    # comparable[i, j]: i has an event and a shorter time than j (or equal time, j censored)
    comparable = e[:, None] & ((t[:, None] < t[None, :]) | ((t[:, None] == t[None, :]) & ~e[None, :]))
    conc = np.where(r[:, None] > r[None, :], 1.0, np.where(r[:, None] == r[None, :], 0.5, 0.0)) * comparable
    B = float(comparable.sum())
    if B == 0:
        return math.nan, math.nan, 0
    A = float(conc.sum())
    c = A / B
    a = conc.sum(axis=1) + conc.sum(axis=0)
    b = comparable.sum(axis=1) + comparable.sum(axis=0)
    se = math.sqrt(float(((a - c * b) ** 2).sum())) / B
    return c, se, int(B)


def summarise_folds(
    values: Sequence[float], *, metric: str, n_train: int, n_test: int, level: float = 0.95,
) -> dict[str, float | str]:
    """Mean and range-respecting interval of one metric's per-fold values.

    Hazard ratios are summarised on the log scale: the estimate is the geometric mean of
    the fold hazard ratios (the mean log hazard ratio, exponentiated) and the interval the
    corrected resampled t interval of the mean log hazard ratio, exponentiated. Every other
    metric: the arithmetic mean with :func:`bounded_interval` on the scale its range asks for
    (:data:`METRIC_BOUNDS`).

    Returns
    -------
    dict with ``mean``, ``ci_low``, ``ci_high``, ``method``
    """
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if metric.startswith("hr"):
        v = v[v > 0]
        logs = np.log(v)
        lo, hi, text = bounded_interval(logs, n_train=n_train, n_test=n_test, bounds=None, level=level)
        text = text.replace("on the raw scale", "of the mean log hazard ratio, exponentiated (geometric mean)")
        mean = float(np.exp(logs.mean())) if len(v) else math.nan
        return {"mean": mean, "ci_low": math.exp(lo) if math.isfinite(lo) else math.nan,
                "ci_high": math.exp(min(hi, 700.0)) if math.isfinite(hi) else math.nan, "method": text}
    bounds = METRIC_BOUNDS.get(metric, None)
    lo, hi, text = bounded_interval(v, n_train=n_train, n_test=n_test, bounds=bounds, level=level)
    return {"mean": float(v.mean()) if len(v) else math.nan, "ci_low": lo, "ci_high": hi, "method": text}
