"""Keyed pseudonyms: stable per key, different across keys, not a plain hash, key files checked."""

import hashlib
import hmac
import os
import stat

import pytest

from facefeat.errors import ConfigError, InputError
from facefeat.io.pseudonym import load_key, make_key, pseudonymise


def test_same_key_same_pseudonyms_and_hmac_value(tmp_path):
    key = make_key(tmp_path / "study.key")
    assert stat.S_IMODE(os.stat(tmp_path / "study.key").st_mode) == 0o600
    assert load_key(tmp_path / "study.key") == key
    ids = ["S001", "S002", "S001", 17]
    p = pseudonymise(ids, key)
    assert p[0] == p[2] and len(set(p)) == 3
    assert p[0] == "P" + hmac.new(key, b"S001", hashlib.sha256).hexdigest()[:16]
    assert p[3] == pseudonymise(["17"], key)[0]
    # not the unkeyed hash of the id, and another key gives other pseudonyms
    assert p[0][1:] != hashlib.sha256(b"S001").hexdigest()[:16]
    other = make_key(tmp_path / "other.key")
    assert set(pseudonymise(ids, other)).isdisjoint(p)


def test_key_file_errors(tmp_path):
    with pytest.raises(InputError, match="not found.*--make-key"):
        load_key(tmp_path / "missing.key")
    (tmp_path / "short.key").write_text("abcd\n")
    with pytest.raises(InputError, match="2 bytes"):
        load_key(tmp_path / "short.key")
    make_key(tmp_path / "k")
    with pytest.raises(ConfigError, match="exists already"):
        make_key(tmp_path / "k")
    with pytest.raises(ConfigError, match="too short"):
        pseudonymise(["a"], b"x")
