"""The report's sections, one function each, from a loaded :class:`~facefeat.report.study.Study`.

Each returns a :class:`~facefeat.report.html.Section`. A section that cannot be made says why in
a visible note; nothing is left out silently.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from facefeat.io.hashing import sha256_bytes, sha256_file
from facefeat.io.images import STATUSES
from facefeat.io.jsonsafe import dumps_json
from facefeat.report import html as h
from facefeat.report.figures import plot_png
from facefeat.report.study import Study
from facefeat.report.validation import METRIC_LABELS, Validation, group_table

MAX_LISTED_FAILURES = 50


# -- cohort ----------------------------------------------------------------------------------------

def image_status(study: Study) -> pd.DataFrame:
    """One row per image of the run: image_id, subject_id, and its status across the tables the
    model uses, by the one rule of :func:`facefeat.io.features.combine_status` (``ok`` only where
    every table says ok, else the first non-ok status in extractor order)."""
    from facefeat.io.tables import read_features

    tables = study.model_tables
    df = read_features([t.path for t in tables], flatten=False, include_failed=True)
    cols = ["image_id", "subject_id", "status"] + [c for c in df.columns if c.startswith("status__")]
    return df[cols]


def cohort_section(study: Study) -> h.Section:
    ds = study.dataset
    images = image_status(study)
    statuses = list(STATUSES)  # the one status vocabulary, in report order
    extra = sorted({s for t in study.tables for s in t.status_counts} - set(statuses))
    run_subjects = set(images["subject_id"].astype(str))
    usable = set(images.loc[images["status"] == "ok", "subject_id"].astype(str))
    analysed = [str(i) for i in ds.X.index]
    events = int(ds.y["event"].sum())
    clinical_ids = set(study.clinical_ids)

    body = [h.cards([
        ("subjects analysed", len(analysed)), ("events", events), ("censored", len(analysed) - events),
        ("images in the run", len(images)), ("images usable (ok in the model's tables)", int((images["status"] == "ok").sum())),
        ("images failed", int((images["status"] != "ok").sum())),
    ])]
    rows = []
    for t in study.tables:
        row: dict[str, Any] = {"table": t.name, "images": t.rows, "subjects": int(t.keys["subject_id"].nunique())}
        for s in statuses + extra:
            row[s] = int(t.status_counts.get(s, 0))
        row["not ok"] = t.rows - row["ok"]
        rows.append(row)
    body.append(h.table(rows, ["table", "images", "subjects", *statuses, *extra, "not ok"],
                        caption="Images per extractor table and status (from 'facefeat inspect')"))
    unused = [t.name for t in study.tables if t not in study.model_tables]
    if unused:
        body.append(h.para(f"The model does not use the table(s) {', '.join(unused)}; an image is usable when it is "
                           f"ok in {', '.join(t.name for t in study.model_tables)}.", muted=True))

    time = ds.y["time"]
    dups = max((len((t.provenance.get("input") or {}).get("duplicates") or []) for t in study.model_tables), default=0)
    flow = [
        ("photo files skipped at extraction as exact duplicates (same bytes, same subject)", dups),
        ("subjects with photos in RUN_DIR", len(run_subjects)),
        ("  of which without any usable photo (dropped)", len(run_subjects - usable)),
        ("  of which with a usable photo but not in the clinical table (dropped)", len(usable - clinical_ids)),
        ("subjects in the clinical table", study.clinical_rows),
        ("  of which without a usable photo (dropped)", len(clinical_ids - usable)),
        ("subjects analysed (usable photo and clinical row)", len(analysed)),
        ("events / censored", f"{events} / {len(analysed) - events}"),
        ("follow-up time: median (range)", f"{h.fmt_number(float(np.median(time)), 2)} "
                                           f"({h.fmt_number(float(time.min()), 2)} to {h.fmt_number(float(time.max()), 2)})"),
        ("photos per analysed subject: mean (max)", _photos_per_subject(images, analysed)),
    ]
    body.append(h.kv_table(flow, caption="Subject flow: every subject is counted"))
    body.append(h.para(f"Clinical table: {study.clinical_path} (from {study.clinical_source}). Several usable "
                       f"photos of one subject are combined by '{study.settings.get('aggregate') or 'mean'}'.", muted=True))

    failed = images[images["status"] != "ok"]
    if len(failed):
        err = _errors(study)
        listed = failed.head(MAX_LISTED_FAILURES).copy()
        listed["error"] = [err.get(i, "") for i in listed["image_id"]]
        listed["image_id"] = listed["image_id"].astype(str).str[:12] + "..."
        more = f"; {len(failed) - MAX_LISTED_FAILURES} more not listed" if len(failed) > MAX_LISTED_FAILURES else ""
        body.append(h.details(f"Failed images ({len(failed)}{more})",
                              h.table(listed, ["subject_id", "image_id", "status", "error"])))
    dropped_clin = sorted(clinical_ids - usable)
    if dropped_clin:
        body.append(h.details(f"Clinical subjects without a usable photo ({len(dropped_clin)})",
                              h.para(", ".join(dropped_clin[:200]) + (" ..." if len(dropped_clin) > 200 else ""))))
    items = ds.report.to_list()
    if items:
        body.append(h.table([{"step": i["step"], "what": i["message"], "count": i["count"], "level": i["level"]} for i in items],
                            caption="Data handling when the modelling table was built (nothing dropped silently)"))
    return h.Section("cohort", "Cohort and image status", "".join(body))


def _photos_per_subject(images: pd.DataFrame, analysed: list[str]) -> str:
    ok = images[(images["status"] == "ok") & images["subject_id"].astype(str).isin(set(analysed))]
    counts = ok.groupby("subject_id").size()
    return f"{counts.mean():.2f} ({int(counts.max())})" if len(counts) else "0"


def _errors(study: Study) -> dict[str, str]:
    """Error messages per image across the model's tables (``"<table>: <message>; ..."``)."""
    from facefeat.io.tables import read_features

    df = read_features([t.path for t in study.model_tables], flatten=False, include_failed=True)
    return {i: e for i, e in zip(df["image_id"], df["error"]) if isinstance(e, str) and e}


