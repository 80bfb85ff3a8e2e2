"""Head pose: synthetic projections of the 3-D models with known angles, and real photos."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from facefeat.face.geometry import MIRROR_PERMUTATION, eye_centres
from facefeat.face.pose import (
    ANTHROPOMETRIC_14,
    GENERIC_6,
    euler_from_rotation,
    head_pose,
    head_pose_batch,
    project,
    rotation_from_euler,
)

ANGLES = list(itertools.product((-40.0, -15.0, 0.0, 25.0), (-20.0, 0.0, 15.0), (-30.0, 0.0, 10.0)))


def _landmarks(model, image_points: np.ndarray) -> np.ndarray:
    """A (68, 2) array holding the model's projected points at their landmark indices; the eye
    points the frontal start reads are filled from the model's eye corners."""
    pts = np.zeros((68, 2))
    pts[list(model.landmark_index)] = image_points
    idx = {k: i for i, k in enumerate(model.landmark_index)}
    for eye, corners in ((range(36, 42), (36, 39)), (range(42, 48), (42, 45))):
        mid = np.mean([image_points[idx[c]] for c in corners if c in idx], axis=0)
        for k in eye:
            if k not in idx:
                pts[k] = mid
    return pts


def _err(hp, angles) -> float:
    return float(np.abs(np.array([hp.yaw, hp.pitch, hp.roll]) - angles).max())


def test_euler_round_trip_and_rotation_is_proper():
    for yaw, pitch, roll in ANGLES:
        r = rotation_from_euler(yaw, pitch, roll)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        assert euler_from_rotation(r) == pytest.approx((yaw, pitch, roll), abs=1e-9)


def test_sign_conventions():
    """yaw > 0: nose to the image's right; pitch > 0: nose up; roll > 0: subject's left eye lower."""
    m = GENERIC_6  # nose tip (30) sits in front of the eye corners (36, 45)

    def view(yaw, pitch, roll):
        x = project(m.points, rotation_from_euler(yaw, pitch, roll), [0.0, 0.0], scale=1.0)
        nose, eye_r, eye_l = x[0], x[2], x[3]
        return nose - 0.5 * (eye_r + eye_l), eye_l - eye_r

    nose0, _ = view(0, 0, 0)
    assert view(20, 0, 0)[0][0] > nose0[0] + 10
    assert view(0, 20, 0)[0][1] < nose0[1] - 10  # image y is down
    _, eyes = view(0, 0, 15)
    assert np.degrees(np.arctan2(eyes[1], eyes[0])) == pytest.approx(15.0)


@pytest.mark.parametrize("model", [ANTHROPOMETRIC_14, GENERIC_6], ids=lambda m: m.name)
def test_weak_perspective_projection_is_recovered_exactly(model):
    scale = 12.0 if model is ANTHROPOMETRIC_14 else 0.4
    for angles in ANGLES:
        x = project(model.points, rotation_from_euler(*angles), [320.0, 240.0], scale=scale)
        hp = head_pose(_landmarks(model, x), model=model)
        assert _err(hp, angles) < 1e-6, angles
        assert hp.rmse < 1e-6 and hp.scale == pytest.approx(scale)
        assert hp.projection == "weak_perspective"


@pytest.mark.parametrize("model", [ANTHROPOMETRIC_14, GENERIC_6], ids=lambda m: m.name)
def test_perspective_projection_is_recovered_exactly(model):
    unit = 1.0 if model is ANTHROPOMETRIC_14 else 45.0
    w, h = 640, 480
    for angles in ANGLES:
        t = np.array([3.0, -2.0, 40.0]) * unit
        x = project(model.points, rotation_from_euler(*angles), t, focal_length=w, principal_point=(w / 2, h / 2))
        hp = head_pose(_landmarks(model, x), model=model, projection="perspective", image_size=(w, h))
        assert _err(hp, angles) < 1e-6, angles
        np.testing.assert_allclose(hp.translation, t, rtol=1e-6)


def test_noisy_landmarks_recovered_within_two_degrees():
    rng = np.random.default_rng(0)
    m = ANTHROPOMETRIC_14
    errors = []
    for _ in range(100):
        angles = np.array([rng.uniform(-40, 40), rng.uniform(-20, 20), rng.uniform(-30, 30)])
        x = project(m.points, rotation_from_euler(*angles), [300.0, 300.0], scale=10.0)
        iod = np.linalg.norm(x[7] - x[4]) * 0.75  # outer-corner distance ~ 1.35 IOD
        x = x + rng.normal(0.0, 0.01 * iod, x.shape)  # 1 % of the IOD, sub-pixel for portraits
        errors.append(np.abs(np.array(_pose(m, x)) - angles))
    errors = np.array(errors)
    assert np.median(errors) < 1.0
    assert np.percentile(errors, 95) < 2.0


