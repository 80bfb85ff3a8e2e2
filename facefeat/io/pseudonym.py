"""Keyed pseudonyms for subject ids (HMAC-SHA256), for tables that leave the key holder.

A study key is 32 random bytes in a file the user keeps (0600). The same key turns the same
subject id into the same pseudonym in every export and every study, so exports of one cohort
can be joined; without the key a pseudonym cannot be turned back into the id or recomputed
from a guessed id (unlike a plain hash of a hospital number, which can be brute-forced).
The mapping itself is never written by facefeat: only the key holder can recompute it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Iterable

from facefeat.errors import ConfigError, InputError
from facefeat.io.atomic import write_bytes_atomic

#: Stated in provenance and data dictionaries next to pseudonymised columns.
PSEUDONYM_METHOD = "HMAC-SHA256(study key, subject_id), first 16 hex digits, prefixed 'P'"

KEY_BYTES = 32
_MIN_KEY_BYTES = 16
_HEX_DIGITS = 16  # 64 bits: collision-free for any realistic cohort (checked in pseudonymise)


def make_key(path: str | os.PathLike, *, overwrite: bool = False) -> bytes:
    """Create a new random study key file (hex text, permissions 0600) and return the key.

    Refuses to replace an existing key unless ``overwrite``: a lost key means pseudonyms that
    can no longer be matched with later exports.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise ConfigError(f"{path}: a key file exists already; keep it (it links your exports) or pass overwrite")
    key = secrets.token_bytes(KEY_BYTES)
    write_bytes_atomic(path, key.hex().encode() + b"\n")
    os.chmod(path, 0o600)
    return key


def load_key(path: str | os.PathLike) -> bytes:
    """Read a study key file written by :func:`make_key` (hex text) or holding raw bytes.

    Raises
    ------
    InputError
        The file is missing, empty or shorter than 16 bytes of key.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"pseudonymisation key {path} not found; create one with "
                         f"'facefeat export --make-key {path}' (keep it private and backed up)")
    raw = path.read_bytes()
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw  # a binary key file
    if len(key) < _MIN_KEY_BYTES:
        raise InputError(f"pseudonymisation key {path} holds {len(key)} bytes; at least {_MIN_KEY_BYTES} are "
                         f"needed (create a new key with 'facefeat export --make-key FILE')")
    return key


def pseudonymise(ids: Iterable[object], key: bytes) -> list[str]:
    """Keyed pseudonyms of ``ids`` (each turned to ``str`` first), in input order.

    Equal ids give equal pseudonyms; distinct ids give distinct pseudonyms (a collision, which
    at 64 bits needs billions of subjects, raises instead of silently merging two subjects).
    """
    if len(key) < _MIN_KEY_BYTES:
        raise ConfigError(f"pseudonymisation key too short ({len(key)} bytes, need >= {_MIN_KEY_BYTES})")
    out: list[str] = []
    seen: dict[str, str] = {}
    for value in ids:
        sid = str(value)
        digest = hmac.new(key, sid.encode("utf-8"), hashlib.sha256).hexdigest()[:_HEX_DIGITS]
        p = "P" + digest
        other = seen.setdefault(p, sid)
        if other != sid:
            raise ConfigError(f"pseudonym collision between two subject ids ({p}); report this")
        out.append(p)
    return out
