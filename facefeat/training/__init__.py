"""Generator fine-tuning: StyleGAN2 losses and lazy regularisation, ADA, EMA, resumable runs.

Public API (imported lazily, so ``facefeat --help`` does not load torch)
-----------------------------------------------------------------------
- :func:`train_generator` -- the whole run (what ``facefeat train generator`` calls).
- :class:`Trainer` -- one run's networks, optimisers and state: ``step()``, ``train(out)``,
  ``save_snapshot(out)``, ``Trainer.from_snapshot(path, images)``.
- :class:`TrainingConfig` -- hyperparameters with the published defaults.
- :func:`init_networks`, :func:`scratch_networks` -- starting weights.
- :class:`StyleGAN2Loss`, :func:`r1_penalty`, :func:`path_lengths` -- losses (``loss``).
- :class:`AugmentPipe`, :class:`AdaController` -- ADA (``augment``).
- :func:`ema_beta`, :func:`update_ema` -- generator EMA (``ema``).
- :class:`TrainingImages`, :func:`load_training_images` -- aligned crops (``data``).
- :func:`evaluate_generator`, :func:`kernel_distance`, :func:`frechet_distance`,
  :class:`DlibFaceDescriptor`, :func:`projection_quality` -- quality metrics (``metrics``).
- :class:`NonFiniteError` -- a run diverged.
- :func:`train_encoder`, :class:`EncoderTrainer`, :class:`EncoderTrainingConfig` -- an e4e
  encoder for a (fine-tuned) generator (``encoder``; ``facefeat train encoder``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "train_generator": "loop", "Trainer": "loop", "TrainingResult": "loop", "init_networks": "loop",
    "scratch_networks": "loop", "NonFiniteError": "loop", "discriminator_layers": "loop",
    "TrainingConfig": "config",
    "StyleGAN2Loss": "loss", "r1_penalty": "loss", "path_lengths": "loss",
    "AugmentPipe": "augment", "AdaController": "augment",
    "ema_beta": "ema", "update_ema": "ema",
    "TrainingImages": "data", "load_training_images": "data", "InfiniteSampler": "data",
    "evaluate_generator": "metrics", "kernel_distance": "metrics", "frechet_distance": "metrics",
    "DlibFaceDescriptor": "metrics", "projection_quality": "metrics", "load_feature_network": "metrics",
    "train_encoder": "encoder", "EncoderTrainer": "encoder", "EncoderTrainingConfig": "encoder",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"facefeat.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'facefeat.training' has no attribute {name!r}")
