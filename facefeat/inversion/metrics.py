"""Reconstruction metrics and image conversions shared by projection, the extractor and tests.

Conventions
-----------
* Targets are ``[B, 3, R, R]`` in the pixel range **[0, 255]** (float or uint8), as NVIDIA's
  projector takes them; :func:`to_target` converts ``uint8 (B, R, R, 3)`` crops.
* Generator images are ``[B, 3, R, R]`` near **[-1, 1]**.
* :func:`image_mse` and :func:`psnr` work on images scaled to **[0, 1]** (peak 1): MSE is the
  mean over channels and pixels of the squared difference, PSNR = ``-10 log10(MSE)`` dB.
  Generator images are clamped to [-1, 1] first (values outside cannot be displayed).
"""

from __future__ import annotations

import numpy as np
import torch


def to_target(images: np.ndarray | torch.Tensor, *, device: torch.device | str = "cpu") -> torch.Tensor:
    """Aligned crops as a projection target: float32 ``[B, 3, R, R]`` in [0, 255].

    Parameters
    ----------
    images : ndarray or Tensor
        ``uint8 (B, R, R, 3)`` / ``(R, R, 3)`` (channels last, as the engine hands aligned
        crops over) or ``[B, 3, R, R]`` / ``[3, R, R]`` already channels first, in [0, 255].
    """
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4:
        raise ValueError(f"images must be (B, R, R, 3) or [B, 3, R, R], got shape {tuple(x.shape)}")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] != 3:
        raise ValueError(f"images must have 3 channels, got shape {tuple(x.shape)}")
    return x.to(device=device, dtype=torch.float32).contiguous()


def target_to_unit(target: torch.Tensor) -> torch.Tensor:
    """[0, 255] -> [0, 1]."""
    return target.to(torch.float32) / 255.0


def synth_to_unit(images: torch.Tensor) -> torch.Tensor:
    """Generator output near [-1, 1] -> [0, 1], clamped."""
    return ((images.to(torch.float32) + 1.0) * 0.5).clamp(0.0, 1.0)


def synth_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output -> ``uint8 (B, R, R, 3)`` (round half up, as PIL-style savers do)."""
    x = (synth_to_unit(images) * 255.0 + 0.5).floor().clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def image_mse(synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image MSE ``[B]`` on the [0, 1] scale (``synth`` near [-1, 1], ``target`` in [0, 255])."""
    d = synth_to_unit(synth) - target_to_unit(target)
    return d.square().flatten(1).mean(1)


def psnr_from_mse(mse: torch.Tensor | np.ndarray | float) -> torch.Tensor | np.ndarray | float:
    """PSNR in dB for MSE on the [0, 1] scale (``inf`` for a perfect match)."""
    if isinstance(mse, torch.Tensor):
        return -10.0 * torch.log10(mse.to(torch.float64))
    with np.errstate(divide="ignore"):
        return -10.0 * np.log10(np.asarray(mse, dtype=np.float64))


def psnr(synth: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR ``[B]`` in dB, peak 1 on the [0, 1] scale (see module notes)."""
    return psnr_from_mse(image_mse(synth, target))
