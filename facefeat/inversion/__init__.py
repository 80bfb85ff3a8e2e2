"""Inversion: embedding images into a StyleGAN2 latent space.

- :func:`project` -- batched optimisation-based projection into W or W+
  (:mod:`facefeat.inversion.projection`), returning a :class:`ProjectionResult`.
- :func:`load_lpips_vgg` -- LPIPS-VGG from weight files on disk (:mod:`facefeat.inversion.perceptual`).
- :mod:`facefeat.inversion.metrics` -- MSE / PSNR conventions, image conversions.
- :mod:`facefeat.inversion.losses` -- per-image losses and the noise regularizer.

Importing this package is cheap: torch is imported, no model is built or loaded.
"""

from facefeat.inversion.metrics import psnr, psnr_from_mse, to_target
from facefeat.inversion.perceptual import LPIPS, load_lpips_vgg
from facefeat.inversion.projection import NVIDIA_DEFAULTS, SPACES, ProjectionResult, project, w_stats

__all__ = [
    "LPIPS",
    "NVIDIA_DEFAULTS",
    "SPACES",
    "ProjectionResult",
    "load_lpips_vgg",
    "project",
    "psnr",
    "psnr_from_mse",
    "to_target",
    "w_stats",
]
