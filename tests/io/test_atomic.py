"""facefeat.io.atomic: the one atomic writer every file output goes through."""

import os
import stat

import pytest

from facefeat.io.atomic import atomic_output, write_bytes_atomic


def test_success_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "table.bin"
    write_bytes_atomic(target, b"old")
    with atomic_output(target, suffix=".npz", fsync=True) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".table.bin.") and tmp.suffix == ".npz"
        tmp.write_bytes(b"new")
        assert target.read_bytes() == b"old"  # nothing visible before the block ends
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.bin"]


def test_a_failing_writer_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "model.json"
    write_bytes_atomic(target, b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_output(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


def test_private_by_default_umask_mode_for_shared_files(tmp_path):
    private = write_bytes_atomic(tmp_path / "a", b"x")
    with atomic_output(tmp_path / "report.html", umask_mode=True) as tmp:
        tmp.write_text("<html></html>")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "report.html").stat().st_mode) == 0o666 & ~umask
