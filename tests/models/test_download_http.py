"""The model downloader against a local HTTP server on 127.0.0.1 (never the internet).

The server serves a few hundred KB of seeded random bytes and can misbehave on purpose: drop
the connection midway, stall, ignore ``Range``, answer 404 or an HTML page.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType

import pytest

from facefeat.cli import main
from facefeat.errors import ModelError
from facefeat.models import registry
from facefeat.models.download import download, licence_notice, part_path, pull
from facefeat.models.registry import NVIDIA_ADA, MirrorHash, ModelEntry

PAYLOAD = random.Random(1234).randbytes(300_000)
PAYLOAD_SHA256 = hashlib.sha256(PAYLOAD).hexdigest()
CUT = 100_000  # where a dropped or stalled first response stops


class _State:
    def __init__(self) -> None:
        self.mode = "normal"  # normal | ignore_range | html
        self.drops = 0  # responses still to cut off after CUT bytes (connection closed)
        self.stalls = 0  # responses still to stall after CUT bytes
        self.stall_headers = 0.0  # seconds to wait before answering at all
        self.errors = 0  # requests still to answer with 503
        self.requests: list[str | None] = []  # Range header of each GET (None = no Range)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        state: _State = self.server.state  # type: ignore[attr-defined]
        rng = self.headers.get("Range")
        state.requests.append(rng)
        if self.path.endswith("/missing"):
            self.send_error(404, "Not Found")
            return
        if state.errors:
            state.errors -= 1
            self.send_error(503, "Service Unavailable")
            return
        if state.stall_headers:
            time.sleep(state.stall_headers)
        if state.mode == "html":
            body = b"<html><body>Google Drive can't scan this file for viruses.</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        start = 0
        if rng and state.mode != "ignore_range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(PAYLOAD):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(PAYLOAD)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if state.drops or state.stalls:
            self.wfile.write(body[:CUT])
            self.wfile.flush()
            if state.stalls:
                state.stalls -= 1
                time.sleep(1.5)
            else:
                state.drops -= 1
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Guard: any connection to a host other than 127.0.0.1 fails the test (no proxy either)."""
    import socket

    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    real = socket.create_connection

    def guarded(address, *args, **kwargs):
        assert address[0] == "127.0.0.1", f"test tried to reach {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", guarded)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.state = _State()  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    httpd.url = f"http://{host}:{port}/files/model.bin"  # type: ignore[attr-defined]
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _get(server, dest, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("backoff", 0.0)
    kw.setdefault("timeout", 5.0)
    return download(server.url, dest, **kw)


def test_download_complete_and_checked(server, tmp_path):
    dest = tmp_path / "sub" / "model.bin"
    digest = _get(server, dest, sha256=PAYLOAD_SHA256, size=len(PAYLOAD))
    assert digest == PAYLOAD_SHA256
    assert dest.read_bytes() == PAYLOAD
    assert not part_path(dest).exists()
    assert server.state.requests == [None]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.bin"]  # no lock or part left


def test_resume_within_one_call_after_dropped_connection(server, tmp_path):
    server.state.drops = 1
    dest = tmp_path / "model.bin"
    digest = _get(server, dest, sha256=PAYLOAD_SHA256, retries=2)
    assert digest == PAYLOAD_SHA256
    assert dest.read_bytes() == PAYLOAD
    # the second request continued where the first one broke off
    assert server.state.requests == [None, f"bytes={CUT}-"]


def test_resume_on_next_call_keeps_the_part_file(server, tmp_path):
    server.state.drops = 1
    dest = tmp_path / "model.bin"
    with pytest.raises(ModelError, match="run the same command again to resume") as err:
        _get(server, dest, sha256=PAYLOAD_SHA256, retries=0)
    assert str(part_path(dest)) in str(err.value)
    assert not dest.exists()  # nothing in place while incomplete
    assert part_path(dest).read_bytes() == PAYLOAD[:CUT]
    assert _get(server, dest, sha256=PAYLOAD_SHA256) == PAYLOAD_SHA256
    assert dest.read_bytes() == PAYLOAD
    assert server.state.requests == [None, f"bytes={CUT}-"]
    assert not part_path(dest).exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    server.state.mode = "ignore_range"
    dest = tmp_path / "model.bin"
    # a part file whose bytes are wrong: appending the 200 body to it would corrupt the file
    part_path(dest).write_bytes(b"\xff" * 50_000)
    assert _get(server, dest, sha256=PAYLOAD_SHA256) == PAYLOAD_SHA256
    assert dest.read_bytes() == PAYLOAD
    assert server.state.requests == ["bytes=50000-"]


def test_hash_mismatch_deletes_part_and_places_nothing(server, tmp_path):
    dest = tmp_path / "model.bin"
    wrong = "0" * 64
    with pytest.raises(ModelError) as err:
        _get(server, dest, sha256=wrong)
    message = str(err.value)
    assert f"expected {wrong}" in message and f"got {PAYLOAD_SHA256}" in message
    assert "nothing was written" in message
    assert not dest.exists()
    assert not part_path(dest).exists()


def test_failed_download_leaves_an_existing_file_untouched(server, tmp_path):
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"previous good file")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        _get(server, dest, sha256="1" * 64)
    assert dest.read_bytes() == b"previous good file"  # replaced only after a passing check


