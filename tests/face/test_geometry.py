"""Landmark geometry features: invariance, conventions and values on real photos.

Real landmarks come from dlib's HOG detector (upsample 1) and the 68-point shape predictor run
on the bundled example photos (examples/faces/, provenance in its README).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from facefeat.face import geometry
from facefeat.face.geometry import (
    FEATURE_NAMES,
    FEATURES,
    MIRROR_PAIRS,
    MIRROR_PERMUTATION,
    eye_centres,
    face_frame,
    interocular_distance,
    landmark_features,
    landmark_features_batch,
)
from facefeat.face.pose import head_pose

dlib = pytest.importorskip("dlib")

PHOTOS = ["astronaut.png", "Tom_Cruise_avp_2014_4.jpg", "2008_001009.jpg", "2009_004587.jpg"]


def detect_landmarks(image: np.ndarray, predictor) -> list[tuple[tuple[int, int, int, int], np.ndarray, float]]:
    """dlib HOG (upsample 1) + 68-point predictor: [(box ltrb, points (68, 2), score)]."""
    detector = dlib.get_frontal_face_detector()
    rects, scores, _ = detector.run(image, 1, 0.0)
    out = []
    for rect, score in zip(rects, scores):
        shape = predictor(image, rect)
        pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float64)
        out.append(((rect.left(), rect.top(), rect.right(), rect.bottom()), pts, float(score)))
    return out


@pytest.fixture(scope="module")
def predictor():
    from facefeat.face.dlib_models import dlib_model_path

    return dlib.shape_predictor(str(dlib_model_path("shape_predictor_68")))


@pytest.fixture(scope="module")
def real_faces(examples_dir, predictor) -> dict[str, np.ndarray]:
    """Landmarks of every face (detector score > 0.5: drops the astronaut's mission patch)."""
    faces = {}
    for name in PHOTOS:
        image = dlib.load_rgb_image(str(examples_dir / name))
        for k, (_, pts, score) in enumerate(detect_landmarks(image, predictor)):
            if score > 0.5:
                faces[f"{name}#{k}"] = pts
    assert len(faces) == 6, sorted(faces)
    return faces


def _similarity(points: np.ndarray, angle: float, scale: float, shift) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return scale * points @ np.array([[c, -s], [s, c]]).T + np.asarray(shift)


def _mirror(points: np.ndarray) -> np.ndarray:
    """The landmark configuration of the mirrored face (x -> -x, right/left relabelled)."""
    return points[MIRROR_PERMUTATION] * np.array([-1.0, 1.0])


# --- spec table -----------------------------------------------------------------------------
def test_spec_table_is_consistent():
    assert FEATURE_NAMES == tuple(f.name for f in FEATURES)
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for f in FEATURES:
        assert f.name.isidentifier() and f.name == f.name.lower()
        assert f.unit in {"IOD", "ratio", "deg", "centroid size"}
        assert f.low < f.high and f.description


def test_mirror_pairs_cover_each_bilateral_point_once():
    flat = [i for pairs in MIRROR_PAIRS.values() for pair in pairs for i in pair]
    assert len(flat) == len(set(flat)) == 58  # 68 points minus 10 on the midline
    assert sorted(set(range(68)) - set(flat)) == [8, 27, 28, 29, 30, 33, 51, 57, 62, 66]
    assert (MIRROR_PERMUTATION[MIRROR_PERMUTATION] == np.arange(68)).all()


def test_interocular_distance_is_dlibs_eye_centre_distance():
    pts = np.zeros((68, 2))
    pts[36:42] = [10.0, 20.0]
    pts[42:48] = [13.0, 24.0]
    right, left = eye_centres(pts)
    assert right.tolist() == [10.0, 20.0] and left.tolist() == [13.0, 24.0]
    assert interocular_distance(pts) == pytest.approx(5.0)
    assert interocular_distance(np.stack([pts, 2 * pts])).tolist() == pytest.approx([5.0, 10.0])


# --- invariance -----------------------------------------------------------------------------
def test_features_are_invariant_to_rotation_scale_translation(real_faces):
    rng = np.random.default_rng(7)
    points = np.stack(list(real_faces.values()))
    ref = landmark_features_batch(points)
    for _ in range(20):
        angle = rng.uniform(-math.pi, math.pi)
        scale = math.exp(rng.uniform(math.log(0.05), math.log(20.0)))
        shift = rng.uniform(-5000, 5000, size=2)
        moved = landmark_features_batch(np.stack([_similarity(p, angle, scale, shift) for p in points]))
        for name in FEATURE_NAMES:
            np.testing.assert_allclose(moved[name], ref[name], rtol=0, atol=1e-9, err_msg=name)


def test_face_frame_puts_the_eyes_at_fixed_positions(real_faces):
    for pts in real_faces.values():
        q = face_frame(_similarity(pts, 2.5, 3.0, (100, -40)))
        right, left = eye_centres(q)
        np.testing.assert_allclose(right, [-0.5, 0.0], atol=1e-12)
        np.testing.assert_allclose(left, [0.5, 0.0], atol=1e-12)
        assert q[8, 1] > 1.0  # the chin is below the eyes, about 2 IOD down


def test_mirrored_face_swaps_right_and_left(real_faces):
    pts = real_faces["astronaut.png#0"]
    f = landmark_features(pts)
    g = landmark_features(_mirror(pts))
    for name in FEATURE_NAMES:
        twin = name.replace("_right", "_TMP").replace("_left", "_right").replace("_TMP", "_left")
        assert g[twin] == pytest.approx(f[name], abs=1e-9), name


def test_symmetric_face_has_zero_asymmetry(real_faces):
    pts = real_faces["Tom_Cruise_avp_2014_4.jpg#0"]
    sym = 0.5 * (pts + _mirror(pts))
    f = landmark_features(_similarity(sym, 0.4, 1.7, (3, 5)))
    for name in FEATURE_NAMES:
        if name.startswith("asymmetry") or name == "midline_deviation":
            assert abs(f[name]) < 1e-9, name
    for pair in ("eye_aspect_ratio", "eye_width", "brow_slope", "canthal_tilt", "brow_eye_distance", "mandibular_angle"):
        assert f[f"{pair}_right"] == pytest.approx(f[f"{pair}_left"], abs=1e-9)
    assert landmark_features(pts)["asymmetry"] > 0.01


# --- definitions on hand-made configurations ------------------------------------------------
def test_eye_and_mouth_aspect_ratios_follow_their_formulas(real_faces):
    pts = real_faces["astronaut.png#0"].copy()
    # right eye as a hexagon 4 wide, 2 high: EAR = (2 + 2) / (2 * 4)
    pts[36:42] = np.array([[0, 0], [1, -1], [3, -1], [4, 0], [3, 1], [1, 1]]) + pts[36]
    # inner lips 10 wide, openings 1, 3, 2: MAR = (1 + 3 + 2) / (3 * 10)
    c = pts[62]
    pts[60:68] = c + np.array([[-5, 0], [-2, -0.5], [0, -1.5], [2, -1], [5, 0], [2, 1], [0, 1.5], [-2, 0.5]])
    f = landmark_features(pts)
    assert f["eye_aspect_ratio_right"] == pytest.approx(0.5)
    assert f["mouth_aspect_ratio"] == pytest.approx(6 / 30)


def test_angles_and_slopes_have_documented_signs(real_faces):
    pts = real_faces["Tom_Cruise_avp_2014_4.jpg#0"]
    sym = 0.5 * (pts + _mirror(pts))
    iod = interocular_distance(sym)
    # raise the inner end of both brows (image y is down): slopes become more positive
    raised = sym.copy()
    raised[[21, 22], 1] -= 0.1 * iod
    base, up = landmark_features(sym), landmark_features(raised)
    assert up["brow_slope_right"] > base["brow_slope_right"] + 1
    assert up["brow_slope_left"] > base["brow_slope_left"] + 1
    # raise the outer eye corners: canthal tilt grows
    tilted = sym.copy()
    tilted[[36, 45], 1] -= 0.05 * iod
    t = landmark_features(tilted)
    assert t["canthal_tilt_right"] > base["canthal_tilt_right"] + 1
    assert t["canthal_tilt_left"] > base["canthal_tilt_left"] + 1
    # a V-shaped chin: narrower angle at the chin
    v = sym.copy()
    v[8, 1] += 0.3 * iod
    assert landmark_features(v)["jaw_angle_chin"] < base["jaw_angle_chin"] - 5


def test_bad_input_raises_and_degenerate_input_gives_nan():
    with pytest.raises(ValueError, match="68, 2"):
        landmark_features(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="B, 68, 2"):
        landmark_features_batch(np.zeros((68, 2)))
    f = landmark_features(np.zeros((68, 2)))
    assert set(f) == set(FEATURE_NAMES)
    assert all(math.isnan(v) for v in f.values())
    assert landmark_features_batch(np.zeros((0, 68, 2)))["asymmetry"].shape == (0,)


def test_batch_equals_single(real_faces):
    points = np.stack(list(real_faces.values()))
    batch = landmark_features_batch(points)
    for i, pts in enumerate(points):
        single = landmark_features(pts)
        assert list(single) == list(FEATURE_NAMES)
        for name in FEATURE_NAMES:
            assert single[name] == pytest.approx(batch[name][i], abs=1e-12)


# --- real photos ----------------------------------------------------------------------------
def test_real_faces_are_finite_and_in_their_documented_ranges(real_faces):
    assert geometry.N_LANDMARKS == 68
    for key, pts in real_faces.items():
        assert abs(head_pose(pts).yaw) <= 30, key  # the ranges are stated for |yaw| <= 30
        f = landmark_features(pts)
        for spec in FEATURES:
            value = f[spec.name]
            assert math.isfinite(value), (key, spec.name)
            assert spec.low <= value <= spec.high, (key, spec.name, value)


def test_frontal_real_faces_are_nearly_symmetric(real_faces):
    # the astronaut and Tom Cruise look almost straight at the camera
    for key in ("astronaut.png#0", "Tom_Cruise_avp_2014_4.jpg#0"):
        f = landmark_features(real_faces[key])
        assert f["asymmetry"] < 0.15, key
        assert f["asymmetry_procrustes"] < 0.12, key
        assert 0.15 < f["eye_aspect_ratio_right"] < 0.45 and 0.15 < f["eye_aspect_ratio_left"] < 0.45
