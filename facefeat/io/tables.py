"""Feature tables: the Parquet layout, atomic writes, provenance and readers.

Layout of ``<run>/<extractor>.parquet`` (one row per input image, in input order):

- key columns ``image_id`` (sha256 of the file bytes), ``subject_id``, ``path``, ``status``
  (ok | no_face | multiple_faces | truncated | unreadable | too_large | error) and ``error`` (message,
  null when ok). A failed image is a row with its status, never a missing row.
- engine diagnostics ``diag__*`` (image size, detector score, face box, alignment quad, ...);
- the extractor's columns: ``<extractor>__<feature>`` scalars, fixed-size ``list<float32>``
  embeddings with their ``shape`` in the field metadata, ``diag__<extractor>__*``.

Run provenance is JSON under the schema metadata key ``facefeat``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from facefeat.errors import InputError
from facefeat.io.atomic import atomic_output
from facefeat.io.jsonsafe import dumps_json

PROVENANCE_KEY = b"facefeat"
KEY_COLUMNS = ("image_id", "subject_id", "path", "status", "error")

KEY_FIELDS = [
    pa.field("image_id", pa.string(), nullable=False, metadata={b"description": b"sha256 of the image file bytes"}),
    pa.field("subject_id", pa.string(), nullable=False),
    pa.field("path", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False,
             metadata={b"description": b"ok | no_face | multiple_faces | truncated | unreadable | too_large | error"}),
    pa.field("error", pa.string(), metadata={b"description": b"why the row is not ok (null when ok)"}),
]

#: Diagnostics the engine adds to every table (extractor-specific ones follow the extractor's).
ENGINE_DIAG_FIELDS = [
    pa.field("diag__image_width", pa.int32()),
    pa.field("diag__image_height", pa.int32()),
    pa.field("diag__image_format", pa.string()),
    pa.field("diag__exif_orientation", pa.int8()),
    pa.field("diag__alpha_composited", pa.bool_()),
    pa.field("diag__duplicate_of", pa.string()),
    pa.field("diag__n_faces", pa.int16()),
    pa.field("diag__detector_score", pa.float64()),
    pa.field("diag__face_truncated", pa.float64(), metadata={
        b"description": b"share of the 68 landmarks outside the image frame, 0..1 (> 0: face cut by the frame)"}),
    pa.field("diag__face_box_outside", pa.float64(), metadata={
        b"description": b"share of the face box area outside the image frame, 0..1"}),
    pa.field("diag__face_box", pa.list_(pa.int32(), 4),
             metadata={b"description": b"detector box left, top, right, bottom (inclusive pixels, upright image)"}),
    pa.field("diag__align_quad", pa.list_(pa.float32(), 8),
             metadata={b"shape": b"[4, 2]", b"description": b"FFHQ alignment quad corners (x, y) in the upright image"}),
]


def table_schema(extractor_schema: pa.Schema, provenance: dict | None = None) -> pa.Schema:
    """Full schema of an extractor's table: keys, engine diagnostics, extractor columns."""
    schema = pa.schema(KEY_FIELDS + ENGINE_DIAG_FIELDS + list(extractor_schema))
    if provenance is not None:
        schema = schema.with_metadata({PROVENANCE_KEY: dumps_json(provenance, sort_keys=True).encode()})
    return schema


