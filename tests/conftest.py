"""Shared test helpers: paths of the bundled data."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples" / "faces"


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES
