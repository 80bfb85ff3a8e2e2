"""Faces cut by the image frame: how much of the face lies outside the photo.

dlib's 68-point predictor regresses every point relative to the detector box, so when the chin
or one side of the face is cut off by the frame it still returns all 68 points, the missing
ones extrapolated outside the image. Those faces are aligned, measured and embedded like any
other, but their landmark-derived features (geometry, pose, the FFHQ alignment and so every
aligned-crop embedding) rest on guessed points: against the uncropped photo of the same face the
landmarks move by tens of pixels. The engine records the two shares below on every row
(``diag__face_truncated``, ``diag__face_truncated_box``) and applies the ``face.truncated``
policy (``flag``: keep the row ``ok``; ``fail``: status ``truncated``, no features).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

TRUNCATED_POLICIES = ("flag", "fail")


def landmarks_outside(points: np.ndarray, *, width: int, height: int) -> float:
    """Share of the landmarks that fall outside the image frame.

    A point is inside when ``0 <= x <= width - 1`` and ``0 <= y <= height - 1`` (pixel
    centres of the upright image, the coordinates dlib returns).

    Parameters
    ----------
    points : ndarray, shape (n, 2)
        Landmarks ``(x, y)`` in pixels (68 for dlib's predictor).
    width, height : int
        Image size in pixels.

    Returns
    -------
    float
        In ``[0, 1]``: 0 when every point lies in the frame, ``k / n`` when ``k`` points are
        outside. A face counts as truncated when the share is above 0.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not len(p):
        raise ValueError("no landmarks")
    inside = (p[:, 0] >= 0) & (p[:, 0] <= width - 1) & (p[:, 1] >= 0) & (p[:, 1] <= height - 1)
    return float(1.0 - inside.mean())


def box_outside(box: Sequence[int], *, width: int, height: int) -> float:
    """Share of the face box's area that lies outside the image frame.

    Parameters
    ----------
    box : (left, top, right, bottom)
        Detector box, inclusive pixel coordinates (dlib's convention); dlib may place it partly
        outside the image when the face is cut.
    width, height : int
        Image size in pixels.

    Returns
    -------
    float
        In ``[0, 1]``: the box pixels outside ``[0, width-1] x [0, height-1]`` over all box
        pixels. Coarser than :func:`landmarks_outside` (the box is a square around the
        eyes, nose and mouth and may miss a cut chin), kept as a second view.
    """
    left, top, right, bottom = (int(v) for v in box)
    bw, bh = right - left + 1, bottom - top + 1
    if bw <= 0 or bh <= 0:
        raise ValueError(f"empty box {tuple(box)}")
    iw = max(0, min(right, width - 1) - max(left, 0) + 1)
    ih = max(0, min(bottom, height - 1) - max(top, 0) + 1)
    return float(1.0 - (iw * ih) / (bw * bh))
