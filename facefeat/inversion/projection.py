"""Batched optimisation-based inversion ("projection") of images into a StyleGAN2 latent space.

In the spirit of NVIDIA's stylegan2-ada-pytorch ``projector.project`` (Karras et al. 2020,
appendix D): Adam on a latent initialised at the mean w, a learning-rate ramp (up over the
first ``lr_rampup_length``, cosine down over the last ``lr_rampdown_length`` of the steps),
Gaussian noise added to the latent with a quadratic ramp to zero (exploration early on), the
per-layer noise maps optimised too, with an autocorrelation penalty and re-normalisation after
each step. Differences, all for batching:

* **B images at once**, each with its own latent, its own noise maps, its own loss and its own
  random stream. The objective is the **sum** of the per-image losses, so each image's
  gradient is what it would be alone; Adam is per element; the random numbers of image ``i``
  come from its own ``torch.Generator`` seeded with ``seeds[i]``. Projecting images one by one
  with the same seeds gives the same result up to float rounding (checked by the tests).
* **Per-image early stopping**: an image whose loss has plateaued skips ahead to the
  learning-rate ramp-down, and an image that has finished is frozen (its latent and noise are no
  longer updated) and leaves the batch, so the remaining images run faster. Each image runs on
  its own schedule clock, so this too is independent of the batch.
* Spaces W (one w broadcast to every layer, NVIDIA's) and W+ (one w per layer).
* Optional coarse-to-fine phase: the first steps render only up to a lower block resolution
  and compare with the area-downsampled target (``coarse_resolution``, ``coarse_fraction``).
* Losses: MSE (default, needs no weights), LPIPS-VGG from weight files on disk, or both.

Everything is a keyword argument with a default and is returned in
:attr:`ProjectionResult.params`, so provenance records the exact hyperparameters.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from facefeat.errors import ConfigError
from facefeat.inversion.losses import LOSSES, ImageLoss, noise_regularization, normalize_noise_
from facefeat.inversion.metrics import image_mse, psnr_from_mse, to_target

log = logging.getLogger(__name__)

SPACES = ("w", "wplus")
NOISE_INITS = ("random", "const")

#: NVIDIA stylegan2-ada-pytorch ``projector.project`` defaults (its loss is a VGG16 LPIPS-like
#: distance; with ``loss="mse"`` this is "NVIDIA's schedule with an MSE loss").
NVIDIA_DEFAULTS: dict[str, Any] = {
    "space": "w",
    "num_steps": 1000,
    "w_avg_samples": 10000,
    "initial_learning_rate": 0.1,
    "initial_noise_factor": 0.05,
    "lr_rampdown_length": 0.25,
    "lr_rampup_length": 0.05,
    "noise_ramp_length": 0.75,
    "regularize_noise_weight": 1e5,
    "early_stop_patience": None,
}


@dataclass
class ProjectionResult:
    """What :func:`project` returns (tensors on the CPU).

    Attributes
    ----------
    ws : Tensor ``[B, num_ws, w_dim]``
        The latents in W+ form, ready for ``G.synthesis`` (space W: the same w on every row).
    latents : Tensor ``[B, 1, w_dim]`` (space W) or ``[B, num_ws, w_dim]`` (W+)
        The optimised variable itself.
    space : str
    noises : list of Tensor ``[B, 1, r, r]``, or None
        Optimised noise maps in ``G.synthesis.noise_shapes()`` order (None when not optimised).
    loss : Tensor ``[B]``
        Image distance (the configured ``loss``, without the noise regularizer) of the final
        reconstruction ``G.synthesis(ws, noise=noises)``.
    mse, psnr : Tensor ``[B]``
        Of the final reconstruction, on the [0, 1] scale (see :mod:`facefeat.inversion.metrics`).
    lpips : Tensor ``[B]`` or None
        LPIPS-VGG of the final reconstruction when a perceptual model was given.
    steps : Tensor ``[B]`` (int64)
        Optimisation steps each image took (less than ``num_steps`` when it stopped early).
    loss_history, mse_history : Tensor ``[B, num_steps]``
        Per step: the loss being minimised and the [0, 1]-scale MSE of the image rendered at
        that step (with the step's latent noise); NaN after an image stopped.
    latent_history : Tensor ``[B, T, rows, w_dim]`` or None
        Latents after every ``trajectory_every``-th step when asked for (frozen rows repeat).
    images : Tensor ``[B, 3, R, R]`` or None
        Final reconstructions near [-1, 1] when ``return_images``.
    seconds : float
        Wall time of the optimisation (all chunks).
    params : dict
        Every hyperparameter used (JSON-able), for provenance.
    """

    ws: torch.Tensor
    latents: torch.Tensor
    space: str
    noises: list[torch.Tensor] | None
    loss: torch.Tensor
    mse: torch.Tensor
    psnr: torch.Tensor
    lpips: torch.Tensor | None
    steps: torch.Tensor
    loss_history: torch.Tensor
    mse_history: torch.Tensor
    latent_history: torch.Tensor | None = None
    images: torch.Tensor | None = None
    seconds: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Schedules and W statistics
# --------------------------------------------------------------------------------------------

def learning_rate(step: int, num_steps: int, *, initial_learning_rate: float, lr_rampdown_length: float,
                  lr_rampup_length: float) -> float:
    """NVIDIA's schedule: linear ramp-up, flat, cosine ramp-down over the last part."""
    t = step / num_steps
    ramp = min(1.0, (1.0 - t) / lr_rampdown_length) if lr_rampdown_length > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if lr_rampup_length > 0:
        ramp *= min(1.0, t / lr_rampup_length)
    return initial_learning_rate * ramp


def latent_noise_scale(step: int, num_steps: int, *, w_std: float, initial_noise_factor: float,
                       noise_ramp_length: float) -> float:
    """Std of the Gaussian noise added to the latent at ``step`` (quadratic ramp to 0)."""
    if noise_ramp_length <= 0:
        return 0.0
    t = step / num_steps
    return w_std * initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2


@torch.no_grad()
def w_stats(G, n: int = 10000, *, seed: int = 123, batch_size: int = 4096) -> tuple[torch.Tensor, float]:
    """Mean w and NVIDIA's spread ``sqrt(E ||w - w_avg||^2)`` from ``n`` random z.

    The z are ``numpy.random.RandomState(seed).randn(n, z_dim)`` (NVIDIA's projector draws
    them the same way with seed 123). Accumulates in float64. Returns ``(w_avg [w_dim], w_std)``
    on ``G``'s device.
    """
    if n < 1:
        raise ConfigError(f"w_avg_samples must be >= 1, got {n}")
    z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.z_dim).astype(np.float32))
    device = G.w_avg.device
    ws = []
    for start in range(0, n, batch_size):
        ws.append(G.mapping.embed(z[start:start + batch_size].to(device)).double())
    w = torch.cat(ws)
    w_avg = w.mean(0)
    w_std = float(((w - w_avg).square().sum() / n).sqrt())
    return w_avg.to(torch.float32), w_std


