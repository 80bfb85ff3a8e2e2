"""Scale- and rotation-invariant face geometry from the 68 iBUG 300-W landmarks.

Every feature here is a function of the landmark *configuration* only: distances are divided by
the inter-ocular distance (IOD), angles are measured against the eye line, and symmetry is
measured against the face's own midline. Translating, rotating or uniformly scaling the points
leaves every value unchanged (up to floating-point rounding), so the features do not depend on
where the face sits in the photo, how large it is or how the head is rolled. They do depend on
yaw and pitch (a turned head looks narrower and asymmetric in 2-D); pair them with the head pose
of :mod:`facefeat.face.pose` when modelling.

Conventions
-----------
- ``points`` are float ``(68, 2)`` ``(x, y)`` image coordinates (y down) in the iBUG 300-W order
  that dlib's ``shape_predictor_68_face_landmarks.dat`` produces (0-based indices below).
- *Right* and *left* are the **subject's** sides: the subject's right eye is points 36-41, which
  appear on the image's left in an unmirrored photo.
- Eye centres are the means of points 36-41 and 42-47 and the IOD is the distance between
  them, exactly as dlib defines it for its landmark error measure.
- The *face frame* has its origin midway between the eye centres, ``u`` along the eye line
  towards the subject's left eye and ``v`` perpendicular to it, pointing towards the chin
  (point 8), both in IOD units. Angles called "higher" mean smaller ``v`` (towards the brow).

The spec table :data:`FEATURES` (also :data:`FEATURE_NAMES`) lists every feature with its unit
and the range it is expected to fall in on real, roughly frontal faces; the feature dictionary
``docs/features/landmarks.md`` gives each definition as a formula.

References
----------
T. Soukupová and J. Čech, "Real-Time Eye Blink Detection using Facial Landmarks", 21st Computer
Vision Winter Workshop, 2016 (eye aspect ratio).
J. M. Carré and C. M. McCormick, "In your face: facial metrics predict aggressive behaviour in
the laboratory and in varsity and professional hockey players", Proc. R. Soc. B 275, 2008
(facial width-to-height ratio).
C. P. Klingenberg and G. S. McIntyre, "Geometric morphometrics of developmental instability:
analyzing patterns of fluctuating asymmetry with Procrustes methods", Evolution 52, 1998
(Procrustes asymmetry of a configuration and its relabelled mirror image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FEATURES",
    "FEATURE_NAMES",
    "FeatureSpec",
    "MIRROR_PAIRS",
    "MIRROR_PERMUTATION",
    "N_LANDMARKS",
    "eye_centres",
    "interocular_distance",
    "face_frame",
    "landmark_features",
    "landmark_features_batch",
]

N_LANDMARKS = 68

RIGHT_EYE = np.arange(36, 42)
LEFT_EYE = np.arange(42, 48)
RIGHT_BROW = np.arange(17, 22)
LEFT_BROW = np.arange(22, 27)

#: Bilateral landmark pairs (subject's right, subject's left) of the iBUG 300-W markup.
MIRROR_PAIRS: dict[str, tuple[tuple[int, int], ...]] = {
    "jaw": ((0, 16), (1, 15), (2, 14), (3, 13), (4, 12), (5, 11), (6, 10), (7, 9)),
    "brows": ((17, 26), (18, 25), (19, 24), (20, 23), (21, 22)),
    "eyes": ((36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)),
    "nose": ((31, 35), (32, 34)),
    "mouth": ((48, 54), (49, 53), (50, 52), (59, 55), (58, 56), (60, 64), (61, 63), (67, 65)),
}

#: Midline points the symmetry axis is fitted to: nose bridge (27-30) and chin (8).
MIDLINE_FIT = (27, 28, 29, 30, 8)
#: Midline points not used in the fit whose distance to the axis is reported.
MIDLINE_CHECK = (33, 51, 57, 62, 66)


def _mirror_permutation() -> np.ndarray:
    perm = np.arange(N_LANDMARKS)
    for pairs in MIRROR_PAIRS.values():
        for a, b in pairs:
            perm[a], perm[b] = b, a
    return perm


#: ``points[MIRROR_PERMUTATION]`` relabels a mirrored configuration (right <-> left).
MIRROR_PERMUTATION = _mirror_permutation()


@dataclass(frozen=True)
class FeatureSpec:
    """One landmark feature: its name, unit, expected range and a one-line definition.

    Attributes
    ----------
    name : str
        Feature name; the extractor's column is ``landmarks__<name>``.
    unit : str
        ``"IOD"`` (multiples of the inter-ocular distance), ``"ratio"`` (dimensionless),
        ``"deg"`` (degrees) or ``"centroid size"`` (fraction of the configuration's size).
    low, high : float
        Range expected on real, roughly frontal faces (|yaw| up to about 30 degrees). Values
        outside it are possible but suggest a landmarking failure or an extreme pose.
    description : str
        A short definition; the formula is in ``docs/features/landmarks.md``.
    """

    name: str
    unit: str
    low: float
    high: float
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    # --- proportions, in IOD units ---------------------------------------------------------
    FeatureSpec("face_width", "IOD", 1.6, 3.2, "jaw-line width at eye level, |p0 - p16| / IOD"),
    FeatureSpec("face_height", "IOD", 1.4, 3.0, "nasion to menton, |p27 - p8| / IOD"),
    FeatureSpec("face_width_height_ratio", "ratio", 0.7, 1.6, "|p0 - p16| / |p27 - p8|"),
    FeatureSpec("fwhr", "ratio", 1.2, 3.0, "facial width-to-height ratio, |p0 - p16| / |brow midpoint - p51|"),
    FeatureSpec("jaw_width", "IOD", 1.2, 2.8, "lower jaw width, |p4 - p12| / IOD"),
    FeatureSpec("jaw_face_width_ratio", "ratio", 0.6, 1.0, "|p4 - p12| / |p0 - p16|"),
    FeatureSpec("lower_upper_face_ratio", "ratio", 0.8, 2.4, "subnasale-menton over nasion-subnasale, |p33 - p8| / |p27 - p33|"),
    FeatureSpec("eye_width_right", "IOD", 0.2, 0.6, "right palpebral fissure length, |p36 - p39| / IOD"),
    FeatureSpec("eye_width_left", "IOD", 0.2, 0.6, "left palpebral fissure length, |p42 - p45| / IOD"),
    FeatureSpec("intercanthal_width", "IOD", 0.35, 0.75, "inner canthi distance, |p39 - p42| / IOD"),
    FeatureSpec("biocular_width", "IOD", 1.25, 1.7, "outer canthi distance, |p36 - p45| / IOD"),
    FeatureSpec("eye_aspect_ratio_right", "ratio", 0.0, 0.6, "Soukupová-Čech eye aspect ratio of points 36-41"),
    FeatureSpec("eye_aspect_ratio_left", "ratio", 0.0, 0.6, "Soukupová-Čech eye aspect ratio of points 42-47"),
    FeatureSpec("brow_eye_distance_right", "IOD", 0.1, 0.6, "right brow centroid (17-21) to right eye centre"),
    FeatureSpec("brow_eye_distance_left", "IOD", 0.1, 0.6, "left brow centroid (22-26) to left eye centre"),
    FeatureSpec("nose_length", "IOD", 0.6, 1.4, "nasion to subnasale, |p27 - p33| / IOD"),
    FeatureSpec("nose_width", "IOD", 0.35, 0.9, "alar width, |p31 - p35| / IOD"),
    FeatureSpec("nose_width_length_ratio", "ratio", 0.3, 1.1, "|p31 - p35| / |p27 - p33|"),
    FeatureSpec("nose_mouth_width_ratio", "ratio", 0.35, 1.0, "|p31 - p35| / |p48 - p54|"),
    FeatureSpec("mouth_width", "IOD", 0.6, 1.4, "mouth corner distance, |p48 - p54| / IOD"),
    FeatureSpec("mouth_aspect_ratio", "ratio", 0.0, 1.0, "inner-lip opening over inner-mouth width (points 60-67)"),
    FeatureSpec("upper_lip_height", "IOD", 0.0, 0.4, "upper lip, |p51 - p62| / IOD"),
    FeatureSpec("lower_lip_height", "IOD", 0.0, 0.4, "lower lip, |p66 - p57| / IOD"),
    FeatureSpec("philtrum_length", "IOD", 0.1, 0.5, "subnasale to upper lip, |p33 - p51| / IOD"),
    FeatureSpec("chin_height", "IOD", 0.3, 1.0, "lower lip to menton, |p57 - p8| / IOD"),
    # --- angles, degrees ---------------------------------------------------------------------
    FeatureSpec("jaw_angle_chin", "deg", 70.0, 140.0, "angle at the chin, angle(p4, p8, p12)"),
    FeatureSpec("mandibular_angle_right", "deg", 100.0, 165.0, "angle at the right jaw corner, angle(p0, p4, p8)"),
    FeatureSpec("mandibular_angle_left", "deg", 100.0, 165.0, "angle at the left jaw corner, angle(p16, p12, p8)"),
    FeatureSpec("brow_slope_right", "deg", -40.0, 40.0, "right brow (17-21) line vs eye line; > 0: inner end higher"),
    FeatureSpec("brow_slope_left", "deg", -40.0, 40.0, "left brow (22-26) line vs eye line; > 0: inner end higher"),
    FeatureSpec("canthal_tilt_right", "deg", -25.0, 30.0, "inner-to-outer canthus (p39 -> p36) vs eye line; > 0: outer higher"),
    FeatureSpec("canthal_tilt_left", "deg", -25.0, 30.0, "inner-to-outer canthus (p42 -> p45) vs eye line; > 0: outer higher"),
    # --- symmetry ------------------------------------------------------------------------------
    FeatureSpec("asymmetry", "IOD", 0.0, 0.7, "mean distance between each bilateral point mirrored across the midline and its partner"),
    FeatureSpec("asymmetry_jaw", "IOD", 0.0, 1.2, "as asymmetry, jaw pairs (0-16)"),
    FeatureSpec("asymmetry_brows", "IOD", 0.0, 0.7, "as asymmetry, brow pairs (17-26)"),
    FeatureSpec("asymmetry_eyes", "IOD", 0.0, 0.7, "as asymmetry, eye pairs (36-47)"),
    FeatureSpec("asymmetry_nose", "IOD", 0.0, 0.3, "as asymmetry, lower nose pairs (31-35)"),
    FeatureSpec("asymmetry_mouth", "IOD", 0.0, 0.4, "as asymmetry, lip pairs (48-67)"),
    FeatureSpec("midline_deviation", "IOD", 0.0, 0.15, "mean distance of points 33, 51, 57, 62, 66 from the midline"),
    FeatureSpec("asymmetry_procrustes", "centroid size", 0.0, 0.5, "Procrustes distance between the configuration and its relabelled mirror image"),
)

#: Feature names in output order.
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)


# --------------------------------------------------------------------------------------------
# basic quantities
# --------------------------------------------------------------------------------------------
def _as_batch(points: ArrayLike) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2); got {p.shape}")
    return p


def eye_centres(points: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Centres of the subject's right (36-41) and left (42-47) eyes.

    Parameters
    ----------
    points : array_like of shape (..., 68, 2)

    Returns
    -------
    right, left : ndarray of shape (..., 2)
    """
    p = np.asarray(points, dtype=np.float64)
    return p[..., RIGHT_EYE, :].mean(axis=-2), p[..., LEFT_EYE, :].mean(axis=-2)


def interocular_distance(points: ArrayLike) -> np.ndarray | float:
    """Distance between the eye centres, as dlib defines it for landmark errors.

    Parameters
    ----------
    points : array_like of shape (..., 68, 2)

    Returns
    -------
    float or ndarray of shape (...)
        In the units of ``points`` (pixels for image coordinates).
    """
    right, left = eye_centres(points)
    d = np.linalg.norm(left - right, axis=-1)
    return float(d) if np.ndim(d) == 0 else d


def face_frame(points: ArrayLike) -> np.ndarray:
    """Express landmarks in the face frame: origin between the eyes, IOD units.

    ``u`` (column 0) runs along the eye line towards the subject's left eye, ``v`` (column 1)
    perpendicular to it towards the chin. The result is invariant to translation, rotation and
    uniform scaling of the input.

    Parameters
    ----------
    points : array_like of shape (68, 2) or (B, 68, 2)

    Returns
    -------
    ndarray of the same shape, float64
    """
    p = np.asarray(points, dtype=np.float64)
    single = p.ndim == 2
    p = _as_batch(p[None] if single else p)
    right, left = eye_centres(p)
    axis = left - right
    iod = np.linalg.norm(axis, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        ex = axis / iod[:, None]
        ey = np.stack([-ex[:, 1], ex[:, 0]], axis=-1)
        centre = 0.5 * (right + left)
        rel = p - centre[:, None, :]
        # orient v towards the chin, so the frame does not depend on the image's y direction
        flip = np.where(np.einsum("bi,bi->b", rel[:, 8], ey) < 0, -1.0, 1.0)
        ey = ey * flip[:, None]
        q = np.stack([np.einsum("bki,bi->bk", rel, ex), np.einsum("bki,bi->bk", rel, ey)], axis=-1)
        q = q / iod[:, None, None]
    return q[0] if single else q


# --------------------------------------------------------------------------------------------
# features
# --------------------------------------------------------------------------------------------
def _dist(q: np.ndarray, i: int, j: int) -> np.ndarray:
    return np.linalg.norm(q[:, i] - q[:, j], axis=-1)


def _angle_at(q: np.ndarray, a: int, b: int, c: int) -> np.ndarray:
    """Unsigned angle a-b-c at vertex b, degrees (atan2 form: accurate near 0 and 180)."""
    u = q[:, a] - q[:, b]
    w = q[:, c] - q[:, b]
    cross = u[:, 0] * w[:, 1] - u[:, 1] * w[:, 0]
    dot = np.einsum("bi,bi->b", u, w)
    return np.degrees(np.arctan2(np.abs(cross), dot))


def _slope(q: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Least-squares slope dv/du of the points ``idx``."""
    u = q[:, idx, 0]
    v = q[:, idx, 1]
    du = u - u.mean(axis=1, keepdims=True)
    dv = v - v.mean(axis=1, keepdims=True)
    return (du * dv).sum(axis=1) / (du * du).sum(axis=1)


def _eye_aspect_ratio(q: np.ndarray, e: np.ndarray) -> np.ndarray:
    # Soukupová & Čech: (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) with p1..p6 = the eye's points
    p1, p2, p3, p4, p5, p6 = (int(i) for i in e)
    return (_dist(q, p2, p6) + _dist(q, p3, p5)) / (2.0 * _dist(q, p1, p4))


def _midline(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Total-least-squares line through the nose bridge and chin: (point on it, unit direction)."""
    m = q[:, list(MIDLINE_FIT)]
    centre = m.mean(axis=1)
    d = m - centre[:, None]
    cov = np.einsum("bki,bkj->bij", d, d)
    _, vecs = np.linalg.eigh(cov)
    direction = vecs[:, :, -1]  # eigenvector of the largest eigenvalue
    return centre, direction


def _mirror_asymmetry(q: np.ndarray) -> dict[str, np.ndarray]:
    centre, d = _midline(q)
    normal = np.stack([-d[:, 1], d[:, 0]], axis=-1)
    rel = q - centre[:, None]
    # reflection across the midline: flip the component along the normal
    off = np.einsum("bki,bi->bk", rel, normal)
    mirrored = q - 2.0 * off[..., None] * normal[:, None, :]
    out: dict[str, np.ndarray] = {}
    all_pairs = []
    for region, pairs in MIRROR_PAIRS.items():
        a = np.array([i for i, _ in pairs])
        b = np.array([j for _, j in pairs])
        err = np.linalg.norm(mirrored[:, a] - q[:, b], axis=-1)
        out[f"asymmetry_{region}"] = err.mean(axis=1)
        all_pairs.append(err)
    out["asymmetry"] = np.concatenate(all_pairs, axis=1).mean(axis=1)
    out["midline_deviation"] = np.abs(off[:, list(MIDLINE_CHECK)]).mean(axis=1)
    return out


def _procrustes_asymmetry(q: np.ndarray) -> np.ndarray:
    """Partial Procrustes distance between the unit-size configuration and its mirror image."""
    x = q - q.mean(axis=1, keepdims=True)
    x = x / np.linalg.norm(x, axis=(1, 2))[:, None, None]
    y = x[:, MIRROR_PERMUTATION] * np.array([-1.0, 1.0])
    # orthogonal Procrustes (rotation only, no reflection): R = U V^T of svd(y^T x)
    m = np.einsum("bki,bkj->bij", y, x)
    u, _, vt = np.linalg.svd(m)
    det = np.linalg.det(u @ vt)
    u[:, :, -1] *= det[:, None]
    r = u @ vt
    return np.linalg.norm(x - y @ r, axis=(1, 2))


def landmark_features_batch(points: ArrayLike) -> dict[str, np.ndarray]:
    """Compute every feature of :data:`FEATURES` for a batch of faces.

    Parameters
    ----------
    points : array_like of shape (B, 68, 2)
        Landmarks in iBUG 300-W order, image coordinates.

    Returns
    -------
    dict
        Feature name -> float64 array of shape ``(B,)``, in :data:`FEATURE_NAMES` order.
        Degenerate input (coincident eye centres, non-finite points) gives NaN for that face.

    Raises
    ------
    ValueError
        ``points`` does not have shape ``(B, 68, 2)``.
    """
    p = _as_batch(points)
    valid = np.isfinite(p).all(axis=(1, 2))
    valid[valid] = interocular_distance(p[valid]) > 0
    out = {name: np.full(len(p), np.nan) for name in FEATURE_NAMES}
    if valid.any():
        for name, values in _features(p[valid]).items():
            out[name][valid] = values
    return out


def _features(p: np.ndarray) -> dict[str, np.ndarray]:
    """All features of valid faces (finite points, distinct eye centres)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        q = face_frame(p)
        f: dict[str, np.ndarray] = {}
        face_w = _dist(q, 0, 16)
        face_h = _dist(q, 27, 8)
        brow_mid = 0.5 * (q[:, 21] + q[:, 22])
        nose_len = _dist(q, 27, 33)
        nose_w = _dist(q, 31, 35)
        mouth_w = _dist(q, 48, 54)
        jaw_w = _dist(q, 4, 12)

        f["face_width"] = face_w
        f["face_height"] = face_h
        f["face_width_height_ratio"] = face_w / face_h
        f["fwhr"] = face_w / np.linalg.norm(brow_mid - q[:, 51], axis=-1)
        f["jaw_width"] = jaw_w
        f["jaw_face_width_ratio"] = jaw_w / face_w
        f["lower_upper_face_ratio"] = _dist(q, 33, 8) / nose_len
        f["eye_width_right"] = _dist(q, 36, 39)
        f["eye_width_left"] = _dist(q, 42, 45)
        f["intercanthal_width"] = _dist(q, 39, 42)
        f["biocular_width"] = _dist(q, 36, 45)
        f["eye_aspect_ratio_right"] = _eye_aspect_ratio(q, RIGHT_EYE)
        f["eye_aspect_ratio_left"] = _eye_aspect_ratio(q, LEFT_EYE)
        # eye centres are (-0.5, 0) and (0.5, 0) in the face frame
        f["brow_eye_distance_right"] = np.linalg.norm(q[:, RIGHT_BROW].mean(axis=1) - [-0.5, 0.0], axis=-1)
        f["brow_eye_distance_left"] = np.linalg.norm(q[:, LEFT_BROW].mean(axis=1) - [0.5, 0.0], axis=-1)
        f["nose_length"] = nose_len
        f["nose_width"] = nose_w
        f["nose_width_length_ratio"] = nose_w / nose_len
        f["nose_mouth_width_ratio"] = nose_w / mouth_w
        f["mouth_width"] = mouth_w
        f["mouth_aspect_ratio"] = (_dist(q, 61, 67) + _dist(q, 62, 66) + _dist(q, 63, 65)) / (3.0 * _dist(q, 60, 64))
        f["upper_lip_height"] = _dist(q, 51, 62)
        f["lower_lip_height"] = _dist(q, 66, 57)
        f["philtrum_length"] = _dist(q, 33, 51)
        f["chin_height"] = _dist(q, 57, 8)

        f["jaw_angle_chin"] = _angle_at(q, 4, 8, 12)
        f["mandibular_angle_right"] = _angle_at(q, 0, 4, 8)
        f["mandibular_angle_left"] = _angle_at(q, 16, 12, 8)
        # the right brow runs lateral -> medial along +u, the left along -u; "higher" is -v
        f["brow_slope_right"] = np.degrees(np.arctan(-_slope(q, RIGHT_BROW)))
        f["brow_slope_left"] = np.degrees(np.arctan(_slope(q, LEFT_BROW)))
        d_r = q[:, 36] - q[:, 39]
        d_l = q[:, 45] - q[:, 42]
        f["canthal_tilt_right"] = np.degrees(np.arctan2(-d_r[:, 1], -d_r[:, 0]))
        f["canthal_tilt_left"] = np.degrees(np.arctan2(-d_l[:, 1], d_l[:, 0]))

        f.update(_mirror_asymmetry(q))
        f["asymmetry_procrustes"] = _procrustes_asymmetry(q)
    return {name: np.asarray(f[name], dtype=np.float64) for name in FEATURE_NAMES}


def landmark_features(points: ArrayLike) -> dict[str, float]:
    """Compute every feature of :data:`FEATURES` for one face.

    Parameters
    ----------
    points : array_like of shape (68, 2)
        Landmarks in iBUG 300-W order, image coordinates.

    Returns
    -------
    dict
        Feature name -> value, in :data:`FEATURE_NAMES` order.

    Examples
    --------
    >>> feats = landmark_features(points)          # doctest: +SKIP
    >>> feats["eye_aspect_ratio_left"]             # doctest: +SKIP
    0.29
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must have shape (68, 2); got {p.shape}")
    return {k: float(v[0]) for k, v in landmark_features_batch(p[None]).items()}
