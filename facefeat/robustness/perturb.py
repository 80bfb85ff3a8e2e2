"""Perturbations of a photo, and the copies written for the engine.

Each perturbation family takes a list of strengths; each (family, strength) is one
*condition* whose copy of every photo goes through the normal engine like any other photo.
Copies are deterministic: the same photo, condition and seed give the same bytes (crop jitter
draws its offset from a generator seeded by the seed and the photo's ``image_id``).

Defaults and why (see docs/robustness.md):

========== ================ ================================================================
family     default          why
========== ================ ================================================================
jpeg       90, 70, 50       quality of camera exports (90), web and messaging re-encodes (70),
                            heavy re-compression by hospital systems and e-mail (50)
downscale  0.5, 0.25        the same face from a phone (full), a webcam or PACS thumbnail
                            (0.5) and a scanned print or video frame (0.25)
brightness 0.8, 1.2         +-20 % exposure: indoor clinic light vs a window
contrast   0.8, 1.2         +-20 % contrast: flat and punchy camera profiles
rotate     -5, +5 degrees   a slightly tilted head or camera; alignment should undo it
crop       0.05             5 % framing jitter: the same portrait cropped by another hand
flip       true             mirror image (selfie cameras); lateralised features swap sides
========== ================ ================================================================
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from facefeat.errors import ConfigError

#: family -> (allowed range text, check(value) -> bool, default strengths).
_RULES: dict[str, tuple[str, Callable[[Any], bool], list]] = {
    "jpeg": ("integer quality 1..100", lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 100,
             [90, 70, 50]),
    "downscale": ("factor 0 < f < 1 (1 is no change)", lambda v: _num(v) and 0 < v < 1, [0.5, 0.25]),
    "brightness": ("factor 0 < f <= 3, f != 1", lambda v: _num(v) and 0 < v <= 3 and v != 1, [0.8, 1.2]),
    "contrast": ("factor 0 < f <= 3, f != 1", lambda v: _num(v) and 0 < v <= 3 and v != 1, [0.8, 1.2]),
    "rotate": ("degrees -30..30, not 0 (small in-plane rotations)", lambda v: _num(v) and -30 <= v <= 30 and v != 0,
               [-5, 5]),
    "crop": ("fraction 0 < f <= 0.3 of each side", lambda v: _num(v) and 0 < v <= 0.3, [0.05]),
    "flip": ("true (mirror left-right)", lambda v: v is True, [True]),
}

#: Every family with its default strengths.
DEFAULT_PERTURBATIONS: dict[str, list] = {name: list(rule[2]) for name, rule in _RULES.items()}


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass(frozen=True)
class Condition:
    """One perturbation at one strength."""

    family: str
    strength: Any

    @property
    def name(self) -> str:
        """Stable label used in file names and tables: ``jpeg_q70``, ``rotate_-5``, ``flip``."""
        s = self.strength
        if self.family == "flip":
            return "flip"
        if self.family == "jpeg":
            return f"jpeg_q{s}"
        if self.family == "rotate":
            return f"rotate_{s:+g}"
        return f"{self.family}_{s:g}"

    @property
    def suffix(self) -> str:
        """File suffix of the copy: JPEG for re-compression, lossless PNG otherwise."""
        return ".jpg" if self.family == "jpeg" else ".png"


def resolve_perturbations(spec: Mapping[str, Any] | None, *, where: str = "robustness.perturbations") -> list[Condition]:
    """Validate a ``{family: [strengths]}`` mapping and expand it into conditions.

    The mapping is laid over the defaults: a family it does not name keeps its default
    strengths (so ``-s robustness.perturbations.jpeg=[95]`` changes JPEG only); a family mapped
    to ``[]``, ``null`` or ``false`` is switched off. ``None`` means the defaults. A single
    strength may be given without a list.

    Raises
    ------
    ConfigError
        Unknown family (the known ones listed), a strength out of range (the range named) or a
        strength given twice.
    """
    spec = {} if spec is None else spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{where} must be a mapping of family: [strengths], e.g. {{jpeg: [90, 50]}}")
    unknown = [f for f in spec if f not in _RULES]
    if unknown:
        raise ConfigError(f"{where}: unknown perturbation {unknown[0]!r}; known: {', '.join(_RULES)}")
    spec = {**DEFAULT_PERTURBATIONS, **spec}
    out: list[Condition] = []
    for family, values in spec.items():
        if values is None or values is False or values == []:
            continue
        values = values if isinstance(values, list) else [values]
        text, ok, _ = _RULES[family]
        for v in values:
            if not ok(v):
                raise ConfigError(f"{where}.{family}: strength {v!r} is out of range; allowed: {text}")
        conds = [Condition(family, v) for v in values]
        names = [c.name for c in conds]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}.{family}: a strength is given twice: {values}")
        out.extend(conds)
    return out


def perturb(rgb: np.ndarray, cond: Condition, *, image_id: str = "", seed: int = 0) -> bytes:
    """The encoded bytes of ``rgb`` (upright ``uint8`` H x W x 3) under one condition.

    Deterministic for given pixels, condition, ``image_id`` and ``seed`` (and Pillow version).
    """
    from PIL import Image, ImageEnhance

    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    f, s = cond.family, cond.strength
    if f == "jpeg":
        buf = io.BytesIO()
        # 4:2:0 subsampling and no optimisation: what cameras and browsers write
        img.save(buf, format="JPEG", quality=int(s), subsampling=2, optimize=False)
        return buf.getvalue()
    if f == "downscale":
        w, h = img.size
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS)
    elif f == "brightness":
        img = ImageEnhance.Brightness(img).enhance(float(s))
    elif f == "contrast":
        img = ImageEnhance.Contrast(img).enhance(float(s))
    elif f == "rotate":
        # about the centre, same canvas; corners filled with the photo's mean colour so that no
        # hard black wedge appears for the detector
        fill = tuple(int(round(c)) for c in np.asarray(rgb).reshape(-1, 3).mean(axis=0))
        img = img.rotate(float(s), resample=Image.Resampling.BICUBIC, expand=False, fillcolor=fill)
    elif f == "crop":
        img = img.crop(crop_box(img.size, s, image_id=image_id, seed=seed))
    elif f == "flip":
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    else:  # resolve_perturbations admits only the families above
        raise ConfigError(f"unknown perturbation {f!r}")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def crop_box(size: tuple[int, int], fraction: float, *, image_id: str = "", seed: int = 0) -> tuple[int, int, int, int]:
    """The window (left, top, right, bottom) that crop jitter keeps of a ``size = (w, h)`` photo:
    ``1 - fraction`` of each side, at an offset drawn from ``(seed, image_id)``."""
    w, h = size
    cw, ch = max(1, round(w * (1 - fraction))), max(1, round(h * (1 - fraction)))
    rng = np.random.default_rng([seed, int(image_id[:16] or "0", 16)])
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    return x0, y0, x0 + cw, y0 + ch


def to_source(cond: Condition, x: float, y: float, *, size: tuple[int, int], image_id: str = "",
              seed: int = 0) -> tuple[float, float]:
    """Where the point ``(x, y)`` of a copy lies in its source photo of ``size = (w, h)`` (upright pixels).

    Used to check that a copy's face is the source's face (a group photo may give another
    "largest" face once the original one is no longer found).
    """
    w, h = size
    f, s = cond.family, cond.strength
    if f == "downscale":
        return x * w / max(1, round(w * s)), y * h / max(1, round(h * s))
    if f == "crop":
        x0, y0, _, _ = crop_box(size, s, image_id=image_id, seed=seed)
        return x + x0, y + y0
    if f == "flip":
        return w - 1 - x, y
    if f == "rotate":
        # PIL turns the picture counter-clockwise by s degrees about (w/2, h/2); undo it
        t = math.radians(float(s))
        cx, cy = w / 2, h / 2
        dx, dy = x - cx, y - cy
        return cx + dx * math.cos(t) - dy * math.sin(t), cy + dx * math.sin(t) + dy * math.cos(t)
    return x, y  # jpeg, brightness, contrast keep the geometry