# --------------------------------------------------------------------------------------------
# Projection
# --------------------------------------------------------------------------------------------

def _seeds(seed: int | Sequence[int], n: int) -> list[int]:
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + i for i in range(n)]
    seeds = [int(s) for s in seed]
    if len(seeds) != n:
        raise ConfigError(f"seed: got {len(seeds)} seeds for {n} images; give one per image or one int")
    return seeds


def _init_latents(init: str | torch.Tensor, w_avg: torch.Tensor, n: int, rows: int, num_ws: int,
                  w_dim: int) -> torch.Tensor:
    if isinstance(init, str):
        if init != "w_avg":
            raise ConfigError(f"init must be 'w_avg' or a tensor of latents, got {init!r}")
        return w_avg.reshape(1, 1, w_dim).expand(n, rows, w_dim).clone()
    x = torch.as_tensor(init, dtype=torch.float32).to(w_avg.device)
    if x.ndim == 1:
        x = x.reshape(1, 1, -1)
    elif x.ndim == 2:
        x = x.unsqueeze(1) if x.shape[0] == n and x.shape[1] == w_dim else x.unsqueeze(0)
    if x.ndim != 3 or x.shape[2] != w_dim or x.shape[0] not in (1, n) or x.shape[1] not in (1, num_ws):
        raise ConfigError(f"init latents must be [w_dim], [B, w_dim], [B, 1, w_dim] or [B, {num_ws}, {w_dim}] "
                          f"with B = {n} (or 1), w_dim = {w_dim}; got {list(torch.as_tensor(init).shape)}")
    if rows == 1 and x.shape[1] != 1:
        if not torch.equal(x, x[:, :1].expand_as(x)):
            raise ConfigError("space='w' needs one w per image; init has different w per layer (use "
                              "space='wplus', or pass init[:, 0])")
        x = x[:, :1]
    return x.expand(n, rows, w_dim).clone()


