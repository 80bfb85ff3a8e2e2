"""Feature robustness: perturbation and repeat-photo reliability (ICC) of every extractor's features.

- :mod:`facefeat.robustness.icc`: ICC (six forms, F-based intervals), Lin's CCC, within-subject CV,
  vectorised over features.
- :mod:`facefeat.robustness.perturb`: the perturbations (JPEG, downscaling, brightness, contrast,
  rotation, crop jitter, flip) and the copies written for the engine.
- :mod:`facefeat.robustness.study`: ``facefeat robustness``: copies -> engine run -> statistics.
- :mod:`facefeat.robustness.filter`: :func:`filter_features`, the threshold applied before modelling.
- :mod:`facefeat.robustness.report`: the report section.
"""

from facefeat.robustness.filter import filter_features

__all__ = ["filter_features"]
