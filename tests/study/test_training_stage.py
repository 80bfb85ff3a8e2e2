"""The optional generator fine-tuning stage feeds the stylegan2 extractor ('@training.generator')."""

from __future__ import annotations

import shutil

import pytest

from tests.study.conftest import small_config, write_config


@pytest.mark.slow
def test_generator_stage_feeds_extraction_and_is_cached(tmp_path, cohort_dir):
    from facefeat.study import Study

    shutil.copytree(cohort_dir, tmp_path / "cohort")
    cfg = small_config()
    cfg["training"] = {"generator": {"init": "cohort/generator.safetensors", "config": {
        "kimg": 0.016, "batch_size": 4, "metrics": [], "snapshot_kimg": 0.016, "sample_kimg": 0.016,
        "tick_kimg": 0.008}}}
    cfg["extraction"]["extractors"]["stylegan2"].update(checkpoint="@training.generator", steps=5)
    cfg["cv"] = {"folds": 3, "repeats": 1}
    cfg["outputs"] = {"report": False, "exports": False}
    path = write_config(tmp_path, cfg)
    res = Study.from_yaml(path).run()
    assert [s.name for s in res.stages][:2] == ["training.generator", "extract"]
    rec = next(s for s in res.stages if s.name == "training.generator")
    assert rec.action == "computed"
    # the extractor read the fine-tuned generator, recorded in the table's provenance
    from facefeat.io.tables import read_provenance

    prov = read_provenance(tmp_path / "extract" / "stylegan2.parquet")
    assert "train/generator" in str(prov["extractor"]["config"]["checkpoint"])
    again = Study.from_yaml(path).run()
    assert {s.action for s in again.stages} == {"reused"}
