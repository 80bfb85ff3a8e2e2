"""Feature tables: the Parquet layout, listing a run's tables, writing them, and path redaction.

This module is the only code that opens feature-table files; every other part of facefeat
calls it. The rules that need no file (the status rule across tables, flattened column names,
aggregation of several photos per subject) are in :mod:`facefeat.io.features`. The
contract is documented in ``docs/tables.md`` and ``schemas/feature-table.schema.json``.

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
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from facefeat.errors import DataError, InputError
from facefeat.io.atomic import atomic_output
from facefeat.io.features import combine_errors, combine_status, flat_columns
from facefeat.io.jsonsafe import dumps_json, to_jsonable

PROVENANCE_KEY = b"facefeat"
#: Columns every row carries (``path`` may be absent: tables written without file names).
KEY_COLUMNS = ("image_id", "subject_id", "path", "status", "error")
#: The row key of every feature table: one photo may belong to two subjects (two rows).
KEY = ("image_id", "subject_id")
#: Columns a file must have to be read as a feature table.
REQUIRED_COLUMNS = ("image_id", "subject_id", "status")
#: Value of ``input.source`` and of other removed strings in redacted provenance.
REDACTED = "(removed: file names are not written)"

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
    pa.field("diag__face_truncated_box", pa.float64(), metadata={
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
    return _provenance_of(read_schema(path))


def _is_table_file(p: Path) -> bool:
    return p.suffix == ".parquet" and not p.name.startswith(".")


def feature_tables(path: str | Path | Sequence[str | Path], *, check: bool = True) -> list[Path]:
    """The feature tables of a run folder, or the files given, checked to belong together.

    Parameters
    ----------
    path : path or sequence of paths
        A run folder (its ``*.parquet`` files, sorted by name = extractor order), one table,
        or several tables / folders.
    check : bool, default True
        Refuse files that are not feature tables (no ``image_id``, ``subject_id``, ``status``)
        and tables whose provenance says they were made from other inputs or with other
        preprocessing than the first table (two runs are never merged).

    Raises
    ------
    InputError
        Nothing to read, or a path that does not exist.
    DataError
        A file that is not a feature table, or tables of different runs.
    """
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths:
        raise InputError("no feature table given")
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and _is_table_file(f))
            if not found:
                raise InputError(f"{p}: no feature tables (*.parquet); run 'facefeat extract ... --out {p}' first")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such run folder or feature table (.parquet)")
    seen = [f.resolve() for f in files]
    if len(set(seen)) != len(seen):
        raise InputError(f"the same feature table is given twice: {[str(f) for f in files]}")
    if check:
        _check_same_run(files)
    return files


def _run_identity(prov: dict[str, Any]) -> dict[str, Any]:
    """What the tables of one run share: the input set and the preprocessing."""
    inp = prov.get("input") or {}
    out = {}
    if inp.get("manifest_sha256"):
        out["input (manifest_sha256)"] = inp["manifest_sha256"]
    if prov.get("preprocessing"):
        out["preprocessing"] = dumps_json(prov["preprocessing"], sort_keys=True)
    return out


def _check_same_run(files: Sequence[Path]) -> None:
    first: tuple[Path, dict] | None = None
    for f in files:
        schema = read_schema(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
        if missing:
            raise DataError(f"{f} is not a facefeat feature table: it lacks the key column(s) {missing} "
                            f"(every row has {list(KEY_COLUMNS)}); move it out of the run folder or do not pass it")
        ident = _run_identity(_provenance_of(schema))
        if first is None:
            first = (f, ident)
            continue
        for what in set(ident) & set(first[1]):
            if ident[what] != first[1][what]:
                raise DataError(f"{f} and {first[0]} come from different runs (their {what} differ); a run "
                                f"folder holds the tables of one input set and one config. Read them separately "
                                f"or re-extract into one folder")


def read_schema(path: str | Path) -> pa.Schema:
    """The Arrow schema (with field and provenance metadata) of a feature table.

    Raises
    ------
    InputError
        The file is missing or not a readable Parquet file.
    """
    try:
        return pq.read_schema(path)
    except FileNotFoundError:
        raise InputError(f"feature table {path} does not exist") from None
    except Exception as exc:  # pyarrow raises several types for a bad file
        raise InputError(f"cannot read feature table {path}: {exc}") from exc


def read_table(path: str | Path, *, columns: Sequence[str] | None = None) -> pa.Table:
    """One feature table as Arrow (all columns, or ``columns``), with its metadata.

    Raises
    ------
    InputError
        The file is missing or not a readable Parquet file.
    DataError
        A requested column is not in the table.
    """
    if columns is not None:
        names = read_schema(path).names
        absent = [c for c in columns if c not in names]
        if absent:
            raise DataError(f"feature table {path} has no column(s) {absent}")
    try:
        return pq.read_table(path, columns=None if columns is None else list(columns))
    except FileNotFoundError:
        raise InputError(f"feature table {path} does not exist") from None
    except Exception as exc:
        raise InputError(f"cannot read feature table {path}: {exc}") from exc


def _provenance_of(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(PROVENANCE_KEY)
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def embedding_shape(field: pa.Field) -> list[int]:
    """Logical shape of an embedding column from its field metadata (``[size]`` if none given).

    Raises
    ------
    DataError
        The metadata shape does not hold the list size.
    """
    size = field.type.list_size
    meta = field.metadata or {}
    if b"shape" not in meta:
        return [size]
    shape = [int(v) for v in json.loads(meta[b"shape"])]
    n = 1
    for v in shape:
        n *= v
    if n != size:
        raise DataError(f"column {field.name!r}: field metadata shape {shape} does not hold its {size} values")
    return shape


# -- writing ------------------------------------------------------------------------------------

def assemble_table(extractor_schema: pa.Schema, columns: dict[str, Any], *, provenance: dict | None = None,
                   paths: bool = True) -> pa.Table:
    """Build a feature table in the standard layout from column values.

    Parameters
    ----------
    extractor_schema : pyarrow.Schema
        The extractor's ``output_schema()``.
    columns : dict
        Column name -> values (Arrow arrays or sequences). ``image_id``, ``subject_id``,
        ``status`` are required (and ``path`` unless ``paths=False``); any other column of the
        layout that is not given is null.
    provenance : dict, optional
        Stored under the schema metadata key ``facefeat``.
    paths : bool, default True
        Write the ``path`` column (see :func:`redact_paths`).

    Raises
    ------
    DataError
        A required column is missing, or a column that is not in the layout is given.
    """
    schema = table_schema(extractor_schema, provenance)
    stray = sorted(set(columns) - set(schema.names))
    if stray:
        raise DataError(f"column(s) {stray} are not in the table layout of {extractor_schema.names}")
    required = [c for c in REQUIRED_COLUMNS + (("path",) if paths else ()) if c not in columns]
    if required:
        raise DataError(f"a feature table needs the column(s) {required}")
    n = len(columns["image_id"])
    arrays = []
    for f in schema:
        v = columns.get(f.name)
        if v is None:
            arrays.append(pa.nulls(n, f.type))
        else:
            arrays.append(v if isinstance(v, (pa.Array, pa.ChunkedArray)) else pa.array(v, f.type))
    if not paths and "path" not in columns:
        arrays[schema.get_field_index("path")] = pa.array([""] * n, pa.string())
    table = pa.Table.from_arrays(arrays, schema=schema)
    return table if paths else redact_paths(table)


def row_groups(path: str | Path) -> int:
    """Number of row groups of a feature table (the unit a streamed merge reads)."""
    return pq.ParquetFile(path).num_row_groups


def read_row_group(path: str | Path, index: int, *, columns: Sequence[str] | None = None) -> pa.Table:
    """Row group ``index`` of a feature table (all columns, or ``columns``)."""
    return pq.ParquetFile(path).read_row_group(index, columns=None if columns is None else list(columns))


@contextmanager
def table_writer(path: str | Path, schema: pa.Schema) -> Iterator[Callable[[pa.Table], None]]:
    """Write a feature table block by block, atomically: yields ``write(block, row_group_size)``.

    The file appears (replacing an older one) only when the block exits without an exception.
    """
    with atomic_output(path, fsync=True) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            def write(block: pa.Table, row_group_size: int | None = None) -> None:
                writer.write_table(block, row_group_size=row_group_size or max(1, block.num_rows))

            yield write


def conform_table(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema`` without metadata; a table written without paths (``--no-paths``)
    gets an empty ``path`` column back, so it can be merged with new rows and redacted again."""
    if "path" in schema.names and "path" not in table.column_names:
        table = table.add_column(schema.get_field_index("path"), schema.field("path"),
                                 pa.array([""] * table.num_rows, pa.string()))
    return table.replace_schema_metadata(None).select(schema.names).cast(schema)


