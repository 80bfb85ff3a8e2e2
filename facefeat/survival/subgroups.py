"""Subgroup audit of a risk score: discrimination per subgroup and a test of risk x subgroup interaction.

For each grouping variable (a categorical column, or a numeric column cut into bands) and each
of its subgroups: subjects, events and Harrell's C of the risk score with a confidence
interval (jackknife standard error, Wald interval on the logit scale, so inside [0, 1]). A
subgroup with fewer than ``min_events`` events, or with no comparable pair, is listed with the
reason and no C-index, never dropped.

Whether the score works differently across the subgroups is tested once per variable: a Cox
model of time on the (standardised) risk, the subgroup and risk x subgroup, against the same
model without the interaction (likelihood-ratio test, one degree of freedom per extra
subgroup). Subgroups too small to assess are left out of that model and named in the note.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError

COLUMNS = ["variable", "subgroup", "n", "events", "c_index", "ci_low", "ci_high", "interaction_p", "note", "method"]

#: Numeric columns with more distinct values than this are cut into bands (tertiles unless given).
MAX_LEVELS = 10


def _fmt(v: float) -> str:
    return f"{v:g}"


def _labels(col: pd.Series, spec: Any) -> tuple[pd.Series, str]:
    """Subgroup label of each row and how the bands were made."""
    name = str(col.name)
    numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
    if spec is None and (not numeric or col.nunique(dropna=True) <= MAX_LEVELS):
        lab = col.astype(object).where(col.notna(), None).map(lambda v: "(missing)" if v is None else str(v))
        return lab, "levels"
    if not numeric:
        raise ConfigError(f"bands for {name!r}: the column is not numeric")
    x = col.to_numpy(float)
    if spec is None or isinstance(spec, (int, np.integer)):
        q = 3 if spec is None else int(spec)
        if q < 2:
            raise ConfigError(f"bands for {name!r}: need at least 2 quantile bands, got {q}")
        edges = np.unique(np.nanquantile(x, np.linspace(0, 1, q + 1)[1:-1]))
        how = f"{q} quantile bands (cut at {', '.join(_fmt(e) for e in edges)})"
    else:
        edges = np.unique(np.asarray(list(spec), float))
        how = f"bands cut at {', '.join(_fmt(e) for e in edges)}"
    # bands [lo, hi): a value equal to a cut goes to the upper band
    idx = np.searchsorted(edges, x, side="right")
    names = []
    bounds = [-math.inf, *edges, math.inf]
    for k in range(len(bounds) - 1):
        lo, hi = bounds[k], bounds[k + 1]
        if math.isinf(lo):
            names.append(f"< {_fmt(hi)}")
        elif math.isinf(hi):
            names.append(f">= {_fmt(lo)}")
        else:
            names.append(f"[{_fmt(lo)}, {_fmt(hi)})")
    lab = pd.Series([names[i] if np.isfinite(v) else "(missing)" for i, v in zip(idx, x)], index=col.index)
    return lab, how


def _interaction_p(z: np.ndarray, lab: np.ndarray, levels: Sequence[str], time: np.ndarray,
                   event: np.ndarray) -> float:
    """LRT p of risk x subgroup in a Cox model on the rows of ``levels`` (first level = reference)."""
    from scipy.stats import chi2

    from facefeat.survival.cox import fit_cox

    rows = np.isin(lab, levels)
    if len(levels) < 2 or not event[rows].any():
        return math.nan
    zz = z[rows]
    dummies = np.column_stack([(lab[rows] == lev).astype(float) for lev in levels[1:]])
    reduced = np.column_stack([zz, dummies])
    full = np.column_stack([reduced, dummies * zz[:, None]])
    with np.errstate(all="ignore"):
        f_full = fit_cox(full, time[rows], event[rows])
        f_red = fit_cox(reduced, time[rows], event[rows])
    stat = 2 * (f_full["loglik"] - f_red["loglik"])
    if not np.isfinite(stat):
        return math.nan
    return float(chi2.sf(max(stat, 0.0), len(levels) - 1))


def subgroup_audit(
    risk: Any, y: Any, groups: pd.DataFrame, *, bands: Mapping[str, Any] | None = None, min_events: int = 5,
    level: float = 0.95,
) -> pd.DataFrame:
    """Harrell's C of a risk score within subgroups, with intervals and an interaction test.

    Parameters
    ----------
    risk : array-like of shape (n,)
        Risk score (higher = worse), e.g. out-of-fold predictions of a cross-validation.
    y : survival target of the same ``n`` subjects (structured array or DataFrame)
    groups : DataFrame of ``n`` rows
        One column per grouping variable, in the order of ``risk``.
    bands : dict, optional
        Column -> list of cut points (bands ``[a, b)``) or an int (that many quantile bands).
        Numeric columns with more than 10 distinct values and no entry are cut into tertiles.
    min_events : int, default 5
        Subgroups with fewer events get no C-index (listed, with the reason).
    level : float, default 0.95

    Returns
    -------
    DataFrame with columns variable, subgroup, n, events, c_index, ci_low, ci_high,
    interaction_p, note, method; the first row is the whole sample (variable "(all)").
    """
    from facefeat.survival.intervals import harrell_c_se, wald_interval
    from facefeat.survival.target import check_survival_target

    risk = np.asarray(risk, float).ravel()
    event, time = check_survival_target(y, n_samples=len(risk), allow_all_censored=True)
    if not isinstance(groups, pd.DataFrame):
        raise ConfigError("groups must be a DataFrame with one column per grouping variable")
    if len(groups) != len(risk):
        raise DataError(f"groups has {len(groups)} rows but there are {len(risk)} risk scores; align them by subject")
    if not np.all(np.isfinite(risk)):
        raise DataError(f"{int((~np.isfinite(risk)).sum())} risk score(s) are not finite")
    bands = dict(bands or {})
    unknown = [c for c in bands if c not in groups.columns]
    if unknown:
        raise ConfigError(f"bands given for column(s) {unknown} that are not in groups")
    sd = risk.std()
    z = (risk - risk.mean()) / sd if sd > 0 else np.zeros_like(risk)
    method = (f"Harrell's C with a jackknife standard error, {level:.0%} Wald interval on the logit scale; "
              "interaction: likelihood-ratio test of risk x subgroup in a Cox model of time on the standardised "
              "risk and the subgroup")

    def c_row(mask: np.ndarray, variable: str, subgroup: str) -> dict[str, Any]:
        n_ev = int(event[mask].sum())
        row = {"variable": variable, "subgroup": subgroup, "n": int(mask.sum()), "events": n_ev, "c_index": math.nan,
               "ci_low": math.nan, "ci_high": math.nan, "interaction_p": math.nan, "note": "", "method": method}
        if n_ev < min_events:
            row["note"] = f"too small to assess: {n_ev} event(s) < min_events {min_events}"
            return row
        c, se, pairs = harrell_c_se(risk[mask], time[mask], event[mask])
        if pairs == 0:
            row["note"] = "no comparable pair (no event before another subject's follow-up ends)"
            return row
        lo, hi, _ = wald_interval(c, se, bounds=(0.0, 1.0), level=level)
        row.update(c_index=c, ci_low=lo, ci_high=hi)
        if c in (0.0, 1.0):
            row["note"] = "C-index on the boundary: the interval collapses to it"
        return row

    rows = [c_row(np.ones(len(risk), bool), "(all)", "all subjects")]
    for col in groups.columns:
        lab, how = _labels(groups[col].reset_index(drop=True), bands.get(col))
        lab = lab.to_numpy(dtype=object)
        levels = [lv for lv in pd.unique(lab)]
        # order: bands/levels sorted naturally, missing last
        levels = sorted([lv for lv in levels if lv != "(missing)"], key=_sort_key) + \
            (["(missing)"] if "(missing)" in levels else [])
        part = [c_row(lab == lv, str(col), str(lv)) for lv in levels]
        usable = [lv for lv, r in zip(levels, part) if not r["note"].startswith(("too small", "no comparable"))
                  and lv != "(missing)"]
        left_out = [lv for lv in levels if lv not in usable]
        p = _interaction_p(z, lab, usable, time, event) if len(usable) >= 2 else math.nan
        for r in part:
            r["interaction_p"] = p
            extra = [f"{how}"] if how != "levels" else []
            if left_out and len(usable) >= 2:
                extra.append(f"interaction test without {', '.join(map(str, left_out))}")
            elif len(usable) < 2:
                extra.append("no interaction test: fewer than two subgroups large enough")
            r["note"] = "; ".join([t for t in [r["note"], *extra] if t])
        rows.extend(part)
    return pd.DataFrame(rows, columns=COLUMNS)


def _sort_key(label: str) -> tuple:
    """Bands by their lower edge, levels alphabetically (numbers numerically)."""
    s = str(label)
    head = s.lstrip("[<>= ").split(",")[0].strip()
    try:
        return (0, -math.inf if s.startswith("<") else float(head), s)
    except ValueError:
        return (1, 0.0, s)


def subgroup_markdown(table: pd.DataFrame) -> str:
    """The audit as Markdown with the method under it."""
    from facefeat.survival.markdown import markdown_table

    text = markdown_table(table.drop(columns=["method"]), floatfmt=".3f")
    text += "".join(f"\nMethod: {m}.\n" for m in dict.fromkeys(table["method"]))
    return text
