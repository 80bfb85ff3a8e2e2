import json

import numpy as np
import pandas as pd
import pytest

from facefeat.cli import main

from .conftest import write_feature_table


def test_help_has_examples(capsys):
    for cmd in ("fit", "evaluate", "predict"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("fusion", ["early", "late"])
def test_fit_evaluate_predict_end_to_end(tmp_path, gbsg2_split_files, fusion):
    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--features", str(run), "--clinical", str(clin), "--model", "coxph",
                 "--fusion", fusion, "--out", str(model)]) == 0
    meta = json.loads((model / "model.json").read_text())
    assert meta["schema"]["blocks"]["image"][0] == "tumour__tsize"
    assert meta["provenance"]["sources"]["clinical"]["sha256"]
    report = json.loads((model / "fit_report.json").read_text())
    assert report["n"] == 686 and report["apparent_c_index"] > 0.65
    if fusion == "late":
        assert set(report["fusion_weights"]) == {"clinical", "image"}

    cv = tmp_path / "cv"
    assert main(["evaluate", "--features", str(run), "--clinical", str(clin), "--model", "coxph", "--fusion", fusion,
                 "--folds", "3", "--repeats", "1", "--out", str(cv)]) == 0
    res = json.loads((cv / "results.json").read_text())
    c = {r["metric"]: r for r in res["summary"]}["c_index"]
    assert 0.62 < c["mean"] < 0.75
    for png in ("km_risk_groups.png", "td_auc.png", "calibration.png"):
        assert (cv / png).stat().st_size > 1000
    assert "Cross-validation" in (cv / "results.md").read_text()

    held = tmp_path / "held"
    assert main(["evaluate", "--model-dir", str(model), "--features", str(run), "--clinical", str(clin),
                 "--bootstrap", "10", "--out", str(held)]) == 0
    assert json.loads((held / "results.json").read_text())["intervals_95"]["c_index"]

    pred = tmp_path / "pred.csv"
    new = pd.read_csv(clin).drop(columns=["time", "event"]).iloc[:20]
    new.to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", "--model-dir", str(model), "--features", str(run), "--clinical", str(tmp_path / "new.csv"),
                 "--times", "365,730", "--out", str(pred)]) == 0
    out = pd.read_csv(pred)
    assert len(out) == 20 and {"risk", "risk_group", "survival_365", "survival_730"} <= set(out.columns)
    assert (out["survival_730"] <= out["survival_365"]).all()
    # subjects of the run without clinical rows are reported, not silently lost
    assert "no usable photo" not in pred.with_suffix(".report.md").read_text()
    assert "not in the clinical table" in pred.with_suffix(".report.md").read_text()


def test_predict_refuses_a_table_with_another_schema(tmp_path, gbsg2_split_files, capsys):
    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--features", str(run), "--clinical", str(clin), "--out", str(model)]) == 0
    other = tmp_path / "other"
    other.mkdir()
    feats = pd.DataFrame({"tsize": np.ones(len(ids)), "pnodes": np.arange(len(ids), dtype=float)})
    write_feature_table(other / "tumour.parquet", feats, subject_ids=ids, extractor="tumour")
    assert main(["predict", "--model-dir", str(model), "--features", str(other), "--clinical", str(clin),
                 "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "schema" in err and "tumour__progrec" in err


def test_tampered_model_file_is_refused(tmp_path, gbsg2_split_files, capsys):
    clin, run, _ = gbsg2_split_files
    model = tmp_path / "model"
    main(["fit", "--features", str(run), "--clinical", str(clin), "--out", str(model)])
    with open(model / "model.skops", "ab") as fh:
        fh.write(b"x")
    assert main(["predict", "--model-dir", str(model), "--features", str(run), "--clinical", str(clin),
                 "--out", str(tmp_path / "p.csv")]) == 2
    assert "sha256" in capsys.readouterr().err


def test_data_errors_exit_2_with_a_message(tmp_path, capsys):
    p = tmp_path / "c.csv"
    p.write_text("subject_id,time,event,age\nP1,10,1,50\nP2,-3,0,60\nP3,5,2,70\n")
    assert main(["fit", "--clinical", str(p), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "event column 'event'" in err and "P3" in err


def test_nested_grid_from_the_command_line(tmp_path, gbsg2_split_files):
    clin, run, _ = gbsg2_split_files
    out = tmp_path / "cv"
    assert main(["evaluate", "--clinical", str(clin), "--features", str(run), "--model", "coxph", "--grid", "alpha=0.1,10",
                 "--folds", "3", "--repeats", "1", "--inner-folds", "2", "--out", str(out)]) == 0
    folds = json.loads((out / "results.json").read_text())["folds"]
    assert all("params" in f for f in folds)


def test_faces_only_model_predicts_without_a_clinical_table(tmp_path, gbsg2_split_files):
    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--features", str(run), "--clinical", str(clin), "--covariates", "none",
                 "--model", "coxnet", "--param", "l1_ratio=0.9", "--out", str(model)]) == 0
    pred = tmp_path / "p.parquet"
    assert main(["predict", "--model-dir", str(model), "--features", str(run), "--out", str(pred)]) == 0
    assert len(pd.read_parquet(pred)) == len(ids)


def test_grid_values_may_be_text_or_json_lists(tmp_path, gbsg2_split_files):
    clin, run, _ = gbsg2_split_files
    out = tmp_path / "cv"
    assert main(["evaluate", "--clinical", str(clin), "--model", "coxnet", "--grid", "rule=min,1se",
                 "--grid", "l1_ratio=[0.5]", "--folds", "3", "--repeats", "1", "--inner-folds", "2", "--out", str(out)]) == 0
    folds = json.loads((out / "results.json").read_text())["folds"]
    assert {f["params"]["model_params"]["rule"] for f in folds} <= {"min", "1se"}
