"""Checks that turn a silently meaningless model fit into one clear warning.

Each check adds one item to the estimator's :class:`~facefeat.survival.report.DataReport` and
emits one :class:`ModelWarning`, instead of the flood of solver warnings (``LinAlgWarning``,
overflow ``RuntimeWarning``) that the optimiser would print:

- more model features than events (an unpenalised Cox model cannot be estimated), or fewer
  than 10 events per feature (biased hazard ratios, too narrow Wald intervals);
- complete or quasi-complete separation (coefficients running off to infinity), naming the
  likely columns, with the apparent C-index;
- a penalised model that kept no feature (a null model: its C-index of 0.5 means nothing
  was found, not that the features were tried and scored 0.5);
- categorical levels at prediction time that training never saw.

Cross-validation collects the warnings of every fold and reports each once with the number
of folds it occurred in (see :func:`collect_warnings`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from typing import Any, Iterator, Sequence

import numpy as np

log = logging.getLogger("facefeat.survival")

#: |log hazard ratio per SD of the column| above which a coefficient is taken as diverging
#: (a hazard ratio of e^5 ~ 150 per SD does not come out of a converged fit on real data).
DIVERGING_LOG_HR_PER_SD = 5.0

#: Events per feature below which an unpenalised Cox model's hazard ratios are flagged
#: (Peduzzi et al. 1995: at fewer than 10 the estimates are biased and the intervals too narrow).
MIN_EVENTS_PER_FEATURE = 10.0


class ModelWarning(UserWarning):
    """A fitted model is unreliable or degenerate (facefeat's survival guards).

    ``key`` names the kind of trouble (``dimensions``, ``separation``, ``null_model``,
    ``unseen_level:<column>``), so that cross-validation can report each kind once with the
    number of folds it occurred in, even when the numbers in the message differ by fold.
    """

    def __init__(self, message: str, key: str = ""):
        super().__init__(message)
        self.key = key or message


def _say(report: Any, step: str, message: str, examples: Sequence[str] = (), *, key: str = "") -> None:
    """One report item (not logged again by the report) and one warning."""
    from facefeat.survival.report import ReportItem

    if report is not None:
        report.items.append(ReportItem(step, message, 0, [str(e) for e in list(examples)[:10]], "warning"))
    warnings.warn(ModelWarning(message, key), stacklevel=3)


def is_unpenalised_cox(model: Any) -> bool:
    """True for scikit-survival's ``CoxPHSurvivalAnalysis`` with no ridge penalty."""
    return type(model).__name__ == "CoxPHSurvivalAnalysis" and not np.any(np.asarray(getattr(model, "alpha", 0)) > 0)


def check_dimensions(model: Any, n_features: int, n_events: int, *, report: Any = None) -> bool:
    """Warn when an unpenalised Cox model gets as many features as events or more.

    Returns True when the warning was given.
    """
    if not is_unpenalised_cox(model):
        return False
    if n_features < n_events:
        if n_features and n_events / n_features < MIN_EVENTS_PER_FEATURE:
            _say(report, "model",
                 f"{n_events / n_features:.1f} events per feature ({n_events} events, {n_features} features; fewer than "
                 f"{MIN_EVENTS_PER_FEATURE:g}): the coefficients of an unpenalised Cox model are biased away from 0 and "
                 "their Wald intervals are too narrow (benchmarks/bench_coverage.py --noise-features 38: 61.5 % "
                 "coverage at 2.4 events per feature). Use a penalised model (--model coxnet, or coxph with "
                 "--param alpha=1), PCA, or fewer features.", key="low_epv")
        return False
    _say(report, "model",
         f"more features ({n_features}) than events ({n_events}): an unpenalised Cox model cannot be estimated "
         "(it separates the training data, reports an apparent C-index near 1 and coefficients without meaning). "
         "Use a penalised model (--model coxnet, or coxph with --param alpha=1), reduce the image block with PCA "
         "(--pca 10 or --pca 0.9), or use fewer feature blocks.", key="dimensions")
    return True


@contextlib.contextmanager
def quiet_solver() -> Iterator[list]:
    """Record (and hide) the optimiser's numerical warnings; :func:`check_fit` reports them once."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
    keep = []
    for w in caught:
        name = type(w.message).__name__
        if name in ("LinAlgWarning", "ConvergenceWarning") or "all coefficients are zero" in str(w.message) or (
                issubclass(w.category, RuntimeWarning) and any(k in str(w.message) for k in ("overflow", "invalid", "divide"))):
            keep.append(w)
        else:  # not ours to judge: let it through
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    caught[:] = keep


def check_fit(model: Any, X: np.ndarray, y: np.ndarray, names: Sequence[str], caught: list, *,
              report: Any = None, already_warned: bool = False) -> None:
    """After fitting a linear survival model: separation, solver trouble, null model.

    Parameters
    ----------
    model : fitted model with ``coef_``
    X : design matrix the model was fitted on
    y : structured survival target
    names : names of the design's columns
    caught : warnings recorded by :func:`quiet_solver` during the fit
    already_warned : bool
        The dimension check already explained the trouble; do not repeat it.
    """
    coef = getattr(model, "coef_", None)
    if coef is None:
        return
    coef = np.asarray(coef, float)
    if coef.ndim != 1:
        return
    names = [str(n) for n in names]
    if type(model).__name__ == "CoxnetCV" or (hasattr(model, "alpha_") and hasattr(model, "l1_ratio")):
        if not np.any(coef != 0):
            _say(report, "model",
                 f"null model: the penalised model kept no feature at the chosen penalty (alpha "
                 f"{getattr(model, 'alpha_', math.nan):.4g}); every subject gets the same risk and its C-index of 0.5 "
                 "means that nothing prognostic was found at this penalty, not a model that ranks at chance. Try a "
                 "smaller penalty (rule='min', a lower alpha_min_ratio) or l1_ratio < 1.", key="null_model")
        return
    sd = np.asarray(X, float).std(axis=0) if len(X) > 1 else np.ones(len(coef))
    effect = np.abs(coef) * sd
    diverging = np.flatnonzero(~np.isfinite(effect) | (effect > DIVERGING_LOG_HR_PER_SD))
    if not len(diverging) and not caught:
        return
    if already_warned and not len(diverging):
        return
    from sksurv.metrics import concordance_index_censored

    with np.errstate(all="ignore"):
        risk = np.asarray(X, float) @ np.where(np.isfinite(coef), coef, 0.0)
    c = math.nan
    if np.all(np.isfinite(risk)) and y["event"].any():
        try:
            c = float(concordance_index_censored(y["event"], y["time"], risk)[0])
        except ValueError:
            pass
    order = diverging[np.argsort(-np.nan_to_num(effect[diverging], nan=np.inf))] if len(diverging) else \
        np.argsort(-np.nan_to_num(effect, nan=np.inf))[:5]
    cols = [names[j] for j in order[:10]]
    solver = f" ({len(caught)} solver warning(s) suppressed)" if caught else ""
    flag = f"; apparent (training) C-index {c:.3f}" + (" - perfect separation of the training data" if c >= 0.999 else "") \
        if math.isfinite(c) else ""
    what = ("complete or quasi-complete separation: coefficient(s) growing without bound"
            if len(diverging) else "numerical trouble in the Cox fit (ill-conditioned information matrix)")
    _say(report, "model",
         f"{what}{solver}, likely column(s): {', '.join(cols)}{flag}. Hazard ratios and intervals of this fit are "
         "meaningless; use a penalised model (coxph with --param alpha=1, or --model coxnet), drop or merge the "
         "named columns (sparse categories), or reduce the features (PCA).", examples=cols, key="separation")


def check_unseen_levels(column: str, seen: Sequence[Any], values: Sequence[Any], *, action: str = "warn") -> list:
    """Levels of a categorical ``column`` at prediction that training never saw.

    Parameters
    ----------
    action : {"warn", "error", "ignore"}
        ``warn``: one :class:`ModelWarning` naming the column, the levels and how many rows
        (they are encoded as the reference level, i.e. get the reference level's risk);
        ``error``: a :class:`~facefeat.errors.DataError`.

    Returns
    -------
    list of the unseen levels
    """
    from facefeat.errors import ConfigError, DataError

    if action not in ("warn", "error", "ignore"):
        raise ConfigError(f"unknown_levels must be 'warn', 'error' or 'ignore', not {action!r}")
    seen_set = {str(s) for s in seen}
    # a missing value is coded as the level "missing" (FeatureBlock's imputer)
    vals = ["missing" if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in values]
    unseen = sorted({str(v) for v in vals} - seen_set)
    if not unseen or action == "ignore":
        return unseen
    rows = sum(str(v) in set(unseen) for v in vals)
    msg = (f"column {column!r}: level(s) {unseen[:10]} in {rows} row(s) were not seen in training (known: "
           f"{sorted(seen_set)[:10]}); ")
    if action == "error":
        raise DataError(msg + "recode them to a known level, or allow them with unknown_levels='warn' (they then get "
                              "the reference level's risk)")
    warnings.warn(ModelWarning(msg + "they are encoded as the reference level and get its risk. Recode them, or "
                               "pass unknown_levels='error' to refuse such rows.", f"unseen_level:{column}"), stacklevel=3)
    return unseen


def collect_warnings(caught: Sequence[warnings.WarningMessage]) -> dict[str, str]:
    """The :class:`ModelWarning` messages among ``caught``, one per kind (``key`` -> first message)."""
    out: dict[str, str] = {}
    for w in caught:
        if issubclass(w.category, ModelWarning):
            out.setdefault(getattr(w.message, "key", str(w.message)), str(w.message))
    return out