# -- features --------------------------------------------------------------------------------------

def _short_list(cols: list[str], n: int = 3) -> str:
    if len(cols) <= 2 * n:
        return ", ".join(cols)
    return ", ".join(cols[:n]) + ", ..., " + ", ".join(cols[-n:])


def features_section(study: Study) -> h.Section:
    meta, schema = study.meta, study.meta.get("schema") or {}
    params = meta.get("params") or {}
    body = []
    blocks = schema.get("blocks") or {}
    rows = [{"block": b, "columns": len(c), "columns used (first and last)": _short_list(list(c))} for b, c in blocks.items()]
    body.append(h.table(rows, caption="Feature blocks of the model"))
    by_table = {t.path.name: t for t in study.tables}
    used_rows = []
    for ft in schema.get("feature_tables") or []:
        t = by_table.get(ft.get("file"))
        ext = t.extractor if t else {}
        cols = ft.get("columns") or {}
        emb = [f"{c} {spec.get('shape') or [spec.get('size')]}" for c, spec in cols.items() if spec.get("type") == "embedding"]
        used_rows.append({
            "table": ft.get("file"), "extractor": ext.get("name", ""), "version": ext.get("version", ""),
            "from": f"{ext.get('distribution') or ext.get('plugin') or ''} {ext.get('distribution_version', '')}".strip(),
            "source columns": len(cols), "embeddings (shape)": "; ".join(emb) or "none",
        })
    body.append(h.table(used_rows, caption="Feature tables the model was fitted on, with the extractor that wrote them"))
    used = {ft.get("file") for ft in schema.get("feature_tables") or []}
    unused = [t.path.name for t in study.tables if t.path.name not in used]
    if unused:
        body.append(h.note(f"Tables in RUN_DIR that the model does not use: {', '.join(unused)}"))
    fusion = params.get("fusion", "")
    model_rows = [
        ("estimator", meta.get("estimator")), ("model", params.get("model")),
        ("model parameters", json.dumps(params.get("model_params"), sort_keys=True)),
        ("fusion", fusion + (f" (combiner {params.get('combiner')})" if fusion == "late" else "")),
        ("clinical covariates", ", ".join(study.settings.get("covariates_used") or []) or "none (faces only)"),
        ("outcome", f"time '{study.settings.get('time')}', event '{study.settings.get('event')}'"),
        ("photos per subject combined by", study.settings.get("aggregate")),
    ]
    pca = _pca_of(study.estimator)
    if pca:
        model_rows.append(("PCA of image blocks", pca))
    body.append(h.kv_table(model_rows, caption="Model specification (from model.json)"))
    return h.Section("features", "Features used", "".join(body))


