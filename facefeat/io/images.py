"""Image ingest: find the photos of a cohort, identify them by content, decode them safely.

Every input file becomes an :class:`ImageRecord` (``image_id`` = sha256 of the file bytes).
Decoding problems never raise out of :func:`decode_image` callers in the engine: they become
per-image statuses (``unreadable``, ``too_large``) with a message that says what is wrong.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from facefeat.errors import InputError
from facefeat.io.hashing import sha256_bytes

log = logging.getLogger(__name__)

#: Per-image statuses, in the order reports list them.
STATUSES = ("ok", "no_face", "multiple_faces", "truncated", "unreadable", "too_large", "error")

#: Formats accepted, as PIL names them (sniffed from content, never from the extension).
#: MPO is the multi-picture JPEG some cameras write; its first frame is the photo.
SUPPORTED_FORMATS = ("JPEG", "MPO", "PNG", "TIFF", "WEBP", "BMP")

#: File name suffixes picked up when a folder is scanned (content still decides the format).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".webp", ".bmp")

#: Default pixel limit per image (width * height); larger files get status ``too_large``
#: without being decoded, so a decompression bomb never reaches memory.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass
class ImageRecord:
    """One input photo.

    Attributes
    ----------
    path : Path
        Absolute path of the file.
    subject_id : str
        Subject the photo belongs to.
    image_id : str
        sha256 of the file bytes ("" when the file could not be read at all).
    status, error : str
        ``ok`` until a step fails; then the status and a message.
    duplicate_of : str or None
        Path of an earlier record with the same bytes and a different subject.
    """

    path: Path
    subject_id: str
    image_id: str = ""
    status: str = "ok"
    error: str = ""
    duplicate_of: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """Row key in feature tables: the same bytes under two subjects are two rows."""
        return (self.image_id, self.subject_id)


@dataclass
class DecodedImage:
    """An upright RGB image and what decoding did to get it."""

    rgb: np.ndarray  # uint8 (H, W, 3)
    format: str
    mode: str
    exif_orientation: int
    alpha_composited: bool


class ImageDecodeError(Exception):
    """A per-image decoding failure, turned into a status row by the engine."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def list_folder(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` by suffix, sorted for a reproducible order.

    Raises
    ------
    InputError
        The folder does not exist or holds no image file.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"{folder}: input folder does not exist; give a folder of photos or a manifest CSV/Parquet")
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; a manifest must end in .csv or .parquet")
    pattern = "**/*" if recursive else "*"
    files = sorted(
        p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
    if not files:
        raise InputError(f"{folder}: no image files found (looked for {', '.join(IMAGE_SUFFIXES)})")
    return files


def records_from_paths(paths: Iterable[Path], subject_ids: Iterable[str]) -> list[ImageRecord]:
    """Hash every file and build records; exact duplicates are flagged, not dropped here.

    Files that cannot be read at all (permissions, vanished) get status ``unreadable``.
    """
    records: list[ImageRecord] = []
    for path, subject in zip(paths, subject_ids):
        rec = ImageRecord(path=Path(path).absolute(), subject_id=str(subject))
        try:
            rec.image_id = sha256_bytes(rec.path.read_bytes())
        except OSError as exc:
            rec.status, rec.error = "unreadable", f"cannot read file: {exc.strerror or exc}"
            rec.image_id = sha256_bytes(f"unreadable:{rec.path}".encode())
        records.append(rec)
    return records


def split_duplicates(records: list[ImageRecord]) -> tuple[list[ImageRecord], list[dict]]:
    """Separate exact duplicates (same bytes, same subject) from the records to process.

    The same bytes under *different* subjects stay (both rows), marked with
    ``duplicate_of``; exact duplicates are returned as a report (path, duplicate_of) so that
    callers count and log them: nothing disappears uncounted.
    """
    first: dict[str, ImageRecord] = {}
    seen_keys: dict[tuple[str, str], ImageRecord] = {}
    keep: list[ImageRecord] = []
    dropped: list[dict] = []
    for rec in records:
        if rec.key in seen_keys:
            dropped.append({"path": str(rec.path), "subject_id": rec.subject_id, "duplicate_of": str(seen_keys[rec.key].path)})
            continue
        seen_keys[rec.key] = rec
        if rec.image_id in first and rec.status == "ok":
            rec.duplicate_of = str(first[rec.image_id].path)
            log.warning("%s has the same bytes as %s (subject %s vs %s)", rec.path, rec.duplicate_of,
                        rec.subject_id, first[rec.image_id].subject_id)
        first.setdefault(rec.image_id, rec)
        keep.append(rec)
    return keep, dropped


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode image bytes to an upright RGB ``uint8`` array.

    The format is sniffed from the content; EXIF orientation is applied; every mode (palette,
    grayscale 8/16-bit, RGBA, CMYK, ...) is converted to RGB: 16-bit samples are scaled to
    8 bits (not clipped), alpha is composited over white.

    Raises
    ------
    ImageDecodeError
        ``unreadable`` (empty, not an image, unsupported format, truncated or corrupt data)
        or ``too_large`` (more than ``max_pixels`` pixels; checked from the header before
        any pixel is decoded).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("unreadable", "file is empty (0 bytes)")
    with warnings.catch_warnings():
        # PIL warns, then raises, on huge images; we apply our own limit from the header.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError("too_large", f"image exceeds the pixel limit, refused from its header "
                                                f"without decoding ({exc})") from None
        except UnidentifiedImageError:
            head = data[:16]
            kind = "text" if all(32 <= b < 127 or b in (9, 10, 13) for b in head) else "unknown binary"
            raise ImageDecodeError(
                "unreadable",
                f"not an image: content ({kind}, starts {head[:8]!r}) is none of {', '.join(SUPPORTED_FORMATS)}",
            ) from None
        except Exception as exc:  # PIL raises many types on corrupt headers
            raise ImageDecodeError("unreadable", f"corrupt image header: {exc}") from None
        fmt = img.format or "?"
        if fmt not in SUPPORTED_FORMATS:
            raise ImageDecodeError("unreadable", f"unsupported image format {fmt}; supported: {', '.join(SUPPORTED_FORMATS)}")
        w, h = img.size
        if w * h > max_pixels:
            raise ImageDecodeError(
                "too_large",
                f"{w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} (config face.max_pixels); "
                f"not decoded",
            )
        try:
            img.load()
            orientation = int(img.getexif().get(0x0112, 1) or 1)
            img = ImageOps.exif_transpose(img) if orientation != 1 else img
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError("too_large", f"image exceeds the pixel limit ({exc})") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError("unreadable", f"corrupt or truncated {fmt} data: {exc}") from None
    mode = img.mode
    rgb, composited = _to_rgb(img)
    return DecodedImage(rgb=rgb, format=fmt, mode=mode, exif_orientation=orientation, alpha_composited=composited)


def _to_rgb(img) -> tuple[np.ndarray, bool]:
    """Convert any PIL mode to ``uint8 (H, W, 3)`` RGB; returns (array, alpha_composited)."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.asarray(img)
        if mode == "I" and arr.max(initial=0) > 65535:  # genuine 32-bit data: scale by range
            arr = arr.astype(np.float64) * (255.0 / arr.max())
        elif arr.dtype != np.uint8:
            arr = arr.astype(np.float64) / 257.0  # 16-bit -> 8-bit: 65535 maps to 255
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), False
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2), False
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in img.info)
    if has_alpha:
        from PIL import Image

        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB")), True
    return np.asarray(img.convert("RGB")), False


def read_and_decode(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Read a file and :func:`decode_image` it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageDecodeError("unreadable", f"cannot read file: {exc.strerror or exc}") from None
    return decode_image(data, max_pixels=max_pixels)