class _Adam:
    """Adam on a list of ``[B, ...]`` tensors, updating only the rows given (per-element,
    as ``torch.optim.Adam`` with ``betas``, ``eps``, no weight decay). Rows never updated keep
    their values exactly: that is how a stopped image is frozen."""

    def __init__(self, params: list[torch.Tensor], betas: tuple[float, float], eps: float) -> None:
        self.params = params
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = [0] * len(params)
        self.b1, self.b2 = betas
        self.eps = eps

    def expand(self, k: int, param: torch.Tensor) -> None:
        """Replace parameter ``k`` by its broadcast ``param`` (W -> W+), broadcasting the moments
        too: a fresh state would take full-``lr`` sign steps and throw the latent off its basin."""
        self.params[k] = param
        self.m[k] = self.m[k].expand_as(param).clone()
        self.v[k] = self.v[k].expand_as(param).clone()

    @torch.no_grad()
    def step(self, grads: list[torch.Tensor], idx: torch.Tensor | None, lr: torch.Tensor) -> None:
        """One update of the rows ``idx`` (all if None) with per-row learning rates ``lr [rows]``."""
        for k, (p, m, v, g) in enumerate(zip(self.params, self.m, self.v, grads)):
            self.t[k] += 1
            bc1 = 1.0 - self.b1 ** self.t[k]
            bc2_sqrt = math.sqrt(1.0 - self.b2 ** self.t[k])
            if idx is None:
                ps, ms, vs = p, m, v
            else:
                ps, ms, vs = p.index_select(0, idx), m.index_select(0, idx), v.index_select(0, idx)
            ms.mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            vs.mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            denom = (vs.sqrt() / bc2_sqrt).add_(self.eps)
            ps.addcdiv_(ms * lr.reshape(-1, *([1] * (ms.ndim - 1))), denom, value=-1.0 / bc1)
            if idx is not None:
                p.index_copy_(0, idx, ps)
                m.index_copy_(0, idx, ms)
                v.index_copy_(0, idx, vs)


