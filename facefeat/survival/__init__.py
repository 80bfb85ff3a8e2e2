"""Survival modelling on face features and clinical covariates.

Public API (imported lazily, so ``import facefeat.survival`` stays cheap):

- :class:`SurvivalEstimator`, :func:`make_model`, :class:`FeatureBlock`, :class:`DeepSurv`,
  :class:`CoxnetCV`, :func:`cox_ph_loss`
- :func:`evaluate`, :func:`cross_validate`, :class:`SurvivalScorer`, :func:`get_scorer`,
  :class:`SurvivalStratifiedKFold`, :class:`RepeatedSurvivalStratifiedKFold`
- :func:`load_feature_table`, :func:`aggregate_images`, :func:`read_clinical`,
  :func:`load_survival_data`, :func:`make_survival_target`, :func:`check_survival_target`
- :func:`save_model`, :func:`load_model`
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SurvivalEstimator": "estimator",
    "make_model": "estimator",
    "MODELS": "estimator",
    "FeatureBlock": "blocks",
    "DeepSurv": "deepsurv",
    "cox_ph_loss": "deepsurv",
    "CoxnetCV": "cox",
    "cox_log_partial_likelihood": "cox",
    "hazard_ratio_per_sd": "cox",
    "evaluate": "metrics",
    "EvaluationResult": "metrics",
    "SurvivalScorer": "metrics",
    "get_scorer": "metrics",
    "calibration_table": "metrics",
    "survival_at": "metrics",
    "cross_validate": "validation",
    "CVResult": "validation",
    "SurvivalStratifiedKFold": "validation",
    "RepeatedSurvivalStratifiedKFold": "validation",
    "load_feature_table": "tables",
    "aggregate_images": "tables",
    "read_clinical": "tables",
    "load_survival_data": "dataset",
    "SurvivalDataset": "dataset",
    "make_survival_target": "target",
    "check_survival_target": "target",
    "DataReport": "report",
    "save_model": "persist",
    "load_model": "persist",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"facefeat.survival.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'facefeat.survival' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
