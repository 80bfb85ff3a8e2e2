"""Planted-signal simulation: how much of a known latent hazard direction the pipeline recovers.

Public API (imported lazily, so ``import facefeat.simulate`` stays cheap):

- :func:`simulate` -> :class:`SimulationResult` (one simulated study, optionally written in the
  standard layout), :func:`power_curve` (a grid of cohort sizes), :func:`plot_power`
- design pieces: :func:`simulate_times`, :func:`calibrate_censoring`, :func:`sample_latents`,
  :func:`random_direction`, :func:`load_direction`, :func:`resolve_generator`,
  :func:`calibrate_output`

See ``docs/simulate.md``.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "simulate": "pipeline",
    "power_curve": "pipeline",
    "plot_power": "pipeline",
    "SimulationResult": "pipeline",
    "Cohort": "pipeline",
    "make_cohort": "pipeline",
    "model_cohort": "pipeline",
    "load_simulation_generator": "pipeline",
    "summary_table": "pipeline",
    "simulate_times": "design",
    "calibrate_censoring": "design",
    "sample_latents": "design",
    "random_direction": "design",
    "load_direction": "design",
    "resolve_generator": "design",
    "tiny_generator_path": "design",
    "calibrate_output": "design",
    "check_design": "design",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"facefeat.simulate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'facefeat.simulate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
