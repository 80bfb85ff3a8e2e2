"""``facefeat models list | verify | convert`` through ``facefeat.cli.main`` (no network)."""

from __future__ import annotations

import hashlib
import re
import sys
import types
from dataclasses import replace
from types import MappingProxyType

import pytest

from facefeat.cli import main
from facefeat.models import registry
from facefeat.models.registry import REGISTRY, cache_path, get_entry


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _place(name, data=b"weights"):
    target = cache_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    return target


def _row(out, name):
    match = re.search(rf"^{re.escape(name)}\s+(.*)$", out, re.M)
    assert match, f"no row for {name} in:\n{out}"
    return match.group(1).split()


def test_list(home, capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    for name in REGISTRY:
        fmt, res, *_rest, sha, cached = _row(out, name)
        entry = REGISTRY[name]
        assert (fmt, res, sha, cached) == (entry.format, str(entry.resolution), "unverified", "no")
    assert "NVIDIA-SCL-NC" in out
    assert str(home / "models") in out
    assert "non-commercial" in out.lower()


def test_list_shows_cached_and_partial(home, capsys):
    _place("nvidia-ffhq-256")
    part = cache_path("rosinality-ffhq-1024")
    part.parent.mkdir(parents=True)
    part.with_name(part.name + ".part").write_bytes(b"123")
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "nvidia-ffhq-256")[-1] == "yes"
    assert _row(out, "rosinality-ffhq-1024")[-1] == "partial"
    assert _row(out, "nvidia-ffhq-1024")[-1] == "no"


def test_list_long_gives_urls_and_exact_paths(home, capsys):
    assert main(["models", "list", "--long"]) == 0
    out = capsys.readouterr().out
    for entry in REGISTRY.values():
        assert entry.urls[0] in out
        assert str(cache_path(entry)) in out
    assert "not published (unverified)" in out


def test_verify_nothing_cached(home, capsys):
    assert main(["models", "verify"]) == 0  # nothing asked for explicitly: missing is no failure
    out = capsys.readouterr().out
    for name in REGISTRY:
        assert _row(out, name)[0] == "missing"
    assert main(["models", "verify", "nvidia-ffhq-256"]) == 1  # asked for, not there
    assert "facefeat models pull nvidia-ffhq-256" in capsys.readouterr().out


def test_verify_unverified_and_strict(home, capsys):
    _place("nvidia-ffhq-256")
    assert main(["models", "verify", "nvidia-ffhq-256"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "nvidia-ffhq-256")[0] == "unverified"
    assert hashlib.sha256(b"weights").hexdigest() in out
    assert main(["models", "verify", "--strict", "nvidia-ffhq-256"]) == 1


def test_verify_ok_and_mismatch(home, monkeypatch, capsys):
    good = hashlib.sha256(b"weights").hexdigest()
    entry = replace(get_entry("nvidia-ffhq-256"), name="hashed", sha256=good)
    monkeypatch.setattr(registry, "REGISTRY", MappingProxyType({**REGISTRY, entry.name: entry}))
    _place("hashed")
    assert main(["models", "verify", "hashed", "--strict"]) == 0
    assert _row(capsys.readouterr().out, "hashed")[0] == "ok"
    _place("hashed", b"corrupt")
    assert main(["models", "verify", "hashed"]) == 1
    out = capsys.readouterr().out
    assert _row(out, "hashed")[0] == "mismatch" and f"expected {good}" in out


def test_verify_unknown_name(home, capsys):
    assert main(["models", "verify", "no-such-model"]) == 2
    assert "unknown model 'no-such-model'" in capsys.readouterr().err


def test_verify_deep_without_loaders(home, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "facefeat.models.checkpoints", None)  # as if not installed
    _place("nvidia-ffhq-256")
    assert main(["models", "verify", "--deep", "nvidia-ffhq-256"]) == 1
    out = capsys.readouterr().out
    assert _row(out, "nvidia-ffhq-256")[0] == "unverified+deep-failed"
    assert "facefeat.models.checkpoints is not available in this installation yet" in out


def test_verify_deep_with_a_loader(home, monkeypatch, capsys):
    calls = []

    def load_generator(path, *, device="cpu"):
        calls.append((path, device))
        return types.SimpleNamespace(img_resolution=256)

    fake = types.ModuleType("facefeat.models.checkpoints")
    fake.load_generator = load_generator
    monkeypatch.setitem(sys.modules, "facefeat.models.checkpoints", fake)
    target = _place("nvidia-ffhq-256")
    assert main(["models", "verify", "--deep", "nvidia-ffhq-256"]) == 0
    assert "deep check: loads with load_generator" in capsys.readouterr().out
    assert calls == [(target, "cpu")]
    # a file that loads as the wrong resolution fails
    fake.load_generator = lambda path, device="cpu": types.SimpleNamespace(img_resolution=1024)
    assert main(["models", "verify", "--deep", "nvidia-ffhq-256"]) == 1
    assert "resolution 1024 != registry 256" in capsys.readouterr().out


def test_convert_without_converter(home, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "facefeat.models.checkpoints", None)
    src = tmp_path / "in.pkl"
    src.write_bytes(b"x")
    assert main(["models", "convert", str(src), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "facefeat.models.checkpoints.convert_checkpoint" in err and "not available" in err


def test_convert_calls_converter(home, monkeypatch, capsys, tmp_path):
    calls = []
    fake = types.ModuleType("facefeat.models.checkpoints")
    fake.convert_checkpoint = lambda src, dst: calls.append((src, dst)) or dst.write_bytes(b"y")
    monkeypatch.setitem(sys.modules, "facefeat.models.checkpoints", fake)
    target = _place("nvidia-ffhq-256")
    out_path = tmp_path / "ffhq256.safetensors"
    assert main(["models", "convert", "nvidia-ffhq-256", str(out_path)]) == 0
    assert calls == [(target, out_path)]
    out = capsys.readouterr().out
    assert "keep the licence of nvidia-ffhq-256" in out and "non-commercial" in out
    # an existing output is not overwritten without --force
    assert main(["models", "convert", "nvidia-ffhq-256", str(out_path)]) == 2
    assert "--force" in capsys.readouterr().err
    assert main(["models", "convert", "nvidia-ffhq-256", str(out_path), "--force"]) == 0
    # a registry model that is not cached: the error says how to get it
    assert main(["models", "convert", "e4e-ffhq-encode", str(tmp_path / "e4e.out")]) == 2
    assert "facefeat models pull e4e-ffhq-encode" in capsys.readouterr().err


@pytest.mark.parametrize("sub", ["list", "pull", "verify", "convert"])
def test_help_has_examples(sub, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["models", sub, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "Examples:" in out and f"facefeat models {sub}" in out


def test_models_without_subcommand_prints_help(capsys):
    assert main(["models"]) == 2
    assert "SUBCOMMAND" in capsys.readouterr().out
