"""The model registry's data, the cache layout and resolve_model (no network, no weights)."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest

from facefeat.errors import ModelError
from facefeat.models import registry
from facefeat.models.registry import (
    FORMATS,
    REGISTRY,
    cache_path,
    check_cached,
    facefeat_home,
    get_entry,
    list_entries,
    resolve_model,
    validate_entry,
    write_recorded_sha256,
)

HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _with_entry(monkeypatch, entry):
    monkeypatch.setattr(registry, "REGISTRY", MappingProxyType({**REGISTRY, entry.name: entry}))
    return entry


# ---------------------------------------------------------------------------------------------
# Registry consistency
# ---------------------------------------------------------------------------------------------


def test_every_entry_is_complete():
    for entry in list_entries():
        assert validate_entry(entry) == [], entry.name
        assert entry.licence.short and entry.licence.text and entry.licence.urls
        assert entry.format in FORMATS
        assert entry.urls and all(u.startswith("https://") for u in entry.urls)
        assert entry.description and entry.source


def test_names_and_files_unique():
    names = [e.name for e in registry._ENTRIES]
    assert len(names) == len(set(names)) == len(REGISTRY)
    assert all(REGISTRY[n].name == n for n in REGISTRY)
    assert len({e.filename for e in registry._ENTRIES}) == len(names)


def test_hashes_are_published_ones_or_none():
    for entry in list_entries():
        assert entry.sha256 is None or HEX64.match(entry.sha256)
        for mirror in entry.mirror_hashes:
            assert HEX64.match(mirror.sha256) and mirror.source.startswith("https://")
            assert mirror.sha256 != entry.sha256  # a mirror's hash is never promoted to "published"


def test_config_matches_resolution():
    for entry in list_entries():
        res = entry.resolution
        assert res and res & (res - 1) == 0, entry.name
        assert entry.config["num_ws"] == 2 * int(math.log2(res)) - 2, entry.name


def test_expected_official_checkpoints_present():
    by_file = {e.filename: e for e in list_entries()}
    assert by_file["ffhq.pkl"].urls[0] == (
        "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl"
    )
    paper256 = by_file["ffhq-res256-mirror-paper256-noaug.pkl"]
    assert paper256.resolution == 256 and paper256.config["channel_base"] == 16384
    assert "transfer-learning-source-nets" in paper256.urls[0]
    assert by_file["stylegan2-ffhq-config-f.pt"].format == "rosinality-pt"
    assert by_file["stylegan2-ffhq-config-f.pt"].config["channel_multiplier"] == 2
    assert by_file["e4e_ffhq_encode.pt"].format == "e4e-pt"
    # Google Drive links come with a page to open in a browser
    for entry in list_entries():
        if "drive.google.com" in entry.urls[0]:
            assert entry.browser_url and "drive.google.com/file/d/" in entry.browser_url


def test_nvidia_weights_are_marked_non_commercial():
    for entry in list_entries():
        # every listed checkpoint holds (or embeds) NVIDIA's FFHQ StyleGAN2 weights
        assert entry.licence.non_commercial, entry.name
        assert "non-commercial" in entry.licence.text.lower()
        assert "CC BY-NC-SA 4.0" in entry.licence.text


def test_validate_entry_finds_problems():
    bad = replace(
        list_entries()[0], name="a/b", format="onnx", urls=("ftp://x",), sha256="ABC", config={}
    )
    problems = " | ".join(validate_entry(bad))
    for word in ("name", "format", "URL", "sha256", "resolution", "num_ws"):
        assert word in problems


def test_import_does_no_network_and_no_heavy_imports():
    # In a fresh interpreter (reloading modules here would split their classes in two).
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise AssertionError('network used at import time')\n"
        "socket.create_connection = socket.getaddrinfo = refuse\n"
        "import facefeat.models.registry, facefeat.models.download, facefeat.models.cli\n"
        "heavy = [m for m in ('torch', 'tqdm', 'numpy') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ModelError, match="did you mean nvidia-ffhq-256"):
        get_entry("nvidia-ffhq256")


# ---------------------------------------------------------------------------------------------
# Cache layout
# ---------------------------------------------------------------------------------------------


def test_home_from_env(home):
    assert facefeat_home() == home
    entry = get_entry("nvidia-ffhq-256")
    assert cache_path("nvidia-ffhq-256") == home / "models" / "nvidia-ffhq-256" / entry.filename


def test_home_default_is_user_cache_dir(monkeypatch):
    import platformdirs

    monkeypatch.delenv("FACEFEAT_HOME", raising=False)
    assert facefeat_home() == Path(platformdirs.user_cache_dir("facefeat"))


# ---------------------------------------------------------------------------------------------
# resolve_model
# ---------------------------------------------------------------------------------------------


def test_existing_path_used_as_is(home, tmp_path):
    f = tmp_path / "my-model.pkl"
    f.write_bytes(b"x")
    assert resolve_model(f) == f
    assert resolve_model(str(f)) == f


def test_registry_name_resolves_to_cache(home):
    target = cache_path("nvidia-ffhq-256")
    target.parent.mkdir(parents=True)
    target.write_bytes(b"weights")
    assert resolve_model("nvidia-ffhq-256") == target


def test_missing_model_message_names_path_pull_and_hash(home):
    with pytest.raises(ModelError) as err:
        resolve_model("e4e-ffhq-encode")
    message = str(err.value)
    target = cache_path("e4e-ffhq-encode")
    assert str(target) in message
    assert "facefeat models pull e4e-ffhq-encode" in message
    assert "expected sha256: not published upstream (unverified)" in message
    assert "drive.google.com/file/d/" in message  # browser link for offline download


def test_missing_model_message_gives_published_hash(home, monkeypatch):
    entry = _with_entry(monkeypatch, replace(get_entry("nvidia-ffhq-256"), name="hashed", sha256="ab" * 32))
    with pytest.raises(ModelError, match=f"expected sha256: {'ab' * 32}"):
        resolve_model(entry.name)


def test_missing_path_and_unknown_name(home, tmp_path):
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model(tmp_path / "nope.pkl")
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model("./nope.pt")
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        resolve_model("nope")


# ---------------------------------------------------------------------------------------------
# check_cached (what 'facefeat models verify' reports)
# ---------------------------------------------------------------------------------------------


def _place(name, data=b"weights"):
    target = cache_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def test_check_missing_and_partial(home):
    assert check_cached("nvidia-ffhq-256").status == "missing"
    target = cache_path("nvidia-ffhq-256")
    target.parent.mkdir(parents=True)
    target.with_name(target.name + ".part").write_bytes(b"12345")
    result = check_cached("nvidia-ffhq-256")
    assert result.status == "missing" and "partial download (5 bytes)" in result.detail


def test_check_unverified_hand_placed_and_recorded(home):
    import hashlib

    target = _place("nvidia-ffhq-256")
    digest = hashlib.sha256(b"weights").hexdigest()
    result = check_cached("nvidia-ffhq-256")
    assert (result.status, result.sha256) == ("unverified", digest)
    assert "no published sha256" in result.detail
    write_recorded_sha256(target, digest)
    assert "unchanged since download" in check_cached("nvidia-ffhq-256").detail
    target.write_bytes(b"weightz")
    result = check_cached("nvidia-ffhq-256")
    assert result.status == "mismatch" and "changed since download" in result.detail


def test_check_against_published_hash(home, monkeypatch):
    import hashlib

    good = hashlib.sha256(b"weights").hexdigest()
    entry = _with_entry(monkeypatch, replace(get_entry("nvidia-ffhq-256"), name="hashed", sha256=good))
    _place(entry.name)
    assert check_cached(entry.name).status == "ok"
    _place(entry.name, b"other")
    result = check_cached(entry.name)
    assert result.status == "mismatch" and f"expected {good}" in result.detail


def test_check_reports_mirror_match(home, monkeypatch):
    import hashlib

    digest = hashlib.sha256(b"weights").hexdigest()
    mirror = registry.MirrorHash(digest, 7, "https://mirror.example/x")
    entry = _with_entry(monkeypatch, replace(get_entry("e4e-ffhq-encode"), name="mirrored", mirror_hashes=(mirror,)))
    _place(entry.name)
    result = check_cached(entry.name)
    assert result.status == "unverified" and "https://mirror.example/x" in result.detail