def _pca_of(est: Any) -> str:
    blocks = getattr(est, "blocks", None) or {}
    items = blocks.items() if isinstance(blocks, dict) else blocks
    out = [f"{name}: {blk.pca}" for name, blk in items if getattr(blk, "pca", None)]
    return "; ".join(out)


# -- validation ------------------------------------------------------------------------------------

def validation_section(study: Study, val: Validation) -> h.Section:
    body = [h.note(f"Source of these numbers: {val.source}.")]
    body += [h.note(f"Warning: {w}.", kind="warning") for w in val.warnings]
    rows = []
    for r in val.summary.to_dict(orient="records"):
        rows.append({"metric": METRIC_LABELS.get(r.get("metric"), r.get("metric")), "mean": r.get("mean"),
                     "95 % CI low": r.get("ci_low"), "95 % CI high": r.get("ci_high"), "SD over folds": r.get("sd"),
                     "2.5th pct of folds": r.get("p2.5"), "97.5th pct of folds": r.get("p97.5"),
                     "folds": r.get("folds")})
    body.append(h.table(rows, caption="Cross-validated performance (mean over all folds and repeats)"))
    s = val.settings
    # the interval method as the survival layer states it (one per metric family), never a fixed sentence
    methods = list(dict.fromkeys(str(m).split(", ")[0] for m in val.summary.get("method", pd.Series(dtype=object))
                                 if isinstance(m, str) and m))
    method = ("; ".join(methods) if methods else
              "corrected resampled t interval (Nadeau & Bengio) on the raw scale (a cross-validation stored by an "
              "older facefeat)")
    body.append(h.para(
        f"95 % CI: {method}; the correction accounts for the overlap of training sets, the logit and log scales keep "
        "C-indices, AUC and Brier scores in [0, 1] and hazard ratios above 0. Percentiles: spread of the per-fold "
        "values. "
        f"Uno's C truncated at tau = {h.fmt_number(s.get('tau'), 2)}; time-dependent AUC at "
        f"{', '.join(h.fmt_number(t, 2) for t in (s.get('times') or []))}; integrated Brier score over "
        f"{_ibs_range(s.get('ibs_times'))}.", muted=True))
    if "ibs" in set(val.summary.get("metric", [])) and not np.isfinite(
            float(val.summary.set_index("metric").loc["ibs", "mean"])):
        body.append(h.note("The integrated Brier score is not available: the model gives no survival function in "
                           "some folds.", kind="warning"))
    apparent = _apparent_c(study)
    if apparent is not None:
        body.append(h.para(f"For contrast, the apparent (training) C-index of the saved model on the subjects it was "
                           f"fitted on is {apparent:.3f}; it is optimistic and not a performance estimate.", muted=True))
    if len(val.auc) and {"time", "auc"} <= set(val.auc.columns):
        from facefeat.survival.plots import plot_td_auc

        png, _ = plot_png(plot_td_auc, val.auc, title="Time-dependent AUC over CV folds",
                          time_unit=time_unit(study))
        body.append(h.image(png, alt="time-dependent AUC", caption="Cumulative/dynamic AUC at each evaluation time: "
                            "mean and 2.5-97.5 % of the folds.", width=600))
    if val.notes:
        body.append(h.details(f"Notes from the cross-validation ({len(val.notes)})",
                              "<ul>" + "".join(f"<li>{h.esc(n)}</li>" for n in val.notes[:100]) + "</ul>"))
    return h.Section("validation", "Validation", "".join(body))


