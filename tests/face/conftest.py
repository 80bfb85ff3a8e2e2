"""Shared data paths of the face-layer tests, and a summary of the measured figures.

Alignment and landmark tests record their figures (max abs diff, share of pixels within one
grey level, landmark errors) in :data:`FIGURES`; they are printed at the end of the run.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
FACES = DATA / "faces"
FFHQ = DATA / "ffhq_align"

#: section -> list of (label, text) rows printed in the terminal summary.
FIGURES: dict[str, list[tuple[str, str]]] = {}


#: method label -> running totals of the alignment comparisons against the fixture.
ALIGN_STATS: dict[str, dict] = {}


def record(section: str, label: str, text: str) -> None:
    FIGURES.setdefault(section, []).append((label, text))


def record_align(label: str, diff: np.ndarray) -> tuple[int, float]:
    """Add one image's ``|ours - fixture|`` to the totals; returns (max, share within 1 level)."""
    mx, within = int(diff.max()), float(np.mean(diff <= 1))
    st = ALIGN_STATS.setdefault(label, {"images": 0, "identical": 0, "max": 0, "min_within1": 1.0,
                                        "pixels": 0, "pixels_within1": 0, "values_differing": 0})
    st["images"] += 1
    st["identical"] += int(mx == 0)
    st["max"] = max(st["max"], mx)
    st["min_within1"] = min(st["min_within1"], within)
    st["pixels"] += diff.size
    st["pixels_within1"] += int(np.count_nonzero(diff <= 1))
    st["values_differing"] += int(np.count_nonzero(diff))
    return mx, within


def source_path(name: str) -> Path:
    return FACES / ("skimage_astronaut" if name == "astronaut.png" else "dlib_examples") / name


@lru_cache(maxsize=None)
def fixture_meta() -> dict:
    return json.loads((FFHQ / "faces.json").read_text())


@lru_cache(maxsize=None)
def pil_rgb(name: str) -> np.ndarray:
    """Source photo decoded as the project does (and as the FFHQ script did): PIL, then RGB."""
    import PIL.Image

    with PIL.Image.open(source_path(name)) as im:
        arr = np.asarray(im.convert("RGB"))
    arr.setflags(write=False)
    return arr


@pytest.fixture(scope="session")
def faces_meta() -> dict:
    return fixture_meta()


def pytest_terminal_summary(terminalreporter, exitstatus, config):  # noqa: ARG001
    if not FIGURES and not ALIGN_STATS:
        return
    tr = terminalreporter
    tr.section("facefeat face-layer figures")
    if ALIGN_STATS:
        tr.write_line("[alignment vs the FFHQ fixture (decoded pixels, all channels)]")
        for label, st in ALIGN_STATS.items():
            tr.write_line(f"  {label}: {st['images']} images, {st['identical']} identical, max abs diff {st['max']}, "
                          f"within 1 level {100 * st['pixels_within1'] / st['pixels']:.4f} % of values "
                          f"(worst image {100 * st['min_within1']:.4f} %), {st['values_differing']} values differ")
    for section, rows in FIGURES.items():
        tr.write_line(f"[{section}]")
        for label, text in rows:
            tr.write_line(f"  {label}: {text}")
