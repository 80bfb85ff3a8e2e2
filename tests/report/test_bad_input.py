"""Bad inputs to the report: each a FacefeatError subclass naming the file or field and the fix."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from facefeat.errors import ConfigError, DataError, InputError, ModelError
from facefeat.report import build_report


def test_run_dir_without_tables(study, tmp_path):
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(InputError, match=r"empty_run.*no feature tables.*facefeat extract"):
        build_report(empty, study["model"])


def test_run_dir_missing(study, tmp_path):
    with pytest.raises(InputError, match=r"nowhere is not a folder.*facefeat extract"):
        build_report(tmp_path / "nowhere", study["model"])


def test_model_dir_is_not_a_model(study):
    with pytest.raises(ModelError, match=r"not a model directory.*facefeat fit"):
        build_report(study["run"], study["run"])


def test_model_dir_missing(study, tmp_path):
    with pytest.raises(ModelError, match=r"nomodel is not a folder.*facefeat fit"):
        build_report(study["run"], tmp_path / "nomodel")


def test_model_file_tampered(study, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(study["model"], model)
    (model / "model.skops").write_bytes((model / "model.skops").read_bytes() + b"x")
    with pytest.raises(ModelError, match=r"does not match the sha256"):
        build_report(study["run"], model)


def test_clinical_missing_columns(study, tmp_path):
    clin = pd.read_csv(study["clinical"]).drop(columns=["death"])
    path = tmp_path / "clin_no_event.csv"
    clin.to_csv(path, index=False)
    with pytest.raises(DataError) as exc:
        build_report(study["run"], study["model"], clinical=path)
    msg = str(exc.value)
    assert str(path) in msg and "event column 'death'" in msg and "--clinical" in msg


def test_clinical_missing_file(study, tmp_path):
    with pytest.raises(InputError, match=r"nofile.csv does not exist.*--clinical"):
        build_report(study["run"], study["model"], clinical=tmp_path / "nofile.csv")


def test_run_does_not_match_model(study, tmp_path):
    """A run whose latent has another width than the model's."""
    import numpy as np

    from tests.report.study import write_latent_run

    ids = [f"P{i:03d}" for i in range(20)]
    run = tmp_path / "other_run"
    write_latent_run(run, ids, np.random.default_rng(0).normal(size=(20, 8)).astype("float32"), ["ok"] * 20)
    with pytest.raises(DataError, match=r"other_run does not match MODEL_DIR.*trained on.*fit a new model"):
        build_report(run, study["model"])


def test_unknown_subject(study):
    with pytest.raises(DataError, match=r"'nobody'.*not among the analysed subjects"):
        build_report(study["run"], study["model"], subjects="P001,nobody")


@pytest.mark.parametrize("steps", ["-3..x", "3..-3", "", "1,2,a", "-8..8"])
def test_bad_edit_steps(study, steps):
    with pytest.raises(ConfigError, match=r"--edit-steps"):
        build_report(study["run"], study["model"], edit_steps=steps)


def test_missing_generator(study, tmp_path):
    with pytest.raises(InputError, match=r"--generator .*nogen.pt.*no such checkpoint"):
        build_report(study["run"], study["model"], generator=tmp_path / "nogen.pt")


def test_cli_reports_errors_with_exit_status_2(study, tmp_path, capsys):
    from facefeat.cli import main

    rc = main(["report", str(tmp_path), str(study["model"]), "-o", str(tmp_path / "r.html")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "facefeat report: error:" in err and "facefeat extract" in err
    assert not (tmp_path / "r.html").exists()


def test_cli_help_has_an_example(capsys):
    from facefeat.cli import main

    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = capsys.readouterr().out
    assert "facefeat report runs/r1 models/m1 -o report.html" in out and "--edit-steps -3..3" in out


def test_too_few_subjects_to_cross_validate(tmp_path):
    from tests.report.study import make_study

    s = make_study(tmp_path, n=9, params=("alpha=10.0",))
    with pytest.raises(DataError, match=r"too few to cross-validate.*MODEL_DIR/cv"):
        build_report(s["run"], s["model"])
