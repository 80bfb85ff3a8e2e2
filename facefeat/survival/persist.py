"""Saving and loading fitted models with their feature schema and provenance.

A model directory holds ``model.skops`` (the fitted estimator in skops' data-only format) and
``model.json`` (the feature schema, the data settings, provenance, the sha256 of the model
file and the types it holds). Loading executes no code from the file: skops rebuilds objects
only from an explicit list of trusted types (:data:`TRUSTED_TYPES`, facefeat's estimators and
the scikit-learn / scikit-survival parts they are made of); a file that names any other type
is refused with the types listed, before anything is built. DeepSurv stores its network as a
state dict of arrays, not as torch objects.

Model directories written by facefeat 0.1 hold ``model.joblib``, a pickle: loading a
pickle runs whatever code it holds, so those load only with ``trust=True`` (``--trust`` on the
command line) and a warning; re-save them with ``facefeat models upgrade-survival DIR`` or by
fitting again.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from facefeat._version import library_versions
from facefeat.io.atomic import write_bytes_atomic
from facefeat.errors import DataError, ModelError
from facefeat.io.jsonsafe import to_jsonable

log = logging.getLogger("facefeat.survival")

MODEL_FILE = "model.skops"
LEGACY_MODEL_FILE = "model.joblib"
META_FILE = "model.json"
FORMAT_VERSION = 2

#: Types a model file may hold besides those skops trusts by default (NumPy arrays, built-in
#: containers, scikit-learn's transformers and pipelines). Each is a plain data holder whose
#: state skops restores attribute by attribute; none runs code on construction.
TRUSTED_TYPES = (
    "facefeat.survival.estimator.SurvivalEstimator",
    "facefeat.survival.blocks.FeatureBlock",
    "facefeat.survival.report.DataReport",
    "facefeat.survival.report.ReportItem",
    "facefeat.survival.cox.CoxnetCV",
    "facefeat.survival.deepsurv.DeepSurv",
    "sksurv.linear_model.coxph.CoxPHSurvivalAnalysis",
    "sksurv.linear_model.coxph.BreslowEstimator",
    "sksurv.linear_model.coxnet.CoxnetSurvivalAnalysis",
    "sksurv.functions.StepFunction",
    "sksurv.ensemble.forest.RandomSurvivalForest",
    "sksurv.tree.tree.SurvivalTree",
    "sksurv.ensemble.boosting.GradientBoostingSurvivalAnalysis",
    "sksurv.ensemble.survival_loss.CoxPH",
    "sklearn.tree._tree.Tree",
    "sklearn.dummy.DummyRegressor",
    "numpy.dtype",
)


#: Settings that do not specify a model: what ``facefeat fit`` derives from the fitted model, and labels.
FITTED_SETTINGS = ("risk_cutoffs", "covariates_used", "time_unit")


def _spec(v: Any) -> Any:
    # an estimator's specification as plain data: class and parameters, recursively
    if hasattr(v, "get_params") and not isinstance(v, type):
        return {"class": f"{type(v).__module__}.{type(v).__qualname__}",
                "params": {k: _spec(x) for k, x in sorted(v.get_params(deep=False).items())}}
    if isinstance(v, dict):
        return {str(k): _spec(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_spec(x) for x in v]
    return to_jsonable(v)


def spec_fingerprint(estimator: Any, schema: dict, settings: dict | None = None) -> str:
    """sha256 of a model specification: estimator class and parameters (recursively), the
    columns of each block and feature table, and the data settings.

    Equal for ``facefeat fit`` and ``facefeat evaluate`` run with the same options on the same
    kind of data, so a stored cross-validation can be matched to the model it describes.
    Fitted values (coefficients, risk cut-offs) and file names do not enter it.
    """
    from facefeat.io.hashing import sha256_bytes

    tables = [t.get("columns") for t in (schema or {}).get("feature_tables") or []]
    payload = {
        "estimator": _spec(estimator),
        "schema": _spec({"blocks": (schema or {}).get("blocks"), "categorical": (schema or {}).get("categorical"),
                         "feature_tables": tables}),
        "settings": _spec({k: v for k, v in (settings or {}).items() if k not in FITTED_SETTINGS}),
    }
    return sha256_bytes(json.dumps(payload, sort_keys=True).encode())


def _untrusted(types: Iterable[str], extra: Iterable[str]) -> list[str]:
    allowed = set(TRUSTED_TYPES) | set(extra)
    return sorted(t for t in types if t not in allowed)


def save_model(model_dir: str | Path, estimator: Any, *, schema: dict, settings: dict | None = None,
               provenance: dict | None = None, trusted_types: Iterable[str] = ()) -> Path:
    """Write ``model.skops`` and ``model.json`` into ``model_dir`` (atomically).

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
    trusted_types : iterable of str
        Extra fully qualified type names the estimator holds (a user's own model class); the
        same names must be passed to :func:`load_model`. Without them such a model is refused
        here, not at loading time.

    Raises
    ------
    ModelError
        The estimator holds types that are not on :data:`TRUSTED_TYPES` or ``trusted_types``.
    """
    import skops.io as sio

    from facefeat.io.hashing import sha256_bytes

    model_dir = Path(model_dir)
    data = sio.dumps(estimator, compression=8)  # zipfile.ZIP_DEFLATED
    types = sorted(sio.get_untrusted_types(data=data))
    bad = _untrusted(types, trusted_types)
    if bad:
        raise ModelError(f"cannot save the model in {model_dir}: it holds type(s) {bad} that facefeat does not "
                         "know to be safe to load; pass trusted_types=[...] to save_model and load_model if you "
                         "wrote them yourself")
    model_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "facefeat-survival-model",
        "format_version": FORMAT_VERSION,
        "serialisation": "skops",
        "model_file": MODEL_FILE,
        "model_sha256": sha256_bytes(data),
        "types": types,
        "spec_sha256": spec_fingerprint(estimator, schema, settings),
        "estimator": type(estimator).__name__,
        "params": to_jsonable(estimator.get_params(deep=False)) if hasattr(estimator, "get_params") else None,
        "schema": to_jsonable(schema),
        "settings": to_jsonable(settings or {}),
        "provenance": to_jsonable({
            **(provenance or {}),
            "versions": library_versions(),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
        }),
    }
    write_bytes_atomic(model_dir / MODEL_FILE, data)
    write_bytes_atomic(model_dir / META_FILE, json.dumps(meta, indent=2).encode())
    (model_dir / LEGACY_MODEL_FILE).unlink(missing_ok=True)  # a re-fit replaces an old pickle
    return model_dir


def read_model_meta(model_dir: str | Path) -> dict:
    """The ``model.json`` of a model directory, checked for format and version (no model loaded)."""
    model_dir = Path(model_dir)
    meta_path = model_dir / META_FILE
    if not meta_path.is_file():
        raise ModelError(f"{model_dir} is not a model directory (needs {META_FILE} beside {MODEL_FILE}); "
                         "create one with 'facefeat fit'")
    try:
        meta = json.loads(meta_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{meta_path} is not valid JSON ({exc}); the model directory is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != "facefeat-survival-model":
        raise ModelError(f"{meta_path} is not a facefeat survival model description")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ModelError(f"{model_dir} was written by a newer facefeat (format {meta['format_version']}); upgrade facefeat")
    return meta


def load_model(model_dir: str | Path, *, trust: bool = False, trusted_types: Iterable[str] = ()) -> tuple[Any, dict]:
    """Load ``(estimator, metadata)`` from a model directory; no code in the file is run.

    The file's sha256 is checked against ``model.json`` first, then the types it names against
    :data:`TRUSTED_TYPES` (plus ``trusted_types``); only then are objects built.

    Parameters
    ----------
    trust : bool, default False
        Allow a model directory of the old pickle format (``model.joblib``). Loading a pickle
        runs any code it holds: pass True only for files you made yourself.
    trusted_types : iterable of str
        Extra type names allowed (see :func:`save_model`).

    Raises
    ------
    ModelError
        Missing or damaged files, a changed file (hash), a type that is not trusted, or an old
        pickle without ``trust``.
    """
    from facefeat.io.hashing import sha256_bytes

    model_dir = Path(model_dir)
    meta = read_model_meta(model_dir)
    if meta.get("serialisation") != "skops":
        return _load_legacy(model_dir, meta, trust=trust), meta
    model_path = model_dir / MODEL_FILE
    if not model_path.is_file():
        raise ModelError(f"{model_dir} lacks {MODEL_FILE}; the model directory is incomplete, fit the model again")
    data = model_path.read_bytes()
    if sha256_bytes(data) != meta.get("model_sha256"):
        raise ModelError(f"{model_path} does not match the sha256 recorded in {model_dir / META_FILE}; the model "
                         "file was changed or is corrupt: refit it, or get an intact copy from its author")
    import skops.io as sio

    try:
        types = sorted(sio.get_untrusted_types(data=data))
    except Exception as exc:  # a file skops cannot parse is not a model file
        raise ModelError(f"{model_path} is not a readable skops model file ({type(exc).__name__}: {exc})") from None
    bad = _untrusted(types, trusted_types)
    if bad:
        raise ModelError(f"{model_path} names type(s) {bad} that facefeat does not load (they could run code); "
                         "the file was not written by facefeat's save_model. If you wrote these classes yourself, "
                         "pass them as trusted_types")
    try:
        estimator = sio.loads(data, trusted=types)
    except Exception as exc:
        raise ModelError(f"{model_path} could not be rebuilt ({type(exc).__name__}: {exc}); it was written by an "
                         "incompatible version of scikit-learn/scikit-survival "
                         f"({meta.get('provenance', {}).get('versions')}): refit the model") from None
    return estimator, meta


def _load_legacy(model_dir: Path, meta: dict, *, trust: bool) -> Any:
    """A pre-0.3 ``model.joblib`` (pickle): only with ``trust``, after its hash check."""
    from facefeat.io.hashing import sha256_file

    path = model_dir / LEGACY_MODEL_FILE
    if not path.is_file():
        raise ModelError(f"{model_dir} is not a model directory (needs {MODEL_FILE} and {META_FILE}); "
                         "create one with 'facefeat fit'")
    if not trust:
        raise ModelError(f"{path} is an old pickle model file: loading it would run any code it holds. If you made "
                         "this model yourself, load it once with --trust (Python: load_model(..., trust=True)) and "
                         "save it again; never pass --trust for a file received from someone else")
    if sha256_file(path) != meta.get("model_sha256"):
        raise ModelError(f"{path} does not match the sha256 recorded in {model_dir / META_FILE}; the model file was "
                         "changed or is corrupt")
    import joblib

    log.warning("loading %s, a pickle, because --trust was given: it can run code; re-save the model "
                "('facefeat fit' again, or save_model) to get a safe model.skops file", path)
    return joblib.load(path)


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
