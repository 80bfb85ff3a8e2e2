"""The bad inputs the issue lists, end to end through load_survival_data / the estimator."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from facefeat.errors import DataError
from facefeat.survival import SurvivalEstimator, load_survival_data

from .conftest import synthetic


def test_european_export_is_read_end_to_end(tmp_path):
    p = tmp_path / "export.csv"
    rows = ["patient;overall survival;death;age;stage"]
    rng = np.random.default_rng(0)
    for i in range(40):
        rows.append(f"P{i};{rng.uniform(1, 60):.2f};{int(rng.random() < 0.6)};{rng.uniform(40, 80):.1f};{'III' if i % 3 else 'II'}".replace(".", ","))
    p.write_text("\n".join(rows) + "\n", encoding="cp1252")
    ds = load_survival_data(clinical=p, id_column="patient", time="overall survival", event="death")
    assert ds.X["age"].dtype.kind == "f" and ds.categorical == ["stage"]
    assert ds.y["time"].dtype.kind == "f"
    est = SurvivalEstimator("coxph", blocks={"c": __import__("facefeat.survival", fromlist=["FeatureBlock"]).FeatureBlock()})
    est.fit(ds.X, ds.y)


def test_negative_time_in_clinical_file_names_subjects(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("subject_id,time,event\nA,5,1\nB,-1,0\nC,0,1\n")
    with pytest.raises(DataError, match=r"'time' must be > 0.*rows B, C"):
        load_survival_data(clinical=p)


def test_missing_event_in_clinical_file(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("subject_id,time,event\nA,5,1\nB,3,\nC,2,0\n")
    with pytest.raises(DataError, match=r"'event' has 1 missing value.*rows B"):
        load_survival_data(clinical=p)


def test_all_censored_cohort_cannot_be_fitted():
    X, y = synthetic(30, 2)
    y["event"] = False
    with pytest.raises(DataError, match="censored"):
        SurvivalEstimator().fit(X, y)


def test_nan_only_column_and_constant_column_in_clinical_data_are_reported(tmp_path):
    X, y = synthetic(80, 2)
    df = pd.DataFrame({"subject_id": [f"S{i}" for i in range(80)], "time": y["time"], "event": y["event"].astype(int),
                       "x0": X[:, 0], "x1": X[:, 1], "site": "A", "lab": np.nan})
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    from facefeat.survival import FeatureBlock

    ds = load_survival_data(clinical=p)
    est = SurvivalEstimator(blocks={"clinical": FeatureBlock(columns=ds.blocks["clinical"], categorical=ds.categorical)}).fit(ds.X, ds.y)
    dropped = {e for i in est.report_.items for e in i.examples}
    assert {"site", "lab"} <= dropped


def test_cli_module_imports_nothing_heavy():
    code = ("import sys, facefeat.survival.cli, facefeat.survival; "
            "print(any(m in sys.modules for m in ('sklearn', 'sksurv', 'torch', 'pandas')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_date_like_text_columns_are_not_silently_made_categories(tmp_path):
    X, y = synthetic(60, 1)
    df = pd.DataFrame({"subject_id": [f"S{i}" for i in range(60)], "time": y["time"], "event": y["event"].astype(int),
                       "x0": X[:, 0], "diagnosed": [f"2019-01-{i % 28 + 1:02d} {i}" for i in range(60)], "sex": ["f", "m"] * 30})
    p = tmp_path / "c.csv"
    df.to_csv(p, index=False)
    ds = load_survival_data(clinical=p)
    assert ds.blocks["clinical"] == ["x0", "sex"]
    assert any("diagnosed" in i.message for i in ds.report.items)
    assert load_survival_data(clinical=p, covariates="x0,diagnosed").blocks["clinical"] == ["x0", "diagnosed"]
