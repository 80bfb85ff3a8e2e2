"""FFHQ face alignment, pixel-identical to NVlabs/ffhq-dataset ``recreate_aligned_images``.

The recipe (Karras et al., FFHQ): an oriented square is built from the eye and mouth landmarks;
the image is shrunk when the square is much larger than the output, cropped to the square plus a
border, reflect-padded where the square leaves the image (the padding is blurred and faded to
the median colour), warped with a PIL ``QUAD`` transform at ``transform_size`` (BILINEAR), and
downscaled with LANCZOS to ``output_size``.

Two implementations of the same recipe:

- ``method="reference"``: a direct re-implementation of the official float pipeline (whole-image
  float32 padding, blur and median blend). It is the yardstick of tests and benchmarks.
- ``method="fast"`` (default): the same pixels with less work. The padded image stays ``uint8``;
  the Gaussian blur, the blend weights and the median blend are computed only in the band near
  the edges where the blend weight is non-zero (elsewhere the official blend adds exactly 0);
  the median is an exact order statistic from a histogram of the untouched interior plus the
  band values; and the PIL transform + resize run on horizontal strips in threads (PIL releases
  the GIL), each strip resized with a ``box`` so its LANCZOS coefficients are the full image's.

Exactness: with ``workers=1`` the fast path performs the same floating-point operations as the
reference on every pixel that reaches the output, so the pixels are identical by construction.
With ``workers > 1`` a strip's QUAD coefficients are re-derived for its row offset, which can
move a sample coordinate by ~1e-13 px; on the 72 reference images this changed no pixel (see
``tests/face/test_align.py``).

The fixture images in ``tests/data/ffhq_align`` were made with NumPy 2 (float64 blend masks under
NEP 50 promotion), SciPy's ``gaussian_filter`` and Pillow's QUAD/LANCZOS; both methods spell the
dtypes out so that they do not depend on NumPy's promotion rules.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facefeat.face.detect import check_rgb

#: Bump when the aligned pixels of either method change (part of the cache key).
ALIGN_VERSION = "ffhq-1"

METHODS = ("fast", "reference")

# scipy.ndimage.gaussian_filter's default ``truncate``: the kernel radius is int(4 * sigma + 0.5).
_TRUNCATE = 4.0


# -- geometry ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FFHQGeometry:
    """The oriented crop square of the FFHQ recipe, in original-image pixels.

    Attributes
    ----------
    eye_left, eye_right : ndarray (2,)
        Means of landmarks 36-41 and 42-47 (the subject's right and left eye, image left/right).
    mouth_avg : ndarray (2,)
        Midpoint of the mouth corners (landmarks 48 and 54).
    center : ndarray (2,)
        Centre of the square, ``eye_avg + 0.1 * eye_to_mouth``.
    x, y : ndarray (2,)
        Half-axes of the square (``y`` is ``x`` turned by +90 degrees).
    quad : ndarray (4, 2)
        Corners ``c-x-y, c-x+y, c+x+y, c+x-y`` (top-left, bottom-left, bottom-right, top-right
        of the aligned image).
    qsize : float
        Side of the square, ``2 * |x|``.
    """

    eye_left: np.ndarray
    eye_right: np.ndarray
    mouth_avg: np.ndarray
    center: np.ndarray
    x: np.ndarray
    y: np.ndarray
    quad: np.ndarray
    qsize: float

    def as_dict(self) -> dict[str, Any]:
        """Plain-list version (JSON-ready)."""
        return {k: (v.tolist() if isinstance(v, np.ndarray) else float(v)) for k, v in self.__dict__.items()}


def _landmarks(landmarks) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"landmarks: expected 68 [x, y] points (iBUG 300-W order), got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("landmarks contain NaN or infinite values")
    return lm


def ffhq_geometry(landmarks) -> FFHQGeometry:
    """The FFHQ crop square for 68 landmarks (``rotate_level=True``, no random shift).

    The arithmetic follows the official script operation by operation (NumPy float64,
    ``np.hypot``), so the quad matches it to the last bit.

    Parameters
    ----------
    landmarks : array-like of shape (68, 2)
        iBUG 300-W order, ``[x, y]`` in original-image pixels.
    """
    lm = _landmarks(landmarks)
    eye_left = np.mean(lm[36:42], axis=0)
    eye_right = np.mean(lm[42:48], axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # x: the eye line, tilted by the eye-to-mouth direction turned by -90 degrees.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    if not np.hypot(*x) > 0:
        raise ValueError("landmarks span a degenerate face (eyes and mouth coincide)")
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    qsize = float(np.hypot(*x) * 2)
    if not qsize >= 2.0:
        raise ValueError(f"landmarks span a degenerate face (crop side {qsize:.3g} px)")
    return FFHQGeometry(eye_left, eye_right, mouth_avg, c, x, y, quad, qsize)


# -- plan: the integer geometry of shrink / crop / pad, shared by both methods ----------------


@dataclass(frozen=True)
class _Plan:
    shrink: int
    shrink_size: tuple[int, int] | None  # (width, height) after shrinking, when shrink > 1
    crop: tuple[int, int, int, int] | None  # box in the (shrunk) image
    pad: tuple[int, int, int, int] | None  # (left, top, right, bottom)
    blur: float | None
    qsize: float  # after shrinking
    transform_data: tuple[float, ...]  # the 8 QUAD numbers handed to PIL


def _plan(geom: FFHQGeometry, width: int, height: int, output_size: int, enable_padding: bool) -> _Plan:
    quad = geom.quad.copy()
    qsize = np.float64(geom.qsize)

    shrink = int(np.floor(qsize / output_size * 0.5))
    shrink_size = None
    size = (width, height)
    if shrink > 1:
        shrink_size = (int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink)))
        quad /= shrink
        qsize /= shrink
        size = shrink_size

    border = max(int(np.rint(qsize * 0.1)), 3)
    crop = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    crop = (max(crop[0] - border, 0), max(crop[1] - border, 0),
            min(crop[2] + border, size[0]), min(crop[3] + border, size[1]))
    if crop[2] <= crop[0] or crop[3] <= crop[1]:
        raise ValueError(f"the face square lies outside the {width}x{height} image; check the landmarks")
    if crop[2] - crop[0] < size[0] or crop[3] - crop[1] < size[1]:
        quad -= crop[0:2]
        size = (crop[2] - crop[0], crop[3] - crop[1])
    else:
        crop = None

    pad = (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
           int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))
    pad = (max(-pad[0] + border, 0), max(-pad[1] + border, 0),
           max(pad[2] - size[0] + border, 0), max(pad[3] - size[1] + border, 0))
    blur = None
    if enable_padding and max(pad) > border - 4:
        pad = tuple(int(v) for v in np.maximum(pad, int(np.rint(qsize * 0.3))))
        blur = float(qsize * 0.02)
        quad += pad[:2]
    else:
        pad = None
    data = tuple(float(v) for v in (quad + 0.5).flatten())
    return _Plan(shrink, shrink_size, crop, pad, blur, float(qsize), data)


# -- result --------------------------------------------------------------------------------


@dataclass
class AlignResult:
    """An aligned face and how it was made.

    Attributes
    ----------
    image : ndarray of shape (output_size, output_size, 3), uint8
    quad : ndarray of shape (4, 2)
        The crop square in original-image pixels (see :class:`FFHQGeometry`).
    geometry : FFHQGeometry
    output_size, transform_size : int
    shrink : int
        Shrink factor applied first (``> 1`` only for faces much larger than the output).
    crop : tuple of int or None
        Crop box ``(left, top, right, bottom)`` in the (shrunk) image, or ``None``.
    pad : tuple of int or None
        Reflect padding ``(left, top, right, bottom)``, or ``None``.
    blur_sigma : float or None
        Sigma of the Gaussian blur of the padding.
    transform_data : tuple of float
        The 8 numbers handed to PIL's QUAD transform (padded-image coordinates + 0.5).
    method : str
    workers : int
    """

    image: np.ndarray
    quad: np.ndarray
    geometry: FFHQGeometry
    output_size: int
    transform_size: int
    shrink: int
    crop: tuple[int, int, int, int] | None
    pad: tuple[int, int, int, int] | None
    blur_sigma: float | None
    transform_data: tuple[float, ...]
    method: str
    workers: int = 1
    source_size: tuple[int, int] = field(default=(0, 0))

    @property
    def ops(self) -> list[tuple[str, dict[str, Any]]]:
        """The image operations in order, in the vocabulary of the fixture's ``faces.json``."""
        out: list[tuple[str, dict[str, Any]]] = []
        if self.shrink > 1:
            w, h = self.source_size
            out.append(("resize", {"size": [int(np.rint(float(w) / self.shrink)), int(np.rint(float(h) / self.shrink))],
                                   "resample": "LANCZOS"}))
        if self.crop is not None:
            out.append(("crop", {"box": list(self.crop)}))
        if self.pad is not None:
            left, top, right, bottom = self.pad
            out.append(("pad", {"pad_width": [[top, bottom], [left, right], [0, 0]], "mode": "reflect"}))
            out.append(("gaussian_filter", {"sigma": [self.blur_sigma, self.blur_sigma, 0.0]}))
        out.append(("transform", {"size": [self.transform_size] * 2, "method": "QUAD",
                                  "data": list(self.transform_data), "resample": "BILINEAR"}))
        if self.output_size < self.transform_size:
            out.append(("resize", {"size": [self.output_size] * 2, "resample": "LANCZOS"}))
        return out

    def diagnostics(self) -> dict[str, Any]:
        """JSON-ready summary (for ``diag__*`` columns and logs)."""
        return {"quad": self.quad.tolist(), "qsize": self.geometry.qsize, "shrink": self.shrink,
                "crop": list(self.crop) if self.crop else None, "pad": list(self.pad) if self.pad else None,
                "blur_sigma": self.blur_sigma, "output_size": self.output_size,
                "transform_size": self.transform_size, "method": self.method}


# -- public entry point --------------------------------------------------------------------


def default_workers() -> int:
    """Threads used by the fast path when ``workers=None``: the usable CPUs, at most 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(4, n))


def align_face(image: np.ndarray, landmarks, *, output_size: int = 1024, transform_size: int | None = None,
               enable_padding: bool = True, method: str = "fast", workers: int | None = None) -> AlignResult:
    """Align a face the FFHQ way.

    Parameters
    ----------
    image : ndarray of shape (H, W, 3), uint8
        RGB pixels of the whole photo (decoded as PIL does, ``Image.open(p).convert("RGB")``).
    landmarks : array-like of shape (68, 2)
        dlib 68-point landmarks in ``image`` pixels.
    output_size : int
        Side of the aligned image (FFHQ: 1024; 256 and 512 are common).
    transform_size : int, optional
        Side of the intermediate QUAD warp, then LANCZOS-downscaled to ``output_size``. Default
        ``4 * output_size`` (FFHQ: 4096 for 1024). Must be ``>= output_size``.
    enable_padding : bool
        Reflect-pad (blurred, faded to the median colour) where the square leaves the image;
        ``False`` fills it with black, as the official ``--no-padding``.
    method : {"fast", "reference"}
        ``"fast"``: same pixels, less work (see the module docstring); ``"reference"``: the
        official float pipeline, for tests and benchmarks.
    workers : int, optional
        Threads for the fast path's warp/resize (``None``: :func:`default_workers`). Pass 1 when
        images are already processed in parallel. Ignored by the reference.

    Returns
    -------
    AlignResult

    Raises
    ------
    ValueError
        Not an RGB uint8 image, landmarks not (68, 2) or degenerate, face square outside the
        image, bad sizes or method.

    Examples
    --------
    >>> res = align_face(rgb, points, output_size=256)      # doctest: +SKIP
    >>> res.image.shape                                      # doctest: +SKIP
    (256, 256, 3)
    """
    if method not in METHODS:
        raise ValueError(f"align method {method!r} is unknown; use one of {', '.join(METHODS)}")
    output_size = int(output_size)
    transform_size = 4 * output_size if transform_size is None else int(transform_size)
    if output_size < 1 or transform_size < output_size:
        raise ValueError(f"need 1 <= output_size <= transform_size, got output_size={output_size}, "
                         f"transform_size={transform_size}")
    image = check_rgb(image)
    geom = ffhq_geometry(landmarks)
    height, width = image.shape[:2]
    plan = _plan(geom, width, height, output_size, bool(enable_padding))
    if method == "reference":
        out = _run_reference(image, plan, output_size, transform_size)
        nworkers = 1
    else:
        nworkers = default_workers() if workers is None else max(1, int(workers))
        out = _run_fast(image, plan, output_size, transform_size, nworkers)
    return AlignResult(image=out, quad=geom.quad.copy(), geometry=geom, output_size=output_size,
                       transform_size=transform_size, shrink=plan.shrink, crop=plan.crop, pad=plan.pad,
                       blur_sigma=plan.blur, transform_data=plan.transform_data, method=method,
                       workers=nworkers, source_size=(width, height))


# -- reference: the official float pipeline --------------------------------------------------


def _run_reference(image: np.ndarray, plan: _Plan, output_size: int, transform_size: int) -> np.ndarray:
    import PIL.Image
    import scipy.ndimage

    img = PIL.Image.fromarray(image)
    if plan.shrink_size is not None:
        img = img.resize(plan.shrink_size, PIL.Image.Resampling.LANCZOS)
    if plan.crop is not None:
        img = img.crop(plan.crop)
    if plan.pad is not None:
        left, top, right, bottom = plan.pad
        arr = np.pad(np.float32(img), ((top, bottom), (left, right), (0, 0)), "reflect")
        h, w, _ = arr.shape
        y, x, _ = np.ogrid[:h, :w, :1]
        # float32 coordinates divided in float64 (what NumPy >= 2 does with the int64 pad widths).
        fx, fx2 = np.float32(x).astype(np.float64), np.float32(w - 1 - x).astype(np.float64)
        fy, fy2 = np.float32(y).astype(np.float64), np.float32(h - 1 - y).astype(np.float64)
        mask = np.maximum(1.0 - np.minimum(fx / left, fx2 / right), 1.0 - np.minimum(fy / top, fy2 / bottom))
        blur = plan.blur
        arr += (scipy.ndimage.gaussian_filter(arr, [blur, blur, 0]) - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr += (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = PIL.Image.fromarray(np.uint8(np.clip(np.rint(arr), 0, 255)))
    img = img.transform((transform_size, transform_size), PIL.Image.Transform.QUAD, plan.transform_data,
                        PIL.Image.Resampling.BILINEAR)
    if output_size < transform_size:
        img = img.resize((output_size, output_size), PIL.Image.Resampling.LANCZOS)
    return np.array(img)  # a writeable copy (np.asarray of a PIL image is read-only)


# -- fast path ------------------------------------------------------------------------------


def _run_fast(image: np.ndarray, plan: _Plan, output_size: int, transform_size: int, workers: int) -> np.ndarray:
    import PIL.Image

    pool = ThreadPoolExecutor(max_workers=workers) if workers > 1 else None
    try:
        img = image
        if plan.shrink_size is not None:
            img = np.asarray(PIL.Image.fromarray(img).resize(plan.shrink_size, PIL.Image.Resampling.LANCZOS))
        if plan.crop is not None:
            left, top, right, bottom = plan.crop
            img = img[top:bottom, left:right]  # a view; PIL's crop copies the same pixels
        if plan.pad is not None:
            img = _pad_and_blend(img, plan.pad, plan.blur, pool)
        src = PIL.Image.fromarray(np.ascontiguousarray(img))
        return _warp(src, plan.transform_data, transform_size, output_size, pool, workers)
    finally:
        if pool is not None:
            pool.shutdown()


def _map(pool: ThreadPoolExecutor | None, fn, items) -> list:
    """``[fn(i) for i in items]``, on the pool's threads when there is one (PIL and SciPy
    release the GIL in the calls that matter here)."""
    return list(pool.map(fn, items)) if pool is not None else [fn(i) for i in items]


def _edge_ramp(n: int, before: int, after: int) -> np.ndarray:
    """The official blend mask along one axis: ``1 - min(i / before, (n-1-i) / after)``, float64.

    The 2-D mask is the elementwise maximum of the row and column ramps, so it need never be
    built whole; coordinates are rounded through float32 as in the official code.
    """
    i = np.arange(n)
    a = np.float32(i).astype(np.float64) / before
    b = np.float32(n - 1 - i).astype(np.float64) / after
    return 1.0 - np.minimum(a, b)


def _zero_run(weights: np.ndarray) -> tuple[int, int] | None:
    """``(start, stop)`` of the single run of zero weights, or ``None`` if there is none."""
    zero = np.flatnonzero(weights == 0.0)
    if zero.size == 0:
        return None
    start, stop = int(zero[0]), int(zero[-1]) + 1
    if stop - start != zero.size:  # the ramp is V-shaped, so this cannot happen; be safe anyway
        return None
    return start, stop


def _pad_and_blend(crop: np.ndarray, pad: tuple[int, int, int, int], blur: float,
                   pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """Reflect padding with the official blur and median fade, touching only the edge band.

    Where ``clip(3 * mask + 1, 0, 1)`` is 0 the official update adds exactly 0 to the pixel, so
    the interior keeps its uint8 values; only the band along the edges is computed in float.
    """
    import scipy.ndimage

    left, top, right, bottom = pad
    padded = np.pad(crop, ((top, bottom), (left, right), (0, 0)), "reflect")  # uint8
    h, w = padded.shape[:2]
    mx, my = _edge_ramp(w, left, right), _edge_ramp(h, top, bottom)
    blur_x, blur_y = np.clip(mx * 3.0 + 1.0, 0.0, 1.0), np.clip(my * 3.0 + 1.0, 0.0, 1.0)
    fade_x, fade_y = np.clip(mx, 0.0, 1.0), np.clip(my, 0.0, 1.0)

    # Interior = rows x cols where both blur weights are 0; the band is the rest.
    rows, cols = _zero_run(blur_y), _zero_run(blur_x)
    if rows is None or cols is None:
        regions = [(0, h, 0, w)]
        interior = None
    else:
        (ya, yb), (xa, xb) = rows, cols
        regions = [r for r in ((0, ya, 0, w), (yb, h, 0, w), (ya, yb, 0, xa), (ya, yb, xb, w))
                   if r[1] > r[0] and r[3] > r[2]]
        interior = padded[ya:yb, xa:xb]

    # Gaussian blur of each band region, computed on a block with a margin wider than the
    # kernel radius: a separable filter's value at a pixel only reads pixels within the radius,
    # so away from the block's cut edges the values are bit-identical to filtering the whole
    # image (at the image's own edges the block uses the same 'reflect' boundary).
    margin = int(_TRUNCATE * blur + 0.5) + 1
    if pool is not None and len(regions) == 1 and h > 4 * margin:
        regions = [(h // 2 * i, h if i else h // 2, 0, w) for i in range(2)]  # one block per thread

    def blurred(region: tuple[int, int, int, int]) -> np.ndarray:
        r0, r1, c0, c1 = region
        b0, b1 = max(0, r0 - margin), min(h, r1 + margin)
        d0, d1 = max(0, c0 - margin), min(w, c1 + margin)
        block = padded[b0:b1, d0:d1].astype(np.float32)
        g = scipy.ndimage.gaussian_filter(block, [blur, blur, 0])[r0 - b0:r1 - b0, c0 - d0:c1 - d0]
        v = block[r0 - b0:r1 - b0, c0 - d0:c1 - d0]
        weight = np.maximum(blur_x[None, c0:c1], blur_y[r0:r1, None])[:, :, None]
        # img += (blurred - img) * weight: float32 difference, float64 product and sum, float32 store
        return (v.astype(np.float64) + (g - v) * weight).astype(np.float32)

    blended = _map(pool, blurred, regions)
    median = _median_of_union(interior, blended)
    for (r0, r1, c0, c1), v in zip(regions, blended):
        weight = np.maximum(fade_x[None, c0:c1], fade_y[r0:r1, None])[:, :, None]
        v = (v.astype(np.float64) + (median - v) * weight).astype(np.float32)
        padded[r0:r1, c0:c1] = np.clip(np.rint(v), 0, 255).astype(np.uint8)
    return padded


def _median_of_union(interior: np.ndarray | None, band: list[np.ndarray]) -> np.ndarray:
    """``np.median(img, axis=(0, 1))`` of the whole blurred image, float32, computed exactly.

    The interior holds integers (uint8), so it is counted by value; the band's float values are
    bucketed by their integer part, and only the bucket holding the middle rank is sorted.
    """
    values = [b.reshape(-1, 3) for b in band]
    allband = np.concatenate(values) if values else np.empty((0, 3), np.float32)
    n_int = 0 if interior is None else interior.shape[0] * interior.shape[1]
    n = n_int + allband.shape[0]
    ranks = [n // 2] if n % 2 else [n // 2 - 1, n // 2]
    out = np.empty(3, dtype=np.float32)
    for c in range(3):
        vals = allband[:, c]
        counts_int = (np.bincount(interior[:, :, c].ravel(), minlength=256) if interior is not None
                      else np.zeros(256, np.int64))
        bucket = np.clip(np.floor(vals), 0, 255).astype(np.intp)
        cum = np.cumsum(counts_int + np.bincount(bucket, minlength=256))

        def kth(k: int) -> np.float32:
            b = int(np.searchsorted(cum, k, side="right"))
            offset = k - (int(cum[b - 1]) if b else 0)
            in_bucket = np.sort(vals[bucket == b])
            below = int(np.searchsorted(in_bucket, np.float32(b), side="left"))  # band values < b
            if offset < below:
                return in_bucket[offset]
            offset -= below
            if offset < counts_int[b]:
                return np.float32(b)
            return in_bucket[below + offset - int(counts_int[b])]

        picks = [kth(k) for k in ranks]
        # np.median averages the two middle values in float32: (a + b) / 2.
        out[c] = picks[0] if len(picks) == 1 else np.float32(np.float32(picks[0] + picks[1]) / np.float32(2))
    return out


def _quad_coefficients(data: tuple[float, ...], w: int, h: int) -> tuple[float, ...]:
    """PIL's QUAD coefficients for an output of ``w x h`` (as ``Image.__transformer`` computes them)."""
    x0, y0 = data[0], data[1]
    sw, se, ne = data[2:4], data[4:6], data[6:8]
    a_s, a_t = 1.0 / w, 1.0 / h
    return (x0, (ne[0] - x0) * a_s, (sw[0] - x0) * a_t, (se[0] - sw[0] - ne[0] + x0) * a_s * a_t,
            y0, (ne[1] - y0) * a_s, (sw[1] - y0) * a_t, (se[1] - sw[1] - ne[1] + y0) * a_s * a_t)