def write_feature_table(table: pa.Table, path: str | Path, *, paths: bool = True) -> Path:
    """Write a feature table atomically; without file names when ``paths`` is False.

    With ``paths=False`` the table goes through :func:`redact_paths` first (no ``path``
    column, no file names in other columns or in the provenance).
    """
    return write_parquet_atomic(table if paths else redact_paths(table), path)


def path_columns(schema: pa.Schema) -> list[str]:
    """Columns whose values are file paths: ``path`` and ``diag__<extractor>__reconstruction``."""
    return [n for n in schema.names if n == "path" or (n.startswith("diag__") and n.endswith("__reconstruction"))]


def redact_paths(table: pa.Table, *, names: Iterable[str] = (), owners: dict[str, str] | None = None) -> pa.Table:
    """The table without file names: what ``--no-paths`` writes and exports start from.

    - ``path`` and reconstruction-PNG path columns are dropped;
    - ``diag__duplicate_of`` (path of an earlier file with the same bytes) becomes the
      ``subject_id`` of that earlier file's row;
    - in the provenance, ``input`` keeps only counts and hashes (its ``source`` and the
      duplicate files' paths go), and any other string holding an input file name is replaced
      by :data:`REDACTED`.

    ``names`` adds file names to remove that the table's own ``path`` column does not hold and
    ``owners`` maps input paths to subjects (both for a table written block by block).
    """
    extra = {str(n) for n in names}
    names = table.column_names
    sensitive: set[str] = set(extra)
    if "path" in names:
        paths = [p for p in table.column("path").to_pylist() if p]
        sensitive |= {str(p) for p in paths} | {Path(p).name for p in paths}
        if "diag__duplicate_of" in names:
            # the earlier file may be in another block of a streamed table: ``owners`` maps every input path
            owner = dict(owners or {})
            owner.update({str(p): s for p, s in zip(table.column("path").to_pylist(),
                                                    table.column("subject_id").to_pylist()) if p})
            # a value that is no path is already a subject id (a table written without paths, resumed)
            dup = [None if d is None else owner.get(d, REDACTED if ("/" in d or "\\" in d) else d)
                   for d in table.column("diag__duplicate_of").to_pylist()]
            i = names.index("diag__duplicate_of")
            table = table.set_column(i, table.schema.field(i), pa.array(dup, pa.string()))
    elif "diag__duplicate_of" in names:
        sensitive |= {d for d in table.column("diag__duplicate_of").to_pylist() if d and ("/" in d or "\\" in d)}
    for c in path_columns(table.schema):
        sensitive |= {Path(p).name for p in table.column(c).to_pylist() if p}
    prov = _provenance_of(table.schema)
    table = table.drop_columns(path_columns(table.schema))
    table = _redact_strings(table, sensitive)
    meta = dict(table.schema.metadata or {})
    if prov:
        meta[PROVENANCE_KEY] = dumps_json(redact_provenance(prov, sensitive), sort_keys=True).encode()
    return table.replace_schema_metadata(meta)