def _ibs_range(v: Any) -> str:
    if isinstance(v, (list, tuple)) and len(v) == 3:
        return f"{int(v[2])} times from {h.fmt_number(v[0], 2)} to {h.fmt_number(v[1], 2)}"
    return "the default grid"


def _apparent_c(study: Study) -> float | None:
    try:
        c = float(study.estimator.score(study.dataset.X, study.dataset.y))
    except Exception:  # a model without score: nothing to contrast
        return None
    return c if math.isfinite(c) else None


def time_unit(study: Study) -> str | None:
    """The unit of follow-up time recorded with the model (``--time-unit``), or None."""
    return ((study.meta or {}).get("settings") or {}).get("time_unit")


def km_section(val: Validation, unit: str | None = None) -> h.Section:
    from facefeat.survival.plots import plot_km_by_risk_group

    oof = val.oof
    png, p = plot_png(plot_km_by_risk_group, oof["time"].to_numpy(float), oof["event"].to_numpy(bool),
                      oof["risk_group"].to_numpy(int), title="Kaplan-Meier by out-of-fold risk group", time_unit=unit)
    body = [h.para(f"Risk groups: {val.group_rule}. Each subject's risk comes from a model fitted without that "
                   "subject, so the separation of the curves is an honest estimate (the saved model's own "
                   "predictions on its training subjects would overstate it)."),
            '<div class="figures">',
            h.image(png, alt="Kaplan-Meier curves by risk group",
                    caption=f"Kaplan-Meier curves with 95 % log-log bands and the number at risk; log-rank p = "
                            f"{p:.3g}.", width=560),
            h.table(group_table(oof, unit=unit), caption=f"Risk groups (log-rank p = {p:.3g})"),
            "</div>"]
    return h.Section("km", "Survival by risk group", "".join(body))


def calibration_section(val: Validation, unit: str | None = None) -> h.Section:
    from facefeat.survival.plots import calibration_groups_phrase, format_time, plot_calibration

    if not val.calibration:
        why = ("the model gives no survival function (predicted survival probabilities), only a risk score"
               if val.computed else "the stored cross-validation holds no calibration tables")
        return h.Section("calibration", "Calibration", h.note(f"Calibration is not shown: {why}.", kind="absent"))
    n_groups = max(len(df) for df in val.calibration.values())
    groups = calibration_groups_phrase(n_groups)
    png, _ = plot_png(plot_calibration, val.calibration, title=f"Calibration (out-of-fold), {n_groups} groups",
                      time_unit=unit)
    body = [h.para(f"Mean predicted survival against the Kaplan-Meier estimate in {groups} (fewer groups than 10 "
                   "when there are fewer than 50 subjects: at least 5 per group), at the quartiles of the event times; "
                   "out-of-fold predictions pooled over the test folds of the first CV repeat. Points on the "
                   "diagonal are well calibrated."),
            h.image(png, alt="calibration plot", width=560)]
    tables = "".join(
        h.table(df, ["group", "n", "events", "predicted", "observed", "observed_low", "observed_high"],
                headers={"group": "group (1 = lowest predicted survival)", "predicted": "mean predicted",
                         "observed": "observed (KM)", "observed_low": "KM 95 % low", "observed_high": "KM 95 % high"},
                caption=f"t = {format_time(t, unit)}")
        for t, df in val.calibration.items())
    body.append(h.details(f"Calibration tables ({len(val.calibration)} times, {groups})",
                          '<div class="figures">' + tables + "</div>"))
    return h.Section("calibration", "Calibration", "".join(body))


