"""Perturbations: validation, determinism and what each one does to real pixels."""

import io

import numpy as np
import pytest
from PIL import Image

from facefeat.errors import ConfigError
from facefeat.io.images import read_and_decode
from facefeat.robustness.perturb import DEFAULT_PERTURBATIONS, Condition, perturb, resolve_perturbations
from tests.conftest import DATA

PHOTO = DATA / "ffhq_align" / "bald_guys_f00_256.png"


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_defaults_expand_to_named_conditions():
    names = [c.name for c in resolve_perturbations(None)]
    assert names == ["jpeg_q90", "jpeg_q70", "jpeg_q50", "downscale_0.5", "downscale_0.25", "brightness_0.8",
                     "brightness_1.2", "contrast_0.8", "contrast_1.2", "rotate_-5", "rotate_+5", "crop_0.05", "flip"]
    # laid over the defaults: unnamed families keep theirs, [] switches one off
    names = [c.name for c in resolve_perturbations({"jpeg": 30, "flip": [], "rotate": [2.5]})]
    assert names == ["jpeg_q30", "downscale_0.5", "downscale_0.25", "brightness_0.8", "brightness_1.2", "contrast_0.8",
                     "contrast_1.2", "rotate_+2.5", "crop_0.05"]
    off = {f: [] for f in DEFAULT_PERTURBATIONS}
    assert [c.name for c in resolve_perturbations({**off, "crop": [0.1]})] == ["crop_0.1"]


@pytest.mark.parametrize("spec, match", [
    ({"blur": [1]}, "unknown perturbation 'blur'; known: jpeg, downscale"),
    ({"jpeg": [0]}, "jpeg: strength 0 is out of range; allowed: integer quality 1..100"),
    ({"jpeg": [75.5]}, "integer quality"),
    ({"downscale": [1.0]}, "0 < f < 1"),
    ({"brightness": [1]}, "f != 1"),
    ({"rotate": [45]}, "-30..30"),
    ({"crop": [0.5]}, "0 < f <= 0.3"),
    ({"flip": ["yes"]}, "true"),
    ({"jpeg": [90, 90]}, "twice"),
    ([1, 2], "mapping"),
])
def test_bad_perturbations(spec, match):
    with pytest.raises(ConfigError, match=match):
        resolve_perturbations(spec)


@pytest.mark.parametrize("cond", resolve_perturbations(None), ids=lambda c: c.name)
def test_deterministic_and_effective(cond):
    rgb = read_and_decode(PHOTO).rgb
    a = perturb(rgb, cond, image_id="ab" * 32, seed=0)
    b = perturb(rgb, cond, image_id="ab" * 32, seed=0)
    assert a == b
    out = _decode(a)
    h, w, _ = rgb.shape
    if cond.family == "downscale":
        assert out.shape[:2] == (round(h * cond.strength), round(w * cond.strength))
    elif cond.family == "crop":
        assert out.shape[:2] == (round(h * 0.95), round(w * 0.95))
    else:
        assert out.shape == rgb.shape
        assert not np.array_equal(out, rgb)
    if cond.family == "flip":
        assert np.array_equal(out, rgb[:, ::-1])
    if cond.family == "brightness":
        assert (out.mean() > rgb.mean()) == (cond.strength > 1)
    if cond.family == "jpeg":
        assert a[:3] == b"\xff\xd8\xff"


def test_crop_offset_depends_on_photo_and_seed():
    rgb = read_and_decode(PHOTO).rgb
    cond = Condition("crop", 0.2)
    copies = {perturb(rgb, cond, image_id=i, seed=s) for i in ("00" * 32, "ff" * 32) for s in (0, 1)}
    assert len(copies) > 1


def test_every_default_family_documented():
    import facefeat.robustness.perturb as mod

    for family in DEFAULT_PERTURBATIONS:
        assert f"\n{family}" in mod.__doc__


@pytest.mark.parametrize("cond", [Condition("rotate", 10), Condition("rotate", -7), Condition("flip", True),
                                  Condition("downscale", 0.5), Condition("crop", 0.2), Condition("jpeg", 50)],
                         ids=lambda c: c.name)
def test_to_source_undoes_the_geometry(cond):
    """A single bright pixel: where it lands in the copy maps back to where it was."""
    from facefeat.robustness.perturb import to_source

    rgb = np.zeros((100, 200, 3), np.uint8)
    rgb[38:42, 128:132] = 255  # a 4 x 4 block centred at (129.5, 39.5)
    out = _decode(perturb(rgb, cond, image_id="cd" * 32, seed=3)).astype(float)
    mass = out[..., 0]
    ys, xs = np.indices(mass.shape)
    cx, cy = (mass * xs).sum() / mass.sum(), (mass * ys).sum() / mass.sum()
    sx, sy = to_source(cond, cx, cy, size=(200, 100), image_id="cd" * 32, seed=3)
    assert abs(sx - 129.5) < 1.5 and abs(sy - 39.5) < 1.5