def _redact_strings(table: pa.Table, names: set[str]) -> pa.Table:
    """Replace file names inside free-text columns (error messages, string diagnostics)."""
    names = {n for n in names if len(n) >= 3}
    if not names:
        return table
    ordered = sorted(names, key=len, reverse=True)  # a full path before its file name
    for i, f in enumerate(table.schema):
        if not pa.types.is_string(f.type) or f.name in ("image_id", "subject_id", "status"):
            continue
        values = table.column(i).to_pylist()
        changed = False
        for j, v in enumerate(values):
            if v and any(n in v for n in ordered):
                for n in ordered:
                    v = v.replace(n, "<file>")
                values[j], changed = v, True
        if changed:
            table = table.set_column(i, f, pa.array(values, f.type))
    return table


def redact_provenance(prov: dict[str, Any], sensitive: Iterable[str] = ()) -> dict[str, Any]:
    """Provenance without input file names (see :func:`redact_paths`)."""
    prov = to_jsonable(prov)  # a deep copy in plain JSON types
    inp = prov.get("input")
    if isinstance(inp, dict):
        kept: dict[str, Any] = {}
        for k, v in inp.items():
            if k == "source":
                kept[k] = REDACTED
            elif isinstance(v, (int, float, bool)) or v is None or (k.endswith("sha256") and isinstance(v, str)):
                kept[k] = v
            elif isinstance(v, list):  # lists of files (duplicates, skipped files): their count only
                kept[f"n_{k}"] = len(v)
            elif isinstance(v, dict):
                kept[f"n_{k}"] = len(v)
        kept["paths_removed"] = True
        prov["input"] = kept
    return redact_names(prov, sensitive)


