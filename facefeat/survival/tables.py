"""Reading feature tables and clinical tables, and joining them per subject.

This holds a minimal reader of the engine's Parquet feature tables (one row per image; key
columns ``image_id``, ``subject_id``, ``path``, ``status``, ``error``; scalar features
``<extractor>__<feature>``; embeddings as fixed-size list columns; diagnostics ``diag__*``).
It is meant to be merged with :func:`facefeat.read_features` once the engine ships it.

Handling rules, each reported in a :class:`~facefeat.survival.report.DataReport`:

- rows whose ``status`` is not ``ok`` are dropped and counted per status and table;
- ``diag__*`` columns and the key columns are not features;
- fixed-size list columns are flattened to ``<column>_<i>`` float columns (row-major);
- with several tables, an image must be ``ok`` in every table to be kept;
- several images of one subject are aggregated by ``mean`` (feature-wise, NaN-skipping),
  ``first`` or ``most_recent`` (by an explicit ordering column).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError, InputError
from facefeat.survival.report import DataReport

KEY_COLUMNS = ("image_id", "subject_id", "path", "status", "error")
REQUIRED_KEYS = ("image_id", "subject_id", "status")
#: Non-feature columns carried beside the features when a table has them (the survival layer
#: reports how many photos it used had a face cut by the frame: diag__face_truncated > 0).
CARRIED = ("path", "diag__face_truncated")
AGGREGATE_RULES = ("mean", "first", "most_recent")


def _feature_files(paths: str | Path | Sequence[str | Path]) -> list[Path]:
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found = sorted(f for f in p.glob("*.parquet") if not f.name.startswith("."))
            if not found:
                raise InputError(f"no .parquet feature table in {p}; point --features at a run directory")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"feature table {p} does not exist")
    return files


def _read_one(path: Path, keep: Sequence[str], report: DataReport) -> tuple[pd.DataFrame, dict]:
    """Read one Parquet table: ok rows only, features flattened; returns (frame, schema)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"cannot read feature table {path}: {exc}") from exc
    missing = [c for c in REQUIRED_KEYS if c not in table.column_names]
    if missing:
        raise DataError(
            f"feature table {path} lacks key column(s) {missing}; a facefeat feature table has "
            f"{list(KEY_COLUMNS)} on every row."
        )
    status = table.column("status").to_pandas().astype("string")
    counts = status.value_counts(dropna=False)
    n_bad = int((status != "ok").fillna(True).sum())
    if n_bad:
        detail = ", ".join(f"{k}: {v}" for k, v in counts.items() if k != "ok")
        bad_ids = table.column("image_id").to_pandas()[(status != "ok").fillna(True).to_numpy()]
        report.add(
            "feature rows",
            f"{path.name}: dropped {n_bad} of {table.num_rows} images whose status is not ok ({detail})",
            count=n_bad,
            examples=bad_ids,
            level="warning",
        )
    table = table.filter(pc.equal(table.column("status"), "ok"))

    schema: dict[str, Any] = {"file": path.name, "columns": {}}
    meta = table.schema.metadata or {}
    schema["metadata"] = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in meta.items()}
    out: dict[str, Any] = {"image_id": table.column("image_id").to_pandas().astype(str).to_numpy()}
    out["subject_id"] = table.column("subject_id").to_pandas().astype(str).to_numpy()
    for name in CARRIED:
        if name in table.column_names:
            out[name] = table.column(name).to_pandas().to_numpy()
    ignored: list[str] = []
    for name in table.column_names:
        if name in KEY_COLUMNS:
            continue
        col = table.column(name)
        if name in keep:
            out[name] = col.to_pandas().to_numpy()
            continue
        if name.startswith("diag__"):
            continue
        typ = col.type
        if pa.types.is_fixed_size_list(typ):
            k = typ.list_size
            arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
            values = arr.values.slice(arr.offset * k, len(arr) * k)
            mat = values.to_numpy(zero_copy_only=False).astype(np.float64).reshape(len(arr), k)
            if arr.null_count:
                mat[arr.is_null().to_numpy(zero_copy_only=False)] = np.nan
            field = table.schema.field(name)
            shape = None
            if field.metadata and b"shape" in field.metadata:
                shape = json.loads(field.metadata[b"shape"])
            schema["columns"][name] = {"type": "embedding", "size": k, "shape": shape}
            for i in range(k):
                out[f"{name}_{i}"] = mat[:, i]
        elif pa.types.is_floating(typ) or pa.types.is_integer(typ) or pa.types.is_boolean(typ):
            out[name] = col.to_pandas().to_numpy(dtype=np.float64, na_value=np.nan)
            schema["columns"][name] = {"type": "scalar"}
        else:
            ignored.append(f"{name} ({typ})")
    if ignored:
        report.add(
            "feature columns",
            f"{path.name}: ignored {len(ignored)} column(s) that are neither numeric features, "
            "embeddings, keys nor diagnostics",
            count=len(ignored),
            examples=ignored,
            level="warning",
        )
    frame = pd.DataFrame(out)
    return frame, schema


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
        Parquet files, or run directories whose ``*.parquet`` files are all read.
    keep : sequence of str
        Extra non-feature columns to keep as they are (e.g. an acquisition date used to
        pick the most recent photo).
    report : DataReport, optional
        Receives the counts of dropped rows and ignored columns.

    Returns
    -------
    DataFrame
        Columns ``image_id``, ``subject_id`` (strings), ``path`` when present, the ``keep``
        columns, then float feature columns (embeddings flattened to ``<column>_<i>``).
        ``frame.attrs["feature_schema"]`` describes the source columns per file,
        ``frame.attrs["feature_columns"]`` lists the flat feature columns.
    """
    report = report if report is not None else DataReport()
    files = _feature_files(paths_or_dir)
    merged: pd.DataFrame | None = None
    schemas = []
    for f in files:
        frame, schema = _read_one(f, keep, report)
        schemas.append(schema)
        dup = frame["image_id"].duplicated()
        if dup.any():
            raise DataError(
                f"feature table {f} has {int(dup.sum())} duplicate image_id value(s) among ok rows "
                f"(e.g. {frame['image_id'][dup].iloc[0]}); a table has one row per image."
            )
        if merged is None:
            merged = frame
            continue
        clash = [c for c in frame.columns if c in merged.columns and c not in ("image_id", "subject_id", *CARRIED, *keep)]
        if clash:
            raise DataError(f"feature column(s) {clash[:5]} appear in {f.name} and in an earlier table")
        frame = frame.drop(columns=[c for c in (*CARRIED, *keep) if c in frame.columns and c in merged.columns])
        # an outer merge sorts by key: keep the first table's row order
        merged = merged.assign(_order=np.arange(len(merged)))
        joined = merged.merge(frame, on="image_id", how="outer", suffixes=("", "__other"), indicator=True)
        partial = joined["_merge"] != "both"
        if partial.any():
            report.add(
                "feature rows",
                f"dropped {int(partial.sum())} image(s) that are ok in some tables but missing or "
                f"failed in another (now joining {f.name})",
                count=int(partial.sum()),
                examples=joined.loc[partial, "image_id"],
                level="warning",
            )
        joined = joined[~partial].sort_values("_order").drop(columns=["_merge", "_order"])
        other = joined.pop("subject_id__other")
        mismatch = other.to_numpy() != joined["subject_id"].to_numpy()
        if mismatch.any():
            raise DataError(
                f"image(s) {list(joined.loc[mismatch, 'image_id'][:3])} have a different subject_id in "
                f"{f.name} than in an earlier table; the tables come from different manifests."
            )
        merged = joined.reset_index(drop=True)
    assert merged is not None
    meta_cols = ["image_id", "subject_id"] + [c for c in (*CARRIED, *keep) if c in merged.columns]
    missing_keep = [c for c in keep if c not in merged.columns]
    if missing_keep:
        raise DataError(f"column(s) {missing_keep} requested but not found in {[f.name for f in files]}")
    merged.attrs["feature_columns"] = [c for c in merged.columns if c not in meta_cols]
    merged.attrs["feature_schema"] = schemas
    merged.attrs["files"] = [str(f) for f in files]
    return merged


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
        ``first`` / ``most_recent`` keep the earliest / latest image by ``order_by``.
    order_by : str, optional
        Column of sortable values (dates, datetimes, numbers) used by ``first`` and
        ``most_recent``; required for them, so that the choice never depends on file order.

    Returns
    -------
    DataFrame indexed by ``subject_id`` with the feature columns and ``n_images``.
    """
    report = report if report is not None else DataReport()
    if rule not in AGGREGATE_RULES:
        raise ConfigError(f"unknown aggregation rule {rule!r}; use one of {AGGREGATE_RULES}")
    feats = list(images.attrs.get("feature_columns") or [c for c in images.columns if "__" in c])
    n_images = images.groupby("subject_id").size()
    multi = n_images[n_images > 1]
    if rule == "mean":
        out = images.groupby("subject_id")[feats].mean()
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
                f"{list(images.loc[bad, 'image_id'][:5])} of subjects with several photos"
            )
        ordered = images.assign(_key=key).sort_values(["subject_id", "_key"], kind="mergesort")
        pick = ordered.groupby("subject_id").head(1) if rule == "first" else ordered.groupby("subject_id").tail(1)
        out = pick.set_index("subject_id")[feats]
    out.insert(0, "n_images", n_images.reindex(out.index).astype(int))
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
