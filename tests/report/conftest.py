"""Fixtures: one small real study (latents of the tiny generator, a clinical table, a model saved
by 'facefeat fit') and its report rendered through the 'facefeat report' command."""

from __future__ import annotations

import pytest

from tests.report.study import NASTY_ID, make_study


@pytest.fixture(scope="session")
def study(tmp_path_factory):
    return make_study(tmp_path_factory.mktemp("study"))


@pytest.fixture(scope="session")
def report(study):
    """(html text, path) of the study's report, written by the command line.

    ``study["dataset_loads"]`` counts the modelling tables built while it ran."""
    from unittest import mock

    from facefeat.cli import main
    from facefeat.survival import dataset

    out = study["root"] / "report.html"
    with mock.patch.object(dataset, "load_model_dataset", wraps=dataset.load_model_dataset) as spy:
        rc = main(["report", str(study["run"]), "--model-dir", str(study["model"]), "-o", str(out), "--folds", "3", "--risk-groups", "3",
                   "--repeats", "1", "--region-subjects", "4", "--subjects", f"{NASTY_ID},P001",
                   "--edit-steps", "-2..2"])
    study["dataset_loads"] = spy.call_count
    assert rc == 0
    return out.read_text(encoding="utf-8"), out