def project(
    G,
    target: torch.Tensor | np.ndarray,
    *,
    space: str = "wplus",
    num_steps: int = 500,
    init: str | torch.Tensor = "w_avg",
    w_avg_samples: int = 10000,
    w_avg_seed: int = 123,
    initial_learning_rate: float = 0.1,
    initial_noise_factor: float = 0.05,
    lr_rampdown_length: float = 0.25,
    lr_rampup_length: float = 0.05,
    noise_ramp_length: float = 0.75,
    regularize_noise_weight: float = 1e5,
    optimize_noise: bool = True,
    noise_init: str = "random",
    loss: str = "mse",
    perceptual=None,
    mse_weight: float = 1.0,
    lpips_weight: float = 1.0,
    early_stop_patience: int | None = None,
    early_stop_min_delta: float = 1e-3,
    early_stop_start: float = 0.75,
    wplus_start: float = 0.0,
    coarse_resolution: int | None = None,
    coarse_fraction: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    seed: int | Sequence[int] = 0,
    device: torch.device | str | None = None,
    batch_size: int | None = None,
    batch_invariant: bool = False,
    w_stats_cache: tuple[torch.Tensor, float] | None = None,
    return_images: bool = False,
    return_noises: bool = True,
    trajectory_every: int = 0,
    callback: Callable[[int, int, torch.Tensor], None] | None = None,
) -> ProjectionResult:
    """Project target images into a StyleGAN2 generator's latent space, B images at once.

    Parameters
    ----------
    G : facefeat.models.stylegan2.Generator
        Weights are not modified and receive no gradient.
    target : Tensor or ndarray
        ``[B, 3, R, R]`` (or ``[3, R, R]``) in [0, 255], or ``uint8 (B, R, R, 3)`` crops;
        ``R = G.img_resolution``.
    space : {"wplus", "w"}
        W+ (one w per synthesis layer; reconstructs better) or W (one w broadcast, NVIDIA's).
    num_steps : int, default 500
        Optimisation steps; the schedules below are fractions of it. NVIDIA's default is 1000
        (:data:`NVIDIA_DEFAULTS`).
    init : "w_avg" or Tensor
        Start at the mean w (from ``w_avg_samples`` z, seed ``w_avg_seed``), or at given latents
        (``[B, w_dim]``, ``[B, 1, w_dim]`` or ``[B, num_ws, w_dim]``; e.g. an encoder's output).
    w_avg_samples, w_avg_seed : int
        See :func:`w_stats`. The spread ``w_std`` scales the latent noise.
    initial_learning_rate, lr_rampdown_length, lr_rampup_length : float
        See :func:`learning_rate`.
    initial_noise_factor, noise_ramp_length : float
        See :func:`latent_noise_scale`.
    regularize_noise_weight : float
        Weight of :func:`~facefeat.inversion.losses.noise_regularization`.
    optimize_noise : bool, default True
        Optimise per-image noise maps (initialised as ``noise_init`` says). False: use the
        generator's stored (``"const"``) noise and optimise only the latent.
    noise_init : {"random", "const"}, default "random"
        Start of the optimised noise maps: N(0, 1) from the image's seed (NVIDIA), or the
        generator's stored noise buffers, so that step 0 renders exactly what
        ``noise_mode="const"`` renders -- the right start for latents from an encoder trained
        with the stored noise (hybrid inversion): the start keeps its reconstruction.
    loss : {"mse", "lpips", "mse+lpips"}
        Image distance; LPIPS needs ``perceptual``.
    perceptual : facefeat.inversion.perceptual.LPIPS, optional
        LPIPS-VGG model (:func:`~facefeat.inversion.perceptual.load_lpips_vgg`). When given,
        the final LPIPS is reported whatever ``loss`` is.
    mse_weight, lpips_weight : float
        Weights for ``loss="mse+lpips"``.
    early_stop_patience : int or None
        Per-image early stopping. Once an image's loss has not improved by a relative
        ``early_stop_min_delta`` over its best for this many steps (watched from
        ``early_stop_start * num_steps`` on), the image skips the rest of the constant-rate
        phase and jumps to the learning-rate ramp-down (the last ``lr_rampdown_length`` of the
        schedule), which it then runs to the end; a plateau *during* the ramp-down ends it at
        once. A finished image is frozen (its latent and noise are no longer updated) and
        leaves the batch. Stopping without the ramp-down would forgo the annealing that most
        of the final quality comes from. None: every image runs ``num_steps``.
    early_stop_min_delta, early_stop_start : float
    coarse_resolution : int, optional
        Coarse-to-fine: for the first ``coarse_fraction`` of the steps the generator renders only
        up to this resolution (one of its block resolutions below ``img_resolution``; see
        ``SynthesisNetwork.forward(resolution=...)``) and the loss compares that coarse image
        with the target area-downsampled to it. The coarse layers, which decide the face's
        layout, get most of the work at a fraction of the cost per step (on the 256 px paper
        configuration a 64 px step costs about a third of a full one); the remaining steps
        refine at full resolution. ``loss_history``/``mse_history`` hold the coarse values for
        the coarse steps. None: full resolution throughout.
    coarse_fraction : float, default 0.0
        Fraction of ``num_steps`` at ``coarse_resolution`` (counted on each image's own steps).
    betas, eps : Adam settings (NVIDIA: (0.9, 0.999), 1e-8).
    seed : int or sequence of int
        Per-image seeds; an int ``s`` gives image ``i`` the seed ``s + i``. The result for an
        image depends only on its target and its seed (not on the batch it is in).
    device : torch.device or str, optional
        Where to compute (default: ``G``'s device; ``G`` must already be there).
    batch_size : int, optional
        Optimise at most this many images at once (default: all); any remainder forms a smaller
        last batch.
    batch_invariant : bool, default False
        Evaluate the generator (and LPIPS) one image at a time inside each step, so every
        image's result is bit-for-bit what projecting it alone gives, whatever batch it is in.
        The optimiser, schedules and random streams are per image either way; what differs
        without this flag is float rounding: BLAS/oneDNN kernels pick batch-size-dependent
        blockings (a forward pass differs by ~6e-6 between batch 1 and batch 6 on this CPU),
        and Adam's sign-like steps amplify such differences over hundreds of steps (to ~1e-3
        in the latents after 100 steps). Costs little on CPU, where batching gains little;
        leave it off on a GPU when the speed matters more than bitwise reproducibility.
    w_stats_cache : (Tensor, float), optional
        A precomputed :func:`w_stats` result (skips the 10k-sample mapping pass).
    return_images, return_noises : bool
        Return the final reconstructions / the noise maps.
    trajectory_every : int
        Record the latents every this many steps (0: not at all).
    callback : callable, optional
        ``callback(step, num_steps, active_mask)`` after every step.

    Returns
    -------
    ProjectionResult
    """
    if space not in SPACES:
        raise ConfigError(f"space must be one of {SPACES}, got {space!r}")
    if loss not in LOSSES:
        raise ConfigError(f"loss must be one of {LOSSES}, got {loss!r}")
    if num_steps < 0:
        raise ConfigError(f"num_steps must be >= 0, got {num_steps}")
    if early_stop_patience is not None and early_stop_patience < 1:
        raise ConfigError(f"early_stop_patience must be >= 1 or None, got {early_stop_patience}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if noise_init not in NOISE_INITS:
        raise ConfigError(f"noise_init must be one of {NOISE_INITS}, got {noise_init!r}")
    if not 0.0 <= coarse_fraction <= 1.0:
        raise ConfigError(f"coarse_fraction must be in [0, 1], got {coarse_fraction}")
    blocks = list(G.synthesis.block_resolutions)
    if coarse_resolution is not None and coarse_resolution not in blocks[:-1]:
        raise ConfigError(f"coarse_resolution must be one of the generator's block resolutions below its "
                          f"{G.img_resolution} px output, {blocks[:-1]}, or None; got {coarse_resolution}")
    G_device = G.w_avg.device
    device = torch.device(device) if device is not None else G_device
    if device != G_device and not (device.type == G_device.type and device.index in (None, G_device.index)):
        raise ConfigError(f"device {device} differs from the generator's {G_device}; move G first (G.to(device))")
    target = to_target(target, device=device)
    R = G.img_resolution
    if tuple(target.shape[1:]) != (G.img_channels, R, R):
        raise ConfigError(f"target images are {list(target.shape[1:])}, the generator makes "
                          f"[{G.img_channels}, {R}, {R}]: align the faces at {R} px")
    n = target.shape[0]
    seeds = _seeds(seed, n)
    if w_stats_cache is None:
        w_stats_cache = w_stats(G, w_avg_samples, seed=w_avg_seed)
    w_avg, w_std = w_stats_cache[0].to(device), float(w_stats_cache[1])
    rows = G.num_ws if space == "wplus" else 1
    if space == "wplus" and wplus_start > 0 and not isinstance(init, str):
        raise ConfigError("wplus_start > 0 starts in W: it needs init='w_avg' (or space='w' for a given init)")
    init_all = _init_latents(init, w_avg, n, rows, G.num_ws, G.w_dim)

    params = {
        "space": space, "num_steps": num_steps, "init": init if isinstance(init, str) else "given",
        "w_avg_samples": w_avg_samples, "w_avg_seed": w_avg_seed, "w_std": w_std,
        "initial_learning_rate": initial_learning_rate, "initial_noise_factor": initial_noise_factor,
        "lr_rampdown_length": lr_rampdown_length, "lr_rampup_length": lr_rampup_length,
        "noise_ramp_length": noise_ramp_length, "regularize_noise_weight": regularize_noise_weight,
        "optimize_noise": optimize_noise, "loss": loss, "mse_weight": mse_weight, "lpips_weight": lpips_weight,
        "perceptual": getattr(perceptual, "provenance", None) if perceptual is not None else None,
        "early_stop_patience": early_stop_patience, "early_stop_min_delta": early_stop_min_delta,
        "early_stop_start": early_stop_start, "wplus_start": wplus_start if space == "wplus" else None,
        "coarse_resolution": coarse_resolution if coarse_fraction > 0 else None,
        "coarse_fraction": coarse_fraction if coarse_resolution is not None else 0.0,
        "betas": list(betas), "eps": eps, "optimizer": "adam",
        "batch_invariant": batch_invariant,
        "noise_init": (("N(0,1) per map from the image's seed" if noise_init == "random" else
                        "generator const buffers, then optimised") if optimize_noise else "generator const buffers"),
    }
    step_kw = dict(space=space, num_steps=num_steps, w_avg=w_avg, w_std=w_std,
                   initial_learning_rate=initial_learning_rate, initial_noise_factor=initial_noise_factor,
                   lr_rampdown_length=lr_rampdown_length, lr_rampup_length=lr_rampup_length,
                   noise_ramp_length=noise_ramp_length, regularize_noise_weight=regularize_noise_weight,
                   optimize_noise=optimize_noise, noise_init=noise_init, loss=loss, perceptual=perceptual,
                   mse_weight=mse_weight,
                   lpips_weight=lpips_weight, early_stop_patience=early_stop_patience,
                   early_stop_min_delta=early_stop_min_delta, early_stop_start=early_stop_start,
                   wplus_start=wplus_start,
                   coarse_resolution=coarse_resolution, coarse_fraction=coarse_fraction, betas=betas,
                   eps=eps, batch_invariant=batch_invariant, return_images=return_images, return_noises=return_noises,
                   trajectory_every=trajectory_every, callback=callback)
    chunk = n if batch_size is None else batch_size
    parts = []
    t0 = time.perf_counter()
    for start in range(0, n, max(chunk, 1)):
        sl = slice(start, min(n, start + chunk))
        parts.append(_project_batch(G, target[sl], init_all[sl], seeds[sl], device, **step_kw))
    seconds = time.perf_counter() - t0
    if not parts:  # no images
        parts.append(_project_batch(G, target, init_all, seeds, device, **step_kw))

    def cat(key):
        vals = [p[key] for p in parts]
        return None if vals[0] is None else torch.cat(vals)

    noises = None
    if parts[0]["noises"] is not None:
        noises = [torch.cat([p["noises"][k] for p in parts]) for k in range(len(parts[0]["noises"]))]
    latents = cat("latents")
    return ProjectionResult(
        ws=latents.expand(-1, G.num_ws, -1).clone() if rows == 1 else latents.clone(), latents=latents, space=space,
        noises=noises, loss=cat("loss"), mse=cat("mse"), psnr=psnr_from_mse(cat("mse")), lpips=cat("lpips"),
        steps=cat("steps"), loss_history=cat("loss_history"), mse_history=cat("mse_history"),
        latent_history=cat("latent_history"), images=cat("images"), seconds=seconds, params=params)


def _synthesize(G, latents: torch.Tensor, noises: list[torch.Tensor] | None,
                resolution: int | None = None) -> torch.Tensor:
    ws = latents.expand(-1, G.num_ws, -1) if latents.shape[1] == 1 else latents
    if noises is None:
        return G.synthesis(ws, noise_mode="const", resolution=resolution)
    return G.synthesis(ws, noise=noises, resolution=resolution)


def _loss_and_grads(G, objective: ImageLoss, lat: torch.Tensor, nz: list[torch.Tensor] | None,
                    w_noise: torch.Tensor | None, rows: list[int], act: torch.Tensor | None,
                    regularize_noise_weight: float, resolution: int | None = None,
                    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Per-image data loss, images and gradients for rows ``rows`` of this step's active set."""
    sel = torch.tensor(rows, device=lat.device) if len(rows) != lat.shape[0] else None
    pick = (lambda t: t) if sel is None else (lambda t: t.index_select(0, sel))
    lat_l = pick(lat).detach().requires_grad_(True)
    nz_l = None if nz is None else [pick(n).detach().requires_grad_(True) for n in nz]
    w_in = lat_l if w_noise is None else lat_l + pick(w_noise)
    synth = _synthesize(G, w_in, nz_l, resolution)
    tidx = None
    if act is not None or sel is not None:
        base = act.to(lat.device) if act is not None else torch.arange(lat.shape[0], device=lat.device)
        tidx = base if sel is None else base.index_select(0, sel)
    data, _ = objective(synth, tidx)
    total = data
    if nz_l is not None and regularize_noise_weight:
        total = total + noise_regularization(nz_l) * regularize_noise_weight
    grads = torch.autograd.grad(total.sum(), [lat_l] + (nz_l or []))
    return data.detach(), synth.detach(), list(grads)


def _project_batch(G, target: torch.Tensor, init: torch.Tensor, seeds: list[int], device: torch.device, *,
                   space, num_steps, w_avg, w_std, initial_learning_rate, initial_noise_factor,
                   lr_rampdown_length, lr_rampup_length, noise_ramp_length, regularize_noise_weight,
                   optimize_noise, noise_init, loss, perceptual, mse_weight, lpips_weight, early_stop_patience,
                   early_stop_min_delta, early_stop_start, wplus_start, coarse_resolution, coarse_fraction, betas, eps,
                   batch_invariant, return_images,
                   return_noises, trajectory_every, callback) -> dict[str, Any]:
    b = target.shape[0]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    latents = init.to(device).clone()
    switch = int(math.ceil(wplus_start * num_steps)) if (space == "wplus" and wplus_start > 0) else 0
    if switch:
        latents = latents[:, :1].clone()  # W phase first: one w per image
    rows = latents.shape[1]
    out_rows = G.num_ws if space == "wplus" else 1
    noises: list[torch.Tensor] | None = None
    if optimize_noise and noise_init == "const":
        noises = [n.to(device).expand(b, -1, -1, -1).clone() for n in G.synthesis.const_noises()]
    elif optimize_noise:
        shapes = G.synthesis.noise_shapes()
        noises = [torch.cat([torch.randn(1, 1, *shape, generator=g) for g in gens]).to(device) if b else
                  torch.zeros(0, 1, *shape, device=device) for shape in shapes]
    variables = [latents] + (noises or [])
    adam = _Adam(variables, betas, eps)
    objective = ImageLoss(loss, target, perceptual=perceptual, mse_weight=mse_weight, lpips_weight=lpips_weight,
                          per_image=batch_invariant)
    coarse_steps = int(math.ceil(coarse_fraction * num_steps)) if coarse_resolution is not None else 0
    if coarse_steps:
        # area downsampling: each coarse pixel is the mean of the target pixels it covers
        coarse_target = F.avg_pool2d(target, G.img_resolution // coarse_resolution)
        coarse_objective = ImageLoss(loss, coarse_target, perceptual=perceptual, mse_weight=mse_weight,
                                     lpips_weight=lpips_weight, per_image=batch_invariant)

    active = torch.ones(b, dtype=torch.bool)
    steps = torch.zeros(b, dtype=torch.int64)
    best = torch.full((b,), float("inf"), dtype=torch.float64)
    since = torch.zeros(b, dtype=torch.int64)
    loss_hist = torch.full((b, num_steps), float("nan"))
    mse_hist = torch.full((b, num_steps), float("nan"))
    traj = []
    start_stop = int(math.ceil(early_stop_start * num_steps))
    anneal_start = num_steps - int(math.ceil(lr_rampdown_length * num_steps))
    skipped = torch.zeros(b, dtype=torch.int64)  # schedule steps an image skipped at a plateau

    for step in range(num_steps):
        if switch and step == switch:
            latents = latents.expand(-1, G.num_ws, -1).clone()
            rows = G.num_ws
            adam.expand(0, latents)
        act = active.nonzero().flatten()
        if act.numel() == 0:
            break
        all_active = act.numel() == b
        idx = None if all_active else act.to(device)
        # Each image runs on its own clock (step + the steps it skipped at a plateau).
        clocks = [step + int(skipped[i]) for i in act.tolist()]
        lr = torch.tensor([learning_rate(c, num_steps, initial_learning_rate=initial_learning_rate,
                                         lr_rampdown_length=lr_rampdown_length, lr_rampup_length=lr_rampup_length)
                           for c in clocks], dtype=torch.float32, device=device)
        scales = [latent_noise_scale(c, num_steps, w_std=w_std, initial_noise_factor=initial_noise_factor,
                                     noise_ramp_length=noise_ramp_length) for c in clocks]
        # Leaves for this step: the active rows only (frozen images are not computed at all).
        lat = latents if all_active else latents.index_select(0, idx)
        nz = None
        if noises is not None:
            nz = [n if all_active else n.index_select(0, idx) for n in noises]
        w_noise = None
        if any(sc > 0 for sc in scales):
            eps_w = torch.stack([torch.randn(rows, lat.shape[2], generator=gens[i]) * sc if sc > 0
                                 else torch.zeros(rows, lat.shape[2]) for i, sc in zip(act.tolist(), scales)])
            w_noise = eps_w.to(device)
        groups = [[k] for k in range(act.numel())] if batch_invariant else [list(range(act.numel()))]
        # every active image has taken exactly `step` steps, so the phase is each image's own
        coarse = step < coarse_steps
        step_objective, step_target = (coarse_objective, coarse_target) if coarse else (objective, target)
        data_parts, synth_parts, grad_parts = [], [], []
        for grp in groups:
            d, sy, gr = _loss_and_grads(G, step_objective, lat, nz, w_noise, grp, act if idx is not None else None,
                                        regularize_noise_weight, coarse_resolution if coarse else None)
            data_parts.append(d)
            synth_parts.append(sy)
            grad_parts.append(gr)
        data = torch.cat(data_parts)
        synth = torch.cat(synth_parts)
        grads = [torch.cat([g[k] for g in grad_parts]) for k in range(len(grad_parts[0]))]
        adam.step(grads, idx, lr)
        if noises is not None:
            for n in noises:
                sub = n if all_active else n.index_select(0, idx)
                if batch_invariant:
                    for k in range(sub.shape[0]):
                        normalize_noise_([sub[k:k + 1]])
                else:
                    normalize_noise_([sub])
                if not all_active:
                    n.index_copy_(0, idx, sub)

        with torch.no_grad():
            data_cpu = data.detach().double().cpu()
            loss_hist[act, step] = data_cpu.float()
            mse_hist[act, step] = image_mse(synth, step_target if all_active else
                                            step_target.index_select(0, idx)).cpu()
        steps[act] += 1
        if early_stop_patience is not None:
            clock_now = steps[act] + skipped[act]
            watch = clock_now >= start_stop
            improved = data_cpu < best[act] * (1.0 - early_stop_min_delta)
            best[act] = torch.where(watch & improved, data_cpu, best[act])
            since[act] = torch.where(watch & ~improved, since[act] + 1, torch.zeros_like(since[act]))
            for k in (since[act] >= early_stop_patience).nonzero().flatten().tolist():
                i = int(act[k])
                if clock_now[k] < anneal_start:  # plateau before the ramp-down: skip ahead to it
                    skipped[i] += anneal_start - int(clock_now[k])
                    since[i] = 0
                    best[i] = float("inf")
                else:  # plateau during the ramp-down: done
                    active[i] = False
        active &= (steps + skipped) < num_steps  # an image whose clock ran out is done
        if trajectory_every and (step + 1) % trajectory_every == 0:
            traj.append(latents.detach().expand(-1, out_rows, -1).cpu().clone())
        if callback is not None:
            callback(step, num_steps, active.clone())

    if space == "wplus" and latents.shape[1] == 1:
        latents = latents.expand(-1, G.num_ws, -1).clone()  # stopped before the switch to W+
    with torch.no_grad():
        groups = [slice(k, k + 1) for k in range(b)] if batch_invariant else [slice(0, b)]
        finals, losses, lps = [], [], []
        for sl in groups:
            rng = torch.arange(sl.start, sl.stop, device=device)
            f = _synthesize(G, latents[sl], None if noises is None else [n[sl] for n in noises])
            finals.append(f)
            losses.append(objective(f, rng)[0])
            lps.append(objective.lpips(f, rng))
        if b:
            final, final_loss = torch.cat(finals), torch.cat(losses)
            lp = None if lps[0] is None else torch.cat(lps)
        else:
            final = torch.zeros(0, 3, G.img_resolution, G.img_resolution)
            final_loss, lp = torch.zeros(0), None
        mse = image_mse(final, target)
    return {
        "latents": latents.detach().cpu(),
        "noises": [n.detach().cpu() for n in noises] if (noises is not None and return_noises) else None,
        "loss": final_loss.detach().cpu(), "mse": mse.cpu(), "lpips": None if lp is None else lp.cpu(),
        "steps": steps, "loss_history": loss_hist, "mse_history": mse_hist,
        "latent_history": torch.stack(traj, 1) if traj else None,
        "images": final.detach().cpu() if return_images else None,
    }
