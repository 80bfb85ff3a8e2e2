"""One arm of a study: its columns, its estimator, its cross-validation and its full-data fit.

Every arm reads the same modelling table (one row per subject, in one order) and is
cross-validated with the same folds, repeats and seed, so the splits are identical across arms
(checked by ``CVResult.settings["splits_sha256"]``) and arms compare pairwise over the same
test folds. The statistics are :mod:`facefeat.survival`'s; this module only composes them.
"""

from __future__ import annotations

import argparse
import json
import logging
import time as _time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from sklearn.base import clone

from facefeat.errors import ConfigError
from facefeat.io.jsonsafe import dumps_json
from facefeat.study.config import CLINICAL

log = logging.getLogger("facefeat.study")


def arm_columns(arm: Mapping[str, Any], dataset: Mapping[str, Any]) -> dict[str, list[str]]:
    """The modelling-table columns of an arm, by block (``clinical`` and one per extractor).

    ``dataset``: the modelling stage's description (``blocks``: extractor -> columns,
    ``covariates``).
    """
    blocks: dict[str, list[str]] = {}
    covs = list(dataset["covariates"])
    clinical = [c for c in covs if CLINICAL in arm["features"] or c in arm["features"]]
    if clinical:
        blocks["clinical"] = clinical
    for item in arm["features"]:
        if item in dataset["blocks"]:
            blocks[item] = list(dataset["blocks"][item])
    return blocks


def filter_robust(arm: Mapping[str, Any], blocks: dict[str, list[str]]) -> tuple[dict[str, list[str]], dict | None]:
    """Apply the arm's robustness filter (``min_icc``) to its image blocks; returns the kept
    blocks and the filter's provenance record."""
    spec = arm.get("robustness")
    if not spec:
        return blocks, None
    from facefeat.robustness import filter_features

    out, records = {}, {}
    for name, cols in blocks.items():
        if name == "clinical":
            out[name] = cols
            continue
        kept, rec = filter_features(cols, spec["table"], min_icc=float(spec["min_icc"]))
        records[name] = rec
        if not kept:
            raise ConfigError(f"arms ({arm['name']!r}).robustness: no feature of {name} reaches ICC "
                              f"{spec['min_icc']} in {spec['table']}; lower min_icc or drop {name} from the arm")
        out[name] = list(kept)
    return out, records


def build_arm_estimator(arm: Mapping[str, Any], blocks: Mapping[str, list[str]], categorical: list[str], *,
                        seed: int):
    """The :class:`~facefeat.survival.SurvivalEstimator` of an arm, built by the same function
    that builds ``facefeat fit`` / ``evaluate`` estimators from their options."""
    from facefeat.survival.cli import build_estimator

    if arm["block_per_extractor"] or len([b for b in blocks if b != "clinical"]) <= 1:
        model_blocks = dict(blocks)
    else:
        model_blocks = {k: v for k, v in blocks.items() if k == "clinical"}
        model_blocks["image"] = [c for k, v in blocks.items() if k != "clinical" for c in v]
    options = argparse.Namespace(
        impute=arm["impute"], pca=None if arm["pca"] is None else str(arm["pca"]),
        param=[f"{k}={json.dumps(v)}" for k, v in (arm["params"] or {}).items()], weights=None,
        fusion=arm["fusion"], model=arm["model"], clinical_model=None, combiner="stack", seed=seed)
    shape = argparse.Namespace(blocks=model_blocks, categorical=[c for c in categorical if c in blocks.get("clinical", [])])
    return build_estimator(options, shape)


#: Cox models whose arms get a likelihood-ratio test of the added block (fitted unpenalised).
COX_MODELS = ("coxph", "coxnet")


def nested_design(arm: Mapping[str, Any], reference: Mapping[str, Any], blocks: Mapping[str, list[str]],
                  ref_blocks: Mapping[str, list[str]]) -> str | None:
    """Why a likelihood-ratio test of ``arm`` against ``reference`` is not defined, or None.

    Defined when both are early-fusion Cox arms (coxph or coxnet) and the reference's blocks
    are a subset of the arm's with the same preprocessing: the test then compares unpenalised
    Cox fits of the arm's design with and without the added blocks (the penalty of a coxnet
    arm is a fitting device, not part of the hypothesis that the block adds information).
    """
    for a in (arm, reference):
        if a["model"] not in COX_MODELS or a["fusion"] != "early":
            return f"arm {a['name']!r} is not an early-fusion Cox model (coxph, coxnet)"
    for name, cols in ref_blocks.items():
        if name not in blocks or list(blocks[name]) != list(cols):
            return f"the reference's {name} columns are not all in arm {arm['name']!r}"
    if any(n != "clinical" for n in ref_blocks) and (arm["pca"] != reference["pca"]):
        return "the image blocks are reduced differently (pca)"
    if arm["impute"] != reference["impute"]:
        return "the arms impute differently"
    if set(ref_blocks) == set(blocks):
        return "the arms have the same blocks (not nested)"
    return None


