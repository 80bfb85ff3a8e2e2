"""A small synthetic study (the example's cohort maker, fewer subjects, few projection steps)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "study"


def load_make_cohort():
    spec = importlib.util.spec_from_file_location("example_make_cohort", EXAMPLE / "make_cohort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def small_config(cohort: str = "cohort") -> dict:
    """The example's study.yaml, reduced: fewer projection steps and CV repeats."""
    cfg = yaml.safe_load((EXAMPLE / "study.yaml").read_text())
    cfg["inputs"]["photos"] = f"{cohort}/photos"
    cfg["inputs"]["clinical"] = f"{cohort}/clinical.csv"
    sg = cfg["extraction"]["extractors"]["stylegan2"]
    sg.update(checkpoint=f"{cohort}/generator.safetensors", steps=20, w_avg_samples=500, batch_size=30)
    cfg["extraction"]["batch_size"] = 30
    cfg["cv"] = {"folds": 3, "repeats": 2, "seed": 0}
    for arm in cfg["arms"][1:]:
        arm["pca"] = 5  # 60 subjects: 5 components, not the 64 latent columns (the LRT stays well defined)
    return cfg


@pytest.fixture(scope="session")
def cohort_dir(tmp_path_factory) -> Path:
    """A 60-subject planted-signal cohort, rendered once per session."""
    out = tmp_path_factory.mktemp("study_cohort") / "cohort"
    load_make_cohort().make_cohort(out, n=60, seed=3)
    return out


@pytest.fixture(scope="session")
def finished_study(tmp_path_factory, cohort_dir) -> Path:
    """The small study run once (reused by the tests that only read its outputs)."""
    from facefeat.study import Study

    folder = tmp_path_factory.mktemp("study_run")
    shutil.copytree(cohort_dir, folder / "cohort")
    write_config(folder, small_config())
    Study.from_yaml(folder / "study.yaml").run()
    return folder


def write_config(folder: Path, cfg: dict) -> Path:
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
