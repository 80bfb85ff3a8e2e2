"""The report's statistics sections: hazard ratios with a forest plot (equal to the survival
layer's table), the subgroup audit of the out-of-fold risk, and absent notes saying why."""

from __future__ import annotations

import re

import pandas as pd

from facefeat.report.build import build_report
from tests.report.study import make_study
from tests.report.test_variants import FAST, _absent, _section


def test_hazard_and_subgroup_sections_of_a_model_with_a_covariate(tmp_path):
    from facefeat.survival.hazard import hazard_ratio_table
    from facefeat.survival.persist import load_model

    s = make_study(tmp_path, n=70, covariates="age")
    clin = pd.read_csv(s["clinical"])
    clin["sex"] = ["F" if i % 2 else "M" for i in range(len(clin))]
    clin.to_csv(s["clinical"], index=False)
    text = build_report(s["run"], s["model"], subgroups="age,sex", **FAST)
    hz = _section(text, "hazard")
    est, _ = load_model(s["model"])
    table = hazard_ratio_table(est)
    age = table[table["term"].str.contains("age")].iloc[0]
    # the ridge-penalised model: hazard ratios without Wald intervals or p-values, and the reason
    assert f"{age['hr']:.3f}" in hz and "per SD of age" in hz and "no valid Wald interval" in hz
    assert table["p_value"].isna().all() and "data:image/png;base64," not in hz
    sg = _section(text, "subgroups")
    assert "interaction p" in sg and "(all)" in sg
    assert sg.count("<tr>") >= 1 + 1 + 3 + 2  # header, all, age tertiles, sex levels
    assert re.search(r"\bsex\b", sg) and "F" in sg and "M" in sg


def test_sections_say_why_they_are_absent(tmp_path, study):
    text = build_report(study["run"], study["model"], subgroups="no_such_column", **FAST)
    assert "no_such_column" in _section(text, "subgroups") and "not in the clinical table" in _section(text, "subgroups")
    text = build_report(study["run"], study["model"], **FAST)
    assert "--subgroups" in _absent(text, "subgroups")  # faces only: no covariate to audit by default
    s = make_study(tmp_path, n=60, model="rsf", params=("n_estimators=5",))
    assert "coxph" in _absent(build_report(s["run"], s["model"], **FAST), "hazard")
