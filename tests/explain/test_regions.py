"""Where an edit changes the image (facefeat.explain.regions).

The mask pipeline runs on a real photo (``tests/data/faces/skimage_astronaut``): detected,
FFHQ-aligned at 256 px, landmarks detected again on the aligned frame (as on a reconstruction);
edits are synthetic image pairs whose change is placed in known regions. The cohort path runs
on the 32 px test generator, where dlib finds no face: rows must carry that status.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from facefeat.explain.edit import load_edit_context
from facefeat.explain.mask import REGIONS, face_regions
from facefeat.explain.regions import (
    cohort_regions,
    detect_aligned_landmarks,
    frame_region_shares,
    layer_table,
    plot_regions,
    save_table,
    summarize_regions,
)

ASTRONAUT = Path(__file__).resolve().parents[1] / "data" / "faces" / "skimage_astronaut" / "astronaut.png"


@pytest.fixture(scope="module")
def aligned():
    from PIL import Image

    from facefeat.face.align import align_face
    from facefeat.face.detect import FaceDetector, largest_face
    from facefeat.face.landmarks import LandmarkPredictor

    rgb = np.asarray(Image.open(ASTRONAUT).convert("RGB"))
    face = largest_face(FaceDetector("hog").detect(rgb))
    pts = LandmarkPredictor().predict(rgb, face.box)
    return align_face(rgb, pts, output_size=256, workers=1).image


def test_landmarks_on_the_aligned_frame(aligned):
    pts, status, msg = detect_aligned_landmarks(aligned)
    assert status == "ok" and msg is None and pts.shape == (68, 2)
    # FFHQ alignment puts the eyes near 40 % of the height, the face in the middle
    eyes_y = pts[36:48, 1].mean() / 256
    assert 0.3 < eyes_y < 0.5 and 0.35 < pts[30, 0] / 256 < 0.65
    none, status, msg = detect_aligned_landmarks(np.zeros((32, 32, 3), np.uint8))
    assert none is None and status == "no_face" and "32 px" in msg


def _bump(img, mask, amount=40):
    out = img.astype(int)
    out[mask] += amount
    return np.clip(out, 0, 255).astype(np.uint8)


def test_shares_follow_where_the_pixels_change(aligned):
    dark = aligned // 2  # room to brighten everywhere
    pts, _, _ = detect_aligned_landmarks(dark)  # what frame_region_shares detects on the reference
    regions = face_regions(pts, 256)
    frames = np.stack([dark, _bump(dark, regions["face"]), _bump(dark, regions["background"]),
                       _bump(dark, regions["face"] | regions["hair"])])
    rows = frame_region_shares(frames, [0, 1, 2, 3])
    assert [r["step"] for r in rows] == [1.0, 2.0, 3.0]
    assert all(r["status"] == "ok" for r in rows)
    assert rows[0]["share_face"] == pytest.approx(1.0)
    assert rows[1]["share_background"] == pytest.approx(1.0)
    expected = regions["face"].sum() / (regions["face"].sum() + regions["hair"].sum())
    assert rows[2]["share_face"] == pytest.approx(expected, rel=1e-3)
    for r in rows:
        assert sum(r[f"share_{k}"] for k in REGIONS) == pytest.approx(1.0)
        assert sum(r[f"area_{k}"] for k in REGIONS) == pytest.approx(1.0)


def test_reference_frame_and_given_landmarks(aligned):
    pts, _, _ = detect_aligned_landmarks(aligned)
    regions = face_regions(pts, 256)
    frames = np.stack([_bump(aligned // 2, regions["below_chin"]), aligned // 2])
    rows = frame_region_shares(frames, [2.0, 0.0], landmarks=pts)
    assert len(rows) == 1 and rows[0]["step"] == 2.0 and rows[0]["share_below_chin"] == pytest.approx(1.0)
    from facefeat.errors import ConfigError

    with pytest.raises(ConfigError, match="step 0"):
        frame_region_shares(frames, [1.0, 2.0])


def test_no_face_rows_keep_their_status():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(3, 32, 32, 3), dtype=np.uint8)
    rows = frame_region_shares(frames, [-1, 0, 1])
    assert len(rows) == 2 and all(r["status"] == "no_face" for r in rows)
    assert all(np.isnan(r["share_face"]) for r in rows) and all(r["total_energy"] > 0 for r in rows)


@pytest.fixture(scope="module")
def cohort(study, tiny_G):
    ctx = load_edit_context(study["models"]["coxph"], study["run"], clinical=study["clinical"])
    table = cohort_regions(ctx, ["P001", "P002", "P_FAIL", "P404"], steps=[-2, 2], G=tiny_G)
    return ctx, table


def test_cohort_rows_are_never_dropped(cohort):
    _, table = cohort
    status = table.groupby("subject_id", sort=False)["status"].first()
    assert status.to_dict() == {"P001": "no_face", "P002": "no_face", "P_FAIL": "no_latent", "P404": "no_latent"}
    assert (table["subject_id"] == "P001").sum() == 2  # steps -2 and +2 against step 0
    good = table[table.status == "no_face"]
    assert np.allclose(good.sort_values("step").groupby("step")["delta_log_hazard"].first(), [-2, 2])
    assert table.loc[table.subject_id == "P_FAIL", "message"].iloc[0].startswith("subject 'P_FAIL' has no latent")


def test_summary_plot_and_tables(cohort, tmp_path):
    ctx, table = cohort
    summary = summarize_regions(table)
    assert summary["region"].tolist() == list(REGIONS)
    assert summary.attrs["status_counts"] == {"no_face": 2, "no_latent": 2}
    assert (summary["n_subjects"] == 0).all()
    layers = layer_table(ctx.direction(), 8)
    assert layers["norm_share"].sum() == pytest.approx(1.0)
    assert layers["group"].tolist() == ["coarse"] * 4 + ["middle"] * 4
    png = tmp_path / "regions.png"
    plot_regions(summary, layers, png, title="tiny")
    assert png.stat().st_size > 1000
    for suffix in (".csv", ".parquet"):
        p = save_table(table, tmp_path / f"regions{suffix}")
        back = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
        assert len(back) == len(table) and "share_face" in back.columns


def test_summary_pools_each_subjects_steps():
    rows = []
    for subj, (e_face, e_bg) in {"A": ((3, 1), (1, 3)), "B": ((1, 1), (0, 0))}.items():
        for step, f, b in zip((-1, 1), e_face, e_bg):
            rows.append({"subject_id": subj, "step": step, "status": "ok", "energy_face": f, "energy_background": b,
                         "energy_hair": 0.0, "energy_below_chin": 0.0, "total_energy": f + b,
                         "area_face": 0.25, "area_background": 0.5, "area_hair": 0.15, "area_below_chin": 0.1})
    rows.append({"subject_id": "C", "step": np.nan, "status": "no_face"})
    summary = summarize_regions(pd.DataFrame(rows)).set_index("region")
    # A: face 4 of 8 -> 0.5; B: 2 of 2 -> 1.0
    assert summary.loc["face", "mean_share"] == pytest.approx(0.75)
    assert summary.loc["face", "n_subjects"] == 2
    assert summary.loc["face", "enrichment"] == pytest.approx(3.0)
    assert summary.attrs["status_counts"] == {"ok": 2, "no_face": 1}


def test_cohort_with_known_landmarks_gives_ok_rows(cohort, aligned, tiny_G):
    """The ok path of the cohort table: landmarks given for the 32 px frames (the astronaut's,
    scaled from 256 px), so shares are computed on the generator's real edits."""
    ctx, _ = cohort
    pts, _, _ = detect_aligned_landmarks(aligned)
    small = (pts + 0.5) * (32 / 256) - 0.5
    table = cohort_regions(ctx, ["P001", "P002"], steps=[-2, 0, 2], G=tiny_G, landmarks={"P001": small})
    p1 = table[table.subject_id == "P001"]
    assert (p1.status == "ok").all() and len(p1) == 2
    shares = p1[[f"share_{r}" for r in REGIONS]].sum(axis=1)
    assert np.allclose(shares, 1.0) and (p1.total_energy > 0).all()
    assert (table.loc[table.subject_id == "P002", "status"] == "no_face").all()
    summary = summarize_regions(table)
    assert summary.attrs["status_counts"] == {"ok": 1, "no_face": 1}
    assert (summary["n_subjects"] == 1).all()
    assert summary["mean_area_share"].sum() == pytest.approx(1.0)
