"""Loading a study for the report: the extraction run, the fitted model and the clinical table.

A *study* is what ``facefeat extract`` wrote (``RUN_DIR``: one Parquet table per extractor
with provenance), what ``facefeat fit`` wrote (``MODEL_DIR``: ``model.skops`` and
``model.json``) and the clinical table the model was fitted on (recorded in ``model.json``;
another one can be given). :func:`load_study` checks that they fit together and raises a
:class:`~facefeat.errors.FacefeatError` subclass naming the file, the field and the fix when
they do not.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facefeat.errors import DataError, InputError, ModelError


@dataclass
class RunTable:
    """One extractor's table of the run: what ``facefeat inspect`` says of it, plus its keys."""

    name: str
    path: Path
    rows: int
    status_counts: dict[str, int]
    columns: list[dict]
    provenance: dict[str, Any]
    keys: Any  # DataFrame with image_id, subject_id, status

    @property
    def extractor(self) -> dict[str, Any]:
        return self.provenance.get("extractor") or {}

    def embedding_columns(self) -> dict[str, Any]:
        """Fixed-size list feature columns (not diagnostics) -> their shape (or None)."""
        out = {}
        for c in self.columns:
            if c["name"].startswith("diag__") or "fixed_size_list" not in c["type"]:
                continue
            out[c["name"]] = json.loads(c["shape"]) if "shape" in c else None
        return out


@dataclass
class Study:
    """Everything the report is made from."""

    run_dir: Path
    model_dir: Path
    clinical_path: Path
    clinical_source: str  # "model.json" or "--clinical"
    tables: list[RunTable]
    estimator: Any
    meta: dict[str, Any]
    dataset: Any  # facefeat.survival.dataset.SurvivalDataset
    clinical_rows: int
    clinical_ids: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def settings(self) -> dict[str, Any]:
        return self.meta.get("settings") or {}

    @property
    def model_tables(self) -> list[RunTable]:
        """The run's tables the model was fitted on (an image is usable when ok in all of them)."""
        names = {ft.get("file") for ft in (self.meta.get("schema") or {}).get("feature_tables") or []}
        used = [t for t in self.tables if t.path.name in names]
        return used or self.tables


def inspect_run(run_dir: str | Path) -> list[dict]:
    """Per-table summaries of a run folder, exactly as ``facefeat inspect --json`` gives them.

    Raises
    ------
    InputError
        No such folder, or no feature table in it.
    """
    from facefeat.io.jsonsafe import to_jsonable
    from facefeat.io.tables import summarize_tables

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise InputError(f"RUN_DIR {run_dir} is not a folder; pass the --out folder of 'facefeat extract'")
    # the same plain values 'facefeat inspect --json' prints
    return to_jsonable(summarize_tables(run_dir))


def read_run(run_dir: str | Path) -> list[RunTable]:
    """The run's tables with their status counts, columns, provenance and key columns."""
    from facefeat.io.tables import read_table

    out = []
    for rep in inspect_run(run_dir):
        path = Path(rep["path"])
        names = {c["name"] for c in rep["columns"]}
        missing = [c for c in ("image_id", "subject_id", "status") if c not in names]
        if missing:
            raise InputError(f"{path} lacks the key column(s) {missing} of a facefeat feature table; "
                             "RUN_DIR must hold only tables written by 'facefeat extract'")
        keys = read_table(path, columns=["image_id", "subject_id", "status"]).to_pandas()
        out.append(RunTable(path.stem, path, int(rep["rows"]), dict(rep["status_counts"]), rep["columns"],
                            rep.get("provenance") or {}, keys))
    return out


def _recorded_clinical(meta: dict, model_dir: Path) -> Path | None:
    src = ((meta.get("provenance") or {}).get("sources") or {}).get("clinical") or {}
    p = src.get("path") if isinstance(src, dict) else None
    if not p:
        return None
    path = Path(p)
    if not path.is_absolute() and not path.exists() and (model_dir / path).exists():
        path = model_dir / path
    return path


