"""Exports for statisticians: every table of the study as CSV and Parquet, with a data dictionary.

``exports/`` holds the out-of-fold predictions per arm and subject, the per-fold metrics, the
comparison, the likelihood-ratio tests, the subgroup audit, the hazard-ratio tables and the
modelling table, and ``README.md`` describing every column (unit and meaning). With
``outputs.pseudonymise: KEYFILE`` every subject id is replaced by its keyed pseudonym
(:func:`facefeat.io.pseudonym.pseudonymise`: the same key gives the same pseudonym in every
study), and nothing that could point back at a patient's file leaves: no paths, no image ids
(hashes of the photo files), no pixels or EXIF (exports hold numbers only).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from facefeat.study import stages as st
from facefeat.study.comparison import load_cv

#: Columns never exported: file paths and photo hashes identify files, and file names are
#: often patient names or hospital numbers.
DROPPED = ("path", "image_id", "image_path", "file", "filename")

#: Meaning and unit of the columns the study writes itself ({unit}: the study's time unit).
COLUMNS: dict[str, tuple[str, str]] = {
    "arm": ("", "arm name (study.yaml arms[].name)"),
    "reference": ("", "reference arm of the comparison"),
    "subject_id": ("", "subject id of the clinical table"),
    "fold": ("", "test fold (0-based): oof_predictions: the fold that predicted the subject (first CV repeat); "
                 "fold_metrics: the fold whose test part the row scores"),
    "repeat": ("", "CV repeat (0-based)"),
    "risk": ("log relative hazard (model scale)", "out-of-fold risk score; higher = worse prognosis"),
    "risk_group": ("", "risk group by the quantiles of the training fold's risk (0 = lowest)"),
    "time": ("{unit}", "follow-up time"),
    "event": ("", "1/True = event observed, 0/False = censored"),
    "metric": ("", "c_index (Harrell), uno_c (Uno's C, truncated at tau), auc_mean (mean cumulative/dynamic "
                   "time-dependent AUC), ibs (integrated Brier score)"),
    "arm_estimate": ("metric's scale", "the arm's cross-validated mean of the metric"),
    "reference_estimate": ("metric's scale", "the reference arm's cross-validated mean"),
    "difference": ("metric's scale", "arm minus reference, paired over identical folds"),
    "ci_low": ("metric's scale", "lower end of the interval (level: study.yaml cv.level)"),
    "ci_high": ("metric's scale", "upper end of the interval"),
    "p_value": ("", "two-sided p-value"),
    "better": ("", "which direction of the difference is better (ibs: lower)"),
    "method": ("", "how the interval / test was computed"),
    "statistic": ("chi-square", "likelihood-ratio statistic 2 (loglik_full - loglik_reduced)"),
    "df": ("", "degrees of freedom (added columns)"),
    "n": ("subjects", "subjects used"),
    "events": ("events", "events among them"),
    "loglik_full": ("log-likelihood", "partial log-likelihood of the full model"),
    "loglik_reduced": ("log-likelihood", "partial log-likelihood of the reduced (reference) model"),
    "added_columns": ("", "design columns the arm adds to the reference"),
    "note": ("", "why a row has no value, or a caveat"),
    "c_index": ("[0, 1]", "Harrell's C-index"),
    "uno_c": ("[0, 1]", "Uno's C-index"),
    "auc_mean": ("[0, 1]", "mean time-dependent AUC"),
    "ibs": ("[0, 1]", "integrated Brier score (lower is better)"),
    "n_train": ("subjects", "training-fold size"),
    "fit_seconds": ("s", "time to fit the fold's model"),
    "params": ("", "hyperparameters chosen in the fold (nested CV), JSON"),
    "hr_per_sd": ("hazard ratio", "test fold: Cox hazard ratio per SD of the predicted risk score"),
    "hr_per_sd_low": ("hazard ratio", "lower end of its Wald interval"),
    "hr_per_sd_high": ("hazard ratio", "upper end of its Wald interval"),
    "hr_per_sd_p": ("", "Wald p-value of hr_per_sd"),
    "model": ("", "survival model of the arm (coxph, coxnet, rsf, gbsa, deepsurv)"),
    "fusion": ("", "early (one model on all blocks) or late (one model per block, stacked)"),
    "features": ("", "the arm's features: extractor tables and clinical covariates"),
    "pca": ("components or variance fraction", "PCA of each image block (empty: none)"),
    "term": ("", "model term (column, or level of a categorical column versus its reference level)"),
    "unit": ("", "what one unit of the term is (per unit, per SD, level vs reference)"),
    "coef": ("log hazard ratio", "Cox coefficient"),
    "se": ("log hazard ratio", "standard error of the coefficient"),
    "hr": ("hazard ratio", "exp(coef)"),
    "variable": ("", "column defining the subgroup"),
    "subgroup": ("", "subgroup level or band"),
    "interaction_p": ("", "p-value of the risk x subgroup interaction"),
}


def _pseudo(frame: pd.DataFrame, key: bytes | None) -> pd.DataFrame:
    from facefeat.io.pseudonym import pseudonymise

    frame = frame.drop(columns=[c for c in frame.columns if c in DROPPED], errors="ignore")
    if key is not None and "subject_id" in frame.columns:
        frame = frame.copy()
        frame["subject_id"] = pseudonymise(frame["subject_id"].astype(str), key)
    return frame


def _describe(column: str, feature_units: Mapping[str, tuple[str, str]], time_unit: str,
              covariates: list[str]) -> tuple[str, str]:
    if column in COLUMNS:
        unit, meaning = COLUMNS[column]
        return unit.format(unit=time_unit), meaning
    if column.startswith("surv_"):
        return "probability", f"predicted survival probability at time {column[5:]} {time_unit} (out-of-fold)"
    for suffix, what in (("_ci_low", "lower end of the interval of "), ("_ci_high", "upper end of the interval of ")):
        if column.endswith(suffix) and column[: -len(suffix)] in COLUMNS:
            unit, meaning = COLUMNS[column[: -len(suffix)]]
            return unit, what + meaning
    if column in feature_units:
        return feature_units[column]
    if column in covariates:
        return "as in the clinical table", "clinical covariate (inputs.covariates)"
    return "", "UNDOCUMENTED"  # tests/study check that no exported column ends here


def _feature_units(data) -> dict[str, tuple[str, str]]:
    out = {}
    for extractor, cols in data.info["blocks"].items():
        for c in cols:
            out[c] = ("see docs/features/" + extractor + ".md", f"feature of the {extractor} extractor "
                      "(mean over the subject's photos with status ok)")
    return out


def _dictionary(files: Mapping[str, pd.DataFrame], data, time_unit: str, pseudonymised: bool) -> str:
    units = _feature_units(data)
    lines = ["# Study exports: data dictionary", "",
             "Every file is written twice, as CSV (comma-separated, '.' decimal, UTF-8) and Parquet, with the same "
             f"columns. Times are in {time_unit}. Each arm was cross-validated on the same subject splits.", ""]
    if pseudonymised:
        from facefeat.io.pseudonym import PSEUDONYM_METHOD

        lines += [f"**subject_id holds keyed pseudonyms** ({PSEUDONYM_METHOD}); only the holder of the study key "
                  "can link them to patients. File paths and photo hashes are not exported.", ""]
    else:
        lines += ["subject_id holds the ids of the clinical table (not pseudonymised; set outputs.pseudonymise to a "
                  "key file before sharing). File paths and photo hashes are not exported.", ""]
    for name, frame in files.items():
        lines += [f"## {name}.csv / {name}.parquet", "", f"{len(frame)} rows.", "", "| column | unit | meaning |",
                  "| --- | --- | --- |"]
        cols = list(frame.columns)
        i = 0
        while i < len(cols):
            c = cols[i]
            m = re.match(r"^(.*?)(\d+)$", c)
            if m and c in units:
                # an embedding's dimensions: one row for the run of columns with one prefix
                j = i
                while j + 1 < len(cols) and cols[j + 1].startswith(m.group(1)) and cols[j + 1] in units \
                        and re.match(r"^\d+$", cols[j + 1][len(m.group(1)):]):
                    j += 1
                if j > i:
                    unit, meaning = units[c]
                    lines.append(f"| {c} ... {cols[j]} ({j - i + 1} columns) | {unit} | {meaning} |")
                    i = j + 1
                    continue
            unit, meaning = _describe(c, units, time_unit, list(data.info["covariates"]))
            lines.append(f"| {c} | {unit} | {meaning} |")
            i += 1
        lines.append("")
    return "\n".join(lines)


def write_exports(config: Mapping[str, Any], folder: Path, data) -> tuple[list[Path], dict]:
    """Write ``exports/`` (see the module notes); returns the files and a summary."""
    import shutil

    from facefeat.io.atomic import write_bytes_atomic

    out = Path(folder) / "exports"
    if out.exists():
        shutil.rmtree(out)  # exports of an earlier configuration (another key, other arms) never linger
    key = None
    if config["outputs"]["pseudonymise"]:
        from facefeat.io.pseudonym import load_key

        key = load_key(config["outputs"]["pseudonymise"])
    oof, folds, hrs = [], [], []
    for arm in config["arms"]:
        arm_dir = folder / "arms" / arm["name"]
        cv = load_cv(arm_dir)
        o = cv.oof.rename(columns={"id": "subject_id"}).drop(columns=["row"], errors="ignore")
        o.insert(0, "arm", arm["name"])
        oof.append(o)
        f = cv.folds.copy()
        f.insert(0, "arm", arm["name"])
        folds.append(f)
        hp = arm_dir / "hazard_ratios.parquet"
        if hp.is_file():
            hr = pd.read_parquet(hp)
            hr.insert(0, "arm", arm["name"])
            hrs.append(hr)
    modelling = data.X.copy()
    modelling.insert(0, "event", data.target["event"].to_numpy())
    modelling.insert(0, "time", data.target["time"].to_numpy())
    modelling = modelling.reset_index().rename(columns={modelling.index.name or "index": "subject_id"})
    tables = {
        "oof_predictions": pd.concat(oof, ignore_index=True),
        "fold_metrics": pd.concat(folds, ignore_index=True),
        "comparison": pd.read_parquet(folder / "comparison.parquet"),
        "lrt": pd.read_parquet(folder / "comparison" / "lrt.parquet"),
        "arms": pd.read_parquet(folder / "comparison" / "arms.parquet"),
        "modelling_table": modelling,
    }
    if hrs:
        tables["hazard_ratios"] = pd.concat(hrs, ignore_index=True)
    sub = folder / "comparison" / "subgroups.parquet"
    if sub.is_file():
        tables["subgroups"] = pd.read_parquet(sub)
    files: list[Path] = []
    tables = {name: _pseudo(frame, key) for name, frame in tables.items()}
    for name, frame in tables.items():
        files += st.write_table(frame, out / name)
    text = _dictionary(tables, data, config["inputs"]["time_unit"], key is not None)
    files.append(write_bytes_atomic(out / "README.md", text.encode()))
    return files, {"tables": sorted(tables), "pseudonymised": key is not None}
