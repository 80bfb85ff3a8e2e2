"""The example third-party plugin, pip-installed into a throw-away folder, is discovered and runs.

The plugin goes into a ``pip install --target`` folder that only the subprocesses of these tests
put on their ``PYTHONPATH``: the environment running the tests never has it, so an interrupted
test run cannot leave it installed (the earlier version installed it into this environment and
uninstalled it afterwards).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST = "facefeat-example-plugin"


@pytest.fixture(scope="module")
def example_site(tmp_path_factory):
    """A folder holding the installed example plugin (its package and its entry-point metadata)."""
    # build from a copy: pip builds in the source tree and would leave build/ and *.egg-info in the repo
    source = tmp_path_factory.mktemp("example_src") / "example"
    shutil.copytree(ROOT / "plugins" / "example", source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = tmp_path_factory.mktemp("example_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-compile",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    assert list(site.glob("facefeat_example_plugin-0.1.0.dist-info/entry_points.txt"))
    return site


def _env(site=None, **extra) -> dict:
    env = {**os.environ, **extra}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _cli(*args, env):
    return subprocess.run([sys.executable, "-m", "facefeat.cli", *args], capture_output=True, text=True,
                          check=True, env=env, cwd=ROOT)


def _extractors(env) -> set:
    return {r["extractor"] for r in json.loads(_cli("plugins", "--json", env=env).stdout)}


def test_the_running_environment_never_sees_the_plugin(example_site):
    import importlib.metadata

    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(DIST)
    assert "example_colour" not in _extractors(_env())  # a fresh process without the folder
    assert "example_colour" in _extractors(_env(example_site))


def test_example_plugin_discovered_and_run(example_site, tmp_path, examples_dir):
    env = _env(example_site)
    rows = json.loads(_cli("plugins", "--json", env=env).stdout)
    mine = [r for r in rows if r["extractor"] == "example_colour"]
    assert mine == [{"extractor": "example_colour", "version": "0.1.0", "plugin": "example_colour",
                     "distribution": DIST, "distribution_version": "0.1.0"}]
    _cli("extract", str(examples_dir), "--out", str(tmp_path), "-e", "example_colour", "--no-progress", env=env)
    import facefeat

    df = facefeat.read_features(tmp_path, include_failed=True)
    ok = df[df.status == "ok"]
    assert len(df) == 5 and len(ok) == 4
    assert ((ok.example_colour__luminance > 20) & (ok.example_colour__luminance < 240)).all()
    from facefeat.io.tables import read_provenance

    prov = read_provenance(tmp_path / "example_colour.parquet")
    assert prov["extractor"]["distribution"] == DIST
    # The plugin's own tests pass against the installed copy.
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "plugins" / "example" / "tests")], capture_output=True, text=True, env=env,
                         cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip().splitlines()[-1].startswith("2 passed"), res.stdout


def test_blocking_the_example_plugin(example_site):
    env = _env(example_site, FACEFEAT_PLUGINS_BLOCK="example_colour")
    assert "example_colour" not in _extractors(env)
