"""Ctrl-C during ``facefeat simulate`` tells the truth: simulate has no resume, so the message
says what is lost and what (if anything) was written, never "finished parts are kept, re-run to
resume" (which it printed before, like every other command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from facefeat.simulate.cli import _interrupted
from tests.conftest import ROOT


def _interrupt_when(out: Path, stage: str, *args: str) -> tuple[int, str]:
    """Start ``facefeat simulate``, send SIGINT once its stderr announces ``stage``, return (rc, stderr)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "facefeat.cli", "simulate", "-o", str(out), *args], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stderr:  # the stage lines are flushed as each stage starts
            seen.append(line)
            if stage in line:
                break
        else:
            pytest.fail("simulate ended before the stage: " + "".join(seen))
        time.sleep(0.5)  # inside the stage's work
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        rc = proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return rc, "".join(seen) + rest


def test_sigint_during_the_inversion_says_nothing_is_kept(tmp_path):
    out = tmp_path / "sim"
    # 60 faces, a projection far too long to finish: the signal lands in the inversion
    rc, err = _interrupt_when(out, "rendering 60 faces", "--n", "60", "--steps", "1000000")
    last = err.strip().splitlines()[-1]
    assert rc == 130, err
    assert last == (f"facefeat simulate: interrupted; simulate does not resume: the renders, the inversion and the "
                    f"model fits done so far are lost and nothing was written to {out}; re-run the command to start over")
    assert "resume" not in last.replace("does not resume", "")
    assert "Traceback" not in err
    assert not out.exists()


@pytest.mark.slow
def test_sigint_during_the_power_curve_keeps_the_finished_study(tmp_path):
    out = tmp_path / "sim"
    rc, err = _interrupt_when(out, "power curve over", "--n", "60", "--steps", "5", "--grid", "60",
                              "--replicates", "100000")
    last = err.strip().splitlines()[-1]
    assert rc == 130, err
    assert last.startswith(f"facefeat simulate: interrupted; the simulated study is complete in {out} (summary.json) "
                           "but the power curve was not finished: its replicates are lost; simulate does not resume")
    assert (out / "summary.json").is_file() and (out / "features" / "stylegan2.parquet").is_file()
    assert not (out / "power.csv").exists()


def test_the_account_follows_what_is_on_disk(tmp_path):
    out = tmp_path / "sim"
    started = time.time()
    assert "nothing was written to" in _interrupted(out, started, power=False)
    (out / "images").mkdir(parents=True)
    (out / "images" / "S0001.png").write_bytes(b"x")
    assert f"{out} holds an incomplete study (summary.json, written last, is missing)" in _interrupted(
        out, started, power=False)
    (out / "summary.json").write_text("{}")
    assert _interrupted(out, started, power=False) == f"the simulated study is complete in {out}; nothing is lost"
    assert "the power curve was not finished" in _interrupted(out, started, power=True)
    for name in ("power_replicates.csv", "power.csv", "power.png"):
        (out / name).write_text("")
    assert _interrupted(out, started, power=True) == (f"the simulated study and the power curve are complete in "
                                                      f"{out}; nothing is lost")
    # files of an earlier run (older than this one's start) are not this run's results
    old = started - 3600
    for path in out.rglob("*"):
        os.utime(path, (old, old))
    assert "nothing was written to" in _interrupted(out, started, power=True)
