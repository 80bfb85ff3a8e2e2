"""Inputs of a run: a folder of photos or a manifest table (CSV/Parquet with subject_id, path).

Problems with the inputs as a whole (missing folder, missing columns, paths that do not
exist) stop the run before any work with an :class:`~facefeat.errors.InputError` naming the
file, the column or rows, and the fix.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from facefeat.errors import InputError
from facefeat.io.hashing import sha256_bytes
from facefeat.io.images import IMAGE_SUFFIXES, ImageRecord, list_folder, records_from_paths, split_duplicates

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("subject_id", "path")
SUBJECT_FROM = ("stem", "parent")


@dataclass
class Inputs:
    """The records of a run and how they were gathered.

    Attributes
    ----------
    records : list of ImageRecord
        Records to process, in input order (exact duplicates removed, see ``duplicates``).
    duplicates : list of dict
        Exact duplicates (same bytes, same subject): path and the path they duplicate.
    source : str
        The folder or manifest given.
    manifest_sha256 : str
        Hash of the (subject_id, image_id) list: two runs over the same inputs share it.
    skipped : list of str
        For folders: files that are not images by their suffix (relative to the folder), so
        that nothing is left out uncounted.
    """

    records: list[ImageRecord]
    duplicates: list[dict]
    source: str
    manifest_sha256: str
    skipped: list[str] = field(default_factory=list)


def load_inputs(source: str | Path, *, subject_from: str = "stem", recursive: bool = True) -> Inputs:
    """Gather the records of a folder of photos or of a manifest.

    Parameters
    ----------
    source : path
        A folder (every image file below it) or a ``.csv`` / ``.parquet`` manifest with columns
        ``subject_id`` and ``path``; relative paths resolve against the manifest's folder.
    subject_from : {"stem", "parent"}
        For folders: the subject id is the file name without suffix (``stem``) or the name of
        the folder holding the file (``parent``, for one folder per subject).
    recursive : bool
        For folders: include sub-folders.

    Raises
    ------
    InputError
    """
    source = Path(source)
    skipped: list[str] = []
    if source.suffix.lower() in (".csv", ".parquet", ".tsv"):
        paths, subjects = _read_manifest(source)
    else:
        if subject_from not in SUBJECT_FROM:
            raise InputError(f"subject_from = {subject_from!r}; allowed values: {', '.join(SUBJECT_FROM)}")
        paths = list_folder(source, recursive=recursive)
        subjects = [p.stem if subject_from == "stem" else p.parent.name for p in paths]
        skipped = non_image_files(source, recursive=recursive)
        if skipped:
            log.warning("%s: %d file(s) skipped, not images by suffix (first: %s)", source, len(skipped), skipped[0])
    records = records_from_paths(paths, subjects)
    keep, dropped = split_duplicates(records)
    listing = json.dumps(sorted([r.subject_id, r.image_id] for r in keep)).encode()
    return Inputs(records=keep, duplicates=dropped, source=str(source), manifest_sha256=sha256_bytes(listing),
                  skipped=skipped)


def non_image_files(folder: Path, *, recursive: bool = True) -> list[str]:
    """Files under ``folder`` that a folder run skips (suffix not an image's), relative paths, sorted.

    The complement of :func:`facefeat.io.images.list_folder`: hidden files (``.DS_Store``)
    are listed too.
    """
    pattern = "**/*" if recursive else "*"
    return sorted(p.relative_to(folder).as_posix() for p in folder.glob(pattern)
                  if p.is_file() and (p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith(".")))


def _read_manifest(path: Path) -> tuple[list[Path], list[str]]:
    import pandas as pd

    if not path.is_file():
        raise InputError(f"{path}: manifest file does not exist")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
        else:
            sep = "\t" if path.suffix.lower() == ".tsv" else None  # None: sniff , or ;
            df = pd.read_csv(path, sep=sep, engine="python", dtype=str, keep_default_na=False)
    except Exception as exc:
        raise InputError(f"{path}: cannot read manifest: {exc}") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(
            f"{path}: manifest lacks column(s) {', '.join(missing)}; it has {', '.join(map(str, df.columns)) or 'none'}. "
            f"A manifest needs 'subject_id' and 'path' (relative paths resolve against {path.parent})"
        )
    if df.empty:
        raise InputError(f"{path}: manifest has no rows")
    subjects = df["subject_id"].astype(str).str.strip()
    raw_paths = df["path"].astype(str).str.strip()
    blank = [i + 2 for i in range(len(df)) if not subjects.iloc[i] or not raw_paths.iloc[i]]
    if blank:
        raise InputError(f"{path}: empty subject_id or path on row(s) {_rows(blank)} (row 1 is the header)")
    paths = [(p if p.is_absolute() else path.parent / p) for p in map(Path, raw_paths)]
    absent = [(i + 2, str(p)) for i, p in enumerate(paths) if not p.is_file()]
    if absent:
        shown = "; ".join(f"row {r}: {p}" for r, p in absent[:10])
        raise InputError(
            f"{path}: {len(absent)} path(s) do not exist ({shown}{' ...' if len(absent) > 10 else ''}); "
            f"fix the paths or remove the rows (relative paths resolve against {path.parent})"
        )
    return paths, list(subjects)


def _rows(rows: list[int], limit: int = 10) -> str:
    return ", ".join(map(str, rows[:limit])) + (f" ... ({len(rows)} in all)" if len(rows) > limit else "")
