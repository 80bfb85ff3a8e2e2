"""End-to-end runs on real photos: statuses for bad inputs, tables, resume, parallel jobs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import facefeat
from facefeat.cli import main
from facefeat.engine import Extractor, Requires
from facefeat.engine.executors import ExecutorError
from facefeat.engine.run import ENV_TEST_HANG_AFTER_CHUNKS, RunFolderError, run_extraction
from facefeat.io.tables import read_provenance
from tests.io.bad_inputs import make_bad_inputs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_in")
    expected = make_bad_inputs(folder)
    out = tmp_path_factory.mktemp("bad_out")
    summary = run_extraction({"input": str(folder), "out": str(out), "extractors": ["landmarks"],
                              "landmarks": {"include_points": True}}, progress=False)
    return expected, out, summary


def test_every_bad_input_is_one_row_with_its_status(bad_run):
    expected, out, summary = bad_run
    df = facefeat.read_features(out / "landmarks.parquet", flatten=False, include_failed=True)
    assert len(df) == len(expected)  # nothing dropped
    got = {Path(p).name: s for p, s in zip(df["path"], df["status"])}
    assert got == expected
    assert df.loc[df.status != "ok", "error"].map(lambda e: isinstance(e, str) and len(e) > 5).all()
    assert df.loc[df.status == "ok", "error"].isna().all()
    feats = [c for c in df.columns if c.startswith("landmarks__") and c != "landmarks__points"]
    ok = df[df.status == "ok"]
    assert np.isfinite(ok[feats].to_numpy(float)).all()
    assert df.loc[df.status != "ok", feats].isna().all().all()  # failed rows: null, never a number
    assert summary.status_counts["unreadable"] == 3 and summary.status_counts["too_large"] == 1


def test_exif_rotated_landmarks_land_on_the_upright_face(bad_run):
    _, out, _ = bad_run
    df = facefeat.read_features(out / "landmarks.parquet", flatten=False, include_failed=True)
    by = {Path(p).name: r for p, r in zip(df["path"], df.itertuples())}
    rot, ref = by["exif_rotated.jpg"], by["jpeg_named.png"]
    assert rot.diag__exif_orientation == 6
    assert np.abs(np.asarray(rot.diag__face_box) - np.asarray(ref.diag__face_box)).max() <= 8
    pts_rot = np.asarray(rot.landmarks__points).reshape(68, 2)
    pts_ref = np.asarray(ref.landmarks__points).reshape(68, 2)
    assert np.abs(pts_rot - pts_ref).mean() < 2.0


def test_diagnostics_and_duplicates(bad_run):
    _, out, _ = bad_run
    df = facefeat.read_features(out / "landmarks.parquet", flatten=False, include_failed=True)
    by = {Path(p).name: r for p, r in zip(df["path"], df.to_dict("records"))}
    assert by["two_faces.jpg"]["diag__n_faces"] == 2 and by["two_faces.jpg"]["status"] == "ok"
    assert by["Ünïcödé näme with spaces.jpg"]["diag__duplicate_of"].endswith("jpeg_named.png")
    assert by["cmyk.jpg"]["diag__image_format"] == "JPEG"
    assert by["gray16.png"]["diag__image_format"] == "PNG"
    assert by["rgba.png"]["diag__alpha_composited"]
    assert by["jpeg_named.png"]["image_id"] == by["Ünïcödé näme with spaces.jpg"]["image_id"]


def test_multiple_faces_policy_fail(tmp_path, examples_dir):
    run_extraction({"input": str(examples_dir), "out": str(tmp_path), "extractors": ["landmarks"],
                    "face": {"multiple_faces": "fail"}}, progress=False)
    df = facefeat.read_features(tmp_path, include_failed=True)
    st = dict(zip(df.subject_id, df.status))
    assert st["2008_001009"] == "multiple_faces" and st["Tom_Cruise_avp_2014_4"] == "ok" and st["dogs"] == "no_face"


def test_provenance_and_readers(bad_run):
    _, out, _ = bad_run
    path = out / "landmarks.parquet"
    prov = read_provenance(path)
    assert prov["extractor"]["name"] == "landmarks" and prov["extractor"]["distribution"] == "facefeat"
    assert prov["extractor"]["config"]["include_points"] is True
    assert len(prov["preprocessing"]["models_sha256"]["shape_predictor_68"]) == 64
    assert prov["input"]["manifest_sha256"] and prov["status_counts"]["ok"] >= 7
    # The same rows through pyarrow, pandas, polars and DuckDB.
    import duckdb
    import polars as pl

    table = pq.read_table(path)
    pdf = table.to_pandas()
    pol = pl.read_parquet(path)
    ddb = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").df()
    assert list(pdf.columns) == pol.columns == list(ddb.columns)
    assert pdf.image_id.tolist() == pol["image_id"].to_list() == ddb.image_id.tolist()
    col = "landmarks__inter_ocular_distance" if "landmarks__inter_ocular_distance" in pdf else \
        next(c for c in pdf.columns if c.startswith("landmarks__") and pdf[c].dtype == float)
    np.testing.assert_array_equal(pdf[col].to_numpy(), pol[col].to_numpy())
    np.testing.assert_array_equal(pdf[col].to_numpy(), ddb[col].to_numpy())
    shape = json.loads(table.schema.field("landmarks__points").metadata[b"shape"])
    assert shape == [68, 2]


def test_read_features_flatten_and_join(tmp_path, examples_dir):
    run_extraction({"input": str(examples_dir), "out": str(tmp_path), "extractors": ["landmarks", "face_descriptor"]},
                   progress=False)
    wide = facefeat.read_features(tmp_path, flatten=True, include_failed=True)
    assert len(wide) == 5
    emb = [c for c in wide.columns if c.startswith("face_descriptor__embedding_")]
    assert len(emb) == 128 and emb[0].endswith("_0000") and emb[-1].endswith("_0127")
    ok = wide[wide.status == "ok"]
    assert np.isfinite(ok[emb].to_numpy()).all() and wide.loc[wide.status != "ok", emb].isna().all().all()
    assert set(wide.status) == {"ok", "no_face"}
    assert "status__landmarks" in wide and "status__face_descriptor" in wide


def test_cli_extract_inspect_plugins_validate(tmp_path, examples_dir, capsys):
    assert main(["extract", str(examples_dir), "--out", str(tmp_path), "-e", "landmarks", "--validate"]) == 0
    assert "config ok: 5 images" in capsys.readouterr().out and not (tmp_path / "landmarks.parquet").exists()
    assert main(["extract", str(examples_dir), "--out", str(tmp_path), "-e", "landmarks", "--no-progress"]) == 0
    assert main(["inspect", str(tmp_path / "landmarks.parquet")]) == 0
    text = capsys.readouterr().out
    assert "status: no_face 1, ok 4" in text and "shape_predictor_68" in text and "landmarks__" in text
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "landmarks" in text and "face_descriptor" in text and "facefeat" in text
    assert main(["extract", str(examples_dir), "--out", str(tmp_path), "-e", "nope"]) == 2
    assert "unknown extractor 'nope'" in capsys.readouterr().err


def _cohort(tmp_path, n):
    """n photos (copies of the examples re-encoded so each has its own bytes and subject)."""
    from PIL import Image

    folder = tmp_path / "cohort"
    folder.mkdir()
    srcs = sorted((ROOT / "examples" / "faces").glob("*.jpg"))
    for i in range(n):
        img = Image.open(srcs[i % len(srcs)]).convert("RGB")
        img.save(folder / f"P{i:03d}.png", compress_level=1 + i % 5)
    return folder


def _table_rows(path):
    t = pq.read_table(path)
    return t.replace_schema_metadata(None)


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    folder = _cohort(tmp_path, 12)
    ref_out, out = tmp_path / "ref", tmp_path / "killed"
    run_extraction({"input": str(folder), "out": str(ref_out), "extractors": ["landmarks"], "batch_size": 2},
                   progress=False)
    cmd = [sys.executable, "-m", "facefeat.cli", "extract", str(folder), "--out", str(out), "-e", "landmarks",
           "--batch-size", "2", "--no-progress"]
    # The hook blocks the child after 2 chunks: it cannot finish before the kill, however fast it is.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, ENV_TEST_HANG_AFTER_CHUNKS: "2"})
    parts = out / ".parts" / "landmarks"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read().decode()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(list(parts.glob("part-*.parquet"))) == 2 and not (out / "landmarks.parquet").exists()
    assert json.loads((out / "run.json").read_text())["state"] == "running"
    summary = run_extraction({"input": str(folder), "out": str(out), "extractors": ["landmarks"], "batch_size": 2},
                             progress=False)
    assert summary.n_reused == 4 and summary.n_processed == 8
    assert _table_rows(out / "landmarks.parquet").equals(_table_rows(ref_out / "landmarks.parquet"))
    assert not list(parts.glob("*"))  # parts merged and removed
    assert json.loads((out / "run.json").read_text())["state"] == "complete"
    # A third run has nothing left to do and changes nothing (the table is not even rewritten).
    mtime = (out / "landmarks.parquet").stat().st_mtime_ns
    again = run_extraction({"input": str(folder), "out": str(out), "extractors": ["landmarks"], "batch_size": 2},
                           progress=False)
    assert again.n_processed == 0 and (out / "landmarks.parquet").stat().st_mtime_ns == mtime
    assert _table_rows(out / "landmarks.parquet").equals(_table_rows(ref_out / "landmarks.parquet"))


def test_out_holding_other_inputs_is_refused_unless_overwrite(tmp_path, examples_dir):
    other = _cohort(tmp_path, 3)
    out = tmp_path / "run"
    run_extraction({"input": str(examples_dir), "out": str(out), "extractors": ["landmarks", "face_descriptor"]},
                   progress=False)
    before = {p.name: p.read_bytes() for p in out.glob("*.parquet")}
    with pytest.raises(RunFolderError, match=r"(?s)holds a run of other inputs.*5 images from .*faces.*this run has "
                                             r"3 images from .*cohort.*--overwrite"):
        run_extraction({"input": str(other), "out": str(out), "extractors": ["landmarks"]}, progress=False)
    assert {p.name: p.read_bytes() for p in out.glob("*.parquet")} == before  # nothing touched
    (out / "notes.txt").write_text("mine")
    s = run_extraction({"input": str(other), "out": str(out), "extractors": ["landmarks"]}, progress=False,
                       overwrite=True)
    assert s.n_images == 3 and sorted(p.name for p in out.glob("*.parquet")) == ["landmarks.parquet"]
    assert (out / "notes.txt").read_text() == "mine"  # only the run's own files are deleted
    meta = json.loads((out / "run.json").read_text())
    assert meta["extractors"] == ["landmarks"] and meta["n_images"] == 3
    # A table of another preprocessing that this run would keep: refused too.
    run_extraction({"input": str(other), "out": str(out), "extractors": ["face_descriptor"]}, progress=False)
    with pytest.raises(RunFolderError, match=r"face_descriptor.parquet \(extractor face_descriptor, not selected now\) "
                                             r"was made with other preprocessing \(face differ\)"):
        run_extraction({"input": str(other), "out": str(out), "extractors": ["landmarks"],
                        "face": {"multiple_faces": "fail"}}, progress=False)
    # Another config of a selected extractor is a deliberate re-run: recomputed, not refused.
    s = run_extraction({"input": str(other), "out": str(out), "extractors": ["landmarks"],
                        "landmarks": {"include_points": True}}, progress=False)
    assert s.n_processed == 3


def test_run_json_of_an_earlier_facefeat_resumes(tmp_path):
    """run.json of facefeat 0.1 held the input as a plain string: a folder made then is still a run
    folder (the tables' provenance says which inputs), not an 'unreadable' error."""
    cohort = _cohort(tmp_path, 2)
    out = tmp_path / "run"
    first = run_extraction({"input": str(cohort), "out": str(out), "extractors": ["landmarks"]}, progress=False)
    (out / "run.json").write_text(json.dumps({"facefeat_version": "0.2.0", "input": str(cohort),
                                              "extractors": ["landmarks"], "n_images": 2}))
    again = run_extraction({"input": str(cohort), "out": str(out), "extractors": ["landmarks"]}, progress=False)
    assert (again.n_reused, again.n_processed) == (2, 0) and again.status_counts == first.status_counts
    assert json.loads((out / "run.json").read_text())["input"]["manifest_sha256"]


def test_cli_refuses_mixed_run_and_prints_the_summary_once(tmp_path, examples_dir, capsys, caplog):
    out = tmp_path / "run"
    assert main(["extract", str(examples_dir), "--out", str(out), "-e", "landmarks", "--no-progress"]) == 0
    text = capsys.readouterr().out + caplog.text
    assert text.count("5 images: ok 4, no_face 1") == 1
    assert "skipped (not an image): README.md" in text
    other = _cohort(tmp_path, 2)
    assert main(["extract", str(other), "--out", str(out), "-e", "landmarks", "--no-progress"]) == 2
    assert "holds a run of other inputs" in capsys.readouterr().err
    assert main(["extract", str(other), "--out", str(out), "-e", "landmarks", "--no-progress", "--overwrite"]) == 0
    assert main(["extract", str(other), "--out", str(out), "--jobs", "2", "--cluster", "local:2"]) == 2
    assert "--jobs sets local processes" in capsys.readouterr().err


def test_non_image_files_are_counted_and_listed(tmp_path, examples_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(examples_dir.glob("*.jpg"))[:2]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "notes.docx").write_bytes(b"PK")
    (folder / "sub").mkdir()
    (folder / "sub" / "scan.dcm").write_bytes(b"DICM")
    (folder / ".DS_Store").write_bytes(b"\0")
    s = run_extraction({"input": str(folder), "out": str(tmp_path / "out"), "extractors": ["landmarks"]},
                       progress=False)
    assert s.skipped == [".DS_Store", "notes.docx", "sub/scan.dcm"] and s.n_images == 2
    assert "3 non-image file(s) skipped" in s.line()
    assert json.loads((tmp_path / "out" / "run.json").read_text())["skipped"] == s.skipped


class _FailsOnSome(Extractor):
    """Fails on faces whose aligned crop is brighter than average (a plugin bug, per image)."""

    name = "fails_on_some"
    version = "1"

    def requires(self):
        return Requires(aligned_sizes=(256,))

    def output_schema(self):
        return pa.schema([pa.field("fails_on_some__mean", pa.float64())])

    def extract(self, batch):
        means = batch.aligned(256).reshape(len(batch), -1).mean(axis=1)
        if len(batch) == 1 and means[0] > 100:
            raise RuntimeError("too bright")
        if len(batch) > 1 and (means > 100).any():
            raise RuntimeError("a bright face in the batch")
        return pa.RecordBatch.from_arrays([pa.array(means.astype(float))], schema=self.output_schema())


class _WrongRows(_FailsOnSome):
    name = "wrong_rows"

    def output_schema(self):
        return pa.schema([pa.field("wrong_rows__mean", pa.float64())])

    def extract(self, batch):
        if any(f.subject_id.startswith("Tom_Cruise") for f in batch):
            return pa.RecordBatch.from_arrays([pa.array([0.0] * (len(batch) + 1))], schema=self.output_schema())
        return pa.RecordBatch.from_arrays([pa.array([1.0] * len(batch))], schema=self.output_schema())


def _registry_with(*classes):
    from facefeat.engine.registry import load_registry

    registry = load_registry()
    for cls in classes:
        registry.add_extractor(cls)
    return registry


def test_summary_counts_every_extractors_statuses(tmp_path, examples_dir):
    registry = _registry_with(_FailsOnSome)
    s = run_extraction({"input": str(examples_dir), "out": str(tmp_path), "extractors": ["landmarks", "fails_on_some"]},
                       registry=registry, progress=False)
    per = s.extractor_status_counts
    assert per["landmarks"]["ok"] == 4 and per["landmarks"]["no_face"] == 1
    n_err = per["fails_on_some"]["error"]
    assert n_err >= 1 and per["fails_on_some"]["ok"] == 4 - n_err
    assert s.status_counts["error"] == n_err and s.status_counts["ok"] == 4 - n_err and s.status_counts["no_face"] == 1
    assert f"fails_on_some: ok {4 - n_err}, no_face 1, error {n_err}" in s.line()
    meta = json.loads((tmp_path / "run.json").read_text())
    assert meta["extractor_status_counts"] == per and meta["status_counts"] == s.status_counts


def test_a_failing_chunk_names_its_images_and_keeps_the_others_parts(tmp_path, examples_dir):
    registry = _registry_with(_WrongRows)
    cfg = {"input": str(examples_dir), "out": str(tmp_path), "extractors": ["wrong_rows"], "batch_size": 1}
    with pytest.raises(ExecutorError, match=r"(?s)1 of 5 chunk\(s\) failed.*Tom_Cruise.*returned 2 rows for a "
                                            r"batch of 1.*parts are kept"):
        run_extraction(cfg, registry=registry, progress=False)
    assert len(list((tmp_path / ".parts" / "wrong_rows").glob("part-*.parquet"))) == 4
    assert not (tmp_path / "wrong_rows.parquet").exists()


def test_every_run_file_is_written_atomically_and_private(tmp_path, examples_dir):
    out = tmp_path / "run"
    run_extraction({"input": str(examples_dir), "out": str(out), "extractors": ["landmarks", "face_descriptor"]},
                   progress=False)
    files = [out / "run.json", out / "landmarks.parquet", out / "face_descriptor.parquet"]
    assert {oct(p.stat().st_mode & 0o777) for p in files} == {"0o600"}  # docs/cluster.md: run files are private
    assert not [p for p in out.rglob("*.tmp")]


def test_changed_config_recomputes(tmp_path, examples_dir):
    cfg = {"input": str(examples_dir), "out": str(tmp_path), "extractors": ["landmarks"]}
    run_extraction(cfg, progress=False)
    s = run_extraction({**cfg, "landmarks": {"include_points": True}}, progress=False)
    assert s.n_processed == 5
    assert "landmarks__points" in pq.read_schema(tmp_path / "landmarks.parquet").names


@pytest.mark.slow
def test_jobs_2_equals_jobs_1(tmp_path):
    folder = _cohort(tmp_path, 8)
    for jobs in (1, 2):
        run_extraction({"input": str(folder), "out": str(tmp_path / f"j{jobs}"), "extractors": ["landmarks"],
                        "batch_size": 2, "jobs": jobs}, progress=False)
    assert _table_rows(tmp_path / "j1" / "landmarks.parquet").equals(_table_rows(tmp_path / "j2" / "landmarks.parquet"))
