"""Atomic file output: a crash at any moment leaves the old file or the new one, never a part.

Every writer in facefeat (feature tables, models, checkpoints, caches, figures) goes through
:func:`atomic_output`: the data are written to a temporary file in the destination's folder
(same file system, so the final ``os.replace`` is atomic) and moved into place only when the
writing finished without an exception.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_output(path: str | os.PathLike, *, suffix: str = ".tmp", fsync: bool = False,
                  umask_mode: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The destination; its folder is created if needed.
    suffix : str, default ".tmp"
        Suffix of the temporary name, for writers that choose the format from it (``.npz``,
        ``.gif``); the temporary is hidden (``.<name>.<random><suffix>``).
    fsync : bool, default False
        Flush the data to disk before the rename (for files a resumed run relies on).
    umask_mode : bool, default False
        Give the file the permissions a plain ``open()`` would (0666 minus the umask) instead
        of the temporary file's private 0600 (for files meant to be shared, e.g. a report).

    On an exception the temporary file is removed, ``path`` is left as it was, and the
    exception propagates.

    Examples
    --------
    >>> with atomic_output("runs/x/table.parquet") as tmp:      # doctest: +SKIP
    ...     pq.write_table(table, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        if umask_mode:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`); returns the path."""
    with atomic_output(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)