def test_size_announced_by_server_is_checked(server, tmp_path):
    dest = tmp_path / "model.bin"
    with pytest.raises(ModelError, match=f"announces {len(PAYLOAD)} bytes but {len(PAYLOAD) + 1}"):
        _get(server, dest, size=len(PAYLOAD) + 1)
    assert not dest.exists()


def test_part_file_already_complete(server, tmp_path):
    dest = tmp_path / "model.bin"
    part_path(dest).write_bytes(PAYLOAD)
    assert _get(server, dest, sha256=PAYLOAD_SHA256) == PAYLOAD_SHA256  # server answers 416
    assert server.state.requests == [f"bytes={len(PAYLOAD)}-"]
    assert dest.read_bytes() == PAYLOAD


def test_http_error_is_clear(server, tmp_path):
    dest = tmp_path / "model.bin"
    url = server.url.replace("model.bin", "missing")
    with pytest.raises(ModelError) as err:
        download(url, dest, progress=False)
    message = str(err.value)
    assert url in message and "HTTP error 404" in message
    assert f"Nothing was written to {dest}" in message
    assert not dest.exists()


def test_second_url_used_when_the_first_fails(server, tmp_path):
    dest = tmp_path / "model.bin"
    urls = [server.url.replace("model.bin", "missing"), server.url]
    assert download(urls, dest, sha256=PAYLOAD_SHA256, progress=False) == PAYLOAD_SHA256


def test_html_page_instead_of_file(server, tmp_path):
    server.state.mode = "html"
    dest = tmp_path / "model.bin"
    with pytest.raises(ModelError, match="HTML page instead of the file") as err:
        _get(server, dest, browser_url="https://example.invalid/view")
    assert "https://example.invalid/view" in str(err.value)
    assert not dest.exists() and not part_path(dest).exists()


def test_timeout_when_the_server_does_not_answer(server, tmp_path):
    server.state.stall_headers = 3.0
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="timeout"):
        _get(server, tmp_path / "model.bin", timeout=0.3)
    assert time.monotonic() - t0 < 2.5


def test_read_timeout_mid_transfer_resumes(server, tmp_path):
    server.state.stalls = 1
    dest = tmp_path / "model.bin"
    assert _get(server, dest, sha256=PAYLOAD_SHA256, timeout=0.3, retries=1) == PAYLOAD_SHA256
    assert server.state.requests == [None, f"bytes={CUT}-"]


# ---------------------------------------------------------------------------------------------
# pull: registry entries, the cache, the licence
# ---------------------------------------------------------------------------------------------


