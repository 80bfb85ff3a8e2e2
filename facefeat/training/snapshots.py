"""Training snapshots: networks in facefeat's format plus the state an exact resume needs.

A snapshot taken after ``nimg`` real images is three files in the output folder::

    network-snapshot-<nimg:09d>.safetensors   G_ema, G and D (facefeat's StyleGAN2 format)
    network-snapshot-<nimg:09d>.json          their configs + provenance (training config, ...)
    network-snapshot-<nimg:09d>.state.pt      optimiser states, random-generator states, step
                                              counters, ADA p and statistics, path-length mean

The first two are an ordinary facefeat checkpoint: ``load_generator(path)`` returns the EMA
generator, so any snapshot can be handed to the ``stylegan2`` extractor. The ``.state.pt`` file
holds only tensors and plain containers and is read with ``torch.load(weights_only=True)``;
it records the sha256 of the weights it belongs to. Files are written atomically and the state
file last, so a snapshot is complete exactly when its state file exists.

The final generator is ``generator-final.safetensors`` / ``.json`` (``G_ema`` only).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from facefeat.errors import ModelError

SNAPSHOT_PREFIX = "network-snapshot-"
STATE_SUFFIX = ".state.pt"
FINAL_NAME = "generator-final"
STATE_FORMAT = "facefeat-stylegan2-training-state"
STATE_FORMAT_VERSION = 1

def snapshot_stem(out_dir: str | os.PathLike, nimg: int) -> Path:
    """``OUT/network-snapshot-<nimg:09d>`` (no suffix)."""
    return Path(out_dir) / f"{SNAPSHOT_PREFIX}{int(nimg):09d}"


def state_path(stem: str | os.PathLike) -> Path:
    stem = Path(stem)
    name = stem.name
    for suffix in (".safetensors", ".json", STATE_SUFFIX):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return stem.with_name(name + STATE_SUFFIX)


def stem_of(path: str | os.PathLike) -> Path:
    """The snapshot stem of any of its three files (or of the stem itself)."""
    p = Path(path)
    name = p.name
    for suffix in (STATE_SUFFIX, ".safetensors", ".json"):
        if name.endswith(suffix):
            return p.with_name(name[: -len(suffix)])
    return p


def numbered_files(out_dir: str | os.PathLike, *, prefix: str, suffix: str,
                   companions: tuple[str, ...] = ()) -> list[tuple[int, Path]]:
    """Files ``<prefix><digits><suffix>`` in ``out_dir`` as ``(number, path)``, oldest first.

    The one snapshot listing of training (generator and encoder snapshots alike). With
    ``companions`` (suffixes such as ``".safetensors"``), a file counts only when the files
    ``<prefix><digits><companion>`` exist beside it too (a snapshot is complete).
    """
    d = Path(out_dir)
    if not d.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(prefix)}(\d+){re.escape(suffix)}$")
    out = []
    for p in d.iterdir():
        m = pattern.match(p.name)
        if m and all((d / f"{prefix}{m.group(1)}{c}").is_file() for c in companions):
            out.append((int(m.group(1)), p))
    return sorted(out)


def list_snapshots(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete generator snapshots in ``out_dir`` as ``(nimg, stem)``, oldest first."""
    return [(n, stem_of(p)) for n, p in numbered_files(out_dir, prefix=SNAPSHOT_PREFIX, suffix=STATE_SUFFIX,
                                                       companions=(".safetensors", ".json"))]


def latest_snapshot(out_dir: str | os.PathLike) -> Path | None:
    snaps = list_snapshots(out_dir)
    return snaps[-1][1] if snaps else None


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """``torch.save`` ``state`` atomically (tensors and plain containers only)."""
    from facefeat.io.atomic import atomic_output

    path = Path(path)
    with atomic_output(path) as tmp:
        torch.save({"format": STATE_FORMAT, "format_version": STATE_FORMAT_VERSION, **state}, tmp)
    return path


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a ``.state.pt`` file with ``torch.load(weights_only=True)`` and check it."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: training state file not found; a snapshot can only be resumed from when its "
                         f"{STATE_SUFFIX} file exists (pass a network-snapshot-*.state.pt or its stem)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated / disallowed globals
        raise ModelError(f"{path}: cannot read the training state ({type(exc).__name__}: {str(exc)[:200]}); resume "
                         f"from an earlier snapshot") from exc
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ModelError(f"{path}: not a facefeat training state")
    if int(state.get("format_version", 0)) > STATE_FORMAT_VERSION:
        raise ModelError(f"{path}: training state format {state.get('format_version')} is newer than this facefeat")
    return state


def weights_sha256(stem: str | os.PathLike) -> str:
    """sha256 of the snapshot's weights as recorded in its JSON."""
    stem = stem_of(stem)
    cfg = stem.with_name(stem.name + ".json")
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))["weights"]["sha256"]
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"{cfg}: cannot read the snapshot config ({exc})") from exc
