"""Default log output: facefeat's INFO lines, no third-party INFO lines (issue 11.7)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): ")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # numexpr logs "NumExpr defaulting to N threads" at INFO only when no thread count is set
    for var in ("OMP_NUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMEXPR_MAX_THREADS"):
        env.pop(var, None)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "plugins"), env.get("PYTHONPATH", "")])
    return env


def _facefeat(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "facefeat.cli", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=600)


def _loggers(stderr: str) -> list[str]:
    names = []
    for line in stderr.splitlines():
        m = LINE.match(line)
        assert m, f"stderr line that is not a log line: {line!r}"
        names.append(m.group(2))
    return names


def test_configure_logging_levels():
    code = ("import logging; from facefeat.cli import configure_logging; import sys; configure_logging(int(sys.argv[1]));"
            "logging.getLogger('numexpr.utils').info('third-party info');"
            "logging.getLogger('numexpr.utils').warning('third-party warning');"
            "logging.getLogger('facefeat.engine.run').info('our info');"
            "logging.getLogger('facefeat_builtins.e4e').info('plugin info');"
            "logging.getLogger('facefeat.engine.run').debug('our debug');"
            "logging.getLogger('PIL').debug('third-party debug')")
    out = {v: subprocess.run([sys.executable, "-c", code, str(v)], env=_env(), capture_output=True, text=True,
                             check=True).stderr for v in (0, 1, 2)}
    assert "our info" in out[0] and "plugin info" in out[0] and "third-party warning" in out[0]
    assert "third-party info" not in out[0] and "debug" not in out[0]
    assert "third-party info" in out[1] and "our debug" in out[1] and "third-party debug" not in out[1]
    assert "third-party debug" in out[2]


def test_extract_and_inspect_log_no_third_party_lines(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(ROOT / "examples" / "faces" / "Tom_Cruise_avp_2014_4.jpg", photos)
    ext = _facefeat("extract", str(photos), "--extractors", "landmarks", "--out", str(tmp_path / "run"),
                    "--no-progress", cwd=tmp_path)
    assert ext.returncode == 0, ext.stderr
    ins = _facefeat("inspect", str(tmp_path / "run" / "landmarks.parquet"), cwd=tmp_path)  # imports pandas/numexpr
    assert ins.returncode == 0, ins.stderr
    names = _loggers(ext.stderr) + _loggers(ins.stderr)
    assert names and all(n.split(".")[0] in ("facefeat", "facefeat_builtins") for n in names), names
    assert "facefeat.engine.run" in names  # our own INFO lines still show
