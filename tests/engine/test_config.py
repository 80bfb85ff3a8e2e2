"""Run configuration: YAML files, -s overrides, validation before any work."""

import pytest

from facefeat.engine.config import RUN_CONFIG_SCHEMA, parse_overrides, resolve_run_config
from facefeat.engine.run import plan_run
from facefeat.errors import ConfigError, InputError


def test_overrides_parse_yaml_scalars():
    assert parse_overrides(["face.detector=cnn", "batch_size=16", "x.flag=true", "x.l=[1, 2]"]) == {
        "face": {"detector": "cnn"}, "batch_size": 16, "x": {"flag": True, "l": [1, 2]}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_overrides(["nonsense"])


def test_defaults_filled_and_bad_values_named():
    cfg = resolve_run_config({"input": "x", "out": "y", "extractors": "landmarks, face_descriptor"})
    assert cfg["extractors"] == ["landmarks", "face_descriptor"]
    assert cfg["face"]["detector"] == "hog" and cfg["align"]["transform_size_factor"] == 4
    with pytest.raises(ConfigError, match=r"face\.detector = 'yolo' is not allowed; allowed values: 'hog', 'cnn'"):
        resolve_run_config({"input": "x", "out": "y", "face": {"detector": "yolo"}})
    with pytest.raises(ConfigError, match="jobs"):
        resolve_run_config({"input": "x", "out": "y", "jobs": 0})


def test_schema_file_matches_code():
    import json
    from pathlib import Path

    on_disk = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "run_config.schema.json").read_text())
    assert on_disk == json.loads(json.dumps(RUN_CONFIG_SCHEMA))


def test_plan_stops_before_work(tmp_path, examples_dir):
    with pytest.raises(InputError, match="does not exist"):
        plan_run({"input": str(tmp_path / "missing"), "out": str(tmp_path / "o")})
    with pytest.raises(ConfigError, match="unknown extractor 'nope'"):
        plan_run({"input": str(examples_dir), "out": str(tmp_path / "o"), "extractors": ["nope"]})
    with pytest.raises(ConfigError, match="landmarks"):
        plan_run({"input": str(examples_dir), "out": str(tmp_path / "o"), "extractors": ["landmarks"],
                  "landmarks": {"no_such_key": 1}})
    with pytest.raises(ConfigError, match="name no selected extractor"):
        plan_run({"input": str(examples_dir), "out": str(tmp_path / "o"), "extractors": ["landmarks"],
                  "stylegan": {"steps": 1}})
    assert not (tmp_path / "o").exists()


def test_manifest_errors(tmp_path, examples_dir):
    m = tmp_path / "m.csv"
    m.write_text("subject,file\nP1,a.jpg\n")
    with pytest.raises(InputError, match=r"lacks column\(s\) subject_id, path; it has subject, file"):
        plan_run({"input": str(m), "out": str(tmp_path / "o")})
    m.write_text(f"subject_id,path\nP1,{examples_dir / 'dogs.jpg'}\nP2,nothere.jpg\nP3,\n")
    with pytest.raises(InputError, match=r"row\(s\) 4"):
        plan_run({"input": str(m), "out": str(tmp_path / "o")})
    m.write_text(f"subject_id;path\nP1;{examples_dir / 'dogs.jpg'}\nP2;nothere.jpg\n")
    with pytest.raises(InputError, match=r"1 path\(s\) do not exist \(row 3: .*nothere.jpg"):
        plan_run({"input": str(m), "out": str(tmp_path / "o")})
