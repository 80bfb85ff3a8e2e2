"""Decoding: every format and mode to upright RGB, and per-image statuses for bad files."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facefeat.io.images import ImageDecodeError, read_and_decode
from tests.io.bad_inputs import FACE_JPEG, make_bad_inputs


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    return folder, make_bad_inputs(folder)


def _decode_status(path):
    try:
        read_and_decode(path)
        return "ok"
    except ImageDecodeError as exc:
        return exc.status


def test_decode_statuses(bad):
    folder, expected = bad
    for name, status in expected.items():
        want = "ok" if status in ("ok", "no_face") else status
        assert _decode_status(folder / name) == want, name


@pytest.mark.parametrize("name,fragment", [
    ("zero_bytes.jpg", "empty"),
    ("truncated.jpg", "truncated"),
    ("text_named.jpg", "not an image"),
    ("bomb.png", "exceeds the (pixel )?limit"),
])
def test_decode_error_messages(bad, name, fragment):
    folder, _ = bad
    with pytest.raises(ImageDecodeError, match=fragment):
        read_and_decode(folder / name)


def test_format_sniffed_from_content(bad):
    folder, _ = bad
    decoded = read_and_decode(folder / "jpeg_named.png")
    assert decoded.format == "JPEG"


def test_modes_become_rgb_uint8(bad):
    folder, _ = bad
    ref = np.asarray(Image.open(FACE_JPEG).convert("RGB"), dtype=np.int16)
    for name in ("cmyk.jpg", "gray16.png", "rgba.png"):
        d = read_and_decode(folder / name)
        assert d.rgb.dtype == np.uint8 and d.rgb.ndim == 3 and d.rgb.shape[2] == 3, name
        assert d.rgb.shape[:2] == ref.shape[:2], name
    gray = read_and_decode(folder / "gray16.png").rgb.astype(np.int16)
    luma = np.asarray(Image.open(FACE_JPEG).convert("L"), dtype=np.int16)
    assert np.abs(gray[..., 0] - luma).max() <= 1  # 16-bit scaled, not clipped to white
    assert read_and_decode(folder / "rgba.png").alpha_composited
    cmyk = read_and_decode(folder / "cmyk.jpg").rgb.astype(np.int16)
    assert np.abs(cmyk - ref).mean() < 6  # colours survive the CMYK round trip


def test_exif_orientation_applied(bad):
    folder, _ = bad
    d = read_and_decode(folder / "exif_rotated.jpg")
    ref = np.asarray(Image.open(FACE_JPEG).convert("RGB"), dtype=np.int16)
    assert d.exif_orientation == 6
    assert d.rgb.shape == ref.shape  # upright again
    assert np.abs(d.rgb.astype(np.int16) - ref).mean() < 4


# The peak memory of the decoder, measured where nothing else has raised it: ru_maxrss in the pytest
# process is a high-water mark that earlier tests may have pushed above anything the decoder would
# allocate (growth would read 0 whatever it did), and a child process inherits it (Linux keeps it across
# fork and exec: a child of an 900 MiB pytest starts at 900 MiB). So the decoding runs in a fresh process
# and reads its own peak, VmHWM (reset by exec); where there is no /proc, ru_maxrss. The same probe must
# see a known allocation, so the test can fail.
_BOMB_MEMORY = """
import json, resource, sys
import numpy as np
from facefeat.io.images import ImageDecodeError, decode_image
from tests.io.bad_inputs import png_bomb

def peak_mib():
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) / 2**10
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)

bomb = png_bomb(100_000, 100_000)  # 10 G pixels claimed
before = peak_mib()
try:
    decode_image(bomb)
    status = "decoded"
except ImageDecodeError as exc:
    status = exc.status
bomb = peak_mib() - before
before = peak_mib()
block = np.ones(200 * 2**20, np.uint8)  # 200 MiB, touched
control = peak_mib() - before
print(json.dumps({"status": status, "bomb_mib": bomb, "control_mib": control, "start_mib": before}))
"""


def test_decompression_bomb_keeps_memory_low():
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run([sys.executable, "-c", _BOMB_MEMORY], capture_output=True, text=True, cwd=root, check=True)
    got = json.loads(res.stdout)
    assert got["status"] == "too_large"
    assert got["control_mib"] > 150, got  # the probe sees a real allocation in this process
    assert got["bomb_mib"] < 50, got


def test_palette_and_16bit_rgb(tmp_path):
    pal = Image.new("P", (16, 16))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((3, 3), 1)
    pal.save(tmp_path / "p.png")
    rgb = read_and_decode(tmp_path / "p.png").rgb
    assert tuple(rgb[3, 3]) == (255, 0, 0) and tuple(rgb[0, 0]) == (0, 0, 0)
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "a.tif")
    Image.new("RGB", (10, 10), (1, 2, 3)).save(tmp_path / "a.webp", lossless=True)
    for name in ("a.tif", "a.webp"):
        assert tuple(read_and_decode(tmp_path / name).rgb[5, 5]) == (1, 2, 3)
