"""study.yaml: schema, template, and every bad-input case of issue 13 (named key, named fix)."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from facefeat.errors import ConfigError, DataError, InputError
from facefeat.study.config import STUDY_SCHEMA, load_study_config
from facefeat.study.template import render_template
from tests.study.conftest import ROOT, small_config, write_config


def _schema_keys(schema, prefix=""):
    for key, prop in schema.get("properties", {}).items():
        yield key
        if isinstance(prop, dict):
            yield from _schema_keys(prop, key)
            if isinstance(prop.get("items"), dict):
                yield from _schema_keys(prop["items"], key)


def test_schema_file_matches_code():
    on_disk = json.loads((ROOT / "schemas" / "study.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(STUDY_SCHEMA))


def test_template_names_every_key_and_validates(tmp_path):
    text = render_template("t")
    for key in set(_schema_keys(STUDY_SCHEMA)):
        assert f"{key}:" in text, f"study init template lacks key {key!r}"
    (tmp_path / "study.yaml").write_text(text)
    cfg = load_study_config(tmp_path / "study.yaml")
    assert cfg["reference"] == "clinical"
    assert [a["name"] for a in cfg["arms"]] == ["clinical", "faces+clinical"]
    assert cfg["cv"] == {"folds": 5, "repeats": 5, "seed": 0, "risk_groups": 2, "level": 0.95}


def test_init_cli_writes_template_and_refuses_to_overwrite(tmp_path, capsys):
    from facefeat.cli import main

    assert main(["study", "init", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s" / "study.yaml").read_text() == render_template("s")
    assert main(["study", "init", str(tmp_path / "s")]) == 2
    assert "--force" in capsys.readouterr().err


def _write(tmp_path: Path, cfg: dict) -> Path:
    return write_config(tmp_path, cfg)


@pytest.mark.parametrize("edit, key, fix", [
    (lambda c: c["cv"].update(fold=3), "'fold'", "allowed: folds, level, repeats, risk_groups, seed"),
    (lambda c: c.update(extra=1), "'extra'", "allowed:"),
    (lambda c: c["cv"].update(folds="five"), "cv.folds = 'five'", "must be of type integer"),
    (lambda c: c["arms"][1].update(pca="10"), "arms[1] ('faces').pca", "must be of type"),
    (lambda c: c["arms"][1].update(model="cox"), "arms[1] ('faces').model = 'cox'", "use one of 'coxph'"),
    (lambda c: c["arms"][2].update(features=["clinical", "landmarks"]),
     "arms[2] ('faces+clinical').features: 'landmarks'", "add it to extraction.extractors or inputs.covariates"),
    (lambda c: c["arms"][1].update(name="clinical"), "arms: name(s) ['clinical'] used twice",
     "give every arm its own name"),
    (lambda c: c.update(reference="nope"), "reference: 'nope' is not an arm", "set it to one of them"),
    (lambda c: c["subgroups"].update(columns=["stage"]), "subgroups: column 'stage'", "add it there"),
    (lambda c: c["inputs"].pop("clinical"), "inputs.clinical is required", "clinical table"),
])
def test_config_errors_name_key_and_fix(tmp_path, edit, key, fix):
    cfg = small_config()
    edit(cfg)
    path = _write(tmp_path, cfg)
    with pytest.raises(ConfigError) as exc:
        load_study_config(path)
    assert key in str(exc.value) and fix in str(exc.value)
    assert str(path) in str(exc.value)


def test_default_reference_arm_is_added(tmp_path):
    cfg = small_config()
    cfg["arms"] = [a for a in cfg["arms"] if a["name"] != "clinical"]
    loaded = load_study_config(_write(tmp_path, cfg))
    assert loaded["reference"] == "clinical"
    assert loaded["arms"][0] == {**loaded["arms"][0], "name": "clinical", "features": ["clinical"], "model": "coxph"}


def _with_cohort(tmp_path, cohort_dir, cfg=None) -> Path:
    shutil.copytree(cohort_dir, tmp_path / "cohort")
    return _write(tmp_path, cfg or small_config())


def test_validate_checks_inputs_without_computing(tmp_path, cohort_dir):
    from facefeat.study import Study

    path = _with_cohort(tmp_path, cohort_dir)
    info = Study.from_yaml(path).validate()
    assert info["n_matched"] == info["n_photos"] == info["n_clinical"] == 60
    assert not (tmp_path / "extract").exists() and not (tmp_path / ".study").exists()


def test_validate_clinical_column_missing(tmp_path, cohort_dir):
    from facefeat.study import Study

    cfg = small_config()
    cfg["inputs"]["covariates"] = ["age", "sex", "stage"]
    path = _with_cohort(tmp_path, cohort_dir, cfg)
    with pytest.raises(DataError, match=r"no column inputs.covariates\[2\] = 'stage'.*fix the key or the table"):
        Study.from_yaml(path).validate()


def test_validate_ids_match_no_photo(tmp_path, cohort_dir):
    import pandas as pd

    from facefeat.study import Study

    path = _with_cohort(tmp_path, cohort_dir)
    clin = pd.read_csv(tmp_path / "cohort" / "clinical.csv")
    clin["subject_id"] = "X" + clin["subject_id"]
    clin.to_csv(tmp_path / "cohort" / "clinical.csv", index=False)
    with pytest.raises(DataError, match="matches a photo's subject id.*fix inputs.id, inputs.subject_from"):
        Study.from_yaml(path).validate()


def test_validate_missing_inputs(tmp_path, cohort_dir):
    from facefeat.study import Study

    path = _with_cohort(tmp_path, cohort_dir)
    (tmp_path / "cohort" / "clinical.csv").unlink()
    with pytest.raises(InputError, match="inputs.clinical = .* does not exist"):
        Study.from_yaml(path).validate()


def test_validate_cli_and_run_refuse_before_work(tmp_path, cohort_dir, capsys):
    from facefeat.cli import main

    cfg = small_config()
    cfg["extraction"]["extractors"]["stylegan2"]["stepz"] = 3
    path = _with_cohort(tmp_path, cohort_dir, cfg)
    assert main(["study", "validate", str(path)]) == 2
    assert "stepz" in capsys.readouterr().err
    assert main(["study", "run", str(path)]) == 2
    assert not (tmp_path / "extract").exists()


def test_template_parses_as_yaml_mapping():
    data = yaml.safe_load(render_template("x"))
    assert set(data) <= set(STUDY_SCHEMA["properties"])
    assert copy.deepcopy(data)["extraction"]["extractors"] == {"landmarks": {}}
