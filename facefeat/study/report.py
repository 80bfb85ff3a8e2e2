"""The study report (``report.html``): the comparison of the arms first, then each arm.

Built from :mod:`facefeat.report.html`'s blocks (escaped tables, embedded PNGs, one
self-contained page) and the report's own per-arm sections (risk-group Kaplan-Meier curves,
calibration) read from each arm's cross-validation in the layout of ``facefeat evaluate``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from facefeat.study.comparison import METRIC_NAMES, METRICS, read_comparison


def forest_png(arms: pd.DataFrame, *, metric: str = "c_index", reference: str = "", level: float = 0.95) -> bytes:
    """Forest-style plot of each arm's cross-validated ``metric`` with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from facefeat.report.figures import figure_png

    n = len(arms)
    fig, ax = plt.subplots(figsize=(7.0, 0.55 * n + 1.3))
    y = np.arange(n)[::-1]
    est = arms[metric].to_numpy(float)
    lo, hi = arms[f"{metric}_ci_low"].to_numpy(float), arms[f"{metric}_ci_high"].to_numpy(float)
    colors = ["#2b5ea7" if not r else "#5b6475" for r in arms["reference"]]
    for yi, e, l, h_, c in zip(y, est, lo, hi, colors):
        ax.plot([l, h_], [yi, yi], color=c, lw=2)
        ax.plot([e], [yi], "s", color=c, ms=7)
    if metric != "ibs":
        ax.axvline(0.5, color="grey", lw=0.8, ls=":")
    ref = arms.loc[arms["reference"], metric]
    if len(ref):
        ax.axvline(float(ref.iloc[0]), color="#5b6475", lw=0.8, ls="--")
    ax.set_yticks(y)
    ax.set_yticklabels([f"{a} (reference)" if r else a for a, r in zip(arms["arm"], arms["reference"])])
    ax.set_xlabel(f"{METRIC_NAMES.get(metric, metric)} (cross-validated mean, {int(level * 100)} % interval)")
    ax.set_title(f"Arms compared on identical folds (dashed: {reference})", fontsize=10)
    fig.tight_layout()
    png = figure_png(fig)
    plt.close(fig)
    return png


def _overview(config: Mapping[str, Any], data, arms: pd.DataFrame, comp: pd.DataFrame, lrt: pd.DataFrame):
    from facefeat.report import html as h

    cv = config["cv"]
    level = int(round(100 * cv["level"]))
    body = [h.cards([("subjects", data.info["n"]), ("events", data.info["events"]), ("arms", len(arms)),
                     ("reference arm", config["reference"])])]
    if config.get("description"):
        body.append(h.para(config["description"]))
    body.append(h.para(
        f"Every arm was cross-validated with the same {cv['repeats']} x repeated {cv['folds']}-fold splits "
        f"(stratified on the event, seed {cv['seed']}); the subject splits are identical across arms (checked by "
        "their sha256), so each arm is compared with the reference over the same test folds. Time unit: "
        f"{config['inputs']['time_unit']}."))
    body.append(h.image(forest_png(arms, reference=config["reference"], level=cv["level"]),
                        alt="forest plot of the arms' C-index", width=620,
                        caption=f"Harrell's C-index per arm with its {level} % interval (squares: cross-validated "
                                "means); dotted line: no discrimination (0.5)."))
    cols = ["arm", "model", "features", "pca", "n", "events"]
    for m in METRICS:
        cols += [m, f"{m}_ci_low", f"{m}_ci_high"]
    body.append(h.table(arms, cols, caption=f"Cross-validated performance per arm ({level} % intervals)",
                        headers={**{m: METRIC_NAMES[m] for m in METRICS},
                                 **{f"{m}_ci_low": "low" for m in METRICS}, **{f"{m}_ci_high": "high" for m in METRICS}}))
    return h.Section("overview", "Arms", "".join(body))


def _comparison_section(config: Mapping[str, Any], comp: pd.DataFrame, lrt: pd.DataFrame):
    from facefeat.report import html as h

    level = int(round(100 * config["cv"]["level"]))
    body = [h.para(f"Each arm minus the reference arm ({config['reference']}), paired over the identical test folds. "
                   "For the integrated Brier score lower is better (column 'better').")]
    if len(comp):
        methods = sorted(set(comp["method"].dropna()))
        body.append(h.table(comp, ["arm", "metric", "arm_estimate", "reference_estimate", "difference", "ci_low",
                                   "ci_high", "p_value", "better"],
                            caption=f"Paired differences ({level} % intervals)",
                            headers={"ci_low": "low", "ci_high": "high", "p_value": "p"}, digits={"p_value": 4}))
        body.append(h.para("Method: " + "; ".join(methods), muted=True))
    else:
        body.append(h.note("There is only the reference arm: nothing to compare.", kind="absent"))
    if len(lrt):
        body.append(h.table(lrt, ["arm", "reference", "statistic", "df", "p_value", "added_columns", "n", "events",
                                  "note"], caption="Likelihood-ratio tests of the added block (nested coxph arms, "
                                                   "all subjects)", headers={"p_value": "p"}, digits={"p_value": 4}))
        methods = sorted(set(lrt["method"].dropna()) - {""}) if "method" in lrt else []
        if methods:
            body.append(h.para("Method: " + "; ".join(methods), muted=True))
    return h.Section("comparison", "Comparison with the reference", "".join(body))


