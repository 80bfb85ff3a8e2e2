"""68-point facial landmarks with dlib's shape predictor (iBUG 300-W order).

The model is ``shape_predictor_68_face_landmarks.dat`` from ``face-recognition-models``,
loaded on the first call (about 100 MB, ~1 s).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from facefeat.face.detect import check_rgb
from facefeat.face.dlib_models import DLIB_MODEL_SHA256, dlib_model_path

#: Number of points and the slices of the iBUG 300-W layout.
N_LANDMARKS = 68
LANDMARK_SLICES = {
    "chin": slice(0, 17),
    "eyebrow_left": slice(17, 22),
    "eyebrow_right": slice(22, 27),
    "nose": slice(27, 31),
    "nostrils": slice(31, 36),
    "eye_left": slice(36, 42),
    "eye_right": slice(42, 48),
    "mouth_outer": slice(48, 60),
    "mouth_inner": slice(60, 68),
}


class LandmarkPredictor:
    """dlib 68-point shape predictor.

    Parameters
    ----------
    model : str, optional
        Name in :data:`facefeat.face.dlib_models.DLIB_MODEL_FILES`; default the 68-point model.

    Examples
    --------
    >>> pts = LandmarkPredictor().predict(rgb, det.box)   # doctest: +SKIP
    >>> pts.shape, pts.dtype                              # doctest: +SKIP
    ((68, 2), dtype('float64'))
    """

    def __init__(self, model: str = "shape_predictor_68") -> None:
        self.model = model
        self._predictor = None

    @property
    def sha256(self) -> str:
        """sha256 of the model file (recorded in provenance and aligned-crop cache keys)."""
        return DLIB_MODEL_SHA256[self.model]

    def _load(self):
        if self._predictor is None:
            import dlib

            self._predictor = dlib.shape_predictor(str(dlib_model_path(self.model)))
        return self._predictor

    def predict(self, rgb: np.ndarray, box: Sequence[int]) -> np.ndarray:
        """Landmarks of the face in ``box``.

        Parameters
        ----------
        rgb : ndarray of shape (H, W, 3), uint8
        box : sequence of 4 ints
            ``(left, top, right, bottom)``, dlib-inclusive (a :attr:`Detection.box`).

        Returns
        -------
        ndarray of shape (68, 2), float64
            ``[x, y]`` in original-image pixels (dlib gives integer points).
        """
        import dlib

        rgb = check_rgb(rgb, "rgb")
        if len(box) != 4:
            raise ValueError(f"box must be (left, top, right, bottom), got {box!r}")
        left, top, right, bottom = (int(v) for v in box)
        shape = self._load()(rgb, dlib.rectangle(left, top, right, bottom))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
