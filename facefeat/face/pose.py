"""Head pose (yaw, pitch, roll) from 2-D landmarks and a generic 3-D face model.

The pose is the rotation that best maps a rigid, generic 3-D face onto the detected 68 iBUG
300-W landmarks, found by least squares (Levenberg-Marquardt) under one of two cameras:

- ``"weak_perspective"`` (scaled orthographic, the default): ``x = s * R[:2] @ X + t``. Needs
  no camera or image size, so the pose depends on the landmarks only and is measured against
  the line of sight to the face, wherever the face sits in the frame. It ignores perspective:
  in synthetic checks a face three face widths from the camera gets median errors of about 5
  (yaw) and 7 (pitch) degrees, one ten face widths away about 1.5 and 2 degrees.
- ``"perspective"`` (pinhole): ``x = f * (R @ X + T)[:2] / (R @ X + T)[2] + c`` with the focal
  length assumed equal to the image width and the principal point at the image centre (a
  common uncalibrated guess, ~53 degrees horizontal field of view). The angles are then relative
  to the optical axis, so an off-centre face looking straight at the camera has a non-zero
  yaw/pitch, and a wrong focal-length guess biases them.

It starts from two initial guesses (the closed-form affine fit and a frontal pose rolled to the
eye line) and keeps the better fit, which avoids the depth-flip local minimum that a single
start can fall into.

Angle conventions (degrees, camera looking at the subject):

- **yaw** > 0: the head turns towards the subject's left (the nose points to the image's right);
- **pitch** > 0: the head tilts up (the nose points up);
- **roll** > 0: the head tilts so that the line from the subject's right eye to the left eye runs
  down the image (clockwise on screen), i.e. towards the subject's left shoulder.

The rotation is ``R_view = Rz(-roll) @ Ry(yaw) @ Rx(-pitch)`` in a viewer frame with ``x`` to the
image's right, ``y`` up and ``z`` towards the viewer; the generic model is given in that frame
for a frontal face. The camera rotation (OpenCV axes: ``y`` down, ``z`` into the scene) is
``diag(1, -1, -1) @ R_view``. Roll is applied last, about the viewing axis, so for a near-frontal
face it equals the in-image tilt of the eye line.

This module has no OpenCV dependency: the fit is implemented here in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "FaceModel3D",
    "ANTHROPOMETRIC_14",
    "GENERIC_6",
    "HeadPose",
    "head_pose",
    "head_pose_batch",
    "rotation_from_euler",
    "euler_from_rotation",
    "project",
]

_VIEW_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class FaceModel3D:
    """A rigid 3-D face model with its correspondence to the 68 iBUG landmarks.

    Attributes
    ----------
    name : str
    points : ndarray of shape (K, 3)
        Model coordinates in the viewer frame of a frontal face: ``x`` towards the subject's
        left (the image's right), ``y`` up, ``z`` out of the face towards the camera.
    landmark_index : tuple of int
        The iBUG 300-W landmark (0-based) each model point corresponds to.
    source : str
        Where the coordinates come from.
    """

    name: str
    points: np.ndarray = field(repr=False)
    landmark_index: tuple[int, ...]
    source: str = field(repr=False, default="")


# Anthropometric 3-D face model distributed by the Institute of Systems and Robotics, University
# of Coimbra (P. Martins and J. Batista; file glAnthropometric3DModel.cpp, 58 points, units
# roughly centimetres), with the 14 correspondences to the iBUG 68-point markup used by
# lincolnhard/head-pose-estimation (model points 33, 29, 34, 38, 13, 17, 25, 21, 55, 49, 43, 39,
# 45, 6 -> landmarks 17, 21, 22, 26, 36, 39, 42, 45, 31, 35, 48, 54, 57, 8). That file's x axis
# points to the image's left (landmark 17, the subject's right brow, has x > 0): x is negated
# here to give a right-handed frame with x towards the image's right.
ANTHROPOMETRIC_14 = FaceModel3D(
    name="anthropometric_14",
    points=np.array(
        [
            [6.825897, 6.760612, 4.402142],  # 17 right brow, outer end
            [1.330353, 7.122144, 6.903745],  # 21 right brow, inner end
            [-1.330353, 7.122144, 6.903745],  # 22 left brow, inner end
            [-6.825897, 6.760612, 4.402142],  # 26 left brow, outer end
            [5.311432, 5.485328, 3.987654],  # 36 right eye, outer corner
            [1.789930, 5.393625, 4.413414],  # 39 right eye, inner corner
            [-1.789930, 5.393625, 4.413414],  # 42 left eye, inner corner
            [-5.311432, 5.485328, 3.987654],  # 45 left eye, outer corner
            [2.005628, 1.409845, 6.165652],  # 31 nose, right ala
            [-2.005628, 1.409845, 6.165652],  # 35 nose, left ala
            [2.774015, -2.080775, 5.048531],  # 48 mouth, right corner
            [-2.774015, -2.080775, 5.048531],  # 54 mouth, left corner
            [0.000000, -3.116408, 6.097667],  # 57 lower lip, centre
            [0.000000, -7.415691, 4.070434],  # 8 chin (menton)
        ]
    )
    * np.array([-1.0, 1.0, 1.0]),
    landmark_index=(17, 21, 22, 26, 36, 39, 42, 45, 31, 35, 48, 54, 57, 8),
    source="ISR Coimbra glAnthropometric3DModel.cpp (Martins & Batista); iBUG mapping as in "
    "lincolnhard/head-pose-estimation",
)

# The 6-point generic model of S. Mallick, "Head Pose Estimation using OpenCV and Dlib"
# (LearnOpenCV, 2016): nose tip, chin, outer eye corners, mouth corners, arbitrary units, already
# in the viewer frame (x to the image's right, y up, z towards the camera).
GENERIC_6 = FaceModel3D(
    name="generic_6",
    points=np.array(
        [
            [0.0, 0.0, 0.0],  # 30 nose tip
            [0.0, -330.0, -65.0],  # 8 chin
            [-225.0, 170.0, -135.0],  # 36 right eye, outer corner (image left)
            [225.0, 170.0, -135.0],  # 45 left eye, outer corner (image right)
            [-150.0, -150.0, -125.0],  # 48 mouth, right corner
            [150.0, -150.0, -125.0],  # 54 mouth, left corner
        ]
    ),
    landmark_index=(30, 8, 36, 45, 48, 54),
    source="S. Mallick, LearnOpenCV 'Head Pose Estimation using OpenCV and Dlib' (2016)",
)


@dataclass(frozen=True)
class HeadPose:
    """A fitted head pose.

    Attributes
    ----------
    yaw, pitch, roll : float
        Degrees; see the module docstring for the sign conventions.
    rotation : ndarray of shape (3, 3)
        Model -> camera rotation (OpenCV camera axes).
    translation : ndarray of shape (3,) or (2,)
        Perspective: camera-frame translation ``T`` in model units. Weak perspective: the 2-D
        image offset ``t`` in pixels.
    scale : float
        Weak perspective: pixels per model unit. Perspective: ``f / T_z`` at the model origin.
    rmse : float
        Root-mean-square reprojection error in pixels over the model points.
    projection : str
        ``"weak_perspective"`` or ``"perspective"``.
    """

    yaw: float
    pitch: float
    roll: float
    rotation: np.ndarray = field(repr=False)
    translation: np.ndarray = field(repr=False)
    scale: float
    rmse: float
    projection: str


# --------------------------------------------------------------------------------------------
# rotations
# --------------------------------------------------------------------------------------------
def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_from_euler(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Model -> camera rotation (OpenCV axes) of a head pose given in degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    return _VIEW_TO_CAMERA @ _rz(-r) @ _ry(y) @ _rx(-p)


def euler_from_rotation(rotation: ArrayLike) -> tuple[float, float, float]:
    """``(yaw, pitch, roll)`` in degrees of a model -> camera rotation (inverse of
    :func:`rotation_from_euler` for |yaw| < 90)."""
    v = _VIEW_TO_CAMERA @ np.asarray(rotation, dtype=np.float64)
    yaw = np.arcsin(np.clip(-v[2, 0], -1.0, 1.0))
    pitch = -np.arctan2(v[2, 1], v[2, 2])
    roll = -np.arctan2(v[1, 0], v[0, 0])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def _skew(x: np.ndarray) -> np.ndarray:
    """Cross-product matrices of the rows of ``x`` (K, 3) -> (K, 3, 3)."""
    z = np.zeros(len(x))
    return np.stack(
        [
            np.stack([z, -x[:, 2], x[:, 1]], axis=-1),
            np.stack([x[:, 2], z, -x[:, 0]], axis=-1),
            np.stack([-x[:, 1], x[:, 0], z], axis=-1),
        ],
        axis=-2,
    )


def _expm_so3(w: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: rotation matrix of the rotation vector ``w``."""
    theta = float(np.linalg.norm(w))
    k = _skew(w[None])[0]
    if theta < 1e-12:
        return np.eye(3) + k
    return np.eye(3) + np.sin(theta) / theta * k + (1.0 - np.cos(theta)) / theta**2 * (k @ k)


def _nearest_rotation(m: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


# --------------------------------------------------------------------------------------------
# projection and fitting
# --------------------------------------------------------------------------------------------
def project(
    model_points: ArrayLike,
    rotation: ArrayLike,
    translation: ArrayLike,
    *,
    scale: float | None = None,
    focal_length: float | None = None,
    principal_point: ArrayLike = (0.0, 0.0),
) -> np.ndarray:
    """Project 3-D model points to the image.

    Exactly one of ``scale`` (weak perspective: ``s * (R X)[:2] + t`` with a 2-D ``translation``)
    and ``focal_length`` (pinhole: ``f * Y[:2] / Y[2] + c`` with ``Y = R X + T``, a 3-D
    ``translation``) must be given.

    Returns
    -------
    ndarray of shape (K, 2)
    """
    x = np.asarray(model_points, dtype=np.float64)
    r = np.asarray(rotation, dtype=np.float64)
    t = np.asarray(translation, dtype=np.float64)
    if (scale is None) == (focal_length is None):
        raise ValueError("give exactly one of scale (weak perspective) or focal_length (perspective)")
    y = x @ r.T
    if scale is not None:
        return scale * y[:, :2] + t[:2]
    y = y + t
    return focal_length * y[:, :2] / y[:, 2:3] + np.asarray(principal_point, dtype=np.float64)


def _residual_weak(params, x3, x2):
    r, s, t = params
    return (s * (x3 @ r.T)[:, :2] + t - x2).ravel()


def _jacobian_weak(params, x3):
    r, s, _ = params
    k = len(x3)
    # d(R exp([w]x) X)/dw at w = 0 is -R [X]x
    dy_dw = -np.einsum("ij,kjl->kil", r, _skew(x3))[:, :2]  # (K, 2, 3)
    j = np.zeros((k, 2, 6))
    j[:, :, :3] = s * dy_dw
    j[:, :, 3] = (x3 @ r.T)[:, :2]
    j[:, 0, 4] = 1.0
    j[:, 1, 5] = 1.0
    return j.reshape(2 * k, 6)


def _update_weak(params, delta):
    r, s, t = params
    return (r @ _expm_so3(delta[:3]), s + delta[3], t + delta[4:6])


def _residual_persp(params, x3, x2, f, c):
    r, t = params
    y = x3 @ r.T + t
    return (f * y[:, :2] / y[:, 2:3] + c - x2).ravel()


def _jacobian_persp(params, x3, f):
    r, t = params
    k = len(x3)
    y = x3 @ r.T + t
    z = y[:, 2]
    du_dy = np.zeros((k, 2, 3))
    du_dy[:, 0, 0] = f / z
    du_dy[:, 1, 1] = f / z
    du_dy[:, 0, 2] = -f * y[:, 0] / z**2
    du_dy[:, 1, 2] = -f * y[:, 1] / z**2
    dy_dw = -np.einsum("ij,kjl->kil", r, _skew(x3))
    j = np.concatenate([du_dy @ dy_dw, du_dy], axis=2)  # (K, 2, 6)
    return j.reshape(2 * k, 6)


def _update_persp(params, delta):
    r, t = params
    return (r @ _expm_so3(delta[:3]), t + delta[3:6])


def _levenberg_marquardt(params, residual, jacobian, update, *, max_iter: int, tol: float):
    res = residual(params)
    cost = float(res @ res)
    lam = 1e-3
    for _ in range(max_iter):
        j = jacobian(params)
        jtj = j.T @ j
        g = j.T @ res
        improved = False
        for _ in range(20):
            a = jtj + lam * np.diag(np.maximum(np.diag(jtj), 1e-12))
            try:
                delta = np.linalg.solve(a, -g)
            except np.linalg.LinAlgError:
                lam *= 10.0
                continue
            cand = update(params, delta)
            cres = residual(cand)
            ccost = float(cres @ cres)
            if np.isfinite(ccost) and ccost <= cost:
                improved = True
                done = cost - ccost <= tol * max(cost, 1e-300) or float(np.abs(delta).max()) < 1e-12
                params, res, cost = cand, cres, ccost
                lam = max(lam / 10.0, 1e-12)
                break
            lam *= 10.0
        if not improved or done:
            break
    return params, cost


def _affine_init(x3: np.ndarray, x2: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Closed-form weak-perspective start: least-squares affine camera, orthonormalised."""
    mx3 = x3.mean(axis=0)
    mx2 = x2.mean(axis=0)
    a, *_ = np.linalg.lstsq(x3 - mx3, x2 - mx2, rcond=None)  # (3, 2)
    u, sv, vt = np.linalg.svd(a.T, full_matrices=False)  # a.T = u diag(sv) vt, vt (2, 3)
    r12 = u @ vt
    r = np.vstack([r12, np.cross(r12[0], r12[1])])
    s = float(sv.mean())
    t = mx2 - s * (mx3 @ r.T)[:2]
    return r, s, t


def _frontal_init(x3: np.ndarray, x2: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Frontal start, rolled to the eye line and scaled to the model's spread."""
    right = points[36:42].mean(axis=0)
    left = points[42:48].mean(axis=0)
    d = left - right
    roll = np.degrees(np.arctan2(d[1], d[0]))
    r = rotation_from_euler(0.0, 0.0, roll)
    proj = (x3 @ r.T)[:, :2]
    s = float(np.sqrt(((x2 - x2.mean(0)) ** 2).sum() / max(((proj - proj.mean(0)) ** 2).sum(), 1e-300)))
    t = x2.mean(axis=0) - s * proj.mean(axis=0)
    return r, s, t


def head_pose(
    points: ArrayLike,
    *,
    model: FaceModel3D = ANTHROPOMETRIC_14,
    projection: str = "weak_perspective",
    image_size: tuple[int, int] | None = None,
    focal_length: float | None = None,
    max_iter: int = 100,
    tol: float = 1e-12,
) -> HeadPose:
    """Fit the head pose of one face.

    Parameters
    ----------
    points : array_like of shape (68, 2)
        Landmarks in iBUG 300-W order, image pixel coordinates (y down).
    model : FaceModel3D, default ANTHROPOMETRIC_14
        Generic 3-D face; :data:`GENERIC_6` is the other one provided.
    projection : {"weak_perspective", "perspective"}
        Camera model. ``"perspective"`` needs ``image_size``.
    image_size : (width, height), optional
        Perspective only: the principal point is the image centre and, unless
        ``focal_length`` is given, the focal length is the image width.
    focal_length : float, optional
        Perspective only, in pixels.
    max_iter : int, default 100
        Levenberg-Marquardt iterations per start.
    tol : float, default 1e-12
        Stop when the relative decrease of the squared error falls below this.

    Returns
    -------
    HeadPose

    Raises
    ------
    ValueError
        Wrong ``points`` shape, degenerate points (non-finite or all coinciding), unknown
        ``projection`` or a perspective fit without ``image_size``.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"landmarks must have shape (68, 2); got {p.shape}")
    if projection not in ("weak_perspective", "perspective"):
        raise ValueError(f"projection must be 'weak_perspective' or 'perspective', not {projection!r}")
    x3 = np.asarray(model.points, dtype=np.float64)
    x2 = p[list(model.landmark_index)]
    k = len(x3)
    if not np.isfinite(x2).all() or np.ptp(x2, axis=0).max() <= 0:
        raise ValueError("degenerate landmarks: the model points are not finite or all coincide")

    starts = []
    for init in (_affine_init(x3, x2), _frontal_init(x3, x2, p)):
        params, cost = _levenberg_marquardt(
            init,
            lambda q: _residual_weak(q, x3, x2),
            lambda q: _jacobian_weak(q, x3),
            _update_weak,
            max_iter=max_iter,
            tol=tol,
        )
        if params[1] < 0:  # negative scale == rotation by 180 deg about z: normalise
            r, s, t = params
            params = (np.diag([-1.0, -1.0, 1.0]) @ r, -s, t)
        starts.append((cost, params))
    cost, (r, s, t) = min(starts, key=lambda c: c[0])
    r = _nearest_rotation(r)

    if projection == "weak_perspective":
        yaw, pitch, roll = euler_from_rotation(r)
        return HeadPose(yaw, pitch, roll, r, np.asarray(t), float(s), float(np.sqrt(cost / k)), projection)

    if image_size is None:
        raise ValueError("a perspective fit needs image_size=(width, height)")
    w, h = image_size
    f = float(focal_length if focal_length is not None else w)
    c = np.array([w / 2.0, h / 2.0])
    # the weak-perspective solution gives the start: depth from the scale, x/y from the offset
    tz = f / s
    origin = t  # image position of the model origin
    t3 = np.array([(origin[0] - c[0]) * tz / f, (origin[1] - c[1]) * tz / f, tz])
    (r, t3), cost = _levenberg_marquardt(
        (r, t3),
        lambda q: _residual_persp(q, x3, x2, f, c),
        lambda q: _jacobian_persp(q, x3, f),
        _update_persp,
        max_iter=max_iter,
        tol=tol,
    )
    r = _nearest_rotation(r)
    yaw, pitch, roll = euler_from_rotation(r)
    return HeadPose(yaw, pitch, roll, r, t3, float(f / t3[2]), float(np.sqrt(cost / k)), projection)


def head_pose_batch(points: ArrayLike, **kwargs) -> dict[str, np.ndarray]:
    """Weak-perspective (by default) head pose of a batch of faces.

    Parameters
    ----------
    points : array_like of shape (B, 68, 2)
    **kwargs
        Passed to :func:`head_pose` (``image_size`` is shared by the whole batch).

    Returns
    -------
    dict
        ``yaw``, ``pitch``, ``roll`` (degrees) and ``rmse`` (pixels), float64 arrays of shape
        ``(B,)``. A face with degenerate landmarks, or whose fit fails numerically, gets NaN.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (68, 2):
        raise ValueError(f"landmarks must have shape (B, 68, 2); got {p.shape}")
    out = {k: np.full(len(p), np.nan) for k in ("yaw", "pitch", "roll", "rmse")}
    for i, pts in enumerate(p):
        try:
            hp = head_pose(pts, **kwargs)
        except (ValueError, np.linalg.LinAlgError):
            continue
        out["yaw"][i], out["pitch"][i], out["roll"][i], out["rmse"][i] = hp.yaw, hp.pitch, hp.roll, hp.rmse
    return out
