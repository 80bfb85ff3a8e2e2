"""dlib detection and 68-point landmarks on PIL-decoded photos.

- Face counts per image equal the fixture's (``dogs.jpg`` 0, the astronaut 2 boxes).
- Boxes and landmarks equal the fixture's ``pil_decode`` records (same detector, predictor and
  decode), scores to 1e-9.
- Landmark error against dlib's imglab XML annotations, normalised by the inter-ocular distance
  (means of points 36-41 and 42-47 of the XML shape), is at or below the measured baseline
  ``<xml>|pil`` / ``hog_detections`` of ``predictor_vs_xml_baseline.json``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from functools import lru_cache

import numpy as np
import pytest

from facefeat.face.detect import Detection, FaceDetector, largest_face
from facefeat.face.landmarks import LandmarkPredictor
from tests.face.conftest import FACES, fixture_meta, pil_rgb, record

BASELINE = json.loads((FACES / "dlib_examples" / "predictor_vs_xml_baseline.json").read_text())
IMAGES = {m["image"]: m for m in fixture_meta()["images"]}
BIG: set[str] = set()  # images to mark slow (bald_guys.jpg, 1986x1545, takes ~1.5 s: not needed)


@lru_cache(maxsize=None)
def _hog() -> FaceDetector:
    return FaceDetector("hog", upsample=1)


@lru_cache(maxsize=None)
def _predictor() -> LandmarkPredictor:
    return LandmarkPredictor()


@lru_cache(maxsize=None)
def _detect(name: str) -> tuple[Detection, ...]:
    return tuple(_hog().detect(pil_rgb(name)))


def _marks(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in BIG else n for n in names]


@pytest.mark.parametrize("name", _marks(sorted(IMAGES)))
def test_face_counts(name):
    found = _detect(name)
    assert len(found) == IMAGES[name]["n_faces_if_decoded_with_pil"], [d.box for d in found]
    if name == "dogs.jpg":
        assert found == ()
    if name == "astronaut.png":
        assert len(found) == 2
    boxes = [d.box for d in found]
    assert boxes == sorted(boxes, key=lambda b: (b[0], b[1]))
    assert all(isinstance(v, int) for b in boxes for v in b)
    assert all(d.score > 0 for d in found)


@pytest.mark.parametrize("name", _marks(sorted(n for n, m in IMAGES.items() if m["n_faces"])))
def test_boxes_and_landmarks_match_fixture(name):
    """Our HOG boxes and 68 points on PIL pixels are the fixture's ``pil_decode`` ones, exactly."""
    found = {d.box: d for d in _detect(name)}
    faces = [f for f in fixture_meta()["faces"] if f["image"] == name]
    assert len(found) == len(faces)
    worst = 0
    for face in faces:
        box = tuple(face["pil_decode"]["detector_rect_ltrb"])
        assert box in found, f"{face['id']}: box {box} not among {sorted(found)}"
        assert found[box].score == pytest.approx(face["pil_decode"]["detector_score"], abs=1e-9)
        points = _predictor().predict(pil_rgb(name), box)
        assert points.shape == (68, 2) and points.dtype == np.float64
        expected = np.asarray(face["pil_decode"]["landmarks"], dtype=np.float64)
        worst = max(worst, float(np.abs(points - expected).max()))
        np.testing.assert_array_equal(points, expected, err_msg=face["id"])
    record("landmarks vs fixture pil_decode", name, f"{len(faces)} faces, max abs diff {worst:g} px")


def _read_imglab(path):
    """imglab XML -> [(file, [(box_ltrb, points (68, 2))])]; boxes dlib-inclusive."""
    out = []
    for image in ET.parse(path).getroot().iter("image"):
        faces = []
        for box in image.iter("box"):
            left, top = int(box.get("left")), int(box.get("top"))
            ltrb = (left, top, left + int(box.get("width")) - 1, top + int(box.get("height")) - 1)
            parts = {int(p.get("name")): (float(p.get("x")), float(p.get("y"))) for p in box.iter("part")}
            faces.append((ltrb, np.array([parts[i] for i in range(68)])))
        out.append((image.get("file"), faces))
    return out


