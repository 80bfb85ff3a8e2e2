"""One snapshot listing (training.snapshots.numbered_files) for generator and encoder snapshots."""

from __future__ import annotations

from facefeat.training import snapshots as snap
from facefeat.training.encoder import latest_encoder_snapshot, list_encoder_snapshots, snapshot_path


def test_generator_snapshots_listed_only_when_complete(tmp_path):
    for nimg, parts in ((4000, (".safetensors", ".json", ".state.pt")), (800, (".safetensors", ".json", ".state.pt")),
                        (12000, (".safetensors", ".json"))):  # 12000: killed before its state file
        for suffix in parts:
            (tmp_path / f"{snap.SNAPSHOT_PREFIX}{nimg:09d}{suffix}").write_bytes(b"x")
    (tmp_path / f"{snap.SNAPSHOT_PREFIX}latest.state.pt").write_bytes(b"x")  # not numbered
    listed = snap.list_snapshots(tmp_path)
    assert [n for n, _ in listed] == [800, 4000]  # numeric order, incomplete and odd names left out
    assert listed[-1][1] == snap.snapshot_stem(tmp_path, 4000) == snap.latest_snapshot(tmp_path)
    assert snap.list_snapshots(tmp_path / "missing") == [] and snap.latest_snapshot(tmp_path / "missing") is None


def test_encoder_snapshots_use_the_same_listing(tmp_path):
    for step in (100, 20, 3000):
        snapshot_path(tmp_path, step).write_bytes(b"x")
    (tmp_path / "encoder-snapshot-abc.pt").write_bytes(b"x")
    (tmp_path / "encoder-snapshot-0000020.pt.tmp").write_bytes(b"x")  # a temp file of an atomic write
    assert [n for n, _ in list_encoder_snapshots(tmp_path)] == [20, 100, 3000]
    assert latest_encoder_snapshot(tmp_path) == snapshot_path(tmp_path, 3000)
    assert list_encoder_snapshots(tmp_path) == snap.numbered_files(tmp_path, prefix="encoder-snapshot-", suffix=".pt")