def _pose(m, x):
    hp = head_pose(_landmarks(m, x), model=m)
    return hp.yaw, hp.pitch, hp.roll


def test_weak_perspective_approximates_a_distant_pinhole_camera():
    m = ANTHROPOMETRIC_14
    for angles in ANGLES:
        x = project(m.points, rotation_from_euler(*angles), [0.0, 0.0, 300.0], focal_length=4000.0, principal_point=(320, 240))
        assert _err(head_pose(_landmarks(m, x)), angles) < 2.0, angles


def test_errors():
    with pytest.raises(ValueError, match="68, 2"):
        head_pose(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="image_size"):
        head_pose(np.random.default_rng(0).normal(size=(68, 2)), projection="perspective")
    with pytest.raises(ValueError, match="projection"):
        head_pose(np.zeros((68, 2)), projection="orthographic")
    out = head_pose_batch(np.full((2, 68, 2), np.nan))
    assert np.isnan(out["yaw"]).all() and out["yaw"].shape == (2,)


# --- real photos ----------------------------------------------------------------------------
dlib = pytest.importorskip("dlib")


@pytest.fixture(scope="module")
def landmarker():
    from facefeat.face.dlib_models import dlib_model_path

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(dlib_model_path("shape_predictor_68")))

    def run(image):
        rects, scores, _ = detector.run(image, 1, 0.0)
        out = []
        for rect, score in sorted(zip(rects, scores), key=lambda rs: rs[0].left()):
            if score > 0.5:
                s = predictor(image, rect)
                out.append(np.array([[s.part(i).x, s.part(i).y] for i in range(68)], dtype=np.float64))
        return out

    return run


def test_frontal_photos_have_small_yaw(examples_dir, landmarker):
    for name in ("astronaut.png", "Tom_Cruise_avp_2014_4.jpg"):
        (pts,) = landmarker(dlib.load_rgb_image(str(examples_dir / name)))
        hp = head_pose(pts)
        assert abs(hp.yaw) < 10, (name, hp)
        assert abs(hp.pitch) < 20, (name, hp)
        # roll agrees with the in-image tilt of the eye line
        right, left = eye_centres(pts)
        tilt = np.degrees(np.arctan2(left[1] - right[1], left[0] - right[0]))
        assert hp.roll == pytest.approx(tilt, abs=4), (name, hp)


def test_mirrored_photo_flips_yaw_and_roll(examples_dir, landmarker):
    """2008_001009.jpg holds two faces turned about 20 degrees, one each way; flipping the photo
    left-right must flip the signs of yaw and roll (detection and landmarks are rerun)."""
    image = dlib.load_rgb_image(str(examples_dir / "2008_001009.jpg"))
    faces = landmarker(image)
    flipped = landmarker(np.ascontiguousarray(image[:, ::-1]))
    assert len(faces) == len(flipped) == 2
    width = image.shape[1]
    for pts in faces:
        # the flipped photo's face nearest to this one's mirror image
        centre = pts.mean(axis=0) * [-1, 1] + [width - 1, 0]
        other = min(flipped, key=lambda q: np.linalg.norm(q.mean(axis=0) - centre))
        a, b = head_pose(pts), head_pose(other)
        # the detector and the predictor are not exactly mirror-symmetric: a few degrees differ
        assert abs(a.yaw) > 10 and abs(a.roll) > 5
        assert np.sign(b.yaw) == -np.sign(a.yaw) and np.sign(b.roll) == -np.sign(a.roll)
        assert b.yaw == pytest.approx(-a.yaw, abs=6)
        assert b.roll == pytest.approx(-a.roll, abs=6)
        assert b.pitch == pytest.approx(a.pitch, abs=6)


def test_mirrored_landmarks_flip_pose_exactly(examples_dir, landmarker):
    (pts,) = landmarker(dlib.load_rgb_image(str(examples_dir / "Tom_Cruise_avp_2014_4.jpg")))
    mirrored = pts[MIRROR_PERMUTATION] * [-1, 1]
    a, b = head_pose(pts), head_pose(mirrored)
    assert (b.yaw, b.pitch, b.roll) == pytest.approx((-a.yaw, a.pitch, -a.roll), abs=1e-6)
