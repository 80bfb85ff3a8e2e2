"""``facefeat robustness`` end to end on real photos with the landmarks extractor."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from facefeat.cli import main
from facefeat.robustness.dictionary import SUMMARY_COLUMNS, TABLE_COLUMNS
from tests.conftest import DATA

PHOTOS = ["bald_guys_f00_256.png", "bald_guys_f01_256.png", "bald_guys_f02_256.png", "2008_002079_f00_256.png"]


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(DATA / "ffhq_align" / name, folder / name)
    return folder


def _run(photos, out, *extra):
    return main(["robustness", str(photos), "-e", "landmarks", "-o", str(out), "--no-progress",
                 "--perturbations", "jpeg,downscale,flip", "-s", "robustness.perturbations.jpeg=[50]",
                 "-s", "robustness.perturbations.downscale=0.5", *extra])


def test_end_to_end(photos, tmp_path, capsys):
    out = tmp_path / "robust"
    assert _run(photos, out) == 0
    table = pd.read_parquet(out / "robustness.parquet")
    csv = pd.read_csv(out / "robustness.csv")
    assert len(csv) == len(table)
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert list(pd.read_parquet(out / "summary.parquet").columns) == list(SUMMARY_COLUMNS)
    n_feat = table["feature"].nunique()
    # 3 conditions + 'all' (no family has two strengths here)
    assert set(table["perturbation"]) == {"jpeg_q50", "downscale_0.5", "flip", "all"}
    assert len(table) == 4 * n_feat
    ok = table[table["status"] == "ok"]
    assert (ok["n_subjects"] == 4).all() and (ok["n_excluded"] == 0).all()
    assert ((ok["icc_low"] <= ok["icc"] + 1e-12) & (ok["icc"] <= ok["icc_high"] + 1e-12)).all()
    assert (ok["icc_high"] <= 1).all()
    assert set(table.loc[table["perturbation"] == "all", "n_raters"]) == {4}
    # every missing value has a reason
    assert (table.loc[table["icc"].isna(), "note"].str.len() > 0).all()
    # manifest: 4 originals + 3 copies each, with their sources
    man = pd.read_csv(out / "manifest.csv")
    assert len(man) == 16 and (man["perturbation"] == "none").sum() == 4
    assert set(man.loc[man["perturbation"] != "none", "source_image_id"]) == set(man.loc[man["perturbation"] == "none", "image_id"])
    cond = pd.read_csv(out / "conditions.csv")
    assert set(cond["perturbation"]) == {"none", "jpeg_q50", "downscale_0.5", "flip"}
    assert "robustness.parquet" in (out / "README.md").read_text()
    info = json.loads((out / "robustness.json").read_text())
    assert info["n_photos"] == 4 and info["stochastic_extractors"] == []
    assert "landmarks [all]" in capsys.readouterr().out
    icc = table.set_index(["feature", "perturbation"])["icc"]
    # face height (aligned-face units) hardly moves under JPEG q50; a mirror negates head roll
    assert icc["landmarks__face_height", "jpeg_q50"] > 0.75
    assert icc["landmarks__pose_roll", "flip"] < 0

    # a re-run rewrites no copy and recomputes nothing in the engine
    copies = {p: p.stat().st_mtime_ns for p in (out / "copies").rglob("*.*")}
    assert _run(photos, out) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "copies").rglob("*.*")} == copies
    again = pd.read_parquet(out / "robustness.parquet")
    pd.testing.assert_frame_equal(again, table)


def test_bad_inputs(photos, tmp_path, capsys):
    out = tmp_path / "bad"
    assert main(["robustness", str(photos), "-e", "landmarks", "-o", str(out), "--perturbations", "jpeg,blur"]) == 2
    assert "unknown perturbation(s) blur" in capsys.readouterr().err
    assert main(["robustness", str(photos), "-e", "landmarks", "-o", str(out),
                 "-s", "robustness.perturbations.jpeg=[150]"]) == 2
    assert "strength 150 is out of range; allowed: integer quality 1..100" in capsys.readouterr().err
    few = tmp_path / "few"
    few.mkdir()
    shutil.copy(photos / PHOTOS[0], few / PHOTOS[0])
    shutil.copy(photos / PHOTOS[1], few / PHOTOS[1])
    assert main(["robustness", str(few), "-e", "landmarks", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 photo(s); an ICC interval needs at least 3 photos" in err
    assert main(["robustness", str(photos), "-e", "landmarks", "-o", str(out), "--perturbations", "none"]) == 2
    assert "nothing to compare" in capsys.readouterr().err
    assert main(["robustness", str(photos), "-e", "landmarks", "-o", str(out), "--form", "ICC(9,1)"]) == 2
    assert "ICC(9,1)" in capsys.readouterr().err
    assert not (out / "robustness.parquet").exists()


def test_repeat_photos_by_date(tmp_path):
    """Two photos per person, dated: the test-retest rows. The 'second photo' of each person is
    a different aligned crop of the same source face (1024 vs 256, and the shrink-branch 128) or
    another face of the same group photo; only the mechanism is under test here."""
    rows = []
    for i, name in enumerate(PHOTOS):
        rows.append({"subject_id": f"S{i}", "path": str(DATA / "ffhq_align" / name), "date": "2020-01-01"})
    seconds = ["Tom_Cruise_avp_2014_4_f00_256.png", "bald_guys_f03_256.png", "bald_guys_f04_256.png",
               "2008_002079_f01_256.png"]
    for i, name in enumerate(seconds):
        rows.insert(0, {"subject_id": f"S{i}", "path": str(DATA / "ffhq_align" / name), "date": "2021-06-30"})
    pd.DataFrame(rows).to_csv(tmp_path / "manifest.csv", index=False)
    out = tmp_path / "rep"
    assert main(["robustness", str(tmp_path / "manifest.csv"), "-e", "landmarks", "-o", str(out), "--no-progress",
                 "--perturbations", "none"]) == 0
    table = pd.read_parquet(out / "robustness.parquet")
    assert set(table["perturbation"]) == {"repeat"}
    assert (table["n_subjects"] == 4).all() and (table["n_raters"] == 2).all()
    assert table["strength"].iloc[0] == "first 2 by date (date)"
    info = json.loads((out / "robustness.json").read_text())
    assert info["repeat"]["subjects"] == 4
    # the earlier photo is the reference (rater 0): the mean of rater 0 is that of the 2020 photos
    assert np.isfinite(table.loc[table["status"] == "ok", "icc"]).all()


@pytest.mark.slow
def test_stochastic_extractor_seeds(photos, tmp_path):
    """stylegan2 (tiny generator, 3 steps) has a 'seed' setting: extra runs with seeds 1 and 2."""
    out = tmp_path / "sg"
    ckpt = DATA / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"
    assert main(["robustness", str(photos), "-e", "stylegan2", "-o", str(out), "--no-progress",
                 "-s", f"stylegan2.checkpoint={ckpt}", "-s", "stylegan2.steps=3", "-s", "stylegan2.w_avg_samples=200",
                 "-s", "stylegan2.space=w", "--perturbations", "jpeg", "--seeds", "1,2"]) == 0
    table = pd.read_parquet(out / "robustness.parquet")
    seeds = table[table["perturbation"] == "seeds"]
    assert len(seeds) == table["feature"].nunique() and (seeds["n_raters"] == 3).all()
    assert (seeds["strength"] == "1,2").all()
    assert seeds["index"].notna().all()  # one row per latent dimension
    info = json.loads((out / "robustness.json").read_text())
    assert info["stochastic_extractors"] == ["stylegan2"] and info["seeds"] == {"base": {"stylegan2": 0}, "extra": [1, 2]}
    summary = pd.read_parquet(out / "summary.parquet")
    emb = summary[(summary["column"] == "stylegan2__latent") & (summary["perturbation"] == "seeds")]
    assert len(emb) == 1 and emb["n_features"].iloc[0] == len(seeds)
    # the seed runs read the originals only
    assert len(pd.read_csv(out / "seeds" / "manifest.csv")) == len(PHOTOS)
    # a seed equal to the extractor's own is refused
    assert main(["robustness", str(photos), "-e", "stylegan2", "-o", str(tmp_path / "x"), "--no-progress",
                 "-s", f"stylegan2.checkpoint={ckpt}", "-s", "stylegan2.steps=1", "--perturbations", "none",
                 "--seeds", "0"]) == 2
