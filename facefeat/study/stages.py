"""Content-addressed stage records: what a stage read, what it wrote, and whether it is current.

Each stage writes its outputs atomically (:mod:`facefeat.io.atomic`) and then, last, a record
``<study>/.study/<stage>.json`` holding its fingerprint (sha256 of its config section, the hashes of
what it read and the facefeat version) and the sha256 of every output file. A stage is *done*
when the record exists, its fingerprint equals the one computed now and every output file still
has the recorded hash; anything else (no record: never run or killed before the end; another
fingerprint: an input or the config changed; a changed output file) means it runs again. As
the record is written after the outputs, a kill at any point leaves either a complete stage or
one that is recomputed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping


from facefeat._version import __version__
from facefeat.io.atomic import write_bytes_atomic
from facefeat.io.hashing import sha256_bytes, sha256_file
from facefeat.io.jsonsafe import dumps_json, to_jsonable

RECORDS = ".study"


def canonical_json(value: Any) -> bytes:
    """Stable JSON bytes of ``value`` (sorted keys; numpy scalars and paths as plain values)."""
    return dumps_json(value, sort_keys=True, separators=(",", ":")).encode()


def fingerprint(stage: str, section: Any, inputs: Mapping[str, Any]) -> str:
    """sha256 of a stage's name, config section, input hashes and the facefeat version."""
    return sha256_bytes(canonical_json({"stage": stage, "section": section, "inputs": inputs,
                                        "facefeat_version": __version__}))


def frame_hash(frame) -> str:
    """sha256 of a DataFrame's values, index and column names (order-sensitive)."""
    import pandas as pd

    rows = pd.util.hash_pandas_object(frame, index=True).to_numpy()
    cols = canonical_json([str(c) for c in frame.columns] + [str(t) for t in frame.dtypes])
    return sha256_bytes(rows.tobytes() + cols)


@dataclass
class StageState:
    """Where one stage stands: ``done``, ``stale`` (run before with other inputs or config, or an
    output changed since) or ``missing`` (never finished)."""

    name: str
    state: str
    reason: str
    record: dict[str, Any] | None = None


def record_path(root: Path, name: str) -> Path:
    """Where stage ``name``'s record lives (``arm:faces`` -> ``.study/arm-faces.json``)."""
    return Path(root) / RECORDS / (name.replace(":", "-").replace("/", "_") + ".json")


def read_record(root: Path, name: str) -> dict[str, Any] | None:
    path = record_path(root, name)
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def check_stage(name: str, root: Path, fp: str | None) -> StageState:
    """Compare stage ``name``'s record in the study folder ``root`` with the fingerprint ``fp``
    (None: it cannot be computed because an upstream stage is not done)."""
    folder = Path(root)
    rec = read_record(folder, name)
    if rec is None:
        return StageState(name, "missing", "never finished")
    if fp is None:
        return StageState(name, "stale", "an upstream stage is not done", rec)
    if rec.get("fingerprint") != fp:
        return StageState(name, "stale", "its config or inputs changed since it ran", rec)
    for rel, digest in (rec.get("outputs") or {}).items():
        p = Path(folder) / rel
        if not p.is_file():
            return StageState(name, "stale", f"output {rel} is missing", rec)
        if sha256_file(p) != digest:
            return StageState(name, "stale", f"output {rel} was changed", rec)
    return StageState(name, "done", "outputs match the fingerprint", rec)


def output_hashes(folder: Path, files: Iterable[Path]) -> dict[str, str]:
    """sha256 of each output, keyed by its path relative to the study folder (``../`` for a shared
    extraction folder outside it)."""
    import os

    folder = Path(folder)
    return {os.path.relpath(f, folder): sha256_file(f) for f in sorted(set(map(Path, files)))}


def write_record(folder: Path, name: str, fp: str, outputs: Iterable[Path], *, seconds: float,
                 info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Write the stage record last (atomically, flushed to disk): the stage is finished.

    ``folder`` is the study folder; ``outputs`` are hashed relative to it."""
    rec = {"stage": name, "fingerprint": fp, "facefeat_version": __version__,
           "outputs": output_hashes(folder, outputs), "seconds": round(float(seconds), 3),
           "info": to_jsonable(dict(info or {}))}
    write_bytes_atomic(record_path(folder, name), dumps_json(rec, indent=2).encode(), fsync=True)
    return rec


def write_json(path: Path, data: Any) -> Path:
    """JSON file written atomically, through the one JSON sanitiser (NaN and infinities as null)."""
    return write_bytes_atomic(path, dumps_json(data, indent=2).encode())


def write_table(frame, path_stem: Path, *, index: bool = False) -> list[Path]:
    """A DataFrame as ``<stem>.csv`` and ``<stem>.parquet``, each written atomically."""
    from facefeat.io.atomic import atomic_output

    path_stem = Path(path_stem)
    out = []
    with atomic_output(path_stem.with_suffix(".csv"), suffix=".csv") as tmp:
        frame.to_csv(tmp, index=index, float_format="%.10g")
    out.append(path_stem.with_suffix(".csv"))
    with atomic_output(path_stem.with_suffix(".parquet"), suffix=".parquet") as tmp:
        frame.to_parquet(tmp, index=index)
    out.append(path_stem.with_suffix(".parquet"))
    return out
