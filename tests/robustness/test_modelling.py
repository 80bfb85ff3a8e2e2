"""--robustness/--min-icc in fit, evaluate and predict: columns kept, the filter recorded and re-applied."""

import json

import numpy as np
import pandas as pd
import pytest

from facefeat.cli import main
from facefeat.errors import ConfigError, DataError
from facefeat.survival.dataset import load_survival_data
from tests.survival.conftest import write_feature_table


@pytest.fixture
def cohort(tmp_path):
    """GBSG2 (scikit-survival): four tumour measurements as an image feature table, plus a
    robustness table that rates them."""
    from sksurv.datasets import load_gbsg2

    X, y = load_gbsg2()
    ids = [f"P{i:04d}" for i in range(len(X))]
    clin = pd.DataFrame({"subject_id": ids, "time": y["time"], "event": y["cens"].astype(int), "age": X["age"]})
    clin.to_csv(tmp_path / "clinical.csv", index=False)
    run = tmp_path / "run"
    run.mkdir()
    feats = np.log1p(X[["tsize", "pnodes", "progrec", "estrec"]].astype(float))
    write_feature_table(run / "tumour.parquet", feats, subject_ids=ids, extractor="tumour")
    rob = pd.DataFrame({
        "extractor": "tumour", "column": [f"tumour__{c}" for c in feats.columns], "index": pd.array([None] * 4, "Int64"),
        "feature": [f"tumour__{c}" for c in feats.columns], "perturbation": "all", "scope": "all",
        "status": ["ok", "ok", "ok", "constant"], "icc": [0.95, 0.5, 0.8, np.nan], "icc_form": "ICC(2,1)",
    })
    (tmp_path / "robust").mkdir()
    rob.to_parquet(tmp_path / "robust" / "robustness.parquet")
    return tmp_path


def test_load_survival_data_filters_and_records(cohort):
    ds = load_survival_data(clinical=cohort / "clinical.csv", features=cohort / "run", robustness=cohort / "robust",
                            min_icc=0.75)
    assert ds.blocks["image"] == ["tumour__tsize", "tumour__progrec"]
    rec = ds.sources["robustness"]
    assert (rec["kept"], rec["dropped"], rec["dropped_below"], rec["dropped_undefined"]) == (2, 2, 1, 1)
    assert any(i.step == "robustness filter" for i in ds.report.items)


def test_fit_records_filter_and_predict_reapplies_it(cohort):
    model = cohort / "model"
    assert main(["fit", "--features", str(cohort / "run"), "--clinical", str(cohort / "clinical.csv"),
                 "--covariates", "age", "--robustness", str(cohort / "robust"), "--min-icc", "0.9",
                 "--out", str(model)]) == 0
    meta = json.loads((model / "model.json").read_text())
    rec = meta["provenance"]["sources"]["robustness"]
    assert rec["min_icc"] == 0.9 and rec["form"] == "ICC(2,1)" and rec["kept"] == 1 and rec["dropped"] == 3
    assert len(rec["table_sha256"]) == 64
    assert meta["schema"]["blocks"]["image"] == ["tumour__tsize"]
    # predict and held-out evaluation rebuild the same columns without the table
    (cohort / "robust" / "robustness.parquet").unlink()
    out = cohort / "pred.csv"
    assert main(["predict", "--model-dir", str(model), "--features", str(cohort / "run"),
                 "--clinical", str(cohort / "clinical.csv"), "--out", str(out)]) == 0
    assert len(pd.read_csv(out)) == 686


def test_evaluate_reports_the_filter(cohort):
    out = cohort / "cv"
    assert main(["evaluate", "--features", str(cohort / "run"), "--clinical", str(cohort / "clinical.csv"),
                 "--covariates", "none", "--robustness", str(cohort / "robust"), "--min-icc", "0.75",
                 "--folds", "3", "--repeats", "1", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    notes = [d for d in res["data_report"] if d["step"] == "robustness filter"]
    assert notes and "kept 2 of 4" in notes[0]["message"] and "sha256" in notes[0]["message"]


def test_bad_filter_inputs(cohort):
    with pytest.raises(ConfigError, match="--min-icc"):
        load_survival_data(clinical=cohort / "clinical.csv", features=cohort / "run", robustness=cohort / "robust")
    with pytest.raises(DataError, match="no image feature reaches"):
        load_survival_data(clinical=cohort / "clinical.csv", features=cohort / "run", covariates="none",
                           robustness=cohort / "robust", min_icc=0.99)