def check_clinical_columns(path: Path, columns: list[str], settings: dict) -> None:
    """Refuse a clinical table without the id, time, event and covariate columns the model used."""
    need = {"id column": settings.get("id_column") or "subject_id", "time column": settings.get("time") or "time",
            "event column": settings.get("event") or "event"}
    wanted = [(what, col) for what, col in need.items()]
    wanted += [("covariate", c) for c in settings.get("covariates_used") or []]
    missing = [(what, col) for what, col in wanted if col not in columns]
    if missing:
        listed = ", ".join(f"{what} {col!r}" for what, col in missing)
        raise DataError(
            f"clinical table {path} lacks {listed} that the model was fitted with; its columns are "
            f"{columns[:20]}{' ...' if len(columns) > 20 else ''}. Pass the clinical table the model was fitted on "
            "with --clinical (or rename the columns)."
        )


def load_study(run_dir: str | Path, model_dir: str | Path, *, clinical: str | Path | None = None,
               sep: str | None = None, decimal: str | None = None, trust: bool = False) -> Study:
    """Read and cross-check a run folder, a model folder and the clinical table.

    Parameters
    ----------
    run_dir : path
        Output folder of ``facefeat extract``.
    model_dir : path
        Output folder of ``facefeat fit``.
    clinical : path, optional
        Clinical table (id, time, event and the model's covariates). Default: the one recorded
        in ``model.json``.
    trust : bool, default False
        Allow an old pickle model file (see :func:`facefeat.survival.persist.load_model`).
    sep, decimal : str, optional
        CSV parsing, as for ``facefeat fit``.

    Raises
    ------
    InputError
        RUN_DIR missing or without feature tables; no clinical table to be found.
    ModelError
        MODEL_DIR is not a model folder, or its model file does not match its hash.
    DataError
        The clinical table lacks a column the model needs, or the run's features do not have
        the schema the model was fitted on.
    """
    from facefeat.survival.dataset import load_model_dataset
    from facefeat.survival.persist import load_model
    from facefeat.survival.tables import read_clinical

    run_dir, model_dir = Path(run_dir), Path(model_dir)
    tables = read_run(run_dir)
    if not model_dir.is_dir():
        raise ModelError(f"MODEL_DIR {model_dir} is not a folder; pass the --out folder of 'facefeat fit'")
    estimator, meta = load_model(model_dir, trust=trust)
    if not isinstance(meta.get("schema"), dict) or not isinstance(meta.get("settings"), dict):
        raise ModelError(f"{model_dir / 'model.json'} has no 'schema' and 'settings'; refit the model with 'facefeat fit'")
    settings = meta["settings"]
    if clinical is not None:
        clinical_path, source = Path(clinical), "--clinical"
    else:
        clinical_path, source = _recorded_clinical(meta, model_dir), "model.json"
        if clinical_path is None:
            raise InputError(f"{model_dir / 'model.json'} records no clinical table; pass the table the model was "
                             "fitted on with --clinical CSV")
        if not clinical_path.is_file():
            raise InputError(f"the clinical table recorded in {model_dir / 'model.json'} ({clinical_path}) does not "
                             "exist here; pass it with --clinical CSV")
    if not clinical_path.is_file():
        raise InputError(f"clinical table {clinical_path} does not exist; pass an existing file with --clinical")
    id_col = settings.get("id_column") or "subject_id"
    clin = read_clinical(clinical_path, sep=sep, decimal=decimal, text_columns=[id_col])
    check_clinical_columns(clinical_path, [str(c) for c in clin.columns], settings)
    # only the tables the model was fitted on: a run may hold more extractors than the model uses
    names = [ft.get("file") for ft in meta["schema"].get("feature_tables") or [] if ft.get("file")]
    missing = [n for n in names if not (run_dir / n).is_file()]
    if missing:
        raise InputError(f"RUN_DIR {run_dir} lacks the feature table(s) {missing} that MODEL_DIR {model_dir} was "
                         f"fitted on (it has {[t.path.name for t in tables]}); pass the run folder the model was "
                         "fitted on")
    ds = load_model_dataset(meta, clinical=clinical_path, features=[run_dir / n for n in names] if names else run_dir,
                            unmatched="drop", sep=sep, decimal=decimal,
                            mismatch=f"RUN_DIR {run_dir} does not match MODEL_DIR {model_dir}")
    ids = clin[id_col].dropna().astype(str).str.strip().tolist()
    return Study(run_dir, model_dir, clinical_path, source, tables, estimator, meta, ds, int(len(clin)), ids)
