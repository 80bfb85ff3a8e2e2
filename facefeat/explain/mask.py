"""Face masks and image regions on FFHQ-aligned images, and where a pixel change happens.

The seed study claims its health attribute changes the *face*, not clothing or background. This
module makes that claim measurable: it maps the 68 landmarks into the aligned image, rasterises
a face mask and coarse region masks there (plain NumPy, no OpenCV), and splits the pixel-change
energy of an edit between them.

Coordinates
-----------
Points are ``(x, y)`` in *pixel-index* coordinates (the centre of pixel ``[row, col]`` is
``(col, row)``, y down), as dlib's landmarks are. A pixel belongs to a polygon when its centre
does (points on an edge count as inside).

The FFHQ alignment (:func:`facefeat.face.align.align_face`) warps the crop square ``quad``
(corners top-left, bottom-left, bottom-right, top-right, in original-image pixels) onto the
output square with PIL's ``QUAD`` transform, a bilinear map of the unit square onto the quad,
then resizes to ``output_size``. PIL evaluates the map at pixel centres in continuous
coordinates (pixel ``i`` spans ``[i, i + 1)``) and the recipe hands it ``quad + 0.5``, so the
half-pixel shifts cancel: a point ``p`` with ``p = Q(s, t)`` (``Q`` the bilinear map of
``quad``, ``(s, t)`` in the unit square) lands at ``(s * S - 0.5, t * S - 0.5)`` in the aligned
image of side ``S``, whatever the intermediate ``transform_size``. The FFHQ quad is an exact
square, so ``Q`` is a similarity, but the inverse here solves the general bilinear case.
When the recipe first shrinks a large photo by an integer factor it resizes the image to
``rint(W / shrink) x rint(H / shrink)`` but divides the quad by ``shrink``; pass ``image_size``
to reproduce that rounding exactly (without it the error is below half an output pixel).

Regions (:func:`face_regions`), a partition of the aligned image, in the face frame ``(u, v)``
(origin midway between the eye centres, ``u`` along the eye line, ``v`` towards the chin, units
of the inter-ocular distance, IOD):

``face``
    The filled convex hull of the jaw outline (points 0-16) and the brows (17-26), the brows
    optionally lifted by ``forehead`` IOD towards the forehead.
``below_chin``
    Outside the face and below the chin (``v > v(p8)``), or under the jaw line (below the
    mouth-corner level within the jaw's width, points 3-13), or below the mouth-corner level
    outside the head hull (the lower corners, where FFHQ crops show shoulders): neck, collar
    and clothing.
``hair``
    The rest of the *head* hull outside the face: the face outline scaled by ``head_scale``
    about the face centre plus the brows lifted by ``hair_height`` IOD. Hair, ears and the
    forehead above the brows; on short-haired or bald heads it holds background too.
``background``
    Everything else: beside and above the head, above the mouth-corner level.

These are heuristics from landmarks alone (no segmentation network): read the ``hair`` and
``below_chin`` shares as "near the head" and "under the face", not as semantic classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
from numpy.typing import ArrayLike

from facefeat.face.geometry import LEFT_EYE, RIGHT_EYE, eye_centres

__all__ = [
    "REGIONS",
    "EnergyShares",
    "aligned_face_mask",
    "change_energy_shares",
    "convex_hull",
    "face_frame_coordinates",
    "face_mask",
    "face_regions",
    "landmarks_to_aligned",
    "polygon_mask",
    "skin_mask",
]

#: Region names of :func:`face_regions`, in the order they are assigned.
REGIONS = ("face", "below_chin", "hair", "background")

OUTLINE = np.arange(0, 17)
BROWS = np.arange(17, 27)
MOUTH_INNER = np.arange(60, 68)
MOUTH_OUTER = np.arange(48, 60)


def _points(points: ArrayLike, name: str = "points") -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise ValueError(f"{name}: expected an (N, 2) array of (x, y) points, got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contain NaN or infinite values")
    return p


def _landmarks68(points: ArrayLike) -> np.ndarray:
    p = _points(points, "landmarks")
    if p.shape != (68, 2):
        raise ValueError(f"landmarks: expected 68 (x, y) points (iBUG 300-W order), got shape {p.shape}")
    return p


def _size(size) -> tuple[int, int]:
    """``(height, width)`` from an int (square) or a pair."""
    if np.ndim(size) == 0:
        h = w = int(size)
    else:
        h, w = (int(v) for v in size)
    if h < 1 or w < 1:
        raise ValueError(f"mask size must be positive, got {size!r}")
    return h, w


# -- coordinates -----------------------------------------------------------------------------


def _quad(quad: ArrayLike) -> np.ndarray:
    q = np.asarray(quad, dtype=np.float64)
    if q.shape == (8,):
        q = q.reshape(4, 2)
    if q.shape != (4, 2) or not np.all(np.isfinite(q)):
        raise ValueError(f"quad: expected 4 finite (x, y) corners (top-left, bottom-left, bottom-right, top-right), "
                         f"got shape {q.shape}")
    return q


def _inverse_bilinear(p: np.ndarray, q: np.ndarray, iterations: int = 20) -> np.ndarray:
    """``(s, t)`` with ``Q(s, t) = p`` for the bilinear map of the quad ``q`` (Newton's method).

    ``Q(s, t) = q0 + s (q3 - q0) + t (q1 - q0) + s t (q2 - q1 - q3 + q0)``. For a parallelogram
    the last term vanishes and the first step is exact.
    """
    e = q[3] - q[0]
    f = q[1] - q[0]
    g = q[2] - q[1] - q[3] + q[0]
    st = np.zeros_like(p)
    for _ in range(iterations):
        s, t = st[:, 0:1], st[:, 1:2]
        r = q[0] + s * e + t * f + s * t * g - p
        js = e + t * g  # dQ/ds, (N, 2)
        jt = f + s * g  # dQ/dt
        det = js[:, 0] * jt[:, 1] - js[:, 1] * jt[:, 0]
        if np.any(det == 0):
            raise ValueError("quad is degenerate (its corners do not span an area)")
        ds = (r[:, 0] * jt[:, 1] - r[:, 1] * jt[:, 0]) / det
        dt = (js[:, 0] * r[:, 1] - js[:, 1] * r[:, 0]) / det
        st = st - np.stack([ds, dt], axis=1)
        if np.max(np.abs(ds), initial=0.0) < 1e-13 and np.max(np.abs(dt), initial=0.0) < 1e-13:
            break
    return st


def landmarks_to_aligned(points: ArrayLike, quad: ArrayLike, output_size: int, *,
                         image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Map points from original-image pixels into the FFHQ-aligned image.

    Parameters
    ----------
    points : array-like of shape (N, 2)
        ``(x, y)`` pixel-index coordinates in the original (upright) photo, e.g. the 68
        landmarks the alignment was computed from.
    quad : array-like of shape (4, 2) or (8,)
        The crop square, :attr:`facefeat.face.align.AlignResult.quad` (or the engine's
        ``diag__align_quad``): corners top-left, bottom-left, bottom-right, top-right of the
        aligned image, in original-image pixels.
    output_size : int
        Side of the aligned image.
    image_size : (width, height), optional
        Size of the original photo. Only used when the recipe shrank the photo first (faces
        larger than about ``2 * output_size`` pixels) to reproduce its rounding of the shrunk
        size; without it the shrink is taken as exact (error below half an output pixel).

    Returns
    -------
    ndarray of shape (N, 2), float64
        ``(x, y)`` pixel-index coordinates in the aligned image (may fall outside
        ``[0, output_size)`` for points outside the crop square).

    Examples
    --------
    >>> res = align_face(rgb, points, output_size=256)              # doctest: +SKIP
    >>> aligned = landmarks_to_aligned(points, res.quad, 256)       # doctest: +SKIP
    """
    p = _points(points)
    q = _quad(quad)
    size = int(output_size)
    if size < 1:
        raise ValueError(f"output_size must be positive, got {output_size!r}")
    qsize = float(np.hypot(*(q[3] - q[0])))
    shrink = int(np.floor(qsize / size * 0.5))  # as facefeat.face.align._plan decides it
    if shrink > 1:
        q = q / shrink
        if image_size is not None:
            w, h = (int(v) for v in image_size)
            scale = np.array([int(np.rint(float(w) / shrink)) / w, int(np.rint(float(h) / shrink)) / h])
            # PIL's resize maps continuous coordinates (pixel centre at i + 0.5) by the size ratio
            p = (p + 0.5) * scale - 0.5
        else:
            p = p / shrink
    st = _inverse_bilinear(p, q)
    return st * size - 0.5


def face_frame_coordinates(points: ArrayLike, xy: ArrayLike) -> np.ndarray:
    """Express points ``xy`` in the face frame of the 68 landmarks ``points``.

    Origin midway between the eye centres, ``u`` along the eye line towards the subject's left
    eye, ``v`` perpendicular to it towards the chin (point 8); units of the inter-ocular
    distance. Same frame as :func:`facefeat.face.geometry.face_frame`.

    Returns
    -------
    ndarray of shape ``xy.shape``: ``(..., 2)`` with ``(u, v)``.
    """
    centre, ex, ey, iod = _frame(_landmarks68(points))
    rel = np.asarray(xy, dtype=np.float64) - centre
    return np.stack([rel @ ex, rel @ ey], axis=-1) / iod


def _frame(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Centre, unit eye-line axis, unit chin-ward axis and IOD of landmarks ``p``."""
    right, left = eye_centres(p)
    axis = left - right
    iod = float(np.hypot(*axis))
    if not iod > 0:
        raise ValueError("landmarks span a degenerate face (the eye centres coincide)")
    ex = axis / iod
    ey = np.array([-ex[1], ex[0]])
    centre = 0.5 * (right + left)
    if np.dot(p[8] - centre, ey) < 0:
        ey = -ey
    return centre, ex, ey, iod


# -- rasterising -----------------------------------------------------------------------------


def convex_hull(points: ArrayLike) -> np.ndarray:
    """Convex hull of 2-D points (Andrew's monotone chain), counter-clockwise in ``(x, y)``.

    Collinear points on the hull are dropped. Returns ``(K, 2)``; fewer than 3 rows when the
    points are collinear or coincide.
    """
    p = _points(points)
    pts = np.unique(p, axis=0)  # sorted by x, then y
    if len(pts) < 3:
        return pts

    def cross(o, a, b) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[np.ndarray] = []
    for pt in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], pt) <= 0:
            lower.pop()
        lower.append(pt)
    upper: list[np.ndarray] = []
    for pt in pts[::-1]:
        while len(upper) >= 2 and cross(upper[-2], upper[-1], pt) <= 0:
            upper.pop()
        upper.append(pt)
    return np.array(lower[:-1] + upper[:-1])


def polygon_mask(vertices: ArrayLike, size, *, convex: bool = True) -> np.ndarray:
    """Rasterise a polygon: ``True`` where the pixel centre lies inside or on an edge.

    Parameters
    ----------
    vertices : array-like of shape (K, 2)
        ``(x, y)`` pixel-index coordinates. With ``convex=True`` (default) the filled convex
        hull of the vertices is drawn (their order does not matter); with ``convex=False`` the
        vertices are taken in order as a simple polygon (even-odd rule).
    size : int or (height, width)

    Returns
    -------
    ndarray of bool, shape (height, width)
    """
    h, w = _size(size)
    out = np.zeros((h, w), dtype=bool)
    v = _points(vertices, "vertices")
    if convex:
        v = convex_hull(v)
    if len(v) < 3:
        return out
    # only the bounding box of the polygon needs testing
    c0, c1 = max(0, int(np.ceil(v[:, 0].min()))), min(w - 1, int(np.floor(v[:, 0].max())))
    r0, r1 = max(0, int(np.ceil(v[:, 1].min()))), min(h - 1, int(np.floor(v[:, 1].max())))
    if c1 < c0 or r1 < r0:
        return out
    ys, xs = np.mgrid[r0:r1 + 1, c0:c1 + 1].astype(np.float64)
    if convex:
        inside = np.ones(xs.shape, dtype=bool)
        scale = max(1.0, float(np.abs(v).max()))
        eps = 1e-9 * scale * scale  # points on an edge count as inside despite rounding
        for a, b in zip(v, np.roll(v, -1, axis=0)):
            # counter-clockwise hull: the interior is on the left of every edge (cross >= 0)
            inside &= (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0]) >= -eps
    else:
        inside = np.zeros(xs.shape, dtype=bool)
        for a, b in zip(v, np.roll(v, -1, axis=0)):
            if a[1] == b[1]:
                continue
            crosses = (a[1] > ys) != (b[1] > ys)
            x_at = a[0] + (ys - a[1]) * (b[0] - a[0]) / (b[1] - a[1])
            inside ^= crosses & (xs < x_at)
    out[r0:r1 + 1, c0:c1 + 1] = inside
    return out


# -- masks -----------------------------------------------------------------------------------


def _lift(p: np.ndarray, idx: np.ndarray, amount: float) -> np.ndarray:
    """Points ``p[idx]`` moved ``amount`` IOD towards the forehead (against the chin axis)."""
    _, _, ey, iod = _frame(p)
    return p[idx] - float(amount) * iod * ey


def face_mask(points: ArrayLike, size, *, forehead: float = 0.0) -> np.ndarray:
    """The face mask: filled convex hull of the jaw outline (0-16) and the brows (17-26).

    Parameters
    ----------
    points : array-like of shape (68, 2)
        Landmarks in the coordinates of the mask (for an aligned image, from
        :func:`landmarks_to_aligned`).
    size : int or (height, width)
        Size of the image the mask is for.
    forehead : float, default 0.0
        Lift the brow points this many inter-ocular distances towards the forehead before
        taking the hull (0.3 to 0.6 takes in most of the forehead below the hairline).

    Returns
    -------
    ndarray of bool, shape (height, width)
    """
    p = _landmarks68(points)
    if forehead < 0:
        raise ValueError(f"forehead must be >= 0 (IOD units), got {forehead!r}")
    brows = _lift(p, BROWS, forehead) if forehead else p[BROWS]
    return polygon_mask(np.concatenate([p[OUTLINE], brows]), size)


def aligned_face_mask(points: ArrayLike, quad: ArrayLike, output_size: int, *, forehead: float = 0.0,
                      image_size: tuple[int, int] | None = None) -> np.ndarray:
    """:func:`face_mask` of an FFHQ-aligned image from original-image landmarks and the quad."""
    aligned = landmarks_to_aligned(points, quad, output_size, image_size=image_size)
    return face_mask(aligned, output_size, forehead=forehead)


def _rgb_to_ycbcr(image: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 full-range YCbCr of an RGB image scaled to [0, 255]."""
    rgb = image.astype(np.float64)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = 128.0 - 0.168736 * r - 0.331264 * g + 0.5 * b
    cr = 128.0 + 0.5 * r - 0.418688 * g - 0.081312 * b
    return np.stack([y, cb, cr], axis=-1)


def skin_mask(image: ArrayLike, points: ArrayLike, *, forehead: float = 0.0, exclude_features: bool = True,
              feature_margin: float = 0.08, colour_threshold: float | None = 3.5,
              min_spread: float = 4.0) -> np.ndarray:
    """Skin inside the face mask: the hull without eyes and mouth, optionally colour-filtered.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3)
        RGB, ``uint8`` or float in ``[0, 255]`` (the aligned photo).
    points : array-like of shape (68, 2)
        Landmarks in the image's coordinates.
    forehead : float
        As in :func:`face_mask`.
    exclude_features : bool, default True
        Remove the eye openings (hulls of 36-41 and 42-47) and the lips and mouth opening (hull
        of 48-59), each grown by ``feature_margin`` IOD.
    feature_margin : float
        Growth of the excluded feature hulls, IOD units.
    colour_threshold : float or None, default 3.5
        Keep only pixels whose chroma (Cb, Cr, BT.601) lies within this many robust standard
        deviations (1.4826 x MAD, per channel) of the median of the remaining face pixels and
        whose luma is not more than that many below the median (highlights stay). This drops
        strongly off-colour pixels the hull takes in: glasses frames, dark hair and brows,
        coloured background, blue/green patches. Light-brown hair over the forehead has
        nearly skin chroma and mostly stays. ``None`` skips the colour test.
    min_spread : float, default 4.0
        Floor of the robust standard deviations (levels), so a very uniform face does not get
        a threshold narrower than JPEG noise.

    Returns
    -------
    ndarray of bool, shape (H, W), a subset of :func:`face_mask`.
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image: expected an (H, W, 3) RGB array, got shape {img.shape}")
    p = _landmarks68(points)
    size = img.shape[:2]
    mask = face_mask(p, size, forehead=forehead)
    if exclude_features:
        _, _, _, iod = _frame(p)
        grow = float(feature_margin) * iod
        for idx in (RIGHT_EYE, LEFT_EYE, MOUTH_OUTER):
            pts = p[idx]
            c = pts.mean(axis=0)
            d = pts - c
            n = np.linalg.norm(d, axis=1, keepdims=True)
            grown = pts + np.divide(d, n, out=np.zeros_like(d), where=n > 0) * grow
            mask &= ~polygon_mask(grown, size)
    if colour_threshold is not None and mask.any():
        ycc = _rgb_to_ycbcr(img)
        ref = ycc[mask]
        med = np.median(ref, axis=0)
        spread = np.maximum(1.4826 * np.median(np.abs(ref - med), axis=0), float(min_spread))
        z = (ycc - med) / spread
        k = float(colour_threshold)
        # chroma both ways; luma only downwards (hair, brows, shadows of glasses are darker than
        # skin, while highlights on skin are brighter and must stay)
        mask &= (np.abs(z[..., 1]) <= k) & (np.abs(z[..., 2]) <= k) & (z[..., 0] >= -k)
    return mask


def face_regions(points: ArrayLike, size, *, forehead: float = 0.0, head_scale: float = 1.3,
                 hair_height: float = 1.2) -> dict[str, np.ndarray]:
    """Partition an aligned image into face, below-chin, hair and background (see module doc).

    Parameters
    ----------
    points : array-like of shape (68, 2)
        Landmarks in the image's coordinates.
    size : int or (height, width)
    forehead : float
        Brow lift of the face mask, IOD (see :func:`face_mask`).
    head_scale : float, default 1.3
        Scale of the face outline about the face centre (the mean of points 0-26) for the head
        hull that bounds the ``hair`` region.
    hair_height : float, default 1.2
        Lift of the brows for the head hull, IOD; with the scale this reaches the top of the
        FFHQ crop on most faces.

    Returns
    -------
    dict
        :data:`REGIONS` -> ``bool (height, width)`` masks; every pixel is in exactly one.
    """
    p = _landmarks68(points)
    h, w = _size(size)
    face = face_mask(p, (h, w), forehead=forehead)

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    uv = face_frame_coordinates(p, np.stack([xs, ys], axis=-1))
    u, v = uv[..., 0], uv[..., 1]
    q = face_frame_coordinates(p, p)
    v_chin = q[8, 1]
    v_mouth = 0.5 * (q[48, 1] + q[54, 1])
    jaw_u = q[3:14, 0]
    under_jaw = (v > v_mouth) & (u >= jaw_u.min()) & (u <= jaw_u.max())

    centre = p[np.r_[OUTLINE, BROWS]].mean(axis=0)
    head_pts = np.concatenate([
        centre + float(head_scale) * (p[OUTLINE] - centre),
        centre + float(head_scale) * (_lift(p, BROWS, hair_height) - centre),
    ])
    head = polygon_mask(head_pts, (h, w))
    below = ~face & ((v > v_chin) | under_jaw | ((v > v_mouth) & ~head))
    hair = head & ~face & ~below
    background = ~(face | below | hair)
    return {"face": face, "below_chin": below, "hair": hair, "background": background}


# -- change energy ---------------------------------------------------------------------------


@dataclass(frozen=True)
class EnergyShares:
    """How the pixel-change energy of an edit splits between image regions.

    Attributes
    ----------
    shares : dict
        Region -> share of the total energy (sums to 1; NaN everywhere when nothing changed).
    area_shares : dict
        Region -> share of the pixels. A region's ``shares / area_shares`` above 1 means the
        change concentrates there.
    total_energy : float
        Sum over pixels and channels of the squared difference, in the images' units squared
        (for ``uint8`` inputs, grey levels squared).
    """

    shares: dict[str, float]
    area_shares: dict[str, float]
    total_energy: float
    energy: dict[str, float] = field(default_factory=dict)

    def enrichment(self) -> dict[str, float]:
        """``shares / area_shares`` per region (NaN for empty regions or no change)."""
        return {k: (self.shares[k] / a if a > 0 else float("nan")) for k, a in self.area_shares.items()}

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{prefix}share_<region>``, ``{prefix}area_<region>``, ``{prefix}total_energy``."""
        out = {f"{prefix}share_{k}": v for k, v in self.shares.items()}
        out.update({f"{prefix}area_{k}": v for k, v in self.area_shares.items()})
        out[f"{prefix}total_energy"] = self.total_energy
        return out


def _image_pair(img_a: ArrayLike, img_b: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(img_a)
    b = np.asarray(img_b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ValueError(f"images must be (H, W) or (H, W, C) arrays (channels last), got shape {a.shape}")
    return a, b


def change_energy_shares(img_a: ArrayLike, img_b: ArrayLike,
                         mask: ArrayLike | Mapping[str, ArrayLike]) -> EnergyShares:
    """Share of the pixel-change energy inside a mask, or in each of several regions.

    The energy of a pixel is the sum over channels of ``(a - b) ** 2`` (computed in float64,
    so ``uint8`` inputs do not wrap around).

    Parameters
    ----------
    img_a, img_b : ndarray of shape (H, W, C) or (H, W)
        The two images (e.g. a reconstruction and its edit), same shape, channels last.
    mask : bool ndarray of shape (H, W), or mapping name -> bool ndarray
        A single mask gives regions ``"inside"`` and ``"outside"``. A mapping (e.g. from
        :func:`face_regions`) gives one share per region; the regions must not overlap, and
        pixels in none of them are reported as ``"other"`` when there are any.

    Returns
    -------
    EnergyShares
        Shares sum to 1 (up to rounding); they are NaN when the images are identical.

    Examples
    --------
    >>> regions = face_regions(aligned_points, 256)                       # doctest: +SKIP
    >>> change_energy_shares(frame0, frame3, regions).shares["face"]      # doctest: +SKIP
    0.83
    """
    a, b = _image_pair(img_a, img_b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    energy = diff * diff
    if energy.ndim == 3:
        energy = energy.sum(axis=2)
    hw = energy.shape

    if isinstance(mask, Mapping):
        regions = {str(k): np.asarray(m) for k, m in mask.items()}
    else:
        m = np.asarray(mask)
        regions = {"inside": m, "outside": None}  # type: ignore[dict-item]
        if m.shape == hw:
            regions["outside"] = ~m.astype(bool)
    for name, m in regions.items():
        if m is None or m.shape != hw:
            got = None if m is None else m.shape
            raise ValueError(f"mask {name!r}: expected shape {hw} (the images' height and width), got {got}")
        if m.dtype != bool:
            if not np.isin(m, (0, 1)).all():
                raise ValueError(f"mask {name!r} must be boolean (or 0/1)")
            regions[name] = m.astype(bool)
    cover = np.zeros(hw, dtype=np.int32)
    for m in regions.values():
        cover += m
    if cover.max(initial=0) > 1:
        raise ValueError(f"regions overlap at {int(np.count_nonzero(cover > 1))} pixel(s); they must be disjoint")
    if np.any(cover == 0):
        regions["other"] = cover == 0

    total = float(energy.sum())
    n = energy.size
    per = {k: float(energy[m].sum()) for k, m in regions.items()}
    shares = {k: (e / total if total > 0 else float("nan")) for k, e in per.items()}
    areas = {k: float(np.count_nonzero(m)) / n for k, m in regions.items()}
    return EnergyShares(shares=shares, area_shares=areas, total_energy=total, energy=per)