def _entry(server, **kw) -> ModelEntry:
    fields = dict(
        name="tiny-test",
        filename="tiny.bin",
        urls=(server.url,),
        format="facefeat",
        licence=NVIDIA_ADA,
        config={"resolution": 32, "num_ws": 8},
        sha256=PAYLOAD_SHA256,
    )
    fields.update(kw)
    return ModelEntry(**fields)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_pull_prints_licence_and_installs_into_the_cache(server, home, capsys):
    entry = _entry(server)
    path = pull(entry, progress=False, backoff=0)
    out = capsys.readouterr().out
    assert path == home / "models" / "tiny-test" / "tiny.bin"
    assert path.read_bytes() == PAYLOAD
    assert "NVIDIA Source Code License" in out and "NON-COMMERCIAL USE ONLY" in out
    assert "CC BY-NC-SA 4.0" in out
    assert f"sha256 ok: {PAYLOAD_SHA256}" in out
    assert (path.parent / "tiny.bin.sha256").read_text() == f"{PAYLOAD_SHA256}  tiny.bin\n"
    # a second pull keeps the cached file and asks nothing of the server
    pull(entry, progress=False)
    assert "already in the cache" in capsys.readouterr().out
    assert server.state.requests == [None]
    # --force downloads again
    pull(entry, force=True, progress=False)
    assert server.state.requests == [None, None]


def test_pull_unverified_entry_reports_the_hash_and_mirrors(server, home, capsys):
    entry = _entry(server, sha256=None, mirror_hashes=(MirrorHash(PAYLOAD_SHA256, len(PAYLOAD), "https://mirror.example/tiny.bin"),))
    pull(entry, progress=False)
    out = capsys.readouterr().out
    assert f"sha256 {PAYLOAD_SHA256}: no published hash" in out
    assert "same bytes as the third-party copies at https://mirror.example/tiny.bin" in out


def test_pull_hash_mismatch_installs_nothing(server, home):
    entry = _entry(server, sha256="2" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch"):
        pull(entry, progress=False, out=open("/dev/null", "w"))
    folder = home / "models" / "tiny-test"
    assert not (folder / "tiny.bin").exists()
    assert not (folder / "tiny.bin.part").exists()
    assert not (folder / "tiny.bin.sha256").exists()


def test_licence_notice_only_warns_for_non_commercial(server):
    from dataclasses import replace

    free = replace(NVIDIA_ADA, short="MIT", text="MIT licence.", non_commercial=False)
    assert "NON-COMMERCIAL" in licence_notice(_entry(server))
    assert "NON-COMMERCIAL" not in licence_notice(_entry(server, licence=free))


def test_cli_pull_then_verify(server, home, monkeypatch, capsys):
    entry = _entry(server)
    monkeypatch.setattr(registry, "REGISTRY", MappingProxyType({**registry.REGISTRY, entry.name: entry}))
    assert main(["models", "pull", "tiny-test", "--no-progress"]) == 0
    assert "NON-COMMERCIAL USE ONLY" in capsys.readouterr().out
    assert main(["models", "verify", "tiny-test"]) == 0
    assert re.search(r"tiny-test\s+ok\s", capsys.readouterr().out)
    cached = home / "models" / "tiny-test" / "tiny.bin"
    cached.write_bytes(PAYLOAD[:-1] + b"\x00")  # bit rot
    assert main(["models", "verify", "tiny-test"]) == 1
    out = capsys.readouterr().out
    assert re.search(r"tiny-test\s+mismatch\s", out) and f"expected {PAYLOAD_SHA256}" in out


def test_cli_pull_failure_exit_code(server, home, monkeypatch, capsys):
    entry = _entry(server, urls=(server.url.replace("model.bin", "missing"),))
    monkeypatch.setattr(registry, "REGISTRY", MappingProxyType({**registry.REGISTRY, entry.name: entry}))
    assert main(["models", "pull", "tiny-test", "--no-progress"]) == 2
    assert "HTTP error 404" in capsys.readouterr().err


def test_concurrent_download_of_the_same_file_is_refused(server, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    dest = tmp_path / "model.bin"
    with open(tmp_path / "model.bin.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # "another process"
        with pytest.raises(ModelError, match="another process is downloading"):
            _get(server, dest)
    assert server.state.requests == []
    assert _get(server, dest, sha256=PAYLOAD_SHA256) == PAYLOAD_SHA256  # free again


def test_transient_server_error_is_retried(server, tmp_path):
    server.state.errors = 1  # one 503, then the file
    dest = tmp_path / "model.bin"
    assert _get(server, dest, sha256=PAYLOAD_SHA256, retries=1) == PAYLOAD_SHA256
    assert server.state.requests == [None, None]
    server.state.errors = 5
    with pytest.raises(ModelError, match="HTTP error 503"):
        _get(server, tmp_path / "other.bin", retries=2)
