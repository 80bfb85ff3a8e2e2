"""Rules of the feature-table contract that need no file: names, statuses, aggregation.

:mod:`facefeat.io.tables` reads and writes the files and applies these rules; survival,
explain, report and simulate use the same functions, so a flattened column, a row's status
or a subject's aggregated features mean the same thing everywhere.

- **Flattened names.** Element ``i`` of an embedding column ``c`` is ``c_0000`` ...: the index
  zero-padded to four digits (:data:`FLAT_DIGITS`; a StyleGAN2 W+ latent at 1024 px has
  18 x 512 = 9216 values), so the columns sort in element order everywhere, whatever the
  embedding's size. Row-major over the field's ``shape``.
- **Status across tables.** A row is ``ok`` only where it is ``ok`` in every table read;
  otherwise its status is the first non-ok status in table order (tables sorted by file name,
  i.e. by extractor name). There is no other fallback: a row missing from one table of a run
  is an error, not a status.
- **Several photos per subject.** ``mean`` (feature-wise, NaN skipped), ``first`` or
  ``most_recent`` by an explicit ordering column (never by file order).
"""

from __future__ import annotations

import re
from typing import Sequence

import pandas as pd

from facefeat.errors import ConfigError, DataError

#: Digits of the zero-padded element index of a flattened embedding column.
FLAT_DIGITS = 4
_FLAT = re.compile(rf"^(?P<column>.+)_(?P<index>\d{{{FLAT_DIGITS},}})$")
#: Ways of combining several photos of one subject.
AGGREGATE_RULES = ("mean", "first", "most_recent")


def flat_column(column: str, index: int) -> str:
    """Name of element ``index`` of the embedding ``column`` once flattened.

    Examples
    --------
    >>> flat_column("stylegan2__latent", 7)
    'stylegan2__latent_0007'
    """
    if index < 0:
        raise ValueError(f"element index must be >= 0, got {index}")
    return f"{column}_{index:0{FLAT_DIGITS}d}"


def flat_columns(column: str, size: int) -> list[str]:
    """The ``size`` flattened names of ``column``, in element order."""
    return [flat_column(column, i) for i in range(size)]


def split_flat_column(name: str) -> tuple[str, int] | None:
    """``(column, index)`` of a flattened name, or None for any other name."""
    m = _FLAT.match(name)
    return (m.group("column"), int(m.group("index"))) if m else None


def combine_status(names: Sequence[str], statuses: Sequence[Sequence[str]]) -> list[str]:
    """The status of each row across several tables (see the module notes for the rule).

    Parameters
    ----------
    names : sequence of str
        Table (extractor) names, in table order; used in error messages.
    statuses : sequence of sequences of str
        Per table, the status of each row (rows aligned across tables).

    Raises
    ------
    DataError
        A missing status (a feature table's ``status`` is never null).
    """
    if not statuses:
        return []
    n = len(statuses[0])
    out = ["ok"] * n
    for name, column in zip(names, statuses):
        if len(column) != n:
            raise DataError(f"table {name}: {len(column)} statuses for {n} rows")
        for i, s in enumerate(column):
            if not isinstance(s, str) or not s:
                raise DataError(f"table {name}: row {i} has no status; a feature table's status is never null")
            if out[i] == "ok" and s != "ok":
                out[i] = s
    return out


def combine_errors(names: Sequence[str], errors: Sequence[Sequence[str | None]]) -> list[str | None]:
    """Per row, the tables' error messages as ``"<table>: <message>; ..."`` (None when none)."""
    if not errors:
        return []
    out: list[str | None] = []
    for row in zip(*errors):
        parts = [f"{n}: {e}" for n, e in zip(names, row) if isinstance(e, str) and e]
        out.append("; ".join(parts) or None)
    return out


def aggregate_subjects(images: pd.DataFrame, feature_columns: Sequence[str], *, rule: str = "mean",
                       order_by: str | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """One row per subject from image rows.

    Parameters
    ----------
    images : DataFrame
        Image rows with a ``subject_id`` column (usable rows only).
    feature_columns : sequence of str
        Columns to combine.
    rule : {"mean", "first", "most_recent"}
        ``mean`` averages each feature over the subject's images (NaN skipped); ``first`` /
        ``most_recent`` keep the earliest / latest image by ``order_by``.
    order_by : str, optional
        Column of sortable values (dates, datetimes, numbers), required by ``first`` and
        ``most_recent`` so the choice never depends on file order.

    Returns
    -------
    (DataFrame, Series)
        Features indexed by ``subject_id`` with ``n_images`` first; and the photo count of the
        subjects that had several.

    Raises
    ------
    ConfigError
        Unknown rule, or ``first``/``most_recent`` without ``order_by``.
    DataError
        ``order_by`` missing from the table or not sortable for a subject with several photos.
    """
    if rule not in AGGREGATE_RULES:
        raise ConfigError(f"unknown aggregation rule {rule!r}; use one of {AGGREGATE_RULES}")
    feats = list(feature_columns)
    n_images = images.groupby("subject_id", sort=True).size()
    multi = n_images[n_images > 1]
    if rule == "mean":
        out = images.groupby("subject_id", sort=True)[feats].mean()
    else:
        if not order_by:
            raise ConfigError(
                f"aggregation rule {rule!r} needs an ordering column (order_by / --image-order), "
                "e.g. the acquisition date, so the pick does not depend on file order"
            )
        if order_by not in images.columns:
            raise DataError(f"ordering column {order_by!r} is not in the feature table(s)")
        key = images[order_by]
        if key.dtype == object:
            key = pd.to_datetime(key, errors="coerce")
        bad = key.isna() & images["subject_id"].isin(multi.index)
        if bad.any():
            raise DataError(
                f"ordering column {order_by!r} is missing or not a date for images "
                f"{list(images.loc[bad, 'image_id'][:5])} of subjects {sorted(set(images.loc[bad, 'subject_id']))[:5]} "
                "who have several photos"
            )
        ordered = images.assign(_key=key).sort_values(["subject_id", "_key"], kind="mergesort")
        groups = ordered.groupby("subject_id", sort=True)
        pick = groups.head(1) if rule == "first" else groups.tail(1)
        out = pick.set_index("subject_id")[feats]
    out.insert(0, "n_images", n_images.reindex(out.index).astype(int))
    return out, multi
