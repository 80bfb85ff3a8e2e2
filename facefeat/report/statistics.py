"""Report sections of the survival statistics: the hazard-ratio table with its forest plot, the
subgroup audit of the out-of-fold risk, and the feature-robustness filter the model used.

Each builds on the one implementation in :mod:`facefeat.survival` (``hazard_ratio_table``,
``subgroup_audit``) or :mod:`facefeat.robustness`; when a section cannot be made, a visible note
says why, as every report section does.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from facefeat.report import html as h
from facefeat.report.figures import plot_png
from facefeat.report.study import Study
from facefeat.report.validation import Validation


def hazard_section(study: Study) -> h.Section:
    """Hazard ratios of the saved Cox model (HR, 95 % Wald interval, p, unit of each row) and a forest plot."""
    from facefeat.errors import FacefeatError
    from facefeat.survival.hazard import hazard_ratio_table
    from facefeat.survival.plots import plot_forest

    try:
        table = hazard_ratio_table(study.estimator)
    except FacefeatError as exc:
        return h.Section("hazard", "Hazard ratios", h.note(f"No hazard-ratio table: {exc}", kind="absent"))
    penalised = table["p_value"].isna().all()
    method = ("This model is penalised: its hazard ratios are shrunk towards 1 and have no valid Wald interval or "
              "p-value (the note column says why; 'facefeat fit' can add bootstrap intervals)" if penalised else
              "95 % Wald intervals and Wald p-values from the inverse of the partial likelihood's information matrix")
    body = [h.para(
        "Hazard ratios of the model fitted on all subjects, per unit of each row as stated (per SD where the model "
        f"standardised the column; a category level against its reference level). {method}. Apparent associations "
        "on the training data, not cross-validated performance.")]
    notes = table["note"].fillna("") if "note" in table.columns else pd.Series([""] * len(table))
    common = notes.mode().iloc[0] if len(notes) and notes.str.len().gt(0).any() else ""
    if common and (notes == common).sum() > 1:
        # one note for most rows (e.g. why a penalised model has no p-values): said once, not in every row
        body.append(h.para(f"Note on the rows marked *: {common}.", muted=True))
        table = table.assign(note=[("*" if n == common else n.replace(common, "*")) for n in notes])
    cols = [c for c in ("term", "unit", "hr", "ci_low", "ci_high", "p_value", "note") if c in table.columns]
    body.append(h.table(table, cols, headers={"hr": "HR", "ci_low": "95 % low", "ci_high": "95 % high",
                                              "p_value": "Wald p"}, caption="Hazard ratios (saved model)"))
    finite = table[np.isfinite(table["ci_low"].astype(float)) & np.isfinite(table["ci_high"].astype(float))]
    shown = finite.head(30)
    if len(shown):
        png, _ = plot_png(plot_forest, [f"{t} ({u})" for t, u in zip(shown["term"], shown["unit"])], shown["hr"],
                          shown["ci_low"], shown["ci_high"], xlabel="hazard ratio (log scale), 95 % interval",
                          title="Hazard ratios of the saved model")
        body.append(h.image(png, alt="forest plot of the hazard ratios",
                            caption=f"{len(shown)} of {len(table)} rows with an interval"
                                    + (" (the first 30)" if len(finite) > 30 else "") + "; dotted: HR = 1.",
                            width=620))
    return h.Section("hazard", "Hazard ratios", "".join(body))


def default_subgroup_columns(study: Study) -> list[str]:
    """The model's clinical covariates: the subgroups audited when none are named."""
    return [str(c) for c in (study.settings.get("covariates_used") or [])]


def subgroup_section(study: Study, val: Validation, columns: Sequence[str] | None = None, *,
                     min_events: int = 5) -> h.Section:
    """Harrell's C of the out-of-fold risk within subgroups, with intervals and a risk x subgroup test."""
    from facefeat.survival.subgroups import subgroup_audit
    from facefeat.survival.tables import read_clinical
    from facefeat.survival.target import to_structured

    columns = list(columns) if columns else default_subgroup_columns(study)
    if not columns:
        return h.Section("subgroups", "Subgroup audit", h.note(
            "No subgroup audit: the model uses no clinical covariate and no column was named; pass "
            "--subgroups COL[,COL...] (columns of the clinical table, e.g. sex, age, stage).", kind="absent"))
    id_column = study.settings.get("id_column") or "subject_id"
    clin = read_clinical(study.clinical_path)
    clin = clin.set_axis(clin[id_column].astype(str)) if id_column in clin.columns else clin
    missing = [c for c in columns if c not in clin.columns]
    if missing:
        return h.Section("subgroups", "Subgroup audit", h.note(
            f"No subgroup audit: column(s) {missing} are not in the clinical table {study.clinical_path} "
            f"(it has {sorted(map(str, clin.columns))[:12]}).", kind="warning"))
    oof = val.oof
    ids = oof["id"].astype(str) if "id" in oof.columns else None
    if ids is None or not ids.isin(clin.index.astype(str)).all():
        return h.Section("subgroups", "Subgroup audit", h.note(
            "No subgroup audit: the out-of-fold predictions do not carry the subjects' ids of the clinical table.",
            kind="absent"))
    groups = clin.loc[ids.to_numpy(), columns].reset_index(drop=True)
    y = to_structured(oof["event"].to_numpy(bool), oof["time"].to_numpy(float))
    table = subgroup_audit(oof["risk"].to_numpy(float), y, groups, min_events=min_events)
    method = str(table["method"].dropna().iloc[0]) if "method" in table.columns and table["method"].notna().any() else ""
    body = [h.para(
        "Harrell's C of the out-of-fold risk (first CV repeat) within each subgroup, with subjects and events; "
        "numeric columns in tertiles. Interaction p: likelihood-ratio test of risk x subgroup in a Cox model of the "
        "out-of-fold risk, subgroup and their product (a small p means the risk discriminates differently across "
        f"the subgroups). Subgroups with fewer than {min_events} events are listed with the reason, not dropped. "
        + (f"Intervals: {method}." if method else "")),
        h.table(table, [c for c in ("variable", "subgroup", "n", "events", "c_index", "ci_low", "ci_high",
                                    "interaction_p", "note") if c in table.columns],
                headers={"c_index": "Harrell's C", "ci_low": "95 % low", "ci_high": "95 % high",
                         "interaction_p": "interaction p"}, caption="Subgroup audit (out-of-fold)")]
    return h.Section("subgroups", "Subgroup audit", "".join(body))


def robustness_part(study: Study) -> h.Section | None:
    """The robustness section when the model was fitted with an ICC filter (``--robustness``), else None."""
    from pathlib import Path

    record = ((study.meta.get("provenance") or {}).get("sources") or {}).get("robustness")
    if not isinstance(record, dict):
        return None
    from facefeat.robustness.report import robustness_section

    table = record.get("table")
    if not table or not Path(table).exists():
        return h.Section("robustness", "Feature robustness", h.note(
            f"The model kept {record.get('kept')} of {record.get('n_columns')} image features with "
            f"{record.get('form')} >= {record.get('min_icc')}; the robustness table {table} is not on this machine, "
            "so its distribution is not shown.", kind="absent"))
    return robustness_section(table, filter_record=record)

