"""A study killed with SIGKILL at several points and run again equals an uninterrupted run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from tests.study.conftest import ROOT, small_config, write_config


def _start(study_yaml: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "plugins"),
                                                        os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", "import sys; from facefeat.cli import main; "
                             "sys.exit(main(['study', 'run', '--no-progress', sys.argv[1]]))", str(study_yaml)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_when(proc: subprocess.Popen, ready, *, timeout: float = 600) -> bool:
    """SIGKILL ``proc`` as soon as ``ready()`` holds; False if it finished first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            return False
        if ready():
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the study did not reach the kill point in time")


@pytest.mark.slow
def test_kill9_at_several_points_then_rerun_equals_uninterrupted(tmp_path, cohort_dir, finished_study):
    from facefeat.study import Study

    shutil.copytree(cohort_dir, tmp_path / "cohort")
    path = write_config(tmp_path, small_config())
    points = [
        ("mid-extraction", lambda: any((tmp_path / "extract" / ".parts").glob("*/part-*.parquet"))),
        ("after the first arm", lambda: (tmp_path / ".study" / "arm-clinical.json").is_file()),
        ("mid-comparison or later", lambda: (tmp_path / ".study" / "arm-faces+clinical.json").is_file()),
    ]
    killed = []
    for name, ready in points:
        if _kill_when(_start(path), ready):
            killed.append(name)
    assert killed, "no kill landed"
    res = Study.from_yaml(path).run()
    assert res.stages  # finished
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "comparison.parquet"),
                                  pd.read_parquet(finished_study / "comparison.parquet"))
    for arm in ("clinical", "faces", "faces+clinical"):
        for table in ("oof", "folds"):
            a = pd.read_parquet(tmp_path / "arms" / arm / f"{table}.parquet").drop(columns=["fit_seconds"], errors="ignore")
            b = pd.read_parquet(finished_study / "arms" / arm / f"{table}.parquet").drop(columns=["fit_seconds"],
                                                                                            errors="ignore")
            pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "exports" / "modelling_table.parquet"),
                                  pd.read_parquet(finished_study / "exports" / "modelling_table.parquet"))
    assert {s.state for s in Study.from_yaml(path).status()} == {"done"}
