"""Content-addressed cache of aligned face crops (lossless PNG files).

A crop is stored under the sha256 of everything its pixels depend on (:func:`cache_key`):
the image content, the sizes, the detector and landmark settings, the landmark model file,
the alignment version and the versions of the libraries that compute the pixels. A changed
input therefore never hits a stale crop; it simply misses.

Writes are atomic (temporary file in the same folder, then ``os.replace``), so a killed run
leaves either the old state or the complete file, never a truncated PNG; concurrent writers of
the same key write the same bytes and the last rename wins.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from facefeat.io.atomic import atomic_output
from facefeat.face.align import ALIGN_VERSION
from facefeat.face.dlib_models import DLIB_MODEL_SHA256
from facefeat.io.hashing import sha256_bytes

log = logging.getLogger(__name__)


def _library_versions() -> dict[str, str]:
    # Pillow (QUAD warp, LANCZOS), SciPy (Gaussian blur) and NumPy (blend arithmetic) decide the
    # last grey level of the crops: a different version may shift a pixel by 1.
    import PIL
    import scipy

    return {"numpy": np.__version__, "pillow": PIL.__version__, "scipy": scipy.__version__}


def _canonical(value: Any) -> Any:
    """JSON-ready form with numpy scalars/arrays turned into plain Python values."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def cache_key(image_id: str, output_size: int, transform_size: int, *, settings: Mapping[str, Any] | None = None,
              landmarks_model_sha256: str | None = None, enable_padding: bool | None = None,
              method: str = "fast") -> str:
    """sha256 (hex) naming one aligned crop.

    Parameters
    ----------
    image_id : str
        sha256 of the photo's bytes.
    output_size, transform_size : int
        Alignment sizes.
    settings : mapping, optional
        Everything else upstream that decides the crop: detector kind and upsampling, face
        selection policy, padding, and ideally the landmarks themselves. Must be
        JSON-serialisable (numpy values are converted); key order does not matter.
    landmarks_model_sha256 : str, optional
        sha256 of the landmark model; default the bundled 68-point model's.
    enable_padding : bool, optional
        Padding flag, when not already part of ``settings``.
    method : str
        Alignment method. ``"fast"`` and ``"reference"`` give the same pixels, so both map to
        the same key; any other value is hashed as given.

    Returns
    -------
    str
        64 hex characters.
    """
    payload = {
        "kind": "facefeat.aligned_crop",
        "align_version": ALIGN_VERSION,
        "image_id": str(image_id),
        "output_size": int(output_size),
        "transform_size": int(transform_size),
        "landmarks_model_sha256": landmarks_model_sha256 or DLIB_MODEL_SHA256["shape_predictor_68"],
        "enable_padding": enable_padding,
        "method": "ffhq" if method in ("fast", "reference") else method,
        "settings": _canonical(dict(settings or {})),
        "libraries": _library_versions(),
    }
    try:
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"cache_key: settings must be JSON-serialisable finite values ({exc})") from exc
    return sha256_bytes(text.encode("utf-8"))


class AlignedCache:
    """A folder of aligned crops, ``<root>/<key[:2]>/<key>.png``.

    Parameters
    ----------
    root : path
        Cache folder; created on the first :meth:`put`.

    Examples
    --------
    >>> cache = AlignedCache("~/.cache/facefeat/aligned")          # doctest: +SKIP
    >>> key = cache_key(image_id, 256, 1024, settings={...})        # doctest: +SKIP
    >>> crop = cache.get(key)                                        # doctest: +SKIP
    >>> if crop is None:                                             # doctest: +SKIP
    ...     crop = align_face(rgb, points, output_size=256).image
    ...     cache.put(key, crop)
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        """File that holds ``key`` (whether or not it exists)."""
        if len(key) < 3 or not all(ch in "0123456789abcdef" for ch in key):
            raise ValueError(f"cache key must be lowercase hex (from cache_key), got {key!r}")
        return self.root / key[:2] / f"{key}.png"

    def __contains__(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> np.ndarray | None:
        """The cached crop as ``uint8 (S, S, 3)``, or ``None`` on a miss.

        An unreadable file (e.g. left by a disk error) counts as a miss and is logged.
        """
        import PIL.Image

        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with PIL.Image.open(path) as im:
                if im.mode != "RGB":
                    raise ValueError(f"mode {im.mode}, expected RGB")
                return np.asarray(im.convert("RGB")).copy()
        except (OSError, ValueError) as exc:
            log.warning("aligned-crop cache: ignoring unreadable %s (%s)", path, exc)
            return None

    def put(self, key: str, image: np.ndarray) -> Path:
        """Store a crop atomically as a lossless PNG; returns its path."""
        import PIL.Image

        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"aligned crop must be uint8 (S, S, 3), got {image.dtype} {image.shape}")
        path = self.path(key)
        with atomic_output(path, fsync=True) as tmp:
            # compress_level 1: PNG stays lossless; higher levels cost time for a few % of size.
            PIL.Image.fromarray(np.ascontiguousarray(image)).save(tmp, format="PNG", compress_level=1)
        return path
