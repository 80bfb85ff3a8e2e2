"""The comparison stage: every arm against the reference arm, on identical folds.

Composes :mod:`facefeat.survival`'s statistics, never recomputing one: the paired differences
of Harrell's C, Uno's C, mean time-dependent AUC and IBS over the shared test folds
(:func:`facefeat.survival.compare.paired_comparison`), the likelihood-ratio test of the added
block for nested coxph arms on the full data
(:func:`facefeat.survival.compare.likelihood_ratio_test`), and the subgroup audit of each arm's
out-of-fold risk (:func:`facefeat.survival.subgroups.subgroup_audit`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from facefeat.errors import DataError
from facefeat.study import stages as st

#: Metrics of the comparison, in table order.
METRICS = ("c_index", "uno_c", "auc_mean", "ibs")
METRIC_NAMES = {"c_index": "Harrell's C", "uno_c": "Uno's C", "auc_mean": "mean td-AUC",
                "ibs": "integrated Brier score"}


def load_cv(arm_dir: Path):
    """The :class:`~facefeat.survival.validation.CVResult` an arm stage wrote."""
    from facefeat.survival.validation import CVResult

    data = json.loads((arm_dir / "cv" / "results.json").read_text())
    folds = pd.read_parquet(arm_dir / "folds.parquet")
    summary = pd.read_parquet(arm_dir / "summary.parquet")
    oof = pd.read_parquet(arm_dir / "oof.parquet").rename(columns={"subject_id": "id"})
    auc = pd.DataFrame(data.get("auc") or [])
    return CVResult(folds, summary, oof, auc, {}, data.get("settings") or {}, list(data.get("notes") or []))


def _arm_spec(config: Mapping[str, Any], name: str) -> dict[str, Any]:
    return next(a for a in config["arms"] if a["name"] == name)


def compare_arms(config: Mapping[str, Any], folder: Path, data) -> tuple[list[Path], dict]:
    """Write ``comparison.csv`` / ``.parquet`` (one row per arm and metric), ``comparison/lrt``,
    ``comparison/arms`` and ``comparison/subgroups`` (CSV + Parquet)."""
    from facefeat.study.arms import arm_columns, nested_design
    from facefeat.survival.compare import likelihood_ratio_test, paired_comparison
    from facefeat.survival.subgroups import subgroup_audit

    ref_name = config["reference"]
    level = float(config["cv"]["level"])
    cvs = {a["name"]: load_cv(folder / "arms" / a["name"]) for a in config["arms"]}
    hashes = {n: cv.settings.get("splits_sha256") for n, cv in cvs.items()}
    if len(set(hashes.values())) != 1 or None in hashes.values():
        raise DataError(f"the arms were not cross-validated on identical subject splits (splits_sha256 {hashes}); "
                        "delete the arms/ folder and run the study again")
    ref_cv = cvs[ref_name]
    rows, lrt_rows, arm_rows, sub_frames = [], [], [], []
    ref_summary = ref_cv.summary.set_index("metric")
    for arm in config["arms"]:
        name = arm["name"]
        cv = cvs[name]
        summ = cv.summary.set_index("metric")
        arm_rows.append({
            "arm": name, "reference": name == ref_name, "model": arm["model"], "fusion": arm["fusion"],
            "features": ", ".join(arm["features"]), "pca": arm["pca"], "n": cv.settings.get("n"),
            "events": cv.settings.get("events"),
            **{f"{m}{s}": float(summ.loc[m, k]) for m in METRICS for s, k in (("", "mean"), ("_ci_low", "ci_low"),
                                                                             ("_ci_high", "ci_high"))},
        })
        if name != ref_name:
            paired = paired_comparison(cv, ref_cv, level=level)
            for rec in paired.to_dict(orient="records"):
                m = rec["metric"]
                rows.append({"arm": name, "reference": ref_name, "metric": m,
                             "arm_estimate": float(summ.loc[m, "mean"]) if m in summ.index else math.nan,
                             "reference_estimate": float(ref_summary.loc[m, "mean"]) if m in ref_summary.index else math.nan,
                             "difference": rec["difference"], "ci_low": rec["ci_low"], "ci_high": rec["ci_high"],
                             "p_value": rec["p_value"], "better": rec.get("better", ""), "method": rec["method"]})
            ref = _arm_spec(config, ref_name)
            why = nested_design(arm, ref, arm_columns(arm, data.info), arm_columns(ref, data.info))
            lrt_rows.append(_lrt(folder, name, ref_name, why, data, likelihood_ratio_test))
        groups = _subgroup_frame(config, data, cv.oof["id"])
        if groups is not None:
            from facefeat.survival.target import to_structured

            oof = cv.oof
            y = to_structured(oof["event"].to_numpy(bool), oof["time"].to_numpy(float))
            sub = subgroup_audit(oof["risk"].to_numpy(float), y, groups,
                                 bands={k: list(v) for k, v in config["subgroups"]["bands"].items()} or None,
                                 min_events=config["subgroups"]["min_events"], level=level)
            sub.insert(0, "arm", name)
            sub_frames.append(sub)
    comp = pd.DataFrame(rows, columns=["arm", "reference", "metric", "arm_estimate", "reference_estimate",
                                       "difference", "ci_low", "ci_high", "p_value", "better", "method"])
    files = st.write_table(comp, folder / "comparison")
    files += st.write_table(pd.DataFrame(lrt_rows, columns=LRT_COLUMNS), folder / "comparison" / "lrt")
    files += st.write_table(pd.DataFrame(arm_rows), folder / "comparison" / "arms")
    if sub_frames:
        files += st.write_table(pd.concat(sub_frames, ignore_index=True), folder / "comparison" / "subgroups")
    return files, {"arms": len(arm_rows), "splits_sha256": next(iter(hashes.values()))}


LRT_COLUMNS = ["arm", "reference", "statistic", "df", "p_value", "n", "events", "loglik_full", "loglik_reduced",
               "added_columns", "method", "note"]


def _lrt(folder: Path, name: str, ref_name: str, why: str | None, data, lrt) -> dict[str, Any]:
    row: dict[str, Any] = {"arm": name, "reference": ref_name}
    if why is not None:
        return {**row, "note": f"no likelihood-ratio test: {why}"}
    design = pd.read_parquet(folder / "arms" / name / "design.parquet")
    ref_design = pd.read_parquet(folder / "arms" / ref_name / "design.parquet")
    ref_blocks = {c.split(":", 1)[0] for c in ref_design.columns}
    reduced = [c for c in design.columns if c.split(":", 1)[0] in ref_blocks]
    full = list(design.columns)
    res = lrt(design, data.y, full=full, reduced=reduced)
    return {**row, "statistic": res["statistic"], "df": res["df"], "p_value": res["p_value"], "n": res["n"],
            "events": res["events"], "loglik_full": res["loglik_full"], "loglik_reduced": res["loglik_reduced"],
            "added_columns": len(full) - len(reduced),
            "method": "likelihood-ratio test of nested unpenalised Cox models (Efron ties) on all subjects; "
                      "design as the arm's blocks transform it (standardised, PCA scores); df = added columns",
            "note": ""}


def _subgroup_frame(config: Mapping[str, Any], data, ids: pd.Series) -> pd.DataFrame | None:
    cols = list(config["subgroups"]["columns"])
    if not cols:
        return None
    return data.X.loc[ids.astype(str).to_numpy(), cols].reset_index(drop=True)


def read_comparison(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(comparison, lrt, arms)`` of a finished study folder."""
    folder = Path(folder)
    return (pd.read_parquet(folder / "comparison.parquet"), pd.read_parquet(folder / "comparison" / "lrt.parquet"),
            pd.read_parquet(folder / "comparison" / "arms.parquet"))


