"""Hazard-ratio tables of fitted Cox models: HR, confidence interval, Wald p and the unit of each row.

The numbers are those of R's ``coxph`` and lifelines' ``CoxPHFitter.summary`` for an
unpenalised model: ``HR = exp(coef)``, the interval ``exp(coef +- z * se)`` (always positive)
with ``se`` from the inverse observed information (Efron or Breslow ties, as fitted) and the
two-sided Wald p-value. What a row's hazard ratio is *per* depends on the preprocessing the
model saw, and the ``unit`` column says it:

- a numeric column the pipeline standardised: per standard deviation of the column in the
  training data (the SD is given), or per unit with ``per="unit"``;
- a numeric column used as given: per unit of the column;
- a one-hot column: the level against the reference (first) level;
- a principal component: per unit of the component score;
- late fusion: per SD of the block's out-of-fold risk score.

Penalised models (ridge ``alpha > 0``, coxnet) have no valid Wald standard errors (the penalty
biases the coefficients towards zero and the sandwich of the penalised information does not
give intervals with their nominal coverage), so their table carries coefficients and hazard
ratios with the reason in ``note``; ``n_bootstrap`` adds percentile intervals from refits of
the whole pipeline on bootstrap resamples when the training data are passed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError

COLUMNS = ["term", "unit", "coef", "se", "hr", "ci_low", "ci_high", "p_value", "note", "method"]


def _block_units(blk: Any, prefix: str) -> list[dict[str, Any]]:
    """One entry per output column of a fitted FeatureBlock: its name, unit and scale (SD)."""
    names = [str(n) for n in blk.get_feature_names_out()]
    if getattr(blk, "pca_", None) is not None:
        return [{"term": prefix + n, "unit": "per unit of the principal component score", "sd": None} for n in names]
    out: list[dict[str, Any]] = []
    ct = getattr(blk, "_ct", None)
    num = list(getattr(blk, "numeric_columns_", []))
    cat = list(getattr(blk, "categorical_columns_", []))
    scale = None
    if ct is not None and num:
        pipe = ct.named_transformers_.get("num")
        if pipe is not None and pipe != "passthrough" and "scale" in getattr(pipe, "named_steps", {}):
            scale = pipe.named_steps["scale"].scale_
    for j, c in enumerate(num):
        if scale is not None:
            out.append({"term": prefix + c, "unit": f"per SD of {c} (SD {scale[j]:.4g}, training data)",
                        "sd": float(scale[j]), "column": c})
        else:
            out.append({"term": prefix + c, "unit": f"per unit of {c}", "sd": None, "column": c})
    if cat:
        enc = ct.named_transformers_["cat"].named_steps["onehot"]
        drop = getattr(enc, "drop_idx_", None)
        for k, c in enumerate(cat):
            levels = [str(v) for v in enc.categories_[k]]
            ref = levels[int(drop[k])] if drop is not None and drop[k] is not None else None
            for i, lev in enumerate(levels):
                if ref is not None and i == int(drop[k]):
                    continue
                unit = f"{c} = {lev} vs {ref} (reference)" if ref is not None else f"{c} = {lev} vs not {lev}"
                out.append({"term": None, "unit": unit, "sd": None})
    if len(out) != len(names):  # an encoder we do not know: name the rows, keep the unit honest
        return [{"term": prefix + n, "unit": "per unit of the model feature", "sd": None} for n in names]
    for entry, n in zip(out, names):
        entry["term"] = prefix + n
    return out


def _terms(estimator: Any) -> tuple[list[dict[str, Any]], Any, dict | None]:
    """Rows (term, unit, sd), the Cox model and its stored inference."""
    if getattr(estimator, "fusion", "early") == "late":
        names = list(estimator.block_models_)
        units = [{"term": n, "unit": f"per SD of the {n} block's out-of-fold risk score", "sd": None} for n in names]
        if getattr(estimator, "combiner", "stack") != "stack":
            units = [{"term": "combined", "unit": "per SD of the fixed-weight combined risk score", "sd": None}]
        return units, estimator.combiner_, getattr(estimator, "cox_inference_", None)
    blocks = estimator.blocks_
    units = []
    for name, blk in blocks.items():
        units.extend(_block_units(blk, "" if len(blocks) == 1 else f"{name}:"))
    return units, estimator.model_, getattr(estimator, "cox_inference_", None)


def hazard_ratio_table(
    estimator: Any, *, level: float = 0.95, per: str = "fitted", X: Any = None, y: Any = None,
    n_bootstrap: int = 0, random_state: int | None = 0,
) -> pd.DataFrame:
    """Hazard ratios of a fitted Cox model with interval, Wald p-value and unit of each row.

    Parameters
    ----------
    estimator : fitted :class:`~facefeat.survival.SurvivalEstimator` with a ``coxph`` model
        (early fusion), a ``coxnet`` model (no intervals), or late fusion (the combiner).
    level : float, default 0.95
    per : {"fitted", "unit"}, default "fitted"
        ``fitted``: per unit of the model's input (per SD for standardised columns);
        ``unit``: standardised numeric columns converted back to per unit of the column
        (``coef / SD``), as R or lifelines report a model fitted on the raw columns.
    X, y : training data, optional
        Only for ``n_bootstrap``.
    n_bootstrap : int, default 0
        For penalised models: percentile intervals from refitting a clone of ``estimator`` on
        this many bootstrap resamples of ``(X, y)``.
    random_state : int, optional

    Returns
    -------
    DataFrame with columns term, unit, coef, se, hr, ci_low, ci_high, p_value, note, method
    """
    from scipy.stats import norm

    if per not in ("fitted", "unit"):
        raise ConfigError(f"per must be 'fitted' or 'unit', not {per!r}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level!r}")
    units, model, inf = _terms(estimator)
    kind = type(model).__name__
    if kind not in ("CoxPHSurvivalAnalysis", "CoxnetCV"):
        raise ConfigError(f"hazard ratios need a Cox model (coxph or coxnet); this model is {kind}")
    coef = np.asarray(model.coef_, float).ravel()
    if len(coef) != len(units):
        units = [{"term": f"x{j}", "unit": "per unit of the model feature", "sd": None} for j in range(len(coef))]
    z = float(norm.ppf(0.5 + level / 2))
    pct = f"{level:.0%}"
    alpha = float(inf.get("alpha", 0.0)) if inf else 0.0
    penalised = kind == "CoxnetCV" or alpha > 0
    se = np.full(len(coef), np.nan)
    note = ""
    if penalised:
        what = (f"coxnet (elastic net, l1_ratio {getattr(model, 'l1_ratio', math.nan):g}, alpha "
                f"{getattr(model, 'alpha_', math.nan):.4g})" if kind == "CoxnetCV" else f"ridge-penalised coxph (alpha {alpha:g})")
        note = (f"{what}: penalised coefficients are shrunk towards 0 and have no valid Wald standard error or p-value"
                + ("" if n_bootstrap else "; pass n_bootstrap with the training data for bootstrap intervals"))
        method = "penalised fit: no Wald inference"
    elif inf is None or not np.all(np.isfinite(inf["cov"])):
        note = "no standard errors: " + (inf.get("reason") if inf else "the model kept no inference")
        method = "unpenalised Cox fit; no Wald inference (see note)"
    else:
        se = np.sqrt(np.diag(inf["cov"]))
        method = (f"unpenalised Cox partial likelihood ({inf.get('ties', 'efron')} ties); {pct} Wald interval "
                  "exp(coef +- z se), two-sided Wald p")
        from facefeat.survival.guards import MIN_EVENTS_PER_FEATURE

        epv = inf["events"] / max(len(coef), 1)
        if epv < MIN_EVENTS_PER_FEATURE:
            note = (f"{epv:.1f} events per term (< {MIN_EVENTS_PER_FEATURE:g}): hazard ratios are biased away from 1 "
                    "and the Wald intervals too narrow; prefer a penalised model or fewer terms")
    scale = np.array([u["sd"] if (per == "unit" and u.get("sd")) else 1.0 for u in units])
    b = coef / scale
    s = se / scale
    with np.errstate(over="ignore", invalid="ignore"):
        rows = pd.DataFrame({
            "term": [u["term"] for u in units],
            "unit": [f"per unit of {u['column']}" if (per == "unit" and u.get("sd")) else u["unit"] for u in units],
            "coef": b, "se": s, "hr": np.exp(b), "ci_low": np.exp(b - z * s), "ci_high": np.exp(b + z * s),
            "p_value": 2 * norm.sf(np.abs(b / s)),
            "note": note, "method": method,
        })
    if kind == "CoxnetCV":
        rows.loc[coef == 0, "note"] = "not selected by the elastic net (coefficient 0); " + note
    if n_bootstrap and penalised:
        rows = _bootstrap(rows, estimator, X, y, n_bootstrap=n_bootstrap, scale=scale, level=level,
                          random_state=random_state)
    return rows[COLUMNS]


def _bootstrap(rows: pd.DataFrame, estimator: Any, X: Any, y: Any, *, n_bootstrap: int, scale: np.ndarray,
               level: float, random_state: int | None) -> pd.DataFrame:
    """Percentile intervals of the hazard ratios over refits on bootstrap resamples."""
    import warnings

    from sklearn.base import clone

    from facefeat.errors import DataError
    from facefeat.survival.intervals import bounded_interval
    from facefeat.survival.target import check_survival_target, to_structured

    if X is None or y is None:
        raise ConfigError("bootstrap intervals need the training data: pass X= and y=")
    event, time = check_survival_target(y, n_samples=X.shape[0])
    ys = to_structured(event, time)
    rng = np.random.default_rng(random_state)
    draws = []
    rows_of = X.iloc if isinstance(X, pd.DataFrame) else X
    for _ in range(int(n_bootstrap)):
        idx = rng.integers(0, len(ys), len(ys))
        if not ys["event"][idx].any():
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                est = clone(estimator).fit(rows_of[idx], ys[idx])
            except (ValueError, ArithmeticError, DataError):
                continue
        c = np.asarray((_terms(est)[1]).coef_, float).ravel()
        if len(c) == len(rows):
            draws.append(c / scale)
    if len(draws) < 2:
        raise DataError(f"bootstrap: only {len(draws)} of {n_bootstrap} refits succeeded; no intervals")
    d = np.exp(np.asarray(draws))
    for j in range(len(rows)):
        lo, hi, text = bounded_interval(d[:, j], method="percentile", bounds=(0.0, math.inf), level=level)
        rows.loc[j, ["ci_low", "ci_high"]] = [lo, hi]
    rows["method"] = text + " of the hazard ratio, refitting the whole pipeline (penalty choice included)"
    rows["note"] = rows["note"].str.replace("; pass n_bootstrap with the training data for bootstrap intervals", "",
                                            regex=False) + "; interval by bootstrap, no p-value"
    return rows


def hazard_ratio_markdown(table: pd.DataFrame) -> str:
    """The table as Markdown with its method (and the note, once) under it."""
    from facefeat.survival.markdown import markdown_table

    show = table.drop(columns=["method", "note"])
    text = markdown_table(show, floatfmt=".4g")
    methods = list(dict.fromkeys(table["method"]))
    notes = [n for n in dict.fromkeys(table["note"]) if n]
    text += "\n" + "".join(f"Method: {m}.\n" for m in methods)
    text += "".join(f"Note: {n}.\n" for n in notes)
    return text