def redact_names(record: Any, names: Iterable[str]) -> Any:
    """A copy of a JSON-like record in which every string holding one of ``names`` (paths or
    file names; those under 3 characters are ignored) is replaced by :data:`REDACTED`."""
    names = {str(n) for n in names if n and len(str(n)) >= 3}
    return _scrub(record, names) if names else record


def _scrub(value: Any, names: set[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, names) for v in value]
    if isinstance(value, str) and any(n in value for n in names):
        return REDACTED
    return value


def summarize_tables(path: str | Path, *, check: bool = True) -> list[dict[str, Any]]:
    """Per-table summary of a run folder (or one table): what ``facefeat inspect`` shows.

    Returns one dict per table: ``path``, ``rows``, ``status_counts`` (status -> rows),
    ``columns`` (``name``, ``type`` and, for embeddings, ``shape``) and ``provenance``.

    Raises
    ------
    InputError
        Nothing to read.
    """
    reports = []
    for file in feature_tables(path, check=check):
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



# -- reading -------------------------------------------------------------------------------------

def flatten_table(table: pa.Table) -> pa.Table:
    """Expand every fixed-size list column into wide columns named by :func:`flat_column`.

    ``c`` becomes ``c_0000``, ``c_0001``, ... (row-major over its ``shape``), of the list's
    value type; null rows stay null in every wide column. Other columns are unchanged.
    """
    import numpy as np

    columns, fields = [], []
    for field, column in zip(table.schema, table.columns):
        if not pa.types.is_fixed_size_list(field.type):
            columns.append(column)
            fields.append(field)
            continue
        n = field.type.list_size
        column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        value_type = field.type.value_type
        dtype = value_type.to_pandas_dtype() if pa.types.is_floating(value_type) else np.float64
        full = np.full((len(column), n), np.nan, dtype=dtype)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        if valid.any():
            values = column.values.slice(column.offset * n, len(column) * n)
            full[valid] = values.to_numpy(zero_copy_only=False).reshape(len(column), n)[valid].astype(dtype)
        out_type = value_type if pa.types.is_floating(value_type) else pa.float64()
        for i, name in enumerate(flat_columns(field.name, n)):
            columns.append(pa.array(full[:, i], type=out_type, mask=~valid))
            fields.append(pa.field(name, out_type))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _key_index(table: pa.Table, file: str) -> dict[tuple[str, str], int]:
    index: dict[tuple[str, str], int] = {}
    for row, key in enumerate(zip(table.column("image_id").to_pylist(), table.column("subject_id").to_pylist())):
        if key in index:
            raise DataError(f"{file}: photo {key[0][:16]}... of subject {key[1]!r} has two rows; a feature table has "
                            f"one row per (image_id, subject_id)")
        index[key] = row
    return index