def _ci(est: float, lo: float, hi: float, digits: int = 3) -> str:
    if not np.isfinite(est):
        return "n/a"
    return f"{est:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def headline(result) -> str:
    """One line per arm: C-index with interval, the difference from the reference with its
    interval and p-value, and the LRT p where defined."""
    arms, comp, lrt = result.arms, result.comparison, result.lrt
    lines = []
    head = f"{'arm':<22} {'Harrell C [95% CI]':<24} {'dC vs ' + result.reference + ' [95% CI]':<30} {'p':>7} {'LRT p':>9}"
    lines.append(head)
    lines.append("-" * len(head))
    for r in arms.to_dict(orient="records"):
        c = _ci(r["c_index"], r["c_index_ci_low"], r["c_index_ci_high"])
        d = comp[(comp["arm"] == r["arm"]) & (comp["metric"] == "c_index")]
        diff, p = ("(reference)", "") if r["reference"] or d.empty else (
            _ci(d["difference"].iloc[0], d["ci_low"].iloc[0], d["ci_high"].iloc[0], 3), f"{d['p_value'].iloc[0]:.3g}")
        lr = lrt[lrt["arm"] == r["arm"]]
        lp = "" if lr.empty or not np.isfinite(lr["p_value"].iloc[0]) else f"{lr['p_value'].iloc[0]:.3g}"
        lines.append(f"{r['arm']:<22} {c:<24} {diff:<30} {p:>7} {lp:>9}")
    return "\n".join(lines)
