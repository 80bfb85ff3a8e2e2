"""Face detection with dlib: the HOG frontal-face detector or the CNN (MMOD) detector.

dlib is imported and the models are loaded on the first call, never at import time.

Boxes are dlib rectangles, ``(left, top, right, bottom)`` with *inclusive* right/bottom, as
plain ints. They may extend past the image border for faces cut by the frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from facefeat.face.dlib_models import dlib_model_path

#: Detector kinds accepted by :class:`FaceDetector`.
DETECTOR_KINDS = ("hog", "cnn")

# Below this many pixels on the short side (after upsampling) no face can be found: dlib's HOG
# window is 80x80 and the CNN's convolutions fail on images smaller than their filters.
_MIN_SIDE = 16


@dataclass(frozen=True)
class Detection:
    """One detected face.

    Attributes
    ----------
    box : tuple of int
        ``(left, top, right, bottom)``, dlib-inclusive, in original-image pixels.
    score : float
        HOG: the SVM detection score (``detector.run(img, upsample, 0.0)``, > 0 for a
        detection); CNN: the MMOD confidence.
    """

    box: tuple[int, int, int, int]
    score: float

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0] + 1

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1] + 1

    @property
    def area(self) -> int:
        return self.width * self.height


def largest_face(detections: Sequence[Detection]) -> Detection | None:
    """The detection with the largest box area; ties go to the leftmost, then topmost box.

    Returns ``None`` for an empty sequence.
    """
    if not detections:
        return None
    return max(detections, key=lambda d: (d.area, -d.box[0], -d.box[1]))


def check_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an ``uint8 (H, W, 3)`` RGB array and return it C-contiguous (dlib needs that)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected an RGB uint8 array of shape (H, W, 3), got {image.dtype} "
                         f"{image.shape}; decode with PIL.Image.open(path).convert('RGB')")
    return np.ascontiguousarray(image)


class FaceDetector:
    """dlib face detector.

    Parameters
    ----------
    kind : {"hog", "cnn"}
        ``"hog"``: ``dlib.get_frontal_face_detector()`` (fast, frontal faces);
        ``"cnn"``: ``dlib.cnn_face_detection_model_v1`` with ``mmod_human_face_detector.dat``
        (more robust to pose, slow on CPU).
    upsample : int
        Times the image is upsampled before detection (finds smaller faces, costs ~4x each).

    Examples
    --------
    >>> det = FaceDetector("hog", upsample=1)            # doctest: +SKIP
    >>> [d.box for d in det.detect(rgb)]                  # doctest: +SKIP
    [(175, 76, 265, 166)]
    """

    def __init__(self, kind: str = "hog", upsample: int = 1) -> None:
        if kind not in DETECTOR_KINDS:
            raise ValueError(f"face detector kind {kind!r} is unknown; use one of {', '.join(DETECTOR_KINDS)}")
        if int(upsample) != upsample or upsample < 0:
            raise ValueError(f"upsample must be a non-negative integer, got {upsample!r}")
        self.kind = kind
        self.upsample = int(upsample)
        self._model = None

    def settings(self) -> dict:
        """What the detections depend on (for provenance and cache keys)."""
        out = {"detector": self.kind, "upsample": self.upsample}
        if self.kind == "cnn":
            from facefeat.face.dlib_models import DLIB_MODEL_SHA256

            out["cnn_face_detector_sha256"] = DLIB_MODEL_SHA256["cnn_face_detector"]
        return out

    def _load(self):
        if self._model is None:
            import dlib

            if self.kind == "hog":
                self._model = dlib.get_frontal_face_detector()
            else:
                self._model = dlib.cnn_face_detection_model_v1(str(dlib_model_path("cnn_face_detector")))
        return self._model

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Detect faces in an RGB image.

        Parameters
        ----------
        rgb : ndarray of shape (H, W, 3), uint8

        Returns
        -------
        list of Detection
            Sorted by ``(left, top)`` of the box; empty when there is no face or the image is too
            small to hold one.
        """
        rgb = check_rgb(rgb, "rgb")
        if min(rgb.shape[:2]) * (2 ** self.upsample) < _MIN_SIDE:
            return []
        model = self._load()
        if self.kind == "hog":
            rects, scores, _ = model.run(rgb, self.upsample, 0.0)
            found = [Detection((r.left(), r.top(), r.right(), r.bottom()), float(s)) for r, s in zip(rects, scores)]
        else:
            found = []
            for d in model(rgb, self.upsample):
                r = d.rect
                found.append(Detection((r.left(), r.top(), r.right(), r.bottom()), float(d.confidence)))
        return sorted(found, key=lambda d: (d.box[0], d.box[1]))