# -- provenance ------------------------------------------------------------------------------------

def settings_fingerprint(meta: dict) -> str:
    """sha256 of the model's estimator, parameters, feature schema and data settings (canonical JSON)."""
    payload = {k: meta.get(k) for k in ("estimator", "params", "schema", "settings")}
    return sha256_bytes(dumps_json(payload, sort_keys=True).encode())


def provenance_section(study: Study, val: Validation, report_info: dict[str, Any]) -> h.Section:
    meta = study.meta
    prov = meta.get("provenance") or {}
    body = [h.kv_table([
        ("report created", report_info.get("created")), ("facefeat", report_info.get("facefeat_version")),
        ("command line", report_info.get("command")), ("RUN_DIR", study.run_dir), ("MODEL_DIR", study.model_dir),
    ], caption="This report", code=True)]
    clin_now = sha256_file(study.clinical_path)
    recorded = ((prov.get("sources") or {}).get("clinical") or {})
    rec_sha = recorded.get("sha256") if isinstance(recorded, dict) else None
    body.append(h.kv_table([
        ("model file sha256", meta.get("model_sha256")), ("settings fingerprint (sha256)", settings_fingerprint(meta)),
        ("estimator", meta.get("estimator")), ("created", prov.get("created")),
        ("command line", " ".join(map(str, prov.get("argv") or []))),
        ("library versions", ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())),
        ("subjects / events at fit", f"{prov.get('n_subjects')} / {prov.get('n_events')}"),
        ("clinical table at fit", f"{recorded.get('path') if isinstance(recorded, dict) else ''} (sha256 {rec_sha})"),
        ("clinical table used here", f"{study.clinical_path} (sha256 {clin_now})"),
        ("cross-validation", val.source),
    ], caption="Model (MODEL_DIR/model.json)", code=True))
    if rec_sha and rec_sha != clin_now:
        body.append(h.note("The clinical table used for this report differs from the one the model was fitted on "
                           "(sha256 differs): the validation refits the model's specification on it.", kind="warning"))
    for t in study.tables:
        p = t.provenance
        ext = t.extractor
        models = {**((p.get("preprocessing") or {}).get("models_sha256") or {}), **(p.get("models_sha256") or {})}
        inp = p.get("input") or {}
        rows = [
            ("file", f"{t.path.name} (sha256 {sha256_file(t.path)})"),
            ("extractor", f"{ext.get('name')} {ext.get('version')} from {ext.get('distribution') or ext.get('plugin')} "
                          f"{ext.get('distribution_version', '')}"),
            ("facefeat / created", f"{p.get('facefeat_version')} / {p.get('created')}"),
            ("config", dumps_json(ext.get("config", {}), sort_keys=True)),
            ("config fingerprint (sha256)", sha256_bytes(dumps_json(ext.get("config", {}), sort_keys=True).encode())),
            ("input", f"{inp.get('source')} (manifest sha256 {inp.get('manifest_sha256')}, {inp.get('n_images')} "
                      f"images, {len(inp.get('duplicates') or [])} exact duplicates skipped)"),
            ("preprocessing", dumps_json({k: v for k, v in (p.get("preprocessing") or {}).items()
                                           if k != "models_sha256"}, sort_keys=True)),
        ]
        rows += [(f"model file {label} sha256", digest) for label, digest in models.items()]
        if p.get("environment"):
            rows.append(("environment", json.dumps(p["environment"], sort_keys=True)))
        body.append(h.kv_table(rows, caption=f"Extraction run: {t.name}", code=True))
    return h.Section("provenance", "Provenance", "".join(body))
