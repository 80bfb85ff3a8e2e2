"""Faces cut by the frame: the shares, the engine diagnostic and policy, the survival report.

Known truncation comes from cropping real photos (tests/data/faces): the landmarks found on the
uncropped photo, shifted into the crop's coordinates, say which points the crop cut off; the
share the engine measures on the crop must flag the face and come close to that count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest

import facefeat
from facefeat.engine.preprocess import Preprocessor
from facefeat.engine.run import run_extraction
from facefeat.face.truncation import box_outside, landmarks_outside
from facefeat.io.images import ImageRecord, read_and_decode
from facefeat.io.hashing import sha256_file

from .conftest import FACES, record

PHOTOS = {
    "astronaut": FACES / "skimage_astronaut" / "astronaut.png",
    "cruise": FACES / "dlib_examples" / "Tom_Cruise_avp_2014_4.jpg",
    "voc1322": FACES / "dlib_examples" / "2008_001322.jpg",
}
FACE_CFG = {"detector": "hog", "upsample": 1, "multiple_faces": "largest", "truncated": "flag",
            "max_pixels": 64_000_000}
ALIGN_CFG = {"transform_size_factor": 4, "enable_padding": True, "sizes": [], "cache": False}


def test_landmarks_outside_counts_points_off_the_frame():
    pts = np.array([[0, 0], [9, 4], [-1, 2], [3, 5], [10, 1]], dtype=float)  # 10 x 5 image
    assert landmarks_outside(pts, width=10, height=5) == pytest.approx(3 / 5)  # x=-1, y=5, x=10
    assert landmarks_outside(pts[:2], width=10, height=5) == 0.0
    with pytest.raises(ValueError):
        landmarks_outside(np.empty((0, 2)), width=10, height=5)


def test_box_outside_is_the_area_share_off_the_frame():
    assert box_outside((0, 0, 9, 9), width=10, height=10) == 0.0
    assert box_outside((-5, 0, 4, 9), width=10, height=10) == pytest.approx(0.5)  # left half cut
    assert box_outside((-5, -5, 4, 4), width=10, height=10) == pytest.approx(0.75)
    assert box_outside((20, 20, 29, 29), width=10, height=10) == 1.0


def _crops(rgb: np.ndarray, points: np.ndarray) -> dict[str, tuple[int, int, int, int]]:
    """(left, top, right, bottom) exclusive crops that cut the chin, one side, or nothing."""
    h, w = rgb.shape[:2]
    x0, x1 = points[:, 0].min(), points[:, 0].max()
    y0, y1 = points[:, 1].min(), points[:, 1].max()
    return {
        "uncropped": (0, 0, w, h),
        "chin cut": (0, 0, w, int(y1 - 0.15 * (y1 - y0))),
        "left side cut": (int(x0 + 0.2 * (x1 - x0)), 0, w, h),
        "margin only": (max(0, int(x0) - 20), max(0, int(y0) - 20), min(w, int(x1) + 21), min(h, int(y1) + 21)),
    }


def _record(path: Path, subject: str) -> ImageRecord:
    return ImageRecord(path=path, subject_id=subject, image_id=sha256_file(path))


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Crops written as PNG (lossless), with the true share of landmarks each crop cut off."""
    folder = tmp_path_factory.mktemp("crops")
    pre = Preprocessor(FACE_CFG, ALIGN_CFG)
    out = []
    for name, path in PHOTOS.items():
        rgb = read_and_decode(path).rgb
        full = pre.process(_record(path, name))
        assert full.status == "ok"
        points = full.face.landmarks
        for label, (left, top, right, bottom) in _crops(rgb, points).items():
            crop = rgb[top:bottom, left:right]
            file = folder / f"{name}__{label.replace(' ', '_')}.png"
            PIL.Image.fromarray(np.ascontiguousarray(crop)).save(file)
            true = landmarks_outside(points - [left, top], width=right - left, height=bottom - top)
            out.append((name, label, file, true))
    return folder, out


def test_engine_measures_known_truncation_on_crops_of_real_photos(crops):
    _, items = crops
    pre = Preprocessor(FACE_CFG, ALIGN_CFG)
    for name, label, file, true in items:
        res = pre.process(_record(file, file.stem))
        assert res.status == "ok", (file, res.error)
        got = res.diag["diag__face_truncated"]
        box = res.diag["diag__face_truncated_box"]
        record("truncated faces", f"{name} {label}",
               f"landmarks outside: {got * 68:.0f}/68 measured, {true * 68:.0f}/68 cut off by the crop "
               f"(from the uncropped photo); box outside {box:.2f}")
        assert 0.0 <= got <= 1.0 and 0.0 <= box <= 1.0
        if true == 0:
            assert got == 0.0, (name, label)  # an uncut face is never flagged
        else:
            assert got > 0.0, (name, label)  # every cut face is flagged ...
            # ... and the measured share is near the share the crop really removed. The predictor pulls
            # extrapolated points towards the frame, so some cut points land just inside (within about
            # 0.15 interocular distances): the share tends to count fewer points than were cut.
            assert round(abs(got - true) * 68) <= 4, (name, label, got * 68, true * 68)
        if label == "left side cut":
            assert box > 0.0  # the detector box spills over the left edge too


def test_policy_fail_gives_status_truncated_and_survival_counts_flagged(crops, tmp_path):
    folder, items = crops
    n_cut = sum(1 for *_, true in items if true > 0)
    flag = run_extraction({"input": str(folder), "out": str(tmp_path / "flag"), "extractors": ["landmarks"]},
                          progress=False)
    fail = run_extraction({"input": str(folder), "out": str(tmp_path / "fail"), "extractors": ["landmarks"],
                           "face": {"truncated": "fail"}}, progress=False)
    assert flag.status_counts["ok"] == len(items) and flag.status_counts["truncated"] == 0
    assert fail.status_counts["truncated"] == n_cut and fail.status_counts["ok"] == len(items) - n_cut
    df = facefeat.read_features(tmp_path / "fail" / "landmarks.parquet")
    cut = df[df.status == "truncated"]
    assert (cut["diag__face_truncated"] > 0).all() and cut["error"].str.contains("face.truncated=fail").all()
    assert cut.filter(like="landmarks__").isna().all().all()  # no features for a failed row
    flagged = facefeat.read_features(tmp_path / "flag" / "landmarks.parquet")
    assert int((flagged["diag__face_truncated"] > 0).sum()) == n_cut

    # the survival layer says how many of the photos it modelled were cut
    from facefeat.survival.dataset import load_survival_data

    subjects = sorted(flagged["subject_id"])
    clinical = pd.DataFrame({"subject_id": subjects, "time": np.arange(1, len(subjects) + 1, dtype=float),
                             "event": [1, 0] * (len(subjects) // 2) + [1] * (len(subjects) % 2)})
    ds = load_survival_data(clinical=clinical, features=tmp_path / "flag", covariates="none")
    lines = [i for i in ds.report.items if i.step == "truncated faces"]
    assert len(lines) == 1 and lines[0].count == n_cut and lines[0].level == "warning"
    assert f"{n_cut} of the {len(subjects)} ok photos modelled" in lines[0].message
    ds = load_survival_data(clinical=clinical, features=tmp_path / "fail", covariates="none")
    lines = [i for i in ds.report.items if i.step == "truncated faces"]
    assert lines[0].count == 0 and lines[0].level == "info"
    assert "diag__face_truncated" not in ds.X.columns  # a diagnostic, never a model feature
