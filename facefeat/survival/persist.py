"""Saving and loading fitted models with their feature schema and provenance.

A model directory holds ``model.joblib`` (the fitted estimator) and ``model.json`` (the
feature schema, the data settings, provenance and the sha256 of ``model.joblib``). Loading
checks the hash first. joblib files are pickles: load only model directories you trust.
"""

from __future__ import annotations

import json
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from facefeat.io.atomic import write_bytes_atomic
from facefeat.errors import DataError, ModelError
from facefeat.io.jsonsafe import to_jsonable

MODEL_FILE = "model.joblib"
META_FILE = "model.json"
FORMAT_VERSION = 1


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for dist in ("facefeat", "scikit-learn", "scikit-survival", "torch", "numpy", "pandas", "pyarrow"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    return out


def save_model(model_dir: str | Path, estimator: Any, *, schema: dict, settings: dict | None = None,
               provenance: dict | None = None) -> Path:
    """Write ``model.joblib`` and ``model.json`` into ``model_dir`` (atomically).

    Parameters
    ----------
    schema : dict
        What a table must look like to be scored: ``blocks`` (name -> columns), ``categorical``
        and ``feature_tables`` (source columns per extractor table, with embedding sizes).
    settings : dict
        Data settings needed to rebuild the table for prediction (id column, aggregation, ...).
    provenance : dict
        Extra provenance (sources and their hashes, command line); library versions and the
        creation time are added here.
    """
    import io

    import joblib

    from facefeat.io.hashing import sha256_bytes

    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    joblib.dump(estimator, buf, compress=3)
    data = buf.getvalue()
    meta = {
        "format": "facefeat-survival-model",
        "format_version": FORMAT_VERSION,
        "model_sha256": sha256_bytes(data),
        "estimator": type(estimator).__name__,
        "params": to_jsonable(estimator.get_params(deep=False)) if hasattr(estimator, "get_params") else None,
        "schema": to_jsonable(schema),
        "settings": to_jsonable(settings or {}),
        "provenance": to_jsonable({
            **(provenance or {}),
            "versions": _versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
        }),
    }
    write_bytes_atomic(model_dir / MODEL_FILE, data)
    write_bytes_atomic(model_dir / META_FILE, json.dumps(meta, indent=2).encode())
    return model_dir


def load_model(model_dir: str | Path) -> tuple[Any, dict]:
    """Load ``(estimator, metadata)`` from a model directory, checking the file's sha256."""
    import joblib

    from facefeat.io.hashing import sha256_file

    model_dir = Path(model_dir)
    meta_path, model_path = model_dir / META_FILE, model_dir / MODEL_FILE
    if not meta_path.is_file() or not model_path.is_file():
        raise ModelError(f"{model_dir} is not a model directory (needs {MODEL_FILE} and {META_FILE}); create one with 'facefeat fit'")
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != "facefeat-survival-model":
        raise ModelError(f"{meta_path} is not a facefeat survival model description")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{model_dir} was written by a newer facefeat (format {meta['format_version']}); upgrade facefeat")
    digest = sha256_file(model_path)
    if digest != meta.get("model_sha256"):
        raise ModelError(f"{model_path} does not match the sha256 recorded in {meta_path}; the model file was changed or is corrupt")
    return joblib.load(model_path), meta


def check_schema(expected: dict, found: dict) -> None:
    """Refuse a data set whose columns or feature tables differ from the training schema.

    Both dicts have ``blocks`` (name -> columns) and ``feature_tables`` (list of per-table
    dicts with ``file`` and ``columns``); every difference is listed in the error.
    """
    problems = []
    exp_cols = {c for cols in expected.get("blocks", {}).values() for c in cols}
    got_cols = {c for cols in found.get("blocks", {}).values() for c in cols}
    missing = sorted(exp_cols - got_cols)
    extra = sorted(c for c in got_cols - exp_cols if c in {x for b, cs in found.get("blocks", {}).items() if b != "clinical" for x in cs})
    if missing:
        problems.append(f"missing column(s) {missing[:10]}" + (f" and {len(missing) - 10} more" if len(missing) > 10 else ""))
    if extra:
        problems.append(f"feature column(s) not in the training data {extra[:10]}" + (f" and {len(extra) - 10} more" if len(extra) > 10 else ""))

    def tables(s: dict) -> dict[str, dict]:
        out = {}
        for t in s.get("feature_tables", []) or []:
            for col, spec in (t.get("columns") or {}).items():
                out[col] = {k: spec.get(k) for k in ("type", "size", "shape")}
        return out

    te, tf = tables(expected), tables(found)
    for col in sorted(set(te) & set(tf)):
        if te[col] != tf[col]:
            problems.append(f"feature {col!r} is {tf[col]} but the model was trained on {te[col]}")
    if problems:
        raise DataError(
            "the table does not have the schema the model was trained on: " + "; ".join(problems)
            + ". Extract features with the same extractors and settings, or fit a new model."
        )