def join_tables(tables: Sequence[tuple[str, pa.Table]], files: Sequence[str | Path] | None = None) -> pa.Table:
    """Join feature tables of one run on ``(image_id, subject_id)``, rows in the first table's order.

    Parameters
    ----------
    tables : sequence of (name, pyarrow.Table)
        Extractor name and table, in extractor order.
    files : sequence of paths, optional
        Where each table came from, for messages.

    Returns
    -------
    pyarrow.Table
        Key columns (``path`` when present), ``status`` and ``error`` combined across tables
        (:func:`facefeat.io.features.combine_status`), and with several tables each table's own
        ``status__<name>``; the engine diagnostics once; then each table's own columns.

    Raises
    ------
    DataError
        A key twice in a table, tables with different rows (not one run), engine diagnostics
        that disagree between tables, or a column in two tables.
    """
    files = [str(f) for f in files] if files is not None else [n for n, _ in tables]
    names = [n for n, _ in tables]
    base_name, base = tables[0]
    base_index = _key_index(base, files[0])
    if len(tables) == 1:
        return base.replace_schema_metadata(None)
    keys = list(base_index)
    aligned = [base]
    for (name, table), file in zip(tables[1:], files[1:]):
        index = _key_index(table, file)
        absent = [k for k in keys if k not in index]
        extra = [k for k in index if k not in base_index]
        if absent or extra:
            k, where, other = (absent[0], files[0], file) if absent else (extra[0], file, files[0])
            raise DataError(f"{where} has the photo {k[0][:16]}... of subject {k[1]!r} but {other} does not "
                            f"({len(absent)} + {len(extra)} rows differ): the tables are not from one run; "
                            "re-extract them into one folder")
        aligned.append(table.take(pa.array([index[k] for k in keys], pa.int64())))
    engine = {f.name for f in ENGINE_DIAG_FIELDS}
    key_part = [c for c in ("image_id", "subject_id", "path") if c in base.column_names]
    columns: dict[str, Any] = {c: base.column(c) for c in key_part}
    fields = {c: base.schema.field(c) for c in key_part}
    status = combine_status(names, [t.column("status").to_pylist() for t in aligned])
    columns["status"] = pa.array(status, pa.string())
    fields["status"] = base.schema.field("status")
    errors = combine_errors(names, [t.column("error").to_pylist() if "error" in t.column_names else [None] * t.num_rows
                                    for t in aligned])
    columns["error"] = pa.array(errors, pa.string())
    fields["error"] = pa.field("error", pa.string())
    for name, t in zip(names, aligned):
        columns[f"status__{name}"] = t.column("status")
        fields[f"status__{name}"] = pa.field(f"status__{name}", pa.string())
    for c in [c for c in base.column_names if c in engine]:
        columns[c], fields[c] = _agreed_diag(c, aligned, files, keys), base.schema.field(c)
    for (name, t), file in zip(zip(names, aligned), files):
        for f in t.schema:
            if f.name in KEY_COLUMNS or f.name in engine:
                continue
            if f.name in columns:
                raise DataError(f"column {f.name!r} of {file} is also in another table of the run")
            columns[f.name], fields[f.name] = t.column(f.name), f
    return pa.Table.from_arrays(list(columns.values()), schema=pa.schema(list(fields.values())))


def _agreed_diag(name: str, tables: Sequence[pa.Table], files: Sequence[str], keys) -> pa.Array:
    """An engine diagnostic present in several tables: one value per row, checked to agree.

    Nulls in the first table are filled from the others (an extractor that needs no aligned
    crop may lack the alignment quad); two non-null values that differ are an error.
    """
    values = [t.column(name).to_pylist() for t in tables if name in t.column_names]
    where = [f for t, f in zip(tables, files) if name in t.column_names]
    out = list(values[0])
    for other, file in zip(values[1:], where[1:]):
        for i, (a, b) in enumerate(zip(out, other)):
            if a is None:
                out[i] = b
            elif b is not None and a != b:
                raise DataError(f"{name} of subject {keys[i][1]!r} (photo {keys[i][0][:16]}...) is {a} in {where[0]} "
                                f"but {b} in {file}: the tables were not made with the same preprocessing")
    return pa.array(out, tables[0].schema.field(name).type)


