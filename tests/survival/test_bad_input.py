"""The bad inputs the issue lists, end to end through load_survival_data / the estimator."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from facefeat.errors import DataError
from facefeat.survival import FeatureBlock, SurvivalEstimator, load_survival_data

from .conftest import synthetic


def test_european_export_is_read_end_to_end(tmp_path):
    # a cp1252 export with ';' separators and decimal commas must give the same numbers, and the same fitted
    # model, as the plain UTF-8 CSV of the same table
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"patient": [f"P{i}" for i in range(40)],
                          "overall survival": np.round(rng.uniform(1, 60, 40), 2),
                          "death": (rng.random(40) < 0.6).astype(int),
                          "age": np.round(rng.uniform(40, 80, 40), 1),
                          "stage": ["III" if i % 3 else "II" for i in range(40)]})
    european = tmp_path / "export.csv"
    european.write_bytes(table.to_csv(sep=";", decimal=",", index=False).encode("cp1252"))
    assert b"," in european.read_bytes() and b"." not in european.read_bytes()  # really decimal commas
    plain = tmp_path / "plain.csv"
    table.to_csv(plain, index=False)
    kw = dict(id_column="patient", time="overall survival", event="death")
    ds = load_survival_data(clinical=european, **kw)
    ref = load_survival_data(clinical=plain, **kw)
    assert ds.X["age"].dtype.kind == "f" and ds.categorical == ["stage"]
    assert ds.X.index.tolist() == table["patient"].tolist()
    assert ds.X["age"].tolist() == table["age"].tolist()  # decimal commas read as decimals, not as text
    assert ds.y["time"].tolist() == table["overall survival"].tolist()
    assert ds.y["event"].tolist() == table["death"].astype(bool).tolist()
    est = SurvivalEstimator("coxph", blocks={"c": FeatureBlock()}).fit(ds.X, ds.y)
    assert est.feature_names_out_.tolist() == ["age", "stage_III"] and not est.report_.items  # nothing dropped
    expected = SurvivalEstimator("coxph", blocks={"c": FeatureBlock()}).fit(ref.X, ref.y)
    pd.testing.assert_series_equal(est.coefficients(), expected.coefficients())
    assert np.isfinite(est.coefficients()).all() and (est.coefficients() != 0).all()


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
