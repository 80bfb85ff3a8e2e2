"""The study report: one self-contained HTML file from an extraction run and a fitted model.

Public API (imported lazily): :func:`build_report`, :func:`write_report`, :func:`load_study`.
The command is ``facefeat report RUN_DIR --model-dir MODEL_DIR -o report.html`` (:mod:`facefeat.report.cli`).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"build_report": "build", "write_report": "build", "load_study": "study", "Study": "study"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"facefeat.report.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'facefeat.report' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
