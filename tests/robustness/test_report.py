"""The report section renders real robustness output."""

import pandas as pd

from facefeat.report.html import Section
from facefeat.robustness.report import robustness_section


def _table():
    rows = []
    for ext, feats in (("landmarks", ["a", "b", "c"]), ("face_descriptor", ["d_0", "d_1"])):
        for i, f in enumerate(feats):
            for pert, icc in (("jpeg_q50", 0.95 - 0.3 * i), ("all", 0.9 - 0.4 * i)):
                rows.append({"extractor": ext, "column": f"{ext}__{f}", "index": None, "feature": f"{ext}__{f}",
                             "perturbation": pert, "scope": "all" if pert == "all" else "condition",
                             "status": "ok", "icc": icc, "icc_low": icc - 0.1, "icc_high": min(1, icc + 0.05),
                             "ccc": icc, "cv": 0.1, "n_subjects": 12, "icc_form": "ICC(2,1)"})
    rows.append({**rows[0], "feature": "landmarks__<flat>", "status": "constant", "icc": float("nan")})
    return pd.DataFrame(rows)


def test_section_contents(tmp_path):
    df = _table()
    df.to_parquet(tmp_path / "robustness.parquet")
    record = {"form": "ICC(2,1)", "min_icc": 0.75, "perturbation": "all", "kept": 2, "n_columns": 5, "dropped": 3,
              "dropped_undefined": 1, "table_sha256": "ab" * 32}
    sec = robustness_section(tmp_path, filter_record=record)
    assert isinstance(sec, Section) and sec.id == "robustness"
    html = sec.render()
    assert "data:image/png;base64," in html
    assert "least robust" in html and "landmarks__c" in html
    assert "kept 2 of 5" in html
    assert "constant" in html
    # the per-extractor table: landmarks 'all' median of 0.9, 0.5, 0.1 is 0.5
    assert "0.500" in html
