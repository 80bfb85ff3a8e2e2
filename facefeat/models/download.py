"""Streaming, resumable, hash-checked, atomic downloads of model files (standard library only).

The file grows in ``<dest>.part``. An interrupted transfer keeps what arrived and continues
with an HTTP ``Range`` request, both within one call (``retries``) and on the next call (the
part file survives). A server that ignores ``Range`` (answers 200 instead of 206) makes the
download start again from byte 0. Once the transfer is complete the part file is hashed; on a
sha256 (or size) mismatch it is deleted and :class:`~facefeat.errors.ModelError` names the
expected and the actual hash. Only a checked file is renamed into place (``os.replace``), so
``dest`` either is absent or holds complete, checked bytes.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import socket
import sys
import textwrap
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Iterable, Iterator

from facefeat._version import __version__
from facefeat.errors import ModelError
from facefeat.io.hashing import sha256_file
from facefeat.models.registry import (
    ModelEntry,
    _entry,
    cache_path,
    validate_entry,
    write_recorded_sha256,
)

log = logging.getLogger(__name__)

USER_AGENT = f"facefeat/{__version__} (model download; python-urllib)"
_CHUNK = 256 * 1024
_CONTENT_RANGE_RE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE_RE = re.compile(r"bytes\s+\*/(\d+)")
#: Server answers worth retrying (with backoff) rather than giving up on the URL.
_TRANSIENT_HTTP = frozenset({408, 429, 500, 502, 503, 504})


class _Interrupted(Exception):
    """The transfer broke off; what arrived is kept and a retry resumes it."""


class _UrlFailed(Exception):
    """This URL cannot deliver the file (HTTP error, HTML page, no connection)."""


def part_path(dest: str | os.PathLike) -> Path:
    """The in-progress file of ``dest``: ``<dest>.part`` in the same folder (same file system)."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download(
    urls: str | Iterable[str],
    dest: str | os.PathLike,
    *,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool = True,
    desc: str | None = None,
    browser_url: str | None = None,
) -> str:
    """Download a file to ``dest`` through ``dest.part``; resumable, checked, atomic.

    Parameters
    ----------
    urls : str or iterable of str
        Where to get the file; tried in order until one delivers it.
    dest : path-like
        Final path. Its folder is created. It is written only after the checks pass.
    sha256 : str, optional
        Expected hex sha256; a mismatch deletes the part file and raises.
    size : int, optional
        Expected size in bytes; checked against the server's announced size and the result.
    timeout : float
        Seconds to wait for the connection and for each read.
    retries : int
        How many times an interrupted transfer is resumed within this call.
    backoff : float
        Base of the pause before a retry (``backoff * 2**k`` seconds, at most 30).
    progress : bool
        Show a tqdm progress bar on stderr.
    desc : str, optional
        Label of the progress bar (default: the file name).
    browser_url : str, optional
        Page to open in a browser when the direct link serves HTML (Google Drive), quoted in
        the error message.

    Returns
    -------
    str
        Hex sha256 of the installed file.

    Raises
    ------
    ModelError
        No URL delivered the file: each URL's reason is listed (HTTP error, HTML page, no
        connection, or a transfer still interrupted after ``retries`` resumes, whose part file
        is kept for the next call); or the hash or size did not match (the part file is
        deleted).
    """
    url_list = [urls] if isinstance(urls, str) else list(urls)
    if not url_list:
        raise ModelError(f"{dest}: no download URL given")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    failures: list[str] = []
    with _download_lock(dest):
        for url in url_list:
            try:
                _fetch_with_retries(
                    url, part, size=size, timeout=timeout, retries=retries, backoff=backoff,
                    progress=progress, desc=desc or dest.name, browser_url=browser_url,
                )
            except _UrlFailed as exc:
                failures.append(f"{url}: {exc}")
                continue
            digest = _check(part, dest, url=url, sha256=sha256, size=size)
            os.replace(part, dest)
            _fsync_dir(dest.parent)
            return digest
    lines = [f"could not download {dest.name}:", *(f"  {failure}" for failure in failures)]
    if part.exists():
        lines.append(f"{part.stat().st_size} bytes downloaded earlier are kept in {part}.")
    lines.append(
        f"Nothing was written to {dest}. On a machine without internet, download the file "
        "elsewhere and copy it to exactly that path."
    )
    raise ModelError("\n".join(lines))


