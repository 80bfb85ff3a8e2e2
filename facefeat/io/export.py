"""Exports of a run's feature tables that can leave the key holder: no file names, keyed
pseudonymous subject ids, the method stated in the provenance, the mapping never written.

What an export holds (``facefeat export RUN -o DIR``):

- ``DIR/<extractor>.parquet``: each table through :func:`facefeat.io.tables.redact_paths`
  (no ``path`` or reconstruction-path column, file names removed from error messages and the
  provenance, whose ``input`` keeps only counts and hashes); with a key, ``subject_id`` and
  ``diag__duplicate_of`` replaced by :func:`facefeat.io.pseudonym.pseudonymise`;
- ``DIR/export.json``: the method, the tables and row counts, and a key check (the pseudonym of
  a fixed string: two exports with equal key checks used the same key; it reveals no key);
- optionally ``DIR/<clinical file name>``: the clinical table with its id column pseudonymised
  by the same key, every other cell copied as written.

``image_id`` stays: it is the sha256 of the photo's bytes, which names no one, and keeps the
exported tables joinable with each other.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from facefeat._version import __version__
from facefeat.errors import ConfigError, DataError
from facefeat.io.atomic import write_bytes_atomic
from facefeat.io.jsonsafe import dumps_json
from facefeat.io.pseudonym import PSEUDONYM_METHOD, pseudonymise
from facefeat.io.tables import (
    PROVENANCE_KEY,
    feature_tables,
    read_table,
    redact_names,
    redact_paths,
    write_parquet_atomic,
)

#: Pseudonymised to give ``export.json``'s key check.
KEY_CHECK_TEXT = "facefeat export key check"
#: Method string when no key is given (subject ids are copied).
NO_PSEUDONYMS = "none: subject ids as in the run (no key given)"


def export_run(run: str | os.PathLike, out: str | os.PathLike, *, key: bytes | None = None,
               clinical: str | os.PathLike | None = None, id_column: str = "subject_id",
               overwrite: bool = False) -> dict[str, Any]:
    """Write an export of a run's feature tables (see the module notes).

    Parameters
    ----------
    run : path
        A run folder (or one table) of ``facefeat extract``.
    out : path
        The export folder; it must be empty or absent unless ``overwrite``.
    key : bytes, optional
        Study key (:func:`facefeat.io.pseudonym.load_key`); without it subject ids are kept.
    clinical : path, optional
        A clinical CSV/TSV to export with its ``id_column`` pseudonymised (needs ``key``).
    id_column : str, default "subject_id"
    overwrite : bool, default False
        Replace the files of an earlier export in ``out``.

    Returns
    -------
    dict
        The export record written to ``out/export.json``.

    Raises
    ------
    ConfigError
        ``out`` is the run folder or holds other files; a clinical table without a key.
    InputError, DataError
        Unreadable run; a clinical table without ``id_column``.
    """
    files = feature_tables(run)
    out = Path(out)
    if any(f.parent.resolve() == out.resolve() for f in files):
        raise ConfigError(f"export folder {out} is the run folder; choose another --out / -o")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"export folder {out} is not empty; choose an empty folder or pass --overwrite")
    if clinical is not None and key is None:
        raise ConfigError("exporting a clinical table needs a key (--pseudonymise KEYFILE or --make-key KEYFILE): "
                          "its ids must match the pseudonymised feature tables")
    method = PSEUDONYM_METHOD if key is not None else NO_PSEUDONYMS
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record: dict[str, Any] = {
        "facefeat_version": __version__, "created": created, "subject_id_method": method,
        "key_check": pseudonymise([KEY_CHECK_TEXT], key)[0] if key is not None else None,
        "removed": "path and reconstruction-path columns; input file names in errors and provenance",
        "tables": {},
    }
    for f in files:
        table = redact_paths(read_table(f))
        raw_ids = [str(s) for s in table.column("subject_id").to_pylist()]
        if key is not None:
            table = _pseudonymise_columns(table, key)
        prov = json.loads((table.schema.metadata or {}).get(PROVENANCE_KEY, b"{}") or b"{}")
        if key is not None:  # a raw id copied into the provenance (e.g. a config) goes too
            prov = redact_names(prov, [s for s in raw_ids if len(s) >= 4])
        prov["export"] = {k: record[k] for k in ("facefeat_version", "created", "subject_id_method", "key_check",
                                                 "removed")}
        table = table.replace_schema_metadata({PROVENANCE_KEY: dumps_json(prov, sort_keys=True).encode()})
        write_parquet_atomic(table, out / f.name)
        record["tables"][f.name] = {"rows": table.num_rows, "subjects": len(set(raw_ids))}
    if clinical is not None:
        record["clinical"] = export_clinical(clinical, out / Path(clinical).name, key=key, id_column=id_column)
    write_bytes_atomic(out / "export.json", (json.dumps(record, indent=2) + "\n").encode())
    return record


def _pseudonymise_columns(table: pa.Table, key: bytes) -> pa.Table:
    for name in ("subject_id", "diag__duplicate_of"):
        if name not in table.column_names:
            continue
        values = table.column(name).to_pylist()
        present = [v for v in values if v is not None]
        mapped = dict(zip(present, pseudonymise(present, key)))
        i = table.column_names.index(name)
        table = table.set_column(i, table.schema.field(i), pa.array([mapped.get(v) for v in values], pa.string()))
    return table


def export_clinical(path: str | os.PathLike, dest: str | os.PathLike, *, key: bytes,
                    id_column: str = "subject_id") -> dict[str, Any]:
    """Copy a clinical CSV/TSV with its id column pseudonymised; every other cell as written.

    Raises
    ------
    DataError
        No ``id_column``, or an empty id.
    """
    import pandas as pd

    path = Path(path)
    sep = "\t" if path.suffix.lower() == ".tsv" else None
    try:
        df = pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise DataError(f"cannot read clinical table {path}: {exc}") from None
    if id_column not in df.columns:
        raise DataError(f"clinical table {path} has no id column {id_column!r} (columns: {list(df.columns)[:20]}); "
                        "pass --id-column")
    ids = df[id_column].str.strip()
    blank = [i + 2 for i, v in enumerate(ids) if not v]
    if blank:
        raise DataError(f"clinical table {path}: empty {id_column!r} on line(s) {blank[:10]}")
    df[id_column] = pseudonymise(ids, key)
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    used = "\t" if "\t" in header else (";" if header.count(";") > header.count(",") else ",")
    data = df.to_csv(index=False, sep=used)
    write_bytes_atomic(dest, data.encode("utf-8"))
    return {"file": Path(dest).name, "rows": int(len(df)), "id_column": id_column, "method": PSEUDONYM_METHOD}
