"""Studies: one config (``study.yaml``) and one folder for a whole analysis.

Public API (imported lazily, so ``import facefeat.study`` stays cheap):

- :class:`Study` (``Study.from_yaml(path).run()``), :class:`StudyResult`
- :func:`load_study_config`, :func:`check_inputs`, :data:`STUDY_SCHEMA`, :func:`render_template`

See ``docs/study.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Study": "study",
    "StudyResult": "study",
    "StageRun": "study",
    "load_study_config": "config",
    "check_inputs": "config",
    "STUDY_SCHEMA": "config",
    "render_template": "template",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"facefeat.study.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'facefeat.study' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
