"""Per-image preprocessing shared by every extractor of a run.

decode (EXIF orientation, mode -> RGB) -> detect face -> 68 landmarks -> FFHQ alignment
(cached by content). One :class:`Preprocessor` per process; models load on first use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.engine.extractor import Face
from facefeat.face.truncation import TRUNCATED_POLICIES, box_outside, landmarks_outside
from facefeat.io.images import DEFAULT_MAX_PIXELS, ImageDecodeError, ImageRecord, read_and_decode

log = logging.getLogger(__name__)

MULTIPLE_FACE_POLICIES = ("largest", "fail")

#: JSON Schema of the ``face`` and ``align`` sections of the run config.
FACE_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "detector": {"enum": ["hog", "cnn", "none"], "default": "hog",
                     "description": "dlib HOG (fast, CPU) or dlib CNN (mmod, more robust to pose); none: the "
                                    "photos are already aligned square crops (FFHQ layout, e.g. generator "
                                    "renders): no detection or landmarks, each crop is resized to the sizes "
                                    "needed (extractors that need landmarks are refused)"},
        "upsample": {"type": "integer", "minimum": 0, "maximum": 4, "default": 1,
                     "description": "times the image is upsampled before detection (finds smaller faces)"},
        "multiple_faces": {"enum": list(MULTIPLE_FACE_POLICIES), "default": "largest",
                           "description": "largest: use the largest face and record diag__n_faces; "
                                          "fail: status multiple_faces, no features"},
        "truncated": {"enum": list(TRUNCATED_POLICIES), "default": "flag",
                      "description": "faces cut by the image frame (diag__face_truncated > 0: some of the 68 "
                                     "landmarks fall outside the photo): flag keeps status ok with the share in "
                                     "diag__face_truncated; fail: status truncated, no features"},
        "max_pixels": {"type": "integer", "minimum": 1, "default": DEFAULT_MAX_PIXELS,
                       "description": "images with more pixels get status too_large without decoding"},
    },
}

ALIGN_CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "transform_size_factor": {"type": "integer", "minimum": 1, "maximum": 8, "default": 4,
                                  "description": "FFHQ transform_size = factor * output_size (FFHQ: 4096 for 1024)"},
        "enable_padding": {"type": "boolean", "default": True},
        "sizes": {"type": "array", "items": {"enum": [64, 128, 256, 512, 1024]}, "default": [],
                  "description": "also make aligned crops at these sizes (kept in the cache, e.g. to train a "
                                 "generator), besides those the extractors need"},
        "cache": {"type": "boolean", "default": True,
                  "description": "keep aligned crops in a content-addressed cache (cache_dir)"},
    },
}


@dataclass
class Preprocessed:
    """Outcome of preprocessing one record: a face, or a status and message, plus diagnostics."""

    record: ImageRecord
    status: str
    error: str | None
    face: Face | None
    diag: dict[str, Any] = field(default_factory=dict)


class Preprocessor:
    """Decode, detect, landmark and align one image at a time.

    Parameters
    ----------
    face : dict
        Validated ``face`` config (see :data:`FACE_CONFIG_SCHEMA`).
    align : dict
        Validated ``align`` config (see :data:`ALIGN_CONFIG_SCHEMA`).
    aligned_sizes : sequence of int
        Aligned crop sizes the extractors need.
    keep_original : bool
        Keep the upright RGB original on the :class:`Face` (an extractor asked for it).
    cache_dir : path, optional
        Content-addressed cache of aligned crops; ``None`` disables it.
    align_workers : int, optional
        Threads for the alignment warp (default: the usable CPUs, at most 4).
    """

    def __init__(self, face: dict, align: dict, *, aligned_sizes=(), keep_original: bool = False,
                 cache_dir: str | Path | None = None, align_workers: int | None = None) -> None:
        self.face_config = face
        self.align_config = align
        self.aligned_sizes = tuple(sorted(set(aligned_sizes)))
        self.keep_original = keep_original
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.align_workers = align_workers  # 1 inside worker processes: they already share the cores
        self._detector = None
        self._predictor = None
        self._cache = None

    # Models load lazily: a run whose every image fails to decode never loads dlib.
    @property
    def detector(self):
        if self._detector is None:
            from facefeat.face.detect import FaceDetector

            self._detector = FaceDetector(kind=self.face_config["detector"], upsample=self.face_config["upsample"])
        return self._detector

    @property
    def predictor(self):
        if self._predictor is None:
            from facefeat.face.landmarks import LandmarkPredictor

            self._predictor = LandmarkPredictor()
        return self._predictor

    @property
    def cache(self):
        if self._cache is None and self.cache_dir is not None:
            from facefeat.face.cache import AlignedCache

            self._cache = AlignedCache(self.cache_dir)
        return self._cache

    def settings(self) -> dict[str, Any]:
        """Everything the preprocessing output depends on (for provenance and cache keys)."""
        from facefeat.face.dlib_models import DLIB_MODEL_SHA256

        models = {} if self.face_config["detector"] == "none" else {
            "shape_predictor_68": DLIB_MODEL_SHA256["shape_predictor_68"]}
        if self.face_config["detector"] == "cnn":
            models["cnn_face_detector"] = DLIB_MODEL_SHA256["cnn_face_detector"]
        align = {k: v for k, v in self.align_config.items() if k != "cache"}  # caching changes no pixel
        return {"face": dict(self.face_config), "align": align,
                "aligned_sizes": list(self.aligned_sizes), "models_sha256": models,
                "decode": "Pillow; EXIF orientation applied; 16-bit scaled to 8-bit; alpha composited on white"}

    def process(self, record: ImageRecord) -> Preprocessed:
        """Preprocess one record; never raises for per-image problems."""
        if record.status != "ok":
            return Preprocessed(record, record.status, record.error, None)
        diag: dict[str, Any] = {"diag__duplicate_of": record.duplicate_of}
        try:
            decoded = read_and_decode(record.path, max_pixels=self.face_config["max_pixels"])
        except ImageDecodeError as exc:
            return Preprocessed(record, exc.status, str(exc), None, diag)
        rgb = decoded.rgb
        diag.update({
            "diag__image_width": rgb.shape[1], "diag__image_height": rgb.shape[0],
            "diag__image_format": decoded.format, "diag__exif_orientation": decoded.exif_orientation,
            "diag__alpha_composited": decoded.alpha_composited,
        })
        try:
            return self._face(record, rgb, diag)
        except Exception as exc:  # one bad image must not stop the run
            log.warning("preprocessing failed for %s: %s: %s", record.path, type(exc).__name__, exc)
            log.debug("traceback", exc_info=True)
            return Preprocessed(record, "error", f"preprocessing failed: {type(exc).__name__}: {exc}", None, diag)

    def _face(self, record: ImageRecord, rgb: np.ndarray, diag: dict[str, Any]) -> Preprocessed:
        if self.face_config["detector"] == "none":
            return self._prealigned(record, rgb, diag)
        detections = self.detector.detect(rgb)
        diag["diag__n_faces"] = len(detections)
        if not detections:
            return Preprocessed(record, "no_face", "no face found by the "
                                f"{self.face_config['detector']} detector (upsample {self.face_config['upsample']})", None, diag)
        if len(detections) > 1 and self.face_config["multiple_faces"] == "fail":
            return Preprocessed(record, "multiple_faces", f"{len(detections)} faces found; policy face.multiple_faces=fail "
                                "(use 'largest' to keep the largest face)", None, diag)
        det = max(detections, key=lambda d: ((d.box[2] - d.box[0] + 1) * (d.box[3] - d.box[1] + 1), -d.box[0], -d.box[1]))
        diag["diag__detector_score"] = float(det.score)
        diag["diag__face_box"] = [int(v) for v in det.box]
        points = self.predictor.predict(rgb, det.box)
        height, width = rgb.shape[:2]
        share = landmarks_outside(points, width=width, height=height)
        diag["diag__face_truncated"] = share
        diag["diag__face_truncated_box"] = box_outside(det.box, width=width, height=height)
        if share > 0 and self.face_config.get("truncated", "flag") == "fail":
            n = len(points)
            return Preprocessed(record, "truncated", f"face cut by the image frame: {round(share * n)} of {n} "
                                "landmarks outside the photo; policy face.truncated=fail (use 'flag' to keep it "
                                "with diag__face_truncated)", None, diag)
        face = Face(image_id=record.image_id, subject_id=record.subject_id, landmarks=points,
                    box=tuple(int(v) for v in det.box), original=rgb if self.keep_original else None)
        for size in self.aligned_sizes:
            face.aligned[size], quad = self._aligned(record, rgb, points, size)
            diag["diag__align_quad"] = [float(v) for v in np.asarray(quad, dtype=np.float64).ravel()]
        return Preprocessed(record, "ok", None, face, diag)

    def _prealigned(self, record: ImageRecord, rgb: np.ndarray, diag: dict[str, Any]) -> Preprocessed:
        """``face.detector: none``: the photo is an aligned square crop; resized, never detected."""
        from PIL import Image

        height, width = rgb.shape[:2]
        if height != width:
            return Preprocessed(record, "error", f"face.detector is 'none' (photos already aligned) but the image is "
                                f"{width}x{height}, not square; crop it or use a detector (hog, cnn)", None, diag)
        face = Face(image_id=record.image_id, subject_id=record.subject_id, landmarks=None,
                    box=(0, 0, width - 1, height - 1), original=rgb if self.keep_original else None)
        for size in self.aligned_sizes:
            face.aligned[size] = rgb if size == width else np.asarray(
                Image.fromarray(rgb).resize((size, size), Image.LANCZOS))
        return Preprocessed(record, "ok", None, face, diag)

    def _aligned(self, record: ImageRecord, rgb: np.ndarray, points: np.ndarray, size: int):
        from facefeat.face.align import align_face, ffhq_geometry

        transform_size = size * self.align_config["transform_size_factor"]
        key = None
        if self.cache is not None:
            from facefeat.face.cache import cache_key

            key = cache_key(image_id=record.image_id, output_size=size, transform_size=transform_size,
                            settings={"face": self.face_config, "padding": self.align_config["enable_padding"],
                                      "landmarks": points.tolist()})
            hit = self.cache.get(key)
            if hit is not None:
                return hit, ffhq_geometry(points).quad
        result = align_face(rgb, points, output_size=size, transform_size=transform_size,
                            enable_padding=self.align_config["enable_padding"], workers=self.align_workers)
        if key is not None:
            self.cache.put(key, result.image)
        return result.image, result.quad
