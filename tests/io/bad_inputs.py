"""Builders of the bad inputs the engine must survive (each one file in a folder)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "faces"
FACE_JPEG = EXAMPLES / "Tom_Cruise_avp_2014_4.jpg"


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A valid PNG header claiming width x height pixels with a tiny (incomplete) IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    idat = zlib.compress(b"\x00" * (width + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def exif_rotated_jpeg(src: Path = FACE_JPEG) -> bytes:
    """The face photo stored rotated 90 degrees with EXIF orientation 6 (display: rotate back)."""
    img = Image.open(src).convert("RGB")
    stored = img.transpose(Image.Transpose.ROTATE_90)  # counter-clockwise; orientation 6 undoes it
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=98, exif=exif.tobytes())
    return buf.getvalue()


def make_bad_inputs(folder: Path) -> dict[str, str]:
    """Write every bad input into ``folder``; return file name -> expected status."""
    folder.mkdir(parents=True, exist_ok=True)
    face = Image.open(FACE_JPEG).convert("RGB")
    jpeg = FACE_JPEG.read_bytes()
    expected = {}

    def put(name: str, data: bytes, status: str) -> None:
        (folder / name).write_bytes(data)
        expected[name] = status

    put("zero_bytes.jpg", b"", "unreadable")
    put("truncated.jpg", jpeg[: len(jpeg) // 3], "unreadable")
    put("text_named.jpg", b"subject,age\nP001,63\n" * 20, "unreadable")
    put("jpeg_named.png", jpeg, "ok")
    buf = io.BytesIO()
    face.convert("CMYK").save(buf, "JPEG", quality=95)
    put("cmyk.jpg", buf.getvalue(), "ok")
    gray16 = (np.asarray(face.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    buf = io.BytesIO()
    Image.fromarray(gray16).save(buf, "PNG")  # uint16 -> mode I;16
    put("gray16.png", buf.getvalue(), "ok")
    rgba = face.convert("RGBA")
    buf = io.BytesIO()
    rgba.save(buf, "PNG")
    put("rgba.png", buf.getvalue(), "ok")
    put("exif_rotated.jpg", exif_rotated_jpeg(), "ok")
    put("bomb.png", png_bomb(), "too_large")
    buf = io.BytesIO()
    Image.new("RGB", (400, 300), (120, 130, 140)).save(buf, "PNG")
    put("no_face.png", buf.getvalue(), "no_face")
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 90, 90)).save(buf, "BMP")
    put("tiny_8x8.bmp", buf.getvalue(), "no_face")
    put("Ünïcödé näme with spaces.jpg", jpeg, "ok")  # same bytes as jpeg_named.png: a second subject
    # Two faces side by side: the default policy keeps the largest and records diag__n_faces.
    w, h = face.size
    two = Image.new("RGB", (2 * w, h), (0, 0, 0))
    two.paste(face, (0, 0))
    two.paste(face.resize((int(w * 0.8), int(h * 0.8))), (w, int(h * 0.1)))
    buf = io.BytesIO()
    two.save(buf, "JPEG", quality=95)
    put("two_faces.jpg", buf.getvalue(), "ok")
    return expected