def full_design(estimator, X: pd.DataFrame) -> pd.DataFrame:
    """The design matrix a fitted early-fusion estimator gives its model (block transforms,
    names ``<block>:<feature>``), for the likelihood-ratio test on the full data."""
    parts, names = [], []
    for name, blk in estimator.blocks_.items():
        parts.append(blk.transform(X))
        names.extend(f"{name}:{f}" for f in blk.get_feature_names_out())
    return pd.DataFrame(np.hstack(parts), columns=names, index=X.index)


def run_arm(arm: Mapping[str, Any], X: pd.DataFrame, y: np.ndarray, blocks: dict[str, list[str]],
            categorical: list[str], cv: Mapping[str, Any], out: Path, *, time_unit: str,
            robustness: dict | None = None, jobs: int = 1, data_sources: Mapping[str, Any] | None = None
            ) -> tuple[list[Path], dict[str, Any]]:
    """Cross-validate one arm, fit it on all subjects, and write its folder.

    Writes ``cv/`` (:func:`facefeat.survival.results.write_cv_results`: the layout of
    ``facefeat evaluate``, which the report's per-arm sections read), ``folds.csv`` / ``oof.csv`` / ``summary.csv``
    (+ Parquet), ``model/`` (:func:`facefeat.survival.persist.save_model`), ``hazard_ratios``
    for coxph arms, and ``design.parquet`` (full-data design) for early-fusion Cox arms.

    Returns the written files and a summary dict.
    """
    from facefeat.io.atomic import atomic_output
    from facefeat.study.stages import write_json, write_table
    from facefeat.survival.metrics import risk_cutoffs
    from facefeat.survival.persist import save_model, spec_fingerprint
    from facefeat.survival.results import write_cv_results
    from facefeat.survival.validation import cross_validate

    t0 = _time.perf_counter()
    cols = [c for v in blocks.values() for c in v]
    Xa = X[cols]
    est = build_arm_estimator(arm, blocks, categorical, seed=cv["seed"])
    res = cross_validate(est, Xa, y, n_splits=cv["folds"], n_repeats=cv["repeats"], random_state=cv["seed"],
                         risk_groups=cv["risk_groups"], n_jobs=jobs)
    t_cv = _time.perf_counter() - t0
    fitted = clone(est).fit(Xa, y)
    files: list[Path] = []
    risk = fitted.predict(Xa)
    ds_schema = {"blocks": {k: list(v) for k, v in blocks.items()}, "categorical": categorical, "feature_tables": []}
    settings = {"id_column": "subject_id", "risk_cutoffs": risk_cutoffs(risk, cv["risk_groups"]).tolist(),
                "covariates_used": blocks.get("clinical", []), "time_unit": time_unit, "arm": arm["name"]}
    # cv/: the one cross-validation layout (evaluate, simulate, the report's reader), matched to
    # the saved model by its specification fingerprint
    write_cv_results(out / "cv", res, model=arm["model"], fusion=arm["fusion"],
                     spec_sha256=spec_fingerprint(fitted, ds_schema, settings), title=f"Study arm {arm['name']}",
                     extra={"arm": arm["name"], "time_unit": time_unit})
    files += [out / "cv" / "results.json", out / "cv" / "results.md", out / "cv" / "oof_predictions.csv"]
    oof = res.oof.drop(columns=["row"]).rename(columns={"id": "subject_id"})
    files += write_table(oof, out / "oof")
    folds = res.folds.copy()
    if "params" in folds:
        folds["params"] = folds["params"].map(lambda p: dumps_json(p, sort_keys=True))
    files += write_table(folds, out / "folds")
    files += write_table(res.summary, out / "summary")
    save_model(out / "model", fitted, schema=ds_schema, settings=settings,
               provenance={"study_arm": dict(arm), "robustness_filter": robustness, "sources": dict(data_sources or {}),
                           "n_subjects": int(len(y)), "n_events": int(y["event"].sum())})
    files += sorted(p for p in (out / "model").iterdir() if p.is_file() and not p.name.startswith("."))
    if arm["model"] == "coxph" and arm["fusion"] == "early":
        from facefeat.survival.hazard import hazard_ratio_table

        hr = hazard_ratio_table(fitted)
        files += write_table(hr, out / "hazard_ratios")
    if arm["model"] in COX_MODELS and arm["fusion"] == "early":
        design = full_design(fitted, Xa)
        with atomic_output(out / "design.parquet", suffix=".parquet") as tmp:
            design.to_parquet(tmp)
        files.append(out / "design.parquet")
    summary = res.summary.set_index("metric")
    info = {"arm": arm["name"], "n": int(len(y)), "events": int(y["event"].sum()),
            "columns": {k: len(v) for k, v in blocks.items()},
            "splits_sha256": res.settings.get("splits_sha256"), "cv_seconds": t_cv,
            "c_index": float(summary.loc["c_index", "mean"]), "robustness": robustness,
            "notes": list(dict.fromkeys(res.notes)), "model_sha256": _model_hash(out / "model")}
    files.append(write_json(out / "arm.json", info))
    return files, info


def _model_hash(model_dir: Path) -> str | None:
    meta = model_dir / "model.json"
    try:
        return json.loads(meta.read_text()).get("model_sha256")
    except (OSError, json.JSONDecodeError):
        return None
