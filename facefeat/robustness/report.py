"""The report section on feature robustness: ICC distribution per extractor, least robust features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Thresholds marked in the figure (Koo & Li 2016: good >= 0.75, excellent >= 0.9).
THRESHOLDS = (0.75, 0.9)


def robustness_section(table: Any, *, n_worst: int = 15, filter_record: dict | None = None):
    """The ``Feature robustness`` section of the HTML report.

    Parameters
    ----------
    table : path or pandas.DataFrame
        A robustness folder or table written by ``facefeat robustness``, or the table itself.
    n_worst : int
        Least robust features listed (pooled ``all`` perturbation, or the first scope present).
    filter_record : dict, optional
        The ``--robustness/--min-icc`` record of a fitted model (``sources["robustness"]`` of
        its provenance); when given, the section says what the filter kept and dropped.

    Returns
    -------
    facefeat.report.html.Section
    """
    from facefeat.report import html as h
    from facefeat.report.figures import figure_png

    df = _as_frame(table)
    form = str(df["icc_form"].iloc[0]) if len(df) else "ICC(2,1)"
    body = [h.para(
        f"Each source photo is a subject of the intraclass correlation; the original and its perturbed copies "
        f"(JPEG, resolution, light, rotation, framing, mirror), projection seeds or a person's repeat photos are the "
        f"raters. ICC form {form} with F-based 95 % intervals (Shrout & Fleiss 1979; McGraw & Wong 1996). "
        "Shares are of features with a defined ICC; >= 0.75 is 'good' and >= 0.9 'excellent' (Koo & Li 2016)."
    )]
    if filter_record:
        body.append(h.note(
            f"Model features filtered by {filter_record.get('form')} >= {filter_record.get('min_icc')} "
            f"({filter_record.get('perturbation')} perturbations): kept {filter_record.get('kept')} of "
            f"{filter_record.get('n_columns')} columns, dropped {filter_record.get('dropped')} "
            f"({filter_record.get('dropped_undefined')} with an undefined ICC); table sha256 "
            f"{str(filter_record.get('table_sha256', ''))[:16]}..."))
    if df.empty:
        body.append(h.note("The robustness table has no rows.", kind="absent"))
        return h.Section("robustness", "Feature robustness", "".join(body))
    ok = df[df["status"] == "ok"]
    from facefeat.robustness.study import summarize

    summary = summarize(df)
    summary = summary[summary["column"] == "*"]
    rows = [{"extractor": r.extractor, "perturbation": r.perturbation, "features": r.n_features, "defined": r.n_defined,
             "median ICC": r.median_icc, "share >= 0.75": r.share_ge_075, "share >= 0.9": r.share_ge_090,
             "subjects": r.n_subjects} for r in summary.itertuples()]
    main = [r for r in rows if r["perturbation"] in ("all", "seeds", "repeat")] or rows
    body.append(h.table(main, caption=f"Share of features with {form} >= 0.75 and >= 0.9, per extractor"))
    conditions = [r for r in rows if r not in main]
    if conditions:
        body.append(h.details("Per perturbation", h.table(conditions, caption="Per extractor and perturbation")))
    pooled = ok[ok["perturbation"] == ("all" if (ok["perturbation"] == "all").any() else ok["perturbation"].iloc[0])]
    if len(pooled):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6.5, 3.2), dpi=100)
        bins = np.linspace(min(-0.2, float(pooled["icc"].min())), 1.0, 31)
        for ext, g in pooled.groupby("extractor"):
            ax.hist(g["icc"], bins=bins, histtype="step", linewidth=1.5, density=True, label=f"{ext} ({len(g)})")
        for t in THRESHOLDS:
            ax.axvline(t, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel(f"{form} ({pooled['perturbation'].iloc[0]} perturbations)")
        ax.set_ylabel("density of features")
        ax.legend(fontsize=8)
        fig.tight_layout()
        png = figure_png(fig)
        plt.close(fig)
        body.append(h.image(png, alt="ICC distribution per extractor",
                            caption="Distribution of the features' ICC per extractor (dotted: 0.75 and 0.9)"))
        worst = pooled.nsmallest(n_worst, "icc")[["extractor", "feature", "icc", "icc_low", "icc_high", "ccc", "cv",
                                                   "n_subjects"]]
        body.append(h.table(worst, caption=f"The {len(worst)} least robust features ({pooled['perturbation'].iloc[0]})"))
    undefined = df[df["status"] != "ok"]
    if len(undefined):
        counts = undefined.groupby(["extractor", "status"]).size().reset_index(name="rows")
        body.append(h.table(counts, caption="Rows without an ICC, by reason (constant: same value on every photo; "
                                            "too_few: fewer subjects than an interval needs)"))
    return h.Section("robustness", "Feature robustness", "".join(body))


def _as_frame(table: Any):
    import pandas as pd

    if isinstance(table, pd.DataFrame):
        return table
    from facefeat.robustness.filter import read_table

    return read_table(Path(table))