def _fetch_with_retries(
    url: str, part: Path, *, size: int | None, timeout: float, retries: int, backoff: float,
    progress: bool, desc: str, browser_url: str | None,
) -> None:
    attempt = 0
    while True:
        try:
            _fetch_once(url, part, size=size, timeout=timeout, progress=progress, desc=desc,
                        browser_url=browser_url)
            return
        except _Interrupted as exc:
            if attempt >= retries:
                have = part.stat().st_size if part.exists() else 0
                raise _UrlFailed(
                    f"transfer interrupted ({exc}); gave up after {retries} retries. "
                    f"{have} bytes are kept in {part}: run the same command again to resume."
                ) from None
            attempt += 1
            pause = min(backoff * 2 ** (attempt - 1), 30.0)
            log.warning("%s: %s; resuming in %.1f s (retry %d of %d)", url, exc, pause, attempt, retries)
            if pause > 0:
                time.sleep(pause)


def _fetch_once(
    url: str, part: Path, *, size: int | None, timeout: float, progress: bool, desc: str,
    browser_url: str | None,
) -> None:
    """One HTTP request: append to (206) or rewrite (200) the part file until the body ends."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        log.warning("%s holds more bytes (%d) than the file has (%d); starting again", part, have, size)
        part.unlink()
        have = 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (http/https only: checked by validate_entry)
    except urllib.error.HTTPError as exc:
        with contextlib.closing(exc):
            if exc.code == 416 and have:
                total = _unsatisfied_total(exc.headers.get("Content-Range"))
                if total == have or (total is None and size == have):
                    return  # the part file already holds the whole file
                part.unlink()
                raise _Interrupted("server refused to resume from the saved offset; starting again") from None
            if exc.code in _TRANSIENT_HTTP:
                raise _Interrupted(f"HTTP error {exc.code} {exc.reason}") from None
            raise _UrlFailed(f"HTTP error {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise _UrlFailed(f"cannot connect ({exc.reason})") from None
    except (TimeoutError, socket.timeout):
        raise _UrlFailed(f"no answer within {timeout:g} s (timeout)") from None
    except (http.client.HTTPException, ConnectionError) as exc:
        raise _Interrupted(f"connection failed before the body ({type(exc).__name__}: {exc})") from None

    with contextlib.closing(response):
        status = response.status
        content_type = response.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() == "text/html":
            hint = f" Open {browser_url} in a browser, download the file there" if browser_url else (
                " Download the file in a browser")
            raise _UrlFailed(
                "the server sent an HTML page instead of the file (Google Drive does this for large "
                "files, when its download quota is exceeded, or when the link needs a sign-in)."
                + hint + " and copy it into the cache by hand (see 'facefeat models list' for paths)."
            )
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        if have and status == 206:
            match = _CONTENT_RANGE_RE.match(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != have:
                part.unlink()
                raise _Interrupted("server resumed from an unexpected offset; starting again")
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
        elif status == 200:
            if have:
                log.warning("%s ignored the Range request (HTTP 200); downloading from byte 0", url)
                have = 0
            total = length
            mode = "wb"
        else:
            raise _UrlFailed(f"unexpected HTTP status {status}")
        if size is not None and total is not None and total != size:
            raise _UrlFailed(f"server announces {total} bytes but {size} are expected")

        from tqdm import tqdm

        with open(part, mode) as fh, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, disable=not progress, file=sys.stderr, leave=True,
        ) as bar:
            try:
                for chunk in _chunks(response):
                    fh.write(chunk)
                    bar.update(len(chunk))
            finally:
                fh.flush()
                os.fsync(fh.fileno())
    got = part.stat().st_size
    if total is not None and got < total:
        raise _Interrupted(f"connection closed after {got} of {total} bytes")
    if total is not None and got > total:
        part.unlink()
        raise _UrlFailed(f"received {got} bytes, more than the {total} announced; partial file deleted")


def _chunks(response: http.client.HTTPResponse) -> Iterator[bytes]:
    while True:
        try:
            # read1: whatever has arrived (up to _CHUNK), so a stall or a drop loses no received bytes
            chunk = response.read1(_CHUNK)
        except http.client.IncompleteRead as exc:
            if exc.partial:
                yield exc.partial
            raise _Interrupted("connection closed before the end of the file") from None
        except (TimeoutError, socket.timeout):
            raise _Interrupted("no data within the timeout") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise _Interrupted(f"{type(exc).__name__}: {exc}") from None
        if not chunk:
            return
        yield chunk


def _unsatisfied_total(header: str | None) -> int | None:
    match = _UNSATISFIED_RANGE_RE.match(header or "")
    return int(match.group(1)) if match else None


def _check(part: Path, dest: Path, *, url: str, sha256: str | None, size: int | None) -> str:
    """Hash the complete part file; on a mismatch delete it and raise."""
    got_size = part.stat().st_size
    digest = sha256_file(part)
    problem = None
    if size is not None and got_size != size:
        problem = f"size mismatch: expected {size} bytes, got {got_size}"
    if sha256 is not None and digest != sha256.lower():
        problem = f"sha256 mismatch: expected {sha256.lower()}, got {digest}"
    if problem:
        part.unlink()
        raise ModelError(
            f"{dest.name} downloaded from {url}: {problem}. The downloaded bytes were deleted and "
            f"nothing was written to {dest}. Run the command again to retry; if the mismatch "
            "persists the file upstream has changed or the registry entry is wrong: please report it."
        )
    return digest


def _fsync_dir(folder: Path) -> None:
    # Makes the rename durable on POSIX; directories cannot be opened this way on Windows.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _download_lock(dest: Path) -> Iterator[None]:
    """Refuse a second concurrent download of the same file (both would append to one part file).

    Uses ``fcntl.flock``, which the OS releases when a process dies, so no stale lock survives a
    crash. Without ``fcntl`` (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = dest.with_name(dest.name + ".lock")
    with open(lock_path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ModelError(
                f"{dest}: another process is downloading this file right now (lock {lock_path}); "
                "wait for it to finish"
            ) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# --------------------------------------------------------------------------------------------
# Registry models
# --------------------------------------------------------------------------------------------


def licence_notice(entry: ModelEntry, width: int = 92) -> str:
    """The licence text printed on pull, with a non-commercial warning where it applies."""
    lic = entry.licence
    lines = [f"Licence of {entry.name}: {lic.short}"]
    lines += textwrap.wrap(lic.text, width=width, initial_indent="  ", subsequent_indent="  ")
    lines.append("  Terms: " + ", ".join(lic.urls))
    if lic.non_commercial:
        lines.append(
            "  NOTE: NON-COMMERCIAL USE ONLY (research or evaluation). By downloading you accept "
            "these terms; do not use these weights in a commercial product or service."
        )
    return "\n".join(lines)


def pull(
    name_or_entry: str | ModelEntry,
    *,
    force: bool = False,
    timeout: float = 60.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: bool = True,
    out: IO[str] | None = None,
) -> Path:
    """Download a registry model into the cache (``facefeat models pull NAME``).

    Prints the licence first. A file already in the cache is kept unless ``force``. After the
    download the file's sha256 is printed and recorded next to it (``<file>.sha256``) so that
    ``facefeat models verify`` can later tell whether it changed, even when no published hash
    exists.

    Parameters
    ----------
    name_or_entry : str or ModelEntry
        Registry name, or an entry (tests, private models).
    force : bool
        Download again even if the file is cached (discards any partial download too).
    timeout, retries, backoff, progress
        As in :func:`download`.
    out : file, optional
        Where messages go (default stdout).

    Returns
    -------
    Path
        The cached file.
    """
    out = out if out is not None else sys.stdout
    entry = _entry(name_or_entry)
    problems = validate_entry(entry)
    if problems:
        raise ModelError(f"registry entry {entry.name!r} is invalid: {'; '.join(problems)}")
    dest = cache_path(entry)
    print(licence_notice(entry), file=out)
    if dest.is_file() and not force:
        print(f"{entry.name}: already in the cache: {dest}", file=out)
        print("  ('facefeat models verify' re-checks it; --force downloads it again)", file=out)
        return dest
    if force:
        for stale in (dest, part_path(dest), dest.with_name(dest.name + ".sha256")):
            stale.unlink(missing_ok=True)
    print(f"Downloading {entry.name} ({entry.filename}) to {dest}", file=out, flush=True)
    digest = download(
        entry.urls, dest, sha256=entry.sha256, size=entry.size, timeout=timeout, retries=retries,
        backoff=backoff, progress=progress, desc=entry.name, browser_url=entry.browser_url,
    )
    write_recorded_sha256(dest, digest)
    if entry.sha256:
        print(f"sha256 ok: {digest}", file=out)
    else:
        print(f"sha256 {digest}: no published hash to check against (unverified)", file=out)
        same = [m.source for m in entry.mirror_hashes if m.sha256 == digest]
        if same:
            print("  same bytes as the third-party copies at " + ", ".join(same), file=out)
        elif entry.mirror_hashes:
            print(
                "  differs from the hash third-party copies report ("
                + ", ".join(m.source for m in entry.mirror_hashes)
                + "); that alone is not an error",
                file=out,
            )
    print(f"Saved {dest}", file=out)
    return dest
