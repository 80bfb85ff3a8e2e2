"""The example third-party plugin, installed into this environment, is discovered and runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed_example():
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(pip + ["install", "-q", "--no-deps", "--no-build-isolation", str(ROOT / "plugins" / "example")],
                   check=True, capture_output=True)
    yield
    subprocess.run(pip + ["uninstall", "-q", "-y", "facefeat-example-plugin"], check=True, capture_output=True)


def _cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "facefeat.cli", *args], capture_output=True, text=True,
                          check=True, env=env)


def test_example_plugin_discovered_and_run(installed_example, tmp_path, examples_dir):
    rows = json.loads(_cli("plugins", "--json").stdout)
    mine = [r for r in rows if r["extractor"] == "example_colour"]
    assert mine == [{"extractor": "example_colour", "version": "0.1.0", "plugin": "example_colour",
                     "distribution": "facefeat-example-plugin", "distribution_version": "0.1.0"}]
    _cli("extract", str(examples_dir), "--out", str(tmp_path), "-e", "example_colour", "--no-progress")
    import facefeat

    df = facefeat.read_features(tmp_path, include_failed=True)
    ok = df[df.status == "ok"]
    assert len(df) == 5 and len(ok) == 4
    assert ((ok.example_colour__luminance > 20) & (ok.example_colour__luminance < 240)).all()
    from facefeat.io.tables import read_provenance

    prov = read_provenance(tmp_path / "example_colour.parquet")
    assert prov["extractor"]["distribution"] == "facefeat-example-plugin"
    # The plugin's own tests pass in this environment.
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "plugins" / "example" / "tests")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_blocking_the_example_plugin(installed_example):
    import os

    env = {**os.environ, "FACEFEAT_PLUGINS_BLOCK": "example_colour"}
    rows = json.loads(_cli("plugins", "--json", env=env).stdout)
    assert "example_colour" not in {r["extractor"] for r in rows}
