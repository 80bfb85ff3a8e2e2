"""End-to-end runs on real photos: statuses for bad inputs, tables, resume, parallel jobs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import facefeat
from facefeat.cli import main
from facefeat.engine.run import run_extraction
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
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out / ".parts" / "landmarks"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    n_parts = len(list(parts.glob("part-*.parquet")))
    assert 2 <= n_parts < 6 and not (out / "landmarks.parquet").exists()
    summary = run_extraction({"input": str(folder), "out": str(out), "extractors": ["landmarks"], "batch_size": 2},
                             progress=False)
    assert summary.n_reused == 2 * n_parts and summary.n_processed == 12 - 2 * n_parts
    assert _table_rows(out / "landmarks.parquet").equals(_table_rows(ref_out / "landmarks.parquet"))
    assert not list(parts.glob("*"))  # parts merged and removed
    # A third run has nothing left to do and changes nothing.
    again = run_extraction({"input": str(folder), "out": str(out), "extractors": ["landmarks"], "batch_size": 2},
                           progress=False)
    assert again.n_processed == 0
    assert _table_rows(out / "landmarks.parquet").equals(_table_rows(ref_out / "landmarks.parquet"))


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
