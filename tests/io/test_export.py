"""Privacy of names: extract --no-paths and facefeat export with keyed pseudonyms, on real photos;
and one photo filed under two subjects, from extraction to 'facefeat fit'."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facefeat.cli import main
from facefeat.errors import ConfigError
from facefeat.io.pseudonym import PSEUDONYM_METHOD, load_key, pseudonymise
from facefeat.io.tables import read_features, read_provenance

DLIB = Path(__file__).resolve().parents[1] / "data" / "faces" / "dlib_examples"


def _patient_named_copies(src: Path, dest: Path) -> list[Path]:
    """The example photos under names as hospital exports write them (name, birth date)."""
    dest.mkdir()
    names = {"Tom_Cruise_avp_2014_4.jpg": "Mueller_Anna_1961-03-02.jpg", "2008_001009.jpg": "Svensson_Lars_1950-11-23.jpg",
             "2009_004587.jpg": "Okafor_Chidi_1972-07-15.jpg", "dogs.jpg": "Rossi_Maria_1948-01-30.jpg",
             "astronaut.png": "Nakamura_Yuki_1980-09-09.png"}
    for old, new in names.items():
        shutil.copy(src / old, dest / new)
    # an exact duplicate under another subject: the photo's path also lands in diag__duplicate_of
    shutil.copy(src / "2008_001009.jpg", dest / "Dubois_Claire_1966-05-05.jpg")
    return sorted(dest.iterdir())


def _hits(folder: Path, names: list[str]) -> dict[str, list[str]]:
    out = {}
    for f in folder.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            found = [n for n in names if n.encode() in data or n in f.name]
            if found:
                out[str(f.relative_to(folder))] = found
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory, examples_dir):
    return _patient_named_copies(examples_dir, tmp_path_factory.mktemp("in") / "photos")


def _sensitive(photos: list[Path]) -> list[str]:
    """File names, and the subject ids that folder input derives from them (file stems)."""
    return [p.name for p in photos] + [p.stem for p in photos]


def test_extract_no_paths_writes_no_file_name(photos, tmp_path):
    out = tmp_path / "run"
    assert main(["extract", str(photos[0].parent), "--out", str(out), "-e", "landmarks", "--no-paths",
                 "--no-progress"]) == 0
    t = pq.read_table(out / "landmarks.parquet")
    assert "path" not in t.column_names and t.num_rows == 6
    # the duplicate photo points at the subject of the earlier file, not at its path
    dup = [d for d in t.column("diag__duplicate_of").to_pylist() if d]
    assert dup and all("/" not in d and d in set(t.column("subject_id").to_pylist()) for d in dup)
    names = [p.name for p in photos]  # subject ids (the stems) stay: no key was given
    assert _hits(out, names) == {}
    assert read_provenance(out / "landmarks.parquet")["input"]["paths_removed"] is True
    assert json.loads((out / "run.json").read_text())["n_images"] == 6


@pytest.fixture(scope="module")
def run_with_paths(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("run_paths")
    assert main(["extract", str(photos[0].parent), "--out", str(out), "-e", "landmarks,face_descriptor",
                 "--no-progress"]) == 0
    return out


def test_export_pseudonymises_with_a_stable_key_and_names_no_file(photos, run_with_paths, tmp_path):
    run = run_with_paths
    assert _hits(run, [p.name for p in photos])  # the run itself does name the files
    clinical = tmp_path / "clinical.csv"
    subjects = [p.stem for p in photos]
    clinical.write_text("subject_id;time;event;age\n" + "".join(
        f"{s};{12.5 + i},5;{i % 2};{60 + i}\n" for i, s in enumerate(subjects)), encoding="utf-8")
    key_file = tmp_path / "study.key"
    assert main(["export", str(run), "-o", str(tmp_path / "e1"), "--make-key", str(key_file),
                 "--clinical", str(clinical)]) == 0
    assert main(["export", str(run), "-o", str(tmp_path / "e2"), "--pseudonymise", str(key_file)]) == 0
    key = load_key(key_file)
    e1, e2 = tmp_path / "e1", tmp_path / "e2"
    for name in ("landmarks.parquet", "face_descriptor.parquet"):
        a, b = pq.read_table(e1 / name), pq.read_table(e2 / name)
        assert a.column("subject_id").to_pylist() == b.column("subject_id").to_pylist()  # same key, same pseudonyms
        raw = pq.read_table(run / name)
        assert a.column("subject_id").to_pylist() == pseudonymise(raw.column("subject_id").to_pylist(), key)
        assert a.column("image_id").to_pylist() == raw.column("image_id").to_pylist()
        assert "path" not in a.column_names
        prov = read_provenance(e1 / name)
        assert prov["export"]["subject_id_method"] == PSEUDONYM_METHOD
        assert prov["input"]["source"].startswith("(removed")
        np.testing.assert_array_equal(  # the features themselves are untouched
            np.asarray(a.drop_columns(["subject_id"]).column(a.column_names[-1]).to_pylist(), dtype=object),
            np.asarray(raw.column(a.column_names[-1]).to_pylist(), dtype=object))
    # no file name and no raw subject id anywhere in the exported bytes (tables, metadata, export.json, clinical)
    assert _hits(e1, _sensitive(photos)) == {} and _hits(e2, _sensitive(photos)) == {}
    record = json.loads((e1 / "export.json").read_text())
    assert record["key_check"] == json.loads((e2 / "export.json").read_text())["key_check"]
    assert record["tables"]["landmarks.parquet"] == {"rows": 6, "subjects": 6}
    # the clinical table's ids match the tables' pseudonyms; other cells are copied as written
    clin = pd.read_csv(e1 / "clinical.csv", sep=";", dtype=str)
    assert clin["subject_id"].tolist() == pseudonymise(subjects, key) and clin["time"].iloc[0] == "12.5,5"
    # the export reads back through the one reader, joined on (image_id, pseudonym)
    df = read_features(e1)
    assert len(df) == 5 and df["subject_id"].str.startswith("P").all()


def test_export_refuses_unsafe_targets(run_with_paths, tmp_path):
    from facefeat.io.export import export_run

    with pytest.raises(ConfigError, match="is the run folder"):
        export_run(run_with_paths, run_with_paths)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        export_run(run_with_paths, tmp_path / "full")
    with pytest.raises(ConfigError, match="needs a key"):
        export_run(run_with_paths, tmp_path / "new", clinical=tmp_path / "c.csv")


@pytest.mark.slow
def test_one_photo_under_two_subjects_extracts_and_fits(tmp_path):
    """The writer keeps one row per (image_id, subject_id); fit reads both and counts the shared photo."""
    photos = sorted(DLIB.glob("*.jpg"))
    rows = [{"subject_id": f"S{i:02d}", "path": str(p)} for i, p in enumerate(photos)]
    rows.append({"subject_id": "S99", "path": str(photos[0])})  # the same photo filed under a second subject
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    run = tmp_path / "run"
    assert main(["extract", str(manifest), "--out", str(run), "-e", "landmarks", "--no-progress"]) == 0
    t = read_features(run, include_failed=True, flatten=False)
    shared = t[t["image_id"] == t.loc[t["subject_id"] == "S99", "image_id"].iloc[0]]
    assert sorted(shared["subject_id"]) == ["S00", "S99"]
    ok_subjects = sorted(t.loc[t["status"] == "ok", "subject_id"])
    assert "S99" in ok_subjects and len(ok_subjects) >= 10
    rng = np.random.default_rng(0)
    clinical = tmp_path / "clinical.csv"
    pd.DataFrame({"subject_id": [r["subject_id"] for r in rows], "time": rng.uniform(1, 60, len(rows)).round(1),
                  "event": rng.integers(0, 2, len(rows))}).to_csv(clinical, index=False)
    model = tmp_path / "model"
    assert main(["fit", "--features", str(run), "--clinical", str(clinical), "--covariates", "none",
                 "--pca", "2", "--param", "alpha=1.0", "--out", str(model)]) == 0
    report = json.loads((model / "fit_report.json").read_text())
    assert report["n"] == len(ok_subjects)  # both subjects of the shared photo are modelled
    text = json.dumps(report)
    assert "filed under several subjects" in text


def test_no_paths_run_resumes_and_keeps_duplicate_subjects(photos, tmp_path):
    out = tmp_path / "run"
    args = ["extract", str(photos[0].parent), "--out", str(out), "-e", "landmarks", "--no-paths", "--no-progress"]
    assert main(args) == 0
    first = pq.read_table(out / "landmarks.parquet")
    assert main(args) == 0  # everything reused: the table without paths is merged and written again
    again = pq.read_table(out / "landmarks.parquet")
    assert again.select(first.column_names).equals(first)
    assert "path" not in again.column_names
    assert [d for d in again.column("diag__duplicate_of").to_pylist() if d] == \
        [d for d in first.column("diag__duplicate_of").to_pylist() if d]
