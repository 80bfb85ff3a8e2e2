"""Joining a clinical table with image feature tables into one modelling data set.

:func:`load_survival_data` reads the clinical table and the feature tables, validates the
target, aggregates photos per subject, matches subjects, and reports (or refuses, with
``unmatched="error"``) subjects present on one side only. The result names its column
blocks (``clinical`` and ``image``, or one image block per extractor) for
:class:`~facefeat.survival.SurvivalEstimator`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, DataError
from facefeat.survival.report import DataReport
from facefeat.survival.tables import aggregate_images, load_feature_table, read_clinical
from facefeat.survival.target import _rows


@dataclass
class SurvivalDataset:
    """Subjects x columns, the target, the column blocks and what was done to get there."""

    X: pd.DataFrame
    y: np.ndarray
    blocks: dict[str, list[str]]
    categorical: list[str]
    report: DataReport
    feature_schema: list[dict] = field(default_factory=list)
    sources: dict[str, Any] = field(default_factory=dict)

    @property
    def ids(self) -> pd.Index:
        return self.X.index


def _split_list(v: Any) -> list[str] | None:
    if v is None:
        return None
    if isinstance(v, str):
        return [s.strip() for s in v.split(",") if s.strip()]
    return list(v)


def load_survival_data(
    *,
    clinical: str | Path | pd.DataFrame | None,
    features: str | Path | Sequence[str | Path] | None = None,
    id_column: str = "subject_id",
    time: str = "time",
    event: str = "event",
    covariates: Sequence[str] | str | None = None,
    categorical: Sequence[str] | str | None = None,
    aggregate: str = "mean",
    image_order: str | None = None,
    unmatched: str = "drop",
    block_per_extractor: bool = False,
    sep: str | None = None,
    decimal: str | None = None,
    require_target: bool = True,
    robustness: str | Path | dict | None = None,
    min_icc: float | None = None,
) -> SurvivalDataset:
    """Build the modelling table of subjects from a clinical table and feature tables.

    Parameters
    ----------
    clinical : path or DataFrame
        One row per subject with ``id_column``, ``time``, ``event`` and covariates.
    features : path(s), optional
        Run directories or Parquet feature tables (see :func:`load_feature_table`).
    covariates : list or comma-separated str, optional
        Clinical covariates; default: every column but id, time and event. ``"none"`` or an
        empty list: no clinical block (faces only).
    categorical : list or comma-separated str, optional
        Covariates to one-hot encode; text columns are categorical anyway.
    aggregate : {"mean", "first", "most_recent"}
        How several photos of one subject are combined.
    image_order : str, optional
        Feature-table column ordering photos for ``first``/``most_recent``.
    unmatched : {"drop", "error"}
        Subjects with clinical data but no usable photo, or photos but no clinical row:
        dropped and reported, or an error listing them.
    block_per_extractor : bool
        One image block per extractor (column prefix before ``__``) instead of one ``image`` block.
    require_target : bool
        ``False`` for prediction on new subjects (time and event may be absent).
    robustness : path or dict, optional
        Robustness table (folder or file written by ``facefeat robustness``): image feature
        columns whose ICC is below ``min_icc`` are dropped, embedding dimensions one by one
        (:func:`facefeat.robustness.filter_features`); the filter's record is in
        ``sources["robustness"]`` and the data report. A dict is such a record from a fitted
        model: its ``dropped_columns`` are dropped again, without the table.
    min_icc : float, optional
        Threshold, required with a robustness table (e.g. 0.75 or 0.9).
    """
    if unmatched not in ("drop", "error"):
        raise ConfigError(f"unmatched must be 'drop' or 'error', not {unmatched!r}")
    report = DataReport()
    sources: dict[str, Any] = {}
    cat = _split_list(categorical) or []
    if clinical is None:
        if require_target or features is None:
            raise ConfigError("a clinical table (with the subject id, and time and event for fitting) is required")
        # prediction with a faces-only model: the subjects are those of the feature tables
        subjects = load_feature_table(features)["subject_id"].unique()
        clin = pd.DataFrame({id_column: subjects})
        covariates = covariates if covariates not in (None, "none", ["none"], []) else "none"
    elif isinstance(clinical, pd.DataFrame):
        clin = clinical.copy()
    else:
        from facefeat.io.hashing import sha256_file

        clin = read_clinical(clinical, sep=sep, decimal=decimal, text_columns=[id_column, *cat], report=report)
        sources["clinical"] = {"path": str(clinical), "sha256": sha256_file(clinical)}
    need = [id_column] + ([time, event] if require_target else [])
    missing = [c for c in need if c not in clin.columns]
    if missing:
        raise DataError(f"clinical table lacks column(s) {missing}; its columns are {list(clin.columns)[:20]}")
    ids = clin[id_column]
    if ids.isna().any():
        raise DataError(f"id column {id_column!r} is empty in rows {_rows(np.flatnonzero(ids.isna()) + 2)} (file lines)")
    ids = ids.astype(str).str.strip()
    dup = ids.duplicated(keep=False)
    if dup.any():
        lines = (np.flatnonzero(dup.to_numpy()) + 2).tolist()
        raise DataError(
            f"duplicate subject id(s) {sorted(set(ids[dup]))[:10]} in column {id_column!r} (file lines "
            f"{_rows(lines)}); the clinical table needs one row per subject"
        )
    clin.index = pd.Index(ids, name="subject_id")
    clin = clin.drop(columns=[id_column])
    y = None
    if require_target or (time in clin.columns and event in clin.columns):
        from facefeat.survival.target import coerce_event, coerce_time, to_structured

        y = to_structured(coerce_event(clin[event], column=event), coerce_time(clin[time], column=time))
    outcome = [c for c in (time, event) if c in clin.columns]
    covs = _split_list(covariates)
    if covs is None:
        covs = [c for c in clin.columns if c not in outcome]
        # text columns with many distinct values are dates, names or free text, not categories
        wide = [c for c in covs if c not in cat and not pd.api.types.is_numeric_dtype(clin[c])
                and clin[c].nunique() > max(20, 0.5 * len(clin))]
        if wide:
            covs = [c for c in covs if c not in wide]
            report.add("clinical table", f"not used as covariates: text column(s) {wide} with too many distinct "
                       "values to be categories (dates, names, free text?); name them in --covariates to use them",
                       count=len(wide), level="warning")
        if covs:
            report.add("clinical table", f"using every other column as a covariate: {covs}", count=len(covs))
    elif covs == ["none"]:
        covs = []
    missing = [c for c in covs if c not in clin.columns]
    if missing:
        raise DataError(f"covariate(s) {missing} are not in the clinical table")
    leak = [c for c in covs if c in outcome]
    if leak:
        raise ConfigError(f"covariate(s) {leak} are the outcome; remove them from the covariates")
    cat = [c for c in cat if c in covs]
    cat += [c for c in covs if c not in cat and not pd.api.types.is_numeric_dtype(clin[c])]
    for c in cat:
        clin[c] = clin[c].astype("string").astype(object).where(clin[c].notna(), None)

    frames = [clin[covs]]
    blocks: dict[str, list[str]] = {}
    if covs:
        blocks["clinical"] = list(covs)
    schema: list[dict] = []
    if features is not None:
        images = load_feature_table(features, keep=[image_order] if image_order else (), report=report)
        schema = images.attrs["feature_schema"]
        sources["features"] = images.attrs["files"]
        per_subject = aggregate_images(images, rule=aggregate, order_by=image_order, report=report)
        feat_cols = list(per_subject.attrs["feature_columns"])
        if robustness is not None or min_icc is not None:
            feat_cols = _robust_columns(feat_cols, robustness, min_icc, report, sources)
        clash = [c for c in feat_cols if c in clin.columns]
        if clash:
            raise DataError(f"column(s) {clash[:5]} are in both the clinical table and the feature tables")
        only_clin = clin.index.difference(per_subject.index)
        only_feat = per_subject.index.difference(clin.index)
        for what, extra, hint in (
            ("subject(s) in the clinical table have no usable photo (none, or none with status ok)", only_clin, "clinical"),
            ("subject(s) with photos are not in the clinical table", only_feat, "features"),
        ):
            if len(extra):
                if unmatched == "error":
                    raise DataError(f"{len(extra)} {what}: {_rows(sorted(extra))}. Use --unmatched drop to leave them out (reported).")
                report.add("matching", f"dropped {len(extra)} {what}", count=len(extra), examples=sorted(extra), level="warning")
        keep = clin.index.intersection(per_subject.index, sort=False)
        if not len(keep):
            raise DataError(
                f"no subject id is both in the clinical table and the feature tables (e.g. clinical {list(clin.index[:3])}, "
                f"features {list(per_subject.index[:3])}); check --id"
            )
        _report_truncated(images, keep, report)
        frames = [clin.loc[keep, covs], per_subject.loc[keep, feat_cols]]
        if y is not None:
            y = y[clin.index.get_indexer(keep)]
        if block_per_extractor:
            for c in feat_cols:
                blocks.setdefault(c.split("__", 1)[0] if "__" in c else "image", []).append(c)
        else:
            blocks["image"] = feat_cols
    X = pd.concat(frames, axis=1)
    if not blocks:
        raise ConfigError("no covariates and no feature tables: nothing to model")
    return SurvivalDataset(X, y, blocks, cat, report, schema, sources)


def _report_truncated(images: pd.DataFrame, subjects: pd.Index, report: DataReport) -> None:
    """Say how many of the photos modelled show a face cut by the frame (``diag__face_truncated > 0``):
    their landmarks, and every feature derived from them (geometry, pose, aligned-crop embeddings),
    rest on points the predictor extrapolated outside the photo."""
    if "diag__face_truncated" not in images.columns:  # tables written before the diagnostic existed
        return
    used = images[images["subject_id"].isin(subjects)]
    share = pd.to_numeric(used["diag__face_truncated"], errors="coerce")
    measured = share.notna().to_numpy()
    if not measured.any():  # e.g. simulated photos, which skip face detection
        return
    cut = (share > 0).to_numpy()
    unmeasured = f"; not measured for {int((~measured).sum())}" if not measured.all() else ""
    report.add("truncated faces", f"{int(cut.sum())} of the {int(measured.sum())} ok photos modelled "
               f"({used.loc[cut, 'subject_id'].nunique()} subject(s)) show a face cut by the image frame "
               f"(diag__face_truncated > 0){unmeasured}; their landmark-derived features use extrapolated points "
               "(face.truncated: fail excludes them at extraction)",
               count=int(cut.sum()), examples=used.loc[cut, "image_id"], level="warning" if cut.any() else "info")


def _robust_columns(columns: list[str], robustness, min_icc, report: DataReport, sources: dict) -> list[str]:
    """Apply the ICC filter of :func:`load_survival_data` and record it."""
    if isinstance(robustness, dict):  # the record of a fitted model: drop the same columns again
        dropped = set(robustness.get("dropped_columns") or [])
        sources["robustness"] = robustness
        return [c for c in columns if c not in dropped]
    if robustness is None or min_icc is None:
        raise ConfigError("a robustness filter needs both the table (--robustness) and the threshold (--min-icc)")
    from facefeat.robustness import filter_features

    kept, record = filter_features(columns, robustness, min_icc=min_icc)
    if not kept:
        raise DataError(f"no image feature reaches {record['form']} >= {record['min_icc']} in {record['table']} "
                        f"({record['dropped']} dropped); lower --min-icc or drop --robustness")
    sources["robustness"] = record
    extra = (f"; {record['not_assessed']} column(s) of extractor(s) the table does not cover kept unfiltered "
             f"({', '.join(record['not_assessed_extractors'])})" if record["not_assessed"] else "")
    report.add("robustness filter",
               f"kept {record['kept']} of {record['n_columns']} image feature columns with {record['form']} >= "
               f"{record['min_icc']:g} ({record['perturbation']} perturbations, {record['table']}, sha256 "
               f"{record['table_sha256']}); dropped "
               f"{record['dropped']} ({record['dropped_below']} below the threshold, {record['dropped_undefined']} "
               f"with an undefined ICC){extra}",
               count=record["dropped"], examples=record["dropped_columns"], level="info")
    return kept


#: Public clinical data sets shipped with scikit-survival, used for validation tables and tests.
REFERENCE_DATASETS = ("gbsg2", "whas500", "veterans", "flchain")


def load_reference_dataset(name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """One of scikit-survival's bundled data sets as ``(X, y)``, prepared as facefeat validates it.

    flchain: complete cases of ``creatinine``; ``chapter`` (cause of death, i.e. outcome
    information) removed; the 3 zero follow-up times set to half a day (facefeat refuses
    times <= 0; a small positive time is the documented fix for same-day events).

    Parameters
    ----------
    name : {"gbsg2", "whas500", "veterans", "flchain"}
    """
    from sksurv import datasets

    loaders = {"gbsg2": datasets.load_gbsg2, "whas500": datasets.load_whas500,
               "veterans": datasets.load_veterans_lung_cancer, "flchain": datasets.load_flchain}
    if name not in loaders:
        raise ConfigError(f"unknown reference data set {name!r}; choose one of {list(REFERENCE_DATASETS)}")
    X, y = loaders[name]()
    if name == "flchain":
        X = X.drop(columns="chapter")
        keep = X["creatinine"].notna().to_numpy()
        X, y = X[keep].reset_index(drop=True), y[keep].copy()
        y["futime"][y["futime"] <= 0] = 0.5
    return X, y


def dataset_schema(ds: SurvivalDataset) -> dict:
    """What a table must look like to be scored by a model fitted on ``ds`` (stored in model.json).

    ``blocks`` (name -> columns), ``categorical`` and ``feature_tables`` (file and source
    columns per extractor table); :func:`facefeat.survival.persist.check_schema` compares two.
    """
    return {"blocks": ds.blocks, "categorical": ds.categorical,
            "feature_tables": [{k: t[k] for k in ("file", "columns")} for t in ds.feature_schema]}


def load_model_dataset(
    meta: dict,
    *,
    clinical: str | Path | pd.DataFrame | None,
    features: str | Path | Sequence[str | Path] | None,
    time: str | None = None,
    event: str | None = None,
    id_column: str | None = None,
    unmatched: str = "drop",
    require_target: bool = True,
    sep: str | None = None,
    decimal: str | None = None,
    mismatch: str | None = None,
) -> SurvivalDataset:
    """The data set of new (or the same) subjects, built the way a saved model was fitted.

    Uses the data settings recorded by ``facefeat fit`` in ``meta`` (id column, target names,
    the covariates the model used, categorical columns, photo aggregation and order, blocks)
    and refuses data whose columns or feature tables differ from the model's schema.

    Parameters
    ----------
    meta : dict
        ``model.json`` of the model directory (second item of
        :func:`facefeat.survival.persist.load_model`).
    clinical, features
        As for :func:`load_survival_data`.
    time, event, id_column : str, optional
        Override the recorded column names (e.g. a validation cohort's own names).
    unmatched, require_target, sep, decimal
        As for :func:`load_survival_data`.
    mismatch : str, optional
        Prefix of the schema error, naming the caller's inputs (e.g. ``"RUN_DIR x does not
        match MODEL_DIR y"``).

    Raises
    ------
    DataError
        The data do not have the model's schema (every difference listed).
    """
    from facefeat.survival.persist import check_schema

    settings = dict(meta.get("settings") or {})
    ds = load_survival_data(
        clinical=clinical, features=features, id_column=id_column or settings.get("id_column") or "subject_id",
        time=time or settings.get("time") or "time", event=event or settings.get("event") or "event",
        covariates=list(settings.get("covariates_used") or []) or "none", categorical=settings.get("categorical"),
        aggregate=settings.get("aggregate") or "mean", image_order=settings.get("image_order"), unmatched=unmatched,
        block_per_extractor=bool(settings.get("block_per_extractor")), sep=sep, decimal=decimal,
        require_target=require_target, robustness=((meta.get("provenance") or {}).get("sources") or {}).get("robustness"),
    )
    try:
        check_schema(meta.get("schema") or {}, dataset_schema(ds))
    except DataError as exc:
        if mismatch is None:
            raise
        raise DataError(f"{mismatch}: {exc}") from None
    return ds