def _iou(a, b) -> float:
    iw = min(a[2], b[2]) - max(a[0], b[0]) + 1
    ih = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.mark.parametrize("xml", ["training_with_face_landmarks.xml", "testing_with_face_landmarks.xml"])
def test_landmark_error_vs_xml_annotations(xml):
    baseline = BASELINE[f"{xml}|pil"]["summary"]
    errors, errors_px, unmatched = [], [], 0
    for name, faces in _read_imglab(FACES / "dlib_examples" / xml):
        dets = [d.box for d in _detect(name)]
        used = set()
        for gt_box, gt_points in faces:  # greedy match by IoU >= 0.5
            cands = [(_iou(gt_box, b), i) for i, b in enumerate(dets) if i not in used]
            best = max(cands, default=(0.0, -1))
            if best[0] < 0.5:
                unmatched += 1
                continue
            used.add(best[1])
            points = _predictor().predict(pil_rgb(name), dets[best[1]])
            interocular = np.linalg.norm(gt_points[42:48].mean(axis=0) - gt_points[36:42].mean(axis=0))
            err = np.linalg.norm(points - gt_points, axis=1).mean()
            errors_px.append(err)
            errors.append(err / interocular)
    mean_norm, mean_px = float(np.mean(errors)), float(np.mean(errors_px))
    ref = baseline["hog_detections"]
    record("landmark error vs imglab XML (HOG boxes, PIL decode)", xml,
           f"{len(errors)}/{baseline['n_annotated_faces']} faces matched, mean {mean_px:.4f} px, "
           f"mean norm {mean_norm:.6f} (baseline {ref['mean_err_norm_interocular']:.6f}), "
           f"max norm {max(errors):.4f} (baseline {ref['max_err_norm_interocular']:.4f})")
    assert unmatched == 0 and len(errors) == baseline["n_annotated_faces"]
    assert mean_norm <= ref["mean_err_norm_interocular"] + 1e-12, (
        f"{xml}: mean normalised error {mean_norm:.6f} > baseline {ref['mean_err_norm_interocular']:.6f}")


@pytest.mark.parametrize("kind", ["hog", "cnn"])
@pytest.mark.parametrize("shape", [(8, 8, 3), (1, 1, 3), (0, 5, 3), (7, 300, 3)])
def test_tiny_images_give_no_face(kind, shape):
    assert FaceDetector(kind, upsample=1).detect(np.zeros(shape, np.uint8)) == []


@pytest.mark.parametrize("upsample", [0, pytest.param(1, marks=pytest.mark.slow)])  # ~1 s and ~5 s
def test_cnn_detector_finds_the_astronaut(upsample):
    found = FaceDetector("cnn", upsample=upsample).detect(pil_rgb("astronaut.png"))
    assert len(found) == 1  # unlike HOG, the CNN does not fire on the mission patch
    (det,) = found
    assert _iou(det.box, _detect("astronaut.png")[1].box) > 0.5 and det.score > 0.5


def test_largest_face_and_detection_fields():
    small, big, big_right = Detection((10, 10, 19, 19), 1.0), Detection((50, 5, 79, 34), 0.2), Detection((90, 0, 119, 29), 2.0)
    assert big.width == 30 and big.height == 30 and big.area == 900
    assert largest_face([small, big_right, big]) is big  # equal areas: leftmost wins
    assert largest_face([]) is None


def test_bad_inputs_and_settings():
    with pytest.raises(ValueError, match="kind"):
        FaceDetector("haar")
    with pytest.raises(ValueError, match="upsample"):
        FaceDetector("hog", upsample=-1)
    with pytest.raises(ValueError, match="RGB uint8"):
        _hog().detect(np.zeros((20, 20), np.uint8))
    with pytest.raises(ValueError, match="RGB uint8"):
        _hog().detect(np.zeros((20, 20, 3), np.float32))
    with pytest.raises(ValueError, match="box"):
        _predictor().predict(pil_rgb("astronaut.png"), (1, 2, 3))
    assert FaceDetector("cnn", 0).settings()["cnn_face_detector_sha256"].startswith("4cb19393")
    assert _predictor().sha256.startswith("fbdc2cb8")