def read_features(
    run_or_files: str | Path | Sequence[str | Path],
    *,
    flatten: bool = True,
    include_failed: bool = False,
    drop_paths: bool = False,
    extractors: Sequence[str] | None = None,
    status: str | Iterable[str] | None = None,
):
    """Read a run's feature tables into one pandas DataFrame, one row per (image, subject).

    Parameters
    ----------
    run_or_files : path or sequence of paths
        A run folder (every ``*.parquet`` table, in extractor-name order), one table, or several.
        Tables of different runs are refused (:func:`feature_tables`).
    flatten : bool, default True
        Expand embedding list columns into wide ``<column>_0000`` columns
        (:func:`facefeat.io.features.flat_column`), after the join.
    include_failed : bool, default False
        Keep the rows whose status is not ``ok`` (with null features). By default only ``ok``
        rows are returned; the counts of every status are in ``df.attrs["status_counts"]``.
    drop_paths : bool, default False
        Leave out file names (:func:`redact_paths`).
    extractors : sequence of str, optional
        Only these tables (by extractor name = file stem).
    status : str or iterable of str, optional
        Keep exactly the rows with these statuses (overrides ``include_failed``).

    Returns
    -------
    pandas.DataFrame
        Key columns first: ``image_id``, ``subject_id``, ``path`` (unless dropped or not
        written), ``status`` and ``error`` combined across tables (ok only where ok in every
        table, else the first non-ok status in extractor order), with several tables each
        table's ``status__<extractor>``; the engine diagnostics ``diag__*`` once; each table's
        own columns. ``attrs``: ``files``, ``status_counts`` (before filtering),
        ``table_status_counts`` (per file), ``n_dropped``, ``provenance`` (per extractor).

    Raises
    ------
    InputError, DataError
        See :func:`feature_tables` and :func:`join_tables`.

    Examples
    --------
    >>> df = read_features("runs/demo")                      # doctest: +SKIP
    >>> df.filter(like="face_descriptor__embedding_").shape  # doctest: +SKIP
    (4, 128)
    """
    files = feature_tables(run_or_files)
    if extractors is not None:
        wanted = set(extractors)
        missing = wanted - {f.stem for f in files}
        if missing:
            raise InputError(f"{run_or_files}: no table for extractor(s) {', '.join(sorted(missing))}; "
                             f"have {', '.join(f.stem for f in files)}")
        files = [f for f in files if f.stem in wanted]
    raw = [(f.stem, read_table(f)) for f in files]
    for (name, t), f in zip(raw, files):
        missing_cols = [c for c in REQUIRED_COLUMNS if c not in t.column_names]
        if missing_cols:
            raise DataError(f"{f} is not a facefeat feature table: it lacks the key column(s) {missing_cols}")
    table_counts = {f.name: _counts(t.column("status").to_pylist()) for (_, t), f in zip(raw, files)}
    provenance = {name: _provenance_of(t.schema) for name, t in raw}
    table = join_tables(raw, files)
    if drop_paths:
        table = redact_paths(table)
    counts = _counts(table.column("status").to_pylist())
    if status is not None or not include_failed:
        allowed = ({status} if isinstance(status, str) else set(status)) if status is not None else {"ok"}
        import pyarrow.compute as pc

        table = table.filter(pc.is_in(table.column("status"), value_set=pa.array(sorted(allowed), pa.string())))
    if flatten:
        table = flatten_table(table)
    df = table.to_pandas()
    df.attrs.update(files=[str(f) for f in files], status_counts=counts, table_status_counts=table_counts,
                    n_dropped=sum(counts.values()) - len(df), provenance=provenance)
    return df


def _counts(values: Iterable[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return out