def _arm_section(config: Mapping[str, Any], folder: Path, name: str, subgroups: pd.DataFrame | None) -> list:
    from facefeat.report import html as h
    from facefeat.report import sections as sec
    from facefeat.report.validation import load_stored_cv

    arm_dir = folder / "arms" / name
    info = json.loads((arm_dir / "arm.json").read_text())
    val = load_stored_cv(arm_dir / "cv", risk_groups=config["cv"]["risk_groups"])
    arm = next(a for a in config["arms"] if a["name"] == name)
    body = [h.kv_table([("model", arm["model"]), ("parameters", json.dumps(arm["params"]) if arm["params"] else "defaults"),
                        ("fusion", arm["fusion"]), ("features", ", ".join(arm["features"])),
                        ("columns per block", ", ".join(f"{k} {v}" for k, v in info["columns"].items())),
                        ("PCA", arm["pca"] if arm["pca"] is not None else "none"),
                        ("robustness filter", "none" if not arm["robustness"] else
                         f"ICC >= {arm['robustness']['min_icc']} ({arm['robustness']['table']})"),
                        ("subjects / events", f"{info['n']} / {info['events']}")],
                       caption=f"Arm {name}")]
    body.append(h.table(val.summary, caption="Cross-validated metrics (mean over folds and repeats)"))
    hr_path = arm_dir / "hazard_ratios.parquet"
    if hr_path.is_file():
        hr = pd.read_parquet(hr_path)
        body.append(h.details(f"Hazard ratios of the full-data model ({len(hr)} terms)",
                              h.table(hr, caption="Hazard ratios (unit per row)", digits={"p_value": 4})))
    if subgroups is not None and len(subgroups):
        s = subgroups[subgroups["arm"] == name].drop(columns=["arm"])
        body.append(h.details(f"Subgroup audit ({len(s)} subgroups)",
                              h.table(s, caption="C-index of the out-of-fold risk per subgroup",
                                      digits={"interaction_p": 4})))
    if info.get("notes"):
        body.append(h.details(f"Notes ({len(info['notes'])})", "".join(h.para(n) for n in info["notes"])))
    parts = [h.Section(f"arm-{name}", f"Arm: {name}", "".join(body))]
    unit = config["inputs"]["time_unit"]
    for s in (sec.km_section(val, unit), sec.calibration_section(val, unit)):
        parts.append(h.Section(f"arm-{name}-{s.id}", f"{name}: {s.title}", s.body))
    return parts


def _provenance(config: Mapping[str, Any], folder: Path, data):
    from facefeat import __version__
    from facefeat.report import html as h
    from facefeat.study.stages import RECORDS

    rows = []
    for path in sorted((folder / RECORDS).glob("*.json")):
        rec = json.loads(path.read_text())
        rows.append({"stage": rec["stage"], "fingerprint": rec["fingerprint"][:16], "seconds": rec.get("seconds"),
                     "outputs": len(rec.get("outputs") or {})})
    body = [h.table(rows, caption="Stages (fingerprint: sha256 of the config section, the input hashes and the "
                                  "facefeat version)"),
            h.para(f"facefeat {__version__}; study file {config['_file']}; full record in study.lock.json.", muted=True)]
    report = data.info.get("data_report") or []
    if report:
        body.append(h.table(report, caption="Data handling (what was dropped, imputed or matched)"))
    return h.Section("provenance", "Data handling and provenance", "".join(body))


def build_study_report(config: Mapping[str, Any], folder: Path, data) -> str:
    """The study report as one HTML string."""
    from facefeat import __version__
    from facefeat.report import html as h

    comp, lrt, arms = read_comparison(folder)
    sub_path = folder / "comparison" / "subgroups.parquet"
    subgroups = pd.read_parquet(sub_path) if sub_path.is_file() else None
    sections = [_overview(config, data, arms, comp, lrt), _comparison_section(config, comp, lrt)]
    for name in arms["arm"]:
        sections += _arm_section(config, folder, name, subgroups)
    sections.append(_provenance(config, folder, data))
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    subtitle = (f"{data.info['n']} subjects, {data.info['events']} events; {len(arms)} arms against "
                f"{config['reference']}; facefeat {__version__}; {created}")
    return h.page(config.get("name") or "facefeat study", subtitle, sections)


def write_study_report(config: Mapping[str, Any], folder: Path, data) -> Path:
    """``report.html`` in the study folder, written atomically (shared permissions)."""
    from facefeat.io.atomic import atomic_output

    text = build_study_report(config, folder, data)
    out = Path(folder) / "report.html"
    with atomic_output(out, umask_mode=True) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return out
