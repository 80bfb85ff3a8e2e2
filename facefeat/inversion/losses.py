"""Per-image projection losses: image distance (MSE, LPIPS) and the noise-map regularizer.

Every function returns one value per image (``[B]``), never a batch mean: projection sums the
per-image values so that each image's gradient is exactly what it would be alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from facefeat.errors import ConfigError

#: Image distances :func:`facefeat.inversion.projection.project` accepts.
LOSSES = ("mse", "lpips", "mse+lpips")


def noise_regularization(noises: Sequence[torch.Tensor]) -> torch.Tensor:
    """Spatial autocorrelation penalty of noise maps, per image (``[B]``).

    For every map ``[B, 1, r, r]`` and its 2x2 average-pooled pyramid down to 8 px, adds the
    squared mean of the map times itself shifted by one pixel (horizontally and vertically,
    wrapping around): zero for white noise, large when the map starts to carry image structure.
    This is the regularizer of StyleGAN2's projector (Karras et al. 2020, appendix D).
    """
    total = None
    for n in noises:
        while True:
            term = ((n * torch.roll(n, shifts=1, dims=3)).mean(dim=(1, 2, 3)).square()
                    + (n * torch.roll(n, shifts=1, dims=2)).mean(dim=(1, 2, 3)).square())
            total = term if total is None else total + term
            if n.shape[2] <= 8:
                break
            n = F.avg_pool2d(n, kernel_size=2)
    if total is None:
        raise ValueError("noise_regularization needs at least one noise map")
    return total


def normalize_noise_(noises: Sequence[torch.Tensor]) -> None:
    """Make every map zero-mean, unit-variance per image, in place (after each step)."""
    with torch.no_grad():
        for n in noises:
            n.sub_(n.mean(dim=(1, 2, 3), keepdim=True))
            n.mul_(n.square().mean(dim=(1, 2, 3), keepdim=True).rsqrt())


class ImageLoss:
    """Distance between generator images and fixed targets, per image.

    Parameters
    ----------
    kind : {"mse", "lpips", "mse+lpips"}
        ``mse``: mean squared difference on the generator's [-1, 1] scale (not clamped, so the
        gradient never vanishes); ``lpips``: LPIPS-VGG (needs ``perceptual``);
        ``mse+lpips``: ``mse_weight * mse + lpips_weight * lpips``.
    target : Tensor ``[B, 3, R, R]``
        In [0, 255].
    perceptual : facefeat.inversion.perceptual.LPIPS, optional
    mse_weight, lpips_weight : float
    per_image : bool
        Compute the targets' LPIPS features one image at a time (batch-invariant projection).
    """

    def __init__(self, kind: str, target: torch.Tensor, *, perceptual=None, mse_weight: float = 1.0,
                 lpips_weight: float = 1.0, per_image: bool = False) -> None:
        if kind not in LOSSES:
            raise ConfigError(f"loss must be one of {LOSSES}, got {kind!r}")
        if "lpips" in kind and perceptual is None:
            raise ConfigError(f"loss {kind!r} needs LPIPS weights: give the VGG16 and LPIPS weight files "
                              f"(facefeat.inversion.perceptual.load_lpips_vgg), or use loss='mse'")
        self.kind = kind
        self.perceptual = perceptual
        self.mse_weight, self.lpips_weight = float(mse_weight), float(lpips_weight)
        self.target = target.to(torch.float32) / 127.5 - 1.0  # [-1, 1]
        self.target_features = None
        if perceptual is not None:
            with torch.no_grad():
                if per_image:  # batch-invariant: each target's features computed alone
                    parts = [perceptual.features(self.target[k:k + 1]) for k in range(self.target.shape[0])]
                    self.target_features = [torch.cat(fs) for fs in zip(*parts)] if parts else None
                else:
                    self.target_features = perceptual.features(self.target)

    def __call__(self, synth: torch.Tensor, idx: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(loss [b], lpips [b] or None)`` for images ``synth`` of targets ``idx`` (all if None)."""
        target = self.target if idx is None else self.target.index_select(0, idx)
        loss = None
        dist = None
        if self.kind in ("mse", "mse+lpips"):
            loss = (synth - target).square().flatten(1).mean(1)
            if self.kind == "mse+lpips":
                loss = loss * self.mse_weight
        if self.kind in ("lpips", "mse+lpips"):
            feats = self.target_features if idx is None else [f.index_select(0, idx) for f in self.target_features]
            dist = self.perceptual.distance_from_features(self.perceptual.features(synth), feats)
            term = dist * self.lpips_weight if self.kind == "mse+lpips" else dist
            loss = term if loss is None else loss + term
        return loss, dist

    def lpips(self, synth: torch.Tensor, idx: torch.Tensor | None = None) -> torch.Tensor | None:
        """LPIPS of ``synth`` to its targets when a perceptual model is loaded, else None."""
        if self.perceptual is None:
            return None
        feats = self.target_features if idx is None else [f.index_select(0, idx) for f in self.target_features]
        return self.perceptual.distance_from_features(self.perceptual.features(synth), feats)