def write_parquet_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write ``table`` to ``path`` through a temporary file and ``os.replace``.

    A crash at any moment leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    with atomic_output(path, fsync=True) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def read_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance dict stored in a feature table ({} if none)."""
    meta = pq.read_schema(path).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def feature_tables(path: str | Path) -> list[Path]:
    """The feature tables of a run folder (or the single file given).

    Raises
    ------
    InputError
        Nothing to read.
    """
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise InputError(f"{path}: no such run folder or Parquet file")
    files = sorted(p for p in path.glob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise InputError(f"{path}: no feature tables (*.parquet); run 'facefeat extract ... --out {path}' first")
    return files


def summarize_tables(path: str | Path) -> list[dict[str, Any]]:
    """Per-table summary of a run folder (or one table): what ``facefeat inspect`` shows.

    Returns one dict per table: ``path``, ``rows``, ``status_counts`` (status -> rows),
    ``columns`` (``name``, ``type`` and, for embeddings, ``shape``) and ``provenance``.

    Raises
    ------
    InputError
        Nothing to read.
    """
    reports = []
    for file in feature_tables(path):
        pf = pq.ParquetFile(file)
        counts: dict[str, int] = {}
        for s in pq.read_table(file, columns=["status"]).column("status").to_pylist():
            counts[s] = counts.get(s, 0) + 1
        fields = []
        for f in pf.schema_arrow:
            meta = {k.decode(): v.decode() for k, v in (f.metadata or {}).items()}
            fields.append({"name": f.name, "type": str(f.type), **({"shape": meta["shape"]} if "shape" in meta else {})})
        reports.append({"path": str(file), "rows": pf.metadata.num_rows, "status_counts": counts,
                        "columns": fields, "provenance": read_provenance(file)})
    return reports


def flatten_table(table: pa.Table) -> pa.Table:
    """Expand every fixed-size list column into wide float columns ``<name>_<i>``.

    The index is zero-padded to the width of the largest index so the columns sort
    naturally (``..._000`` to ``..._127``). Null rows stay null in every wide column.
    """
    import numpy as np

    columns, names = [], []
    for field, column in zip(table.schema, table.columns):
        if pa.types.is_fixed_size_list(field.type):
            n = field.type.list_size
            width = len(str(n - 1))
            column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
            values = column.flatten().to_numpy(zero_copy_only=False)
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            full = np.full((len(column), n), np.nan, dtype=np.float32 if pa.types.is_float32(field.type.value_type) else np.float64)
            full[valid] = values.reshape(-1, n)
            mask = ~valid
            for i in range(n):
                columns.append(pa.array(full[:, i], mask=mask))
                names.append(f"{field.name}_{i:0{width}d}")
        else:
            columns.append(column)
            names.append(field.name)
    return pa.Table.from_arrays(columns, names=names)


def read_features(
    path: str | Path,
    *,
    flatten: bool = False,
    extractors: Sequence[str] | None = None,
    status: str | Iterable[str] | None = None,
):
    """Read a run's feature tables into one pandas DataFrame, one row per image.

    Parameters
    ----------
    path : path
        A run folder (all ``*.parquet`` tables, joined on ``image_id`` and ``subject_id``) or
        one table.
    flatten : bool, default False
        Expand embedding list columns into wide ``<column>_<i>`` float columns, for
        statisticians and tools without list support.
    extractors : sequence of str, optional
        Only these tables (by extractor name = file stem).
    status : str or iterable of str, optional
        Keep only rows with these statuses (e.g. ``"ok"``). By default every row is kept.

    Returns
    -------
    pandas.DataFrame
        Key columns first. When several tables are joined, ``status`` is ``ok`` only where
        every table says ok (otherwise the first non-ok status), ``error`` joins the messages,
        the engine's ``diag__*`` columns come from the first table, and each table's own
        status is kept as ``status__<extractor>``.
    """
    files = feature_tables(path)
    if extractors is not None:
        wanted = set(extractors)
        missing = wanted - {f.stem for f in files}
        if missing:
            raise InputError(f"{path}: no table for extractor(s) {', '.join(sorted(missing))}; have {', '.join(f.stem for f in files)}")
        files = [f for f in files if f.stem in wanted]
    tables = [pq.read_table(f) for f in files]
    if flatten:
        tables = [flatten_table(t) for t in tables]
    frames = [t.to_pandas(types_mapper=None) for t in tables]
    if len(frames) == 1:
        df = frames[0]
    else:
        df = _join(frames, [f.stem for f in files])
    if status is not None:
        allowed = {status} if isinstance(status, str) else set(status)
        df = df[df["status"].isin(allowed)].reset_index(drop=True)
    return df


def _join(frames, names):
    import pandas as pd

    engine_diag = {f.name for f in ENGINE_DIAG_FIELDS}
    base = frames[0].rename(columns={"status": f"status__{names[0]}", "error": f"error__{names[0]}"})
    for frame, name in zip(frames[1:], names[1:]):
        own = [c for c in frame.columns if c not in KEY_COLUMNS and c not in engine_diag]
        part = frame[["image_id", "subject_id", "status", "error"] + own].rename(
            columns={"status": f"status__{name}", "error": f"error__{name}"}
        )
        base = base.merge(part, on=["image_id", "subject_id"], how="outer", sort=False)
    status_cols = [f"status__{n}" for n in names]
    error_cols = [f"error__{n}" for n in names]

    def _status(row):
        for c in status_cols:
            if row[c] != "ok":
                return row[c] if isinstance(row[c], str) else "error"
        return "ok"

    base.insert(3, "status", base.apply(_status, axis=1))
    errors = base[error_cols].apply(lambda r: "; ".join(f"{n}: {e}" for n, e in zip(names, r) if isinstance(e, str) and e) or None, axis=1)
    base.insert(4, "error", errors)
    return base.drop(columns=error_cols).reset_index(drop=True) if not base.empty else pd.DataFrame(base)
