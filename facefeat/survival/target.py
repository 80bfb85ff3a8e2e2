"""The survival target: validation of event and time, in scikit-survival's layout.

A target is a structured array with a boolean ``event`` field first and a float ``time``
field second (scikit-survival's convention). :func:`check_survival_target` also accepts a
pandas DataFrame with named event and time columns, or a 2-column array. Every problem
raises :class:`~facefeat.errors.DataError` naming the column and the offending rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError

#: Values accepted for an event indicator (case-insensitive for strings).
EVENT_TRUE = {1, True, "1", "true", "yes", "dead", "event"}
EVENT_FALSE = {0, False, "0", "false", "no", "alive", "censored"}

#: Names tried, in order, when a DataFrame target does not say which column is which.
EVENT_NAMES = ("event", "status", "cens", "death", "dead", "fstat", "vitalstatus")
TIME_NAMES = ("time", "duration", "survival_time", "lenfol", "futime", "os_time")


def _rows(index: Any, limit: int = 10) -> str:
    """A short human-readable list of row labels."""
    items = [str(i) for i in list(index)[:limit]]
    more = len(index) - len(items)
    return ", ".join(items) + (f" and {more} more" if more > 0 else "")


def coerce_event(values: Any, *, column: str = "event", index: Any = None) -> np.ndarray:
    """Turn an event column into booleans; anything but 0/1/True/False raises.

    Strings ``"0"``, ``"1"``, ``"true"``, ``"false"`` (any case) are accepted as well. Codings such
    as 1/2 (R's ``Surv``: 1 = censored, 2 = dead) are refused: guessing their meaning is how
    survival analyses go silently wrong.
    """
    s = pd.Series(values, index=index)
    missing = s.isna()
    if missing.any():
        raise DataError(
            f"event column {column!r} has {int(missing.sum())} missing value(s) in rows "
            f"{_rows(s.index[missing])}; fill them in or remove those subjects."
        )
    if s.dtype == bool:
        return s.to_numpy(dtype=bool)

    def norm(v: Any) -> Any:
        if isinstance(v, str):
            return v.strip().lower()
        if isinstance(v, (float, np.floating)) and float(v).is_integer():
            return int(v)
        if isinstance(v, (np.integer, np.bool_)):
            return int(v)
        return v

    normed = s.map(norm)
    is_true = normed.map(lambda v: v in EVENT_TRUE)
    is_false = normed.map(lambda v: v in EVENT_FALSE)
    bad = ~(is_true | is_false)
    if bad.any():
        found = sorted({repr(v) for v in s[bad]})[:8]
        raise DataError(
            f"event column {column!r} must be coded 0/1 or True/False (1 = event); found "
            f"{', '.join(found)} in rows {_rows(s.index[bad])}. Recode it (for R's 1/2 coding, "
            f"event = status - 1) and try again."
        )
    return is_true.to_numpy(dtype=bool)


def coerce_time(values: Any, *, column: str = "time", index: Any = None) -> np.ndarray:
    """Turn a time column into positive finite floats; anything else raises."""
    s = pd.Series(values, index=index)
    if s.dtype == object or isinstance(s.dtype, pd.StringDtype):
        num = pd.to_numeric(s, errors="coerce")
        bad = num.isna() & s.notna()
        if bad.any():
            sample = ", ".join(repr(v) for v in s[bad].iloc[:5])
            hint = (
                " They look like decimal commas: read the file with decimal=',' (CLI: --decimal ,)."
                if s[bad].astype(str).str.fullmatch(r"\s*[+-]?\d+,\d+\s*").any()
                else ""
            )
            raise DataError(
                f"time column {column!r} is not numeric: {sample} in rows {_rows(s.index[bad])}.{hint}"
            )
        s = num
    s = s.astype(float)
    missing = s.isna()
    if missing.any():
        raise DataError(
            f"time column {column!r} has {int(missing.sum())} missing value(s) in rows "
            f"{_rows(s.index[missing])}; fill them in or remove those subjects."
        )
    inf = ~np.isfinite(s.to_numpy())
    if inf.any():
        raise DataError(f"time column {column!r} has infinite values in rows {_rows(s.index[inf])}.")
    nonpos = s <= 0
    if nonpos.any():
        raise DataError(
            f"time column {column!r} must be > 0; found {int(nonpos.sum())} value(s) <= 0 in rows "
            f"{_rows(s.index[nonpos])} (e.g. {s[nonpos].iloc[0]!r}). Check the date arithmetic; "
            f"same-day events are usually recorded as a small positive time such as 0.5 day."
        )
    return s.to_numpy(dtype=float)


def make_survival_target(event: Any, time: Any, *, index: Any = None) -> np.ndarray:
    """Build a validated scikit-survival structured array ``[('event', bool), ('time', float)]``."""
    ev = coerce_event(event, index=index)
    tm = coerce_time(time, index=index)
    if len(ev) != len(tm):
        raise DataError(f"event has {len(ev)} values but time has {len(tm)}")
    y = np.empty(len(ev), dtype=[("event", bool), ("time", float)])
    y["event"] = ev
    y["time"] = tm
    return y


def _pick(columns: list[str], names: tuple[str, ...], what: str) -> str:
    lower = {c.lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    raise DataError(
        f"cannot tell which column of the target holds the {what}: columns are {columns}; "
        f"name it {names[0]!r} or pass a structured array (event, time)."
    )


def check_survival_target(y: Any, *, n_samples: int | None = None, allow_all_censored: bool = False):
    """Validate a survival target and return ``(event, time)`` arrays.

    Parameters
    ----------
    y : structured array, DataFrame or array of shape (n, 2)
        Structured array: the first field is the event indicator and the second the time
        (scikit-survival's convention, whatever the field names). DataFrame: columns named like
        ``event``/``status`` and ``time``/``duration`` (two-column frames are read as event, time).
    n_samples : int, optional
        Expected number of rows (``len(X)``).
    allow_all_censored : bool, default False
        Whether a target without any event is acceptable (scoring can allow it; fitting cannot).

    Returns
    -------
    event : ndarray of bool
    time : ndarray of float
    """
    if isinstance(y, pd.DataFrame):
        cols = [str(c) for c in y.columns]
        if len(cols) == 2 and not any(c.lower() in EVENT_NAMES for c in cols):
            ev_col, tm_col = y.columns[0], y.columns[1]
        else:
            ev_col = y.columns[cols.index(_pick(cols, EVENT_NAMES, "event indicator"))]
            tm_col = y.columns[cols.index(_pick(cols, TIME_NAMES, "time"))]
        event = coerce_event(y[ev_col].to_numpy(), column=str(ev_col), index=y.index)
        time = coerce_time(y[tm_col].to_numpy(), column=str(tm_col), index=y.index)
    elif isinstance(y, np.ndarray) and y.dtype.names is not None:
        if len(y.dtype.names) != 2:
            raise DataError(
                f"a structured survival target needs exactly two fields (event, time); got {y.dtype.names}"
            )
        ev_name, tm_name = y.dtype.names
        event = coerce_event(y[ev_name], column=ev_name)
        time = coerce_time(y[tm_name], column=tm_name)
    else:
        arr = np.asarray(y)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise DataError(
                "y must be a structured array (event, time), a DataFrame with event and time "
                f"columns, or an array of shape (n, 2); got shape {arr.shape}. Build one with "
                "sksurv.util.Surv.from_arrays(event, time) or facefeat.survival.make_survival_target."
            )
        event = coerce_event(arr[:, 0], column="y[:, 0]")
        time = coerce_time(arr[:, 1], column="y[:, 1]")
    if n_samples is not None and len(event) != n_samples:
        raise DataError(f"X has {n_samples} rows but y has {len(event)}; they must match row for row.")
    if not allow_all_censored and not event.any():
        raise DataError(
            f"all {len(event)} subjects are censored (no event): a survival model cannot be fitted "
            "or assessed. Check the event coding (1 = event)."
        )
    return event, time


def to_structured(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Pack already-validated arrays into scikit-survival's structured layout."""
    y = np.empty(len(event), dtype=[("event", bool), ("time", float)])
    y["event"] = event
    y["time"] = time
    return y
def training_target(estimator: Any) -> np.ndarray:
    """The training target a fitted estimator remembers (``y_train_``), looking inside
    pipelines and fitted searches."""
    seen = estimator
    for _ in range(10):
        if hasattr(seen, "y_train_"):
            return seen.y_train_
        if hasattr(seen, "best_estimator_"):
            seen = seen.best_estimator_
        elif hasattr(seen, "steps"):
            seen = seen.steps[-1][1]
        elif hasattr(seen, "estimator_"):
            seen = seen.estimator_
        else:
            break
    raise ConfigError(
        f"{type(estimator).__name__} does not remember its training target; IPCW metrics need it. "
        "Use facefeat.survival.SurvivalEstimator, pass y_train=..., or wrap the model with "
        "sksurv.metrics.as_concordance_index_ipcw_scorer."
    )
