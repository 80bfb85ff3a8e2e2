"""Cross-validated performance for the report: read it from a ``facefeat evaluate`` folder, or
compute it now with :func:`facefeat.survival.validation.cross_validate`.

The model in ``MODEL_DIR`` was fitted on all subjects, so its own predictions on them are
optimistic. Everything the report shows about performance (the metrics table, the risk-group
Kaplan-Meier curves, calibration) comes from out-of-fold predictions: each subject is scored
by a model that did not see it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from facefeat.errors import DataError, InputError
from facefeat.survival.metrics import assign_risk_groups, risk_cutoffs

#: Where a stored cross-validation (``facefeat evaluate --out ...``) is looked for, in MODEL_DIR.
STORED_CV_DIRS = ("cv", "evaluate", ".")

#: Fewest subjects in a test fold when the report cross-validates (smaller folds leave metrics undefined).
MIN_TEST_FOLD = 5

METRIC_LABELS = {
    "c_index": "Harrell's C-index",
    "uno_c": "Uno's C-index",
    "auc_mean": "mean time-dependent AUC",
    "ibs": "integrated Brier score (lower is better)",
    "hr_per_sd": "hazard ratio per SD of risk",
}


@dataclass
class Validation:
    """Cross-validated metrics and out-of-fold predictions, with where they came from."""

    summary: pd.DataFrame
    oof: pd.DataFrame  # id, time, event, risk, risk_group
    calibration: dict[float, pd.DataFrame]
    auc: pd.DataFrame
    settings: dict[str, Any]
    source: str  # sentence saying whether it was stored or computed, and how
    computed: bool
    group_rule: str  # how the out-of-fold risk groups were formed
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # shown visibly (e.g. a stored CV of another model)
    stored: dict[str, Any] = field(default_factory=dict)  # model / fusion named in a stored results.json


def find_stored_cv(model_dir: str | Path) -> Path | None:
    """A ``facefeat evaluate`` cross-validation folder inside MODEL_DIR (``cv/``, ``evaluate/`` or
    MODEL_DIR itself), or None."""
    for sub in STORED_CV_DIRS:
        d = Path(model_dir) / sub
        f = d / "results.json"
        if f.is_file():
            try:
                data = json.loads(f.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if data.get("mode") == "cross-validation":
                return d
    return None


def load_stored_cv(cv_dir: str | Path, *, risk_groups: int = 3) -> Validation:
    """Read ``results.json`` and ``oof_predictions.csv`` written by ``facefeat evaluate``."""
    cv_dir = Path(cv_dir)
    data = json.loads((cv_dir / "results.json").read_text())
    if data.get("mode") != "cross-validation":
        raise InputError(f"{cv_dir / 'results.json'} is not a cross-validation result (mode {data.get('mode')!r}); "
                         "pass the --out folder of 'facefeat evaluate' without --model-dir")
    oof_path = cv_dir / "oof_predictions.csv"
    if not oof_path.is_file():
        raise InputError(f"{oof_path} is missing: the risk-group curves need the out-of-fold predictions that "
                         "'facefeat evaluate' writes next to results.json; re-run it")
    oof = pd.read_csv(oof_path, dtype={"id": str})
    need = [c for c in ("time", "event", "risk") if c not in oof.columns]
    if need:
        raise InputError(f"{oof_path} lacks column(s) {need}; re-run 'facefeat evaluate'")
    settings = data.get("settings") or {}
    stored_groups = int(settings.get("risk_groups") or 0)
    if stored_groups == risk_groups and "risk_group" in oof.columns:
        rule = (f"{risk_groups} groups by the quantiles of each training fold's risk, applied to its test fold "
                "(as stored by 'facefeat evaluate')")
    else:
        oof["risk_group"] = assign_risk_groups(oof["risk"].to_numpy(float),
                                              risk_cutoffs(oof["risk"].to_numpy(float), risk_groups))
        rule = f"{risk_groups} groups by quantiles of the pooled out-of-fold risk (first CV repeat)"
    calibration = {float(t): pd.DataFrame(rows) for t, rows in (data.get("calibration") or {}).items()}
    summary = pd.DataFrame(data.get("summary") or [])
    if len(summary):
        summary = summary.fillna(value=np.nan)
    source = (f"stored: read from {cv_dir / 'results.json'} ({settings.get('n_repeats')} x "
              f"{settings.get('n_splits')}-fold cross-validation by 'facefeat evaluate', model "
              f"{data.get('model')}, {data.get('fusion')} fusion)")
    return Validation(summary, oof, calibration, pd.DataFrame(data.get("auc") or []), settings, source, False, rule,
                      list(dict.fromkeys(data.get("notes") or [])),
                      stored={"model": data.get("model"), "fusion": data.get("fusion"),
                              "spec_sha256": data.get("spec_sha256"), "dir": str(cv_dir)})


def stored_cv_mismatch(val: Validation, spec_sha256: str, n_subjects: int, n_events: int) -> str | None:
    """Why a stored cross-validation does not describe the saved model on these subjects, or None.

    It describes it only when its specification fingerprint (``spec_sha256`` in results.json,
    :func:`facefeat.survival.persist.spec_fingerprint`) equals the model's and it was run on as
    many subjects and events.
    """
    where = val.stored.get("dir")
    got = val.stored.get("spec_sha256")
    if not got:
        return (f"the cross-validation stored in {where} records no model specification (written by an older "
                "facefeat), so it cannot be matched to the saved model")
    if got != spec_sha256:
        return (f"the cross-validation stored in {where} is of another model specification (model "
                f"{val.stored.get('model')!r}, {val.stored.get('fusion')} fusion; specification sha256 {got[:12]} "
                f"against the saved model's {spec_sha256[:12]}): 'facefeat evaluate' was run with other options "
                "than 'facefeat fit'")
    n, ev = val.settings.get("n"), val.settings.get("events")
    if n is not None and (int(n) != n_subjects or (ev is not None and int(ev) != n_events)):
        return (f"the cross-validation stored in {where} has {n} subjects and {ev} events, this study {n_subjects} "
                f"and {n_events}: it was run on other data")
    return None


def compute_cv(estimator: Any, X: Any, y: Any, *, n_splits: int = 5, n_repeats: int = 5, risk_groups: int = 3,
               random_state: int = 0, n_jobs: int = 1, why: str | None = None) -> Validation:
    """Cross-validate a copy of the saved model's specification (refitted inside every fold)."""
    from sklearn.base import clone

    from facefeat.survival.validation import cross_validate

    n, n_ev = len(y), int(np.asarray(y["event"]).sum())
    # every test fold needs an event and a few subjects for the metrics to be defined
    n_splits_used = min(n_splits, n_ev, n // MIN_TEST_FOLD)
    if n_splits_used < 2:
        raise DataError(f"only {n} subjects with {n_ev} events: too few to cross-validate (2 folds need at least "
                        f"2 events and {2 * MIN_TEST_FOLD} subjects); the report shows cross-validated performance "
                        "only. Add subjects, or store a cross-validation made elsewhere in MODEL_DIR/cv/ "
                        "('facefeat evaluate ... --out MODEL_DIR/cv')")
    try:
        res = cross_validate(clone(estimator), X, y, n_splits=n_splits_used, n_repeats=n_repeats,
                             risk_groups=risk_groups, random_state=random_state, n_jobs=n_jobs)
    except ValueError as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cross-validation of the model on {n} subjects ({n_ev} events, {n_splits_used} folds) "
                        f"failed: {exc}. With few subjects use fewer folds (--cv-folds) or add subjects") from exc
    notes = list(dict.fromkeys(res.notes))
    if n_splits_used != n_splits:
        notes.insert(0, f"{n_splits_used} folds instead of {n_splits}: only {n} subjects and {n_ev} events")
    source = (f"computed now: {n_repeats} x {n_splits_used}-fold cross-validation (stratified on the event, seed "
              f"{random_state}) of the saved model's specification ({type(estimator).__name__} with the same "
              "parameters), refitted inside every training fold by facefeat.survival.cross_validate; "
              + (f"not the stored one: {why}" if why else "MODEL_DIR holds no stored cross-validation"))
    rule = (f"{risk_groups} groups by the quantiles (tertiles for 3) of each training fold's risk, applied to its "
            "test fold (first CV repeat); no subject is grouped by a model that saw it")
    val = Validation(res.summary, res.oof, res.calibration, res.auc, res.settings, source, True, rule, notes)
    if why:
        val.warnings.append(f"the stored cross-validation was not used: {why}; the figures below were computed now")
    return val


def group_table(oof: pd.DataFrame, *, unit: str | None = None) -> list[dict]:
    """Per risk group: subjects, events, mean risk and Kaplan-Meier median survival (in ``unit``)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    from facefeat.survival.plots import risk_group_names

    rows = []
    groups = sorted(oof["risk_group"].unique())
    names = risk_group_names(groups)
    median_col = f"median survival (KM, {unit})" if unit else "median survival (KM)"
    for g in groups:
        d = oof[oof["risk_group"] == g]
        e, t = d["event"].to_numpy(bool), d["time"].to_numpy(float)
        median = math.nan
        if e.any():
            x, s = kaplan_meier_estimator(e, t)
            below = np.flatnonzero(s <= 0.5)
            median = float(x[below[0]]) if len(below) else math.nan
        rows.append({"risk group": names[int(g)], "subjects": int(len(d)), "events": int(e.sum()),
                     "mean out-of-fold risk": float(d["risk"].mean()),
                     median_col: median if math.isfinite(median) else "not reached"})
    return rows