def _strip_quad(a: tuple[float, ...], size: int, r0: int, r1: int) -> tuple[float, ...]:
    """QUAD corners (NW, SW, SE, NE) of output rows ``[r0, r1)`` under the full map ``a``."""

    def at(u: float, v: float) -> tuple[float, float]:
        return (a[0] + a[1] * u + a[2] * v + a[3] * u * v, a[4] + a[5] * u + a[6] * v + a[7] * u * v)

    return (*at(0, r0), *at(0, r1), *at(size, r1), *at(size, r0))


def _warp(src, data: tuple[float, ...], transform_size: int, output_size: int,
          pool: ThreadPoolExecutor | None, workers: int) -> np.ndarray:
    """PIL QUAD warp (BILINEAR) to ``transform_size``, then LANCZOS to ``output_size``."""
    import PIL.Image

    quad, bilinear, lanczos = PIL.Image.Transform.QUAD, PIL.Image.Resampling.BILINEAR, PIL.Image.Resampling.LANCZOS
    ts, size = transform_size, output_size
    if pool is None or ts < 64:
        img = src.transform((ts, ts), quad, data, bilinear)
        if size < ts:
            img = img.resize((size, size), lanczos)
        return np.array(img)  # writeable

    a = _quad_coefficients(data, ts, ts)
    src.load()
    fused = size < ts and ts % size == 0
    if fused:
        # Each strip warps the rows its LANCZOS support needs (+2) and resizes with a box in
        # its own coordinates: an integer scale keeps every filter centre and weight identical.
        scale = ts // size
        support = 3.0 * scale
        bounds = np.linspace(0, size, workers + 1).round().astype(int)
        out = np.empty((size, size, 3), np.uint8)

        def job(i: int) -> None:
            o0, o1 = int(bounds[i]), int(bounds[i + 1])
            if o1 <= o0:
                return
            t0 = max(0, int((o0 + 0.5) * scale - support + 0.5) - 2)
            t1 = min(ts, int((o1 - 0.5) * scale + support + 0.5) + 2)
            strip = src.transform((ts, t1 - t0), quad, _strip_quad(a, ts, t0, t1), bilinear)
            strip = strip.resize((size, o1 - o0), lanczos, box=(0, o0 * scale - t0, ts, o1 * scale - t0))
            out[o0:o1] = np.asarray(strip)
    else:
        bounds = np.linspace(0, ts, workers + 1).round().astype(int)
        out = np.empty((ts, ts, 3), np.uint8)

        def job(i: int) -> None:
            t0, t1 = int(bounds[i]), int(bounds[i + 1])
            if t1 > t0:
                out[t0:t1] = np.asarray(src.transform((ts, t1 - t0), quad, _strip_quad(a, ts, t0, t1), bilinear))

    _map(pool, job, range(workers))
    if not fused and size < ts:
        out = np.array(PIL.Image.fromarray(out).resize((size, size), lanczos))
    return out
