"""A reduced example study end to end: outputs, identical splits, caching, edits, exports."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.study.conftest import small_config, write_config


def test_outputs_of_a_finished_study(finished_study):
    from facefeat.study import Study

    f = finished_study
    for rel in ("extract/stylegan2.parquet", "data/modelling.parquet", "comparison.csv", "comparison.parquet",
                "report.html", "study.lock.json", "exports/README.md", "exports/oof_predictions.csv",
                "exports/oof_predictions.parquet", "exports/fold_metrics.parquet", "exports/modelling_table.csv",
                "exports/hazard_ratios.parquet", "exports/comparison.parquet", "exports/subgroups.csv"):
        assert (f / rel).is_file(), rel
    for arm in ("clinical", "faces", "faces+clinical"):
        d = f / "arms" / arm
        for rel in ("cv/results.json", "cv/oof_predictions.csv", "oof.parquet", "folds.parquet",
                    "model/model.json", "design.parquet", "arm.json"):
            assert (d / rel).is_file(), f"{arm}/{rel}"
    # hazard-ratio tables for the coxph arm (the face arms are coxnet)
    hr = pd.read_csv(f / "arms" / "clinical" / "hazard_ratios.csv")
    assert {"age", "sex"} <= {t.split("_")[0].split("[")[0].split(":")[-1] for t in hr["term"]} or len(hr) == 2
    assert (hr["hr"] > 0).all() and ((hr["ci_low"] <= hr["hr"]) & (hr["hr"] <= hr["ci_high"])).all()
    # every arm on the same subject splits
    hashes = {json.loads((f / "arms" / a / "arm.json").read_text())["splits_sha256"]
              for a in ("clinical", "faces", "faces+clinical")}
    assert len(hashes) == 1 and None not in hashes
    res = Study.from_yaml(f / "study.yaml").result()
    comp = res.comparison
    assert set(comp["arm"]) == {"faces", "faces+clinical"}
    assert set(comp["metric"]) >= {"c_index", "uno_c", "auc_mean", "ibs"}
    c = comp[comp["metric"] == "c_index"]
    assert ((c["ci_low"] <= c["difference"]) & (c["difference"] <= c["ci_high"])).all()
    assert np.allclose(c["difference"], c["arm_estimate"] - c["reference_estimate"], atol=1e-9)
    lrt = res.lrt.set_index("arm")
    assert lrt.loc["faces+clinical", "df"] == 5  # the added block: 5 principal components of the W latent
    assert 0 <= lrt.loc["faces+clinical", "p_value"] <= 1
    assert "not nested" in lrt.loc["faces", "note"] or "not all in arm" in lrt.loc["faces", "note"]
    html = (f / "report.html").read_text()
    for text in ("Comparison with the reference", "Arm: faces+clinical", "forest plot", "Survival by risk group"):
        assert text in html
    lock = json.loads((f / "study.lock.json").read_text())
    assert set(lock["arm_models_sha256"]) == {"clinical", "faces", "faces+clinical"}
    assert "arm:faces" in lock["stages"] and lock["versions"]["facefeat"]


def test_rerun_reuses_every_stage_and_status_says_done(finished_study):
    from facefeat.study import Study

    before = (finished_study / "comparison.csv").read_bytes()
    res = Study.from_yaml(finished_study / "study.yaml").run()
    assert {s.action for s in res.stages} == {"reused"}
    assert (finished_study / "comparison.csv").read_bytes() == before
    states = Study.from_yaml(finished_study / "study.yaml").status()
    assert {s.state for s in states} == {"done"}


def test_editing_one_arm_recomputes_that_arm_only(tmp_path, finished_study):
    from facefeat.study import Study

    shutil.copytree(finished_study, tmp_path / "s", symlinks=True)
    cfg = yaml.safe_load((tmp_path / "s" / "study.yaml").read_text())
    cfg["arms"][1]["params"] = {"alpha": 0.5}  # the 'faces' arm: a ridge penalty
    write_config(tmp_path / "s", cfg)
    states = {s.name: s.state for s in Study.from_yaml(tmp_path / "s" / "study.yaml").status()}
    assert states["arm:faces"] == "stale" and states["arm:clinical"] == states["arm:faces+clinical"] == "done"
    assert states["extract"] == states["data"] == "done"
    res = Study.from_yaml(tmp_path / "s" / "study.yaml").run()
    computed = [s.name for s in res.stages if s.action == "computed"]
    assert computed == ["arm:faces", "comparison", "report", "exports"]
    old = pd.read_parquet(finished_study / "arms" / "clinical" / "oof.parquet")
    new = pd.read_parquet(tmp_path / "s" / "arms" / "clinical" / "oof.parquet")
    pd.testing.assert_frame_equal(old, new)


def test_changing_an_extractor_recomputes_its_table_and_the_arms_reading_it(tmp_path, finished_study):
    from facefeat.study import Study

    shutil.copytree(finished_study, tmp_path / "s", symlinks=True)
    cfg = yaml.safe_load((tmp_path / "s" / "study.yaml").read_text())
    cfg["extraction"]["extractors"]["stylegan2"]["steps"] = 10
    write_config(tmp_path / "s", cfg)
    res = Study.from_yaml(tmp_path / "s" / "study.yaml").run()
    actions = {s.name: s.action for s in res.stages}
    assert actions["extract"] == actions["data"] == "computed"
    assert actions["arm:faces"] == actions["arm:faces+clinical"] == "computed"
    assert actions["arm:clinical"] == "reused"  # its columns and subjects did not change


def test_pseudonymised_exports(tmp_path, finished_study):
    from facefeat.io.pseudonym import make_key, pseudonymise
    from facefeat.study import Study

    shutil.copytree(finished_study, tmp_path / "s", symlinks=True)
    key = make_key(tmp_path / "study.key")
    cfg = yaml.safe_load((tmp_path / "s" / "study.yaml").read_text())
    cfg["outputs"]["pseudonymise"] = str(tmp_path / "study.key")
    write_config(tmp_path / "s", cfg)
    res = Study.from_yaml(tmp_path / "s" / "study.yaml").run()
    assert [s.name for s in res.stages if s.action == "computed"] == ["exports"]
    exp = tmp_path / "s" / "exports"
    ids = pd.read_csv(finished_study / "cohort" / "clinical.csv")["subject_id"].astype(str)
    expected = set(pseudonymise(ids, key))
    for f in exp.glob("*.csv"):
        text = f.read_text()
        assert "S00" not in text, f"{f.name} holds a raw subject id"
        assert "/" not in text.replace("</", "") or f.name in ("comparison.csv", "lrt.csv", "arms.csv",
                                                                 "fold_metrics.csv", "hazard_ratios.csv",
                                                                 "subgroups.csv"), f.name
    for name in ("oof_predictions", "modelling_table"):
        frame = pd.read_parquet(exp / f"{name}.parquet")
        assert set(frame["subject_id"]) <= expected
        assert not {"path", "image_id"} & set(frame.columns)
    readme = (exp / "README.md").read_text()
    assert "keyed pseudonyms" in readme and "HMAC-SHA256" in readme
    assert "UNDOCUMENTED" not in readme
    # every exported column is in the data dictionary
    for f in exp.glob("*.parquet"):
        for col in pd.read_parquet(f).columns:
            assert f"| {col} " in readme or f" ... " in readme and col.startswith("stylegan2__"), (f.name, col)
    # the same key gives the same pseudonyms in another study
    assert set(pd.read_parquet(exp / "modelling_table.parquet")["subject_id"]) == expected


def test_python_api_and_cli_status(finished_study, capsys):
    import facefeat
    from facefeat.cli import main

    res = facefeat.Study.from_yaml(finished_study / "study.yaml").run()
    assert isinstance(res.comparison, pd.DataFrame) and len(res.comparison)
    assert "faces+clinical" in res.table()
    assert main(["study", "status", str(finished_study / "study.yaml")]) == 0
    out = capsys.readouterr().out
    assert "arm:faces+clinical" in out and "done" in out
