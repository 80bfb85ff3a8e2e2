"""Feature tables for modelling (through :mod:`facefeat.io.tables`) and clinical tables.

The feature tables are read by :func:`facefeat.io.tables.read_features`, the one reader of the
contract (key ``(image_id, subject_id)``, status rule across tables, flattened names
``<column>_0000``, aggregation rules in :mod:`facefeat.io.features`). This module adds what
modelling needs, each step reported in a :class:`~facefeat.survival.report.DataReport`:

- rows whose ``status`` is not ``ok`` are dropped and counted per status and table, and the
  images ok in some tables but not in all are counted;
- ``diag__*`` columns and the key columns are not features; numeric and boolean columns become
  float64 features, other columns are ignored and counted;
- one photo filed under two subjects keeps one row per subject (and is counted);
- several images of one subject are aggregated by ``mean``, ``first`` or ``most_recent``.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError, InputError
from facefeat.io.features import AGGREGATE_RULES, aggregate_subjects, flat_columns
from facefeat.io.tables import KEY_COLUMNS, REQUIRED_COLUMNS, embedding_shape, feature_tables, read_features, read_schema
from facefeat.survival.report import DataReport

REQUIRED_KEYS = REQUIRED_COLUMNS
#: Non-feature columns carried beside the features when a table has them (the survival layer
#: reports how many photos it used had a face cut by the frame: diag__face_truncated > 0).
CARRIED = ("path", "diag__face_truncated")


def _table_columns(path: Path, keep: Sequence[str]) -> tuple[dict[str, Any], list[str], list[str]]:
    """Feature columns of one table: (schema record, flat feature names, ignored columns)."""
    import pyarrow as pa

    schema = read_schema(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise DataError(f"feature table {path} lacks key column(s) {missing}; a facefeat feature table has "
                        f"{list(KEY_COLUMNS)} on every row.")
    meta = schema.metadata or {}
    record: dict[str, Any] = {"file": path.name, "columns": {},
                              "metadata": {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                                           for k, v in meta.items()}}
    flat: list[str] = []
    ignored: list[str] = []
    for f in schema:
        if f.name in KEY_COLUMNS or f.name in keep or f.name.startswith("diag__"):
            continue
        if pa.types.is_fixed_size_list(f.type):
            shape = embedding_shape(f) if f.metadata and b"shape" in f.metadata else None
            record["columns"][f.name] = {"type": "embedding", "size": f.type.list_size, "shape": shape}
            flat += flat_columns(f.name, f.type.list_size)
        elif pa.types.is_floating(f.type) or pa.types.is_integer(f.type) or pa.types.is_boolean(f.type):
            record["columns"][f.name] = {"type": "scalar"}
            flat.append(f.name)
        else:
            ignored.append(f"{f.name} ({f.type})")
    return record, flat, ignored


def load_feature_table(
    paths_or_dir: str | Path | Sequence[str | Path],
    *,
    keep: Sequence[str] = (),
    report: DataReport | None = None,
) -> pd.DataFrame:
    """Read one or more feature tables into one image-level DataFrame of ok rows.

    Parameters
    ----------
    paths_or_dir : path or list of paths
        Parquet files, or run directories whose ``*.parquet`` files are all read (tables of
        one run; see :func:`facefeat.io.tables.feature_tables`).
    keep : sequence of str
        Extra non-feature columns to keep as they are (e.g. an acquisition date used to
        pick the most recent photo).
    report : DataReport, optional
        Receives the counts of dropped rows, ignored columns and shared photos.

    Returns
    -------
    DataFrame
        Columns ``image_id``, ``subject_id`` (strings), ``path`` and ``diag__face_truncated``
        when present, the ``keep`` columns, then float64 feature columns (embeddings flattened to ``<column>_0000``).
        ``frame.attrs["feature_schema"]`` describes the source columns per file,
        ``frame.attrs["feature_columns"]`` lists the flat feature columns.

    Raises
    ------
    InputError, DataError
        Missing files, a file that is not a feature table, tables of different runs, a key
        twice in a table (the message names the file and the subject).
    """
    report = report if report is not None else DataReport()
    files = feature_tables(paths_or_dir)
    schemas, features = [], []
    for f in files:
        record, flat, ignored = _table_columns(f, keep)
        schemas.append(record)
        features += flat
        if ignored:
            report.add("feature columns", f"{f.name}: ignored {len(ignored)} column(s) that are neither numeric "
                       "features, embeddings, keys nor diagnostics", count=len(ignored), examples=ignored,
                       level="warning")
    df = read_features(files, flatten=True, include_failed=True)
    missing_keep = [c for c in keep if c not in df.columns]
    if missing_keep:
        raise DataError(f"column(s) {missing_keep} requested but not found in {[f.name for f in files]}")
    bad = (df["status"] != "ok").to_numpy()
    per_table = [(f, f"status__{f.stem}" if len(files) > 1 else "status") for f in files]
    for f, col in per_table:
        table_bad = (df[col] != "ok").to_numpy()
        if table_bad.any():
            counts = df.loc[table_bad, col].value_counts()
            detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
            report.add("feature rows", f"{f.name}: dropped {int(table_bad.sum())} of {len(df)} images whose status "
                       f"is not ok ({detail})", count=int(table_bad.sum()), examples=df.loc[table_bad, "image_id"],
                       level="warning")
    if len(files) > 1:
        some_ok = np.zeros(len(df), bool)
        for _, col in per_table:
            some_ok |= (df[col] == "ok").to_numpy()
        partial = bad & some_ok
        if partial.any():
            report.add("feature rows", f"dropped {int(partial.sum())} image(s) that are ok in some tables but "
                       f"failed in another ({', '.join(f.name for f in files)})", count=int(partial.sum()),
                       examples=df.loc[partial, "image_id"], level="warning")
    df = df.loc[~bad].reset_index(drop=True)
    shared = df.groupby("image_id")["subject_id"].nunique()
    shared = shared[shared > 1]
    if len(shared):
        report.add("feature rows", f"{len(shared)} photo(s) are filed under several subjects "
                   f"({int(df['image_id'].isin(shared.index).sum())} rows); each subject keeps its own row",
                   count=len(shared), examples=shared.index)
    out = pd.DataFrame({"image_id": df["image_id"].astype(str), "subject_id": df["subject_id"].astype(str)})
    for c in CARRIED:
        if c in df.columns:
            out[c] = df[c]
    for c in keep:
        out[c] = df[c]
    values = {c: pd.to_numeric(df[c].astype("Float64") if df[c].dtype == object else df[c]).astype(np.float64)
              for c in features}
    out = pd.concat([out, pd.DataFrame(values, index=df.index)], axis=1)
    out.attrs["feature_columns"] = list(features)
    out.attrs["feature_schema"] = schemas
    out.attrs["files"] = [str(f) for f in files]
    return out


def aggregate_images(
    images: pd.DataFrame,
    *,
    rule: str = "mean",
    order_by: str | None = None,
    report: DataReport | None = None,
) -> pd.DataFrame:
    """One row per subject from image-level features.

    Parameters
    ----------
    images : DataFrame
        From :func:`load_feature_table`.
    rule : {"mean", "first", "most_recent"}
        ``mean`` averages each feature over the subject's ok images (NaN skipped);
        ``first`` / ``most_recent`` keep the earliest / latest image by ``order_by``
        (:func:`facefeat.io.features.aggregate_subjects`).
    order_by : str, optional
        Column of sortable values (dates, datetimes, numbers) used by ``first`` and
        ``most_recent``; required for them, so that the choice never depends on file order.

    Returns
    -------
    DataFrame indexed by ``subject_id`` with ``n_images`` and the feature columns.
    """
    report = report if report is not None else DataReport()
    feats = list(images.attrs.get("feature_columns") or [c for c in images.columns if "__" in c])
    out, multi = aggregate_subjects(images, feats, rule=rule, order_by=order_by)
    if len(multi):
        report.add(
            "aggregation",
            f"{len(multi)} subject(s) have several ok photos; combined by rule {rule!r}"
            + (f" ordered by {order_by!r}" if rule != "mean" else ""),
            count=len(multi),
            examples=multi.index,
        )
    out.attrs["feature_columns"] = feats
    out.attrs["feature_schema"] = images.attrs.get("feature_schema")
    return out


# -- clinical tables -------------------------------------------------------------------------

_SEPARATORS = (",", ";", "\t", "|")
_DECIMAL_COMMA = re.compile(r"\s*[+-]?(\d+,\d*|,\d+)([eE][+-]?\d+)?\s*")
_PLAIN_NUMBER = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
_MISSING_TOKENS = {"", "na", "nan", "n/a", "null", "none", "-", "."}


def _sniff_separator(sample: str) -> str:
    lines = [ln for ln in sample.splitlines() if ln.strip()][:20]
    if not lines:
        raise DataError("the clinical table is empty")
    best, best_score = ",", -1.0
    for sep in _SEPARATORS:
        counts = [len(next(csv.reader([ln], delimiter=sep))) - 1 for ln in lines]
        if counts[0] == 0:
            continue
        # a separator that splits the header and every line alike wins
        consistent = sum(c == counts[0] for c in counts) / len(counts)
        score = consistent * 1000 + counts[0]
        if score > best_score:
            best, best_score = sep, score
    return best


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252", "latin-1"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise DataError(f"cannot decode {path} as UTF-8 or Latin-1")


def read_clinical(
    path: str | Path,
    *,
    sep: str | None = None,
    decimal: str | None = None,
    text_columns: Iterable[str] = (),
    report: DataReport | None = None,
) -> pd.DataFrame:
    """Read a clinical table (CSV, TSV, semicolon CSV or Parquet) with numbers as numbers.

    Parameters
    ----------
    path : path
        ``.csv``/``.tsv``/``.txt`` or ``.parquet``.
    sep : str, optional
        Field separator; by default sniffed among ``,``, ``;``, tab and ``|``.
    decimal : {".", ","}, optional
        Decimal mark; by default ``.``, and for files not separated by commas a column whose
        every value is a number written with a decimal comma (``"1,5"``) is converted and the
        conversion reported.
    text_columns : iterable of str
        Columns meant as text or categories even when some values look like numbers.
    report : DataReport, optional

    Returns
    -------
    DataFrame, columns as in the file.

    Raises
    ------
    DataError
        When rows have a different number of fields than the header (often a decimal comma in
        a comma-separated file), or a column mixes numbers and text (rows are named).
    """
    report = report if report is not None else DataReport()
    path = Path(path)
    if not path.is_file():
        raise InputError(f"clinical table {path} does not exist")
    if path.suffix.lower() == ".parquet":
        return pd.read_parquet(path)
    text = _read_text(path)
    if sep is None:
        sep = _sniff_separator(text[:65536])
        if sep != ",":
            report.add("clinical table", f"{path.name}: detected field separator {sep!r}")
    if decimal not in (None, ".", ","):
        raise ConfigError(f"decimal must be '.' or ',', not {decimal!r}")
    if decimal == "," and sep == ",":
        raise ConfigError(
            f"{path.name}: a comma cannot be both the field separator and the decimal mark; "
            "export the table with ';' as separator"
        )
    # pandas silently shifts or truncates rows whose field count differs from the header's
    # (a decimal comma in a comma-separated file does this), so count fields first
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=sep) if r and any(f.strip() for f in r)]
    if not rows:
        raise DataError(f"clinical table {path} is empty")
    width = len(rows[0])
    ragged = [i + 1 for i, r in enumerate(rows) if len(r) != width]
    if ragged:
        hint = (
            " A decimal comma in a comma-separated file does this: export with ';' as separator "
            "(then --sep ';' --decimal , reads it)."
            if sep == ","
            else ""
        )
        raise DataError(
            f"{path.name}: with separator {sep!r} the header has {width} fields but line(s) "
            f"{', '.join(map(str, ragged[:10]))} have {len(rows[ragged[0] - 1])}.{hint}"
        )
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skipinitialspace=True,
            index_col=False, skip_blank_lines=True,
        )
    except pd.errors.ParserError as exc:
        raise DataError(
            f"cannot parse {path} with separator {sep!r}: {exc}. If numbers use a decimal comma, the "
            "file must be separated by ';' (pass --sep ';' --decimal ,)."
        ) from exc
    df.columns = [str(c).strip() for c in df.columns]
    if len(df.columns) == 1 and any(s in df.columns[0] for s in _SEPARATORS if s != sep):
        other = [s for s in _SEPARATORS if s != sep and s in df.columns[0]][0]
        raise DataError(
            f"{path.name} was read as a single column {df.columns[0]!r} with separator {sep!r}; "
            f"it looks separated by {other!r} (pass --sep {other!r})."
        )
    text_cols = set(text_columns)
    for col in df.columns:
        s = df[col].str.strip()
        missing = s.str.lower().isin(_MISSING_TOKENS)
        vals = s[~missing]
        df[col] = s.where(~missing, None)
        if col in text_cols or vals.empty:
            continue
        plain = vals.str.fullmatch(_PLAIN_NUMBER.pattern)
        comma = vals.str.fullmatch(_DECIMAL_COMMA.pattern)
        if decimal != "," and plain.all():
            df[col] = pd.to_numeric(df[col])
            continue
        if decimal == "," or (decimal is None and sep != ","):
            if (plain | comma).all():
                df[col] = pd.to_numeric(df[col].str.replace(",", ".", regex=False))
                if comma.any() and decimal is None:
                    report.add(
                        "clinical table", f"column {col!r}: read decimal commas as decimal points",
                        count=int(comma.sum()),
                    )
                continue
        numeric_like = plain | comma
        if numeric_like.mean() >= 0.5:
            bad = vals.index[~numeric_like]
            raise DataError(
                f"{path.name}: column {col!r} is mostly numbers but has text in rows "
                f"{', '.join(str(i + 2) for i in bad[:10])} (file line numbers), e.g. {vals[bad[0]]!r}"
                + (
                    "; it also has decimal commas, so pass --decimal , (with a ';' separated file)"
                    if comma.any()
                    else ""
                )
                + ". Fix those cells, or declare the column categorical."
            )
    return df
