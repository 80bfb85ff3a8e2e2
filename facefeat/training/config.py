"""Hyperparameters of a StyleGAN2(-ADA) fine-tuning run, with the published defaults.

Everything that changes what a run computes lives in :class:`TrainingConfig`; it is stored in
every snapshot's provenance and in ``training_options.json`` so that a run can be repeated and
resumed. ``None`` fields are "auto" and are resolved from the resolution and batch size by
:meth:`TrainingConfig.resolved`, with the formulas of stylegan2-ada-pytorch's ``--cfg=auto``
(Karras et al. 2020, "Training Generative Adversarial Networks with Limited Data", appendix
B/D):

* batch ``min(4096 // R, 32)`` (one GPU), clamped to at least 4;
* learning rate 0.002 at 1024 px and above, else 0.0025; Adam betas (0, 0.99), eps 1e-8;
* R1 gamma ``0.0002 * R**2 / batch``;
* G EMA half-life ``batch * 10 / 32`` kimg with a ramp-up of 0.05 (the half-life is at most
  5 % of the images shown so far).

The StyleGAN2 regularisation settings (Karras et al. 2020, "Analyzing and Improving the Image
Quality of StyleGAN", section 3.1 and appendix B) are the fixed defaults: lazy R1 every 16
minibatches, path-length regularisation every 4 with weight 2, decay 0.01 and half the batch,
style mixing with probability 0.9.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from facefeat.errors import ConfigError

AUGMENT_MODES = ("ada", "fixed", "none")
NAN_POLICIES = ("stop", "sanitize")
NOISE_MODES = ("random", "const", "none")

#: ADA's "bgc" pipeline (blit + geometric + color), every strength 1, NVIDIA's default.
BGC: dict[str, float] = {
    "xflip": 1.0, "rotate90": 1.0, "xint": 1.0,
    "scale": 1.0, "rotate": 1.0, "aniso": 1.0, "xfrac": 1.0,
    "brightness": 1.0, "contrast": 1.0, "lumaflip": 1.0, "hue": 1.0, "saturation": 1.0,
}


@dataclass(frozen=True)
class TrainingConfig:
    """Settings of :func:`facefeat.training.train_generator` (``None`` = auto, see module notes).

    Attributes
    ----------
    kimg : float
        Length of the run in thousands of real images shown to D (the total, also on resume).
    batch_size : int or None
        Minibatch (real and generated images per step). Must be a multiple of the
        discriminator's minibatch-stddev group (4 in the official configs) or smaller than it.
    g_lr, d_lr : float or None
        Adam learning rates before the lazy-regularisation correction.
    betas : tuple of float
        Adam betas before the correction; eps 1e-8.
    r1_gamma : float or None
        R1 weight on reals; 0 disables R1.
    r1_interval : int
        Lazy R1: every this many minibatches, with the loss multiplied by the interval and
        D's lr and betas corrected by ``c = interval / (interval + 1)`` (``lr * c``,
        ``beta ** c``).
    pl_weight, pl_interval, pl_decay, pl_batch_shrink : float, int, float, int
        Path-length regularisation of G (0 weight disables it).
    style_mixing_prob : float
        Probability that a generated minibatch uses two latents with a random crossover row.
    ema_kimg, ema_rampup : float or None
        Half-life of the G EMA in kimg and its ramp-up (``None`` rampup: none).
    w_avg_beta : float
        Decay of the tracked mean w (``G.mapping.w_avg``, used for truncation).
    noise_mode : {"random", "const", "none"}
        Synthesis noise while training (``"random"`` as both official code bases).
    augment : {"ada", "fixed", "none"}
        ADA (p adapted toward ``ada_target``), a fixed p, or no augmentation.
    augment_p : float
        Initial (``"ada"``) or fixed (``"fixed"``) augmentation probability.
    ada_target, ada_interval, ada_kimg : float, int, float
        Target of ``r_t = E[sign(D(real))]``; p is updated every ``ada_interval`` minibatches
        by ``sign(r_t - target) * batch * interval / (ada_kimg * 1000)`` (p can go from 0 to 1
        in ``ada_kimg`` kimg).
    augment_strengths : dict
        Per-augmentation multipliers of p (ADA's "bgc" pipeline by default).
    mirror : bool
        Add x-flipped copies of the training images (doubles the dataset).
    freeze_d : int
        FreezeD: freeze the first (highest-resolution) this many discriminator layers.
    nan_policy : {"stop", "sanitize"}
        ``"stop"``: stop at the first non-finite loss or gradient, write nothing newer than the
        last good snapshot. ``"sanitize"``: NVIDIA's behaviour (NaN -> 0, +-inf -> +-1e5 in the
        gradients) and go on; still stops if a weight becomes non-finite.
    seed : int
        Seeds the data order, latents, noise and augmentation (all explicit generators).
    tick_kimg, snapshot_kimg, sample_kimg, metrics_kimg : float
        Log line (JSONL + progress) every ``tick_kimg``; snapshot every ``snapshot_kimg``;
        sample grid every ``sample_kimg``; quality metrics every ``metrics_kimg`` (0: only at
        the end). All also happen at the end of the run.
    grid_size : int
        Sample grid has ``grid_size**2`` images from fixed z (seed ``seed``).
    metrics : tuple of str
        Any of ``"kid"``, ``"fid"``, ``"proj"`` (projection of held-out photos).
    metric_samples : int or None
        Generated images for KID/FID (None: as many as training images, at least 500).
    holdout : int
        Training images kept out of training for the projection metric.
    proj_steps : int
        Optimisation steps per held-out projection.
    """

    kimg: float = 200.0
    batch_size: int | None = None
    g_lr: float | None = None
    d_lr: float | None = None
    betas: tuple[float, float] = (0.0, 0.99)
    eps: float = 1e-8
    r1_gamma: float | None = None
    r1_interval: int = 16
    pl_weight: float = 2.0
    pl_interval: int = 4
    pl_decay: float = 0.01
    pl_batch_shrink: int = 2
    style_mixing_prob: float = 0.9
    ema_kimg: float | None = None
    ema_rampup: float | None = 0.05
    w_avg_beta: float = 0.995
    noise_mode: str = "random"
    augment: str = "ada"
    augment_p: float = 0.0
    ada_target: float = 0.6
    ada_interval: int = 4
    ada_kimg: float = 500.0
    augment_strengths: dict[str, float] = field(default_factory=lambda: dict(BGC))
    mirror: bool = False
    freeze_d: int = 0
    nan_policy: str = "stop"
    seed: int = 0
    tick_kimg: float = 4.0
    snapshot_kimg: float = 50.0
    sample_kimg: float = 50.0
    metrics_kimg: float = 0.0
    grid_size: int = 4
    metrics: tuple[str, ...] = ("kid", "fid", "proj")
    metric_samples: int | None = None
    holdout: int = 8
    proj_steps: int = 100

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        object.__setattr__(self, "metrics", tuple(self.metrics))
        object.__setattr__(self, "augment_strengths", {str(k): float(v) for k, v in self.augment_strengths.items()})
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~facefeat.errors.ConfigError` naming the bad field and the fix."""
        def bad(name: str, why: str) -> ConfigError:
            return ConfigError(f"training config: {name}={getattr(self, name)!r} {why}")

        if not self.kimg > 0:
            raise bad("kimg", "must be > 0 (thousands of real images to show the discriminator)")
        if self.batch_size is not None and self.batch_size < 1:
            raise bad("batch_size", "must be >= 1")
        for name in ("g_lr", "d_lr", "r1_gamma", "ema_kimg", "ema_rampup"):
            v = getattr(self, name)
            if v is not None and v < 0:
                raise bad(name, "must be >= 0")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", "must be two numbers in [0, 1)")
        for name in ("r1_interval", "pl_interval", "pl_batch_shrink", "ada_interval", "grid_size"):
            if int(getattr(self, name)) < 1:
                raise bad(name, "must be >= 1")
        if not 0 <= self.style_mixing_prob <= 1:
            raise bad("style_mixing_prob", "must be in [0, 1]")
        if not 0 <= self.augment_p <= 1:
            raise bad("augment_p", "must be in [0, 1]")
        if self.pl_weight < 0 or not 0 <= self.pl_decay <= 1:
            raise ConfigError(f"training config: pl_weight must be >= 0 and pl_decay in [0, 1], got "
                              f"{self.pl_weight}, {self.pl_decay}")
        if self.augment not in AUGMENT_MODES:
            raise bad("augment", f"is not one of {AUGMENT_MODES}")
        if self.nan_policy not in NAN_POLICIES:
            raise bad("nan_policy", f"is not one of {NAN_POLICIES}")
        if self.noise_mode not in NOISE_MODES:
            raise bad("noise_mode", f"is not one of {NOISE_MODES}")
        unknown = sorted(set(self.augment_strengths) - set(BGC))
        if unknown:
            raise ConfigError(f"training config: unknown augmentations {unknown} in augment_strengths; known: "
                              f"{sorted(BGC)}")
        if self.freeze_d < 0 or self.holdout < 0 or self.proj_steps < 0:
            raise ConfigError("training config: freeze_d, holdout and proj_steps must be >= 0")
        if self.ada_kimg <= 0:
            raise bad("ada_kimg", "must be > 0")
        for name in ("tick_kimg", "snapshot_kimg", "sample_kimg"):
            if not getattr(self, name) > 0:
                raise bad(name, "must be > 0")
        if self.metrics_kimg < 0:
            raise bad("metrics_kimg", "must be >= 0 (0: only at the end)")
        unknown = sorted(set(self.metrics) - {"kid", "fid", "proj"})
        if unknown:
            raise ConfigError(f"training config: unknown metrics {unknown}; choose from kid, fid, proj")

    def resolved(self, resolution: int) -> TrainingConfig:
        """A copy with every auto (``None``) field filled for ``resolution`` (see module notes)."""
        batch = self.batch_size if self.batch_size is not None else max(4, min(4096 // resolution, 32))
        lr = 0.002 if resolution >= 1024 else 0.0025
        return dataclasses.replace(
            self,
            batch_size=batch,
            g_lr=lr if self.g_lr is None else self.g_lr,
            d_lr=lr if self.d_lr is None else self.d_lr,
            r1_gamma=0.0002 * resolution ** 2 / batch if self.r1_gamma is None else self.r1_gamma,
            ema_kimg=batch * 10 / 32 if self.ema_kimg is None else self.ema_kimg,
        )

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self, ("betas", "metrics"))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingConfig:
        return config_from_dict(cls, d, label="training config", tuple_fields=("betas", "metrics"))

    def replace(self, **changes: Any) -> TrainingConfig:
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------------------------
# Shared by the training configs (TrainingConfig here, encoder.EncoderTrainingConfig)
# --------------------------------------------------------------------------------------------

def config_to_dict(config: Any, tuple_fields: tuple[str, ...] = ()) -> dict[str, Any]:
    """``dataclasses.asdict(config)`` with the tuple fields as lists (plain JSON values)."""
    d = dataclasses.asdict(config)
    for name in tuple_fields:
        d[name] = list(getattr(config, name))
    return d


def config_from_dict(cls: type, d: Mapping[str, Any], *, label: str, tuple_fields: tuple[str, ...] = ()) -> Any:
    """``cls(**d)`` after rejecting unknown fields and turning ``tuple_fields`` back into tuples."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ConfigError(f"{label}: unknown fields {unknown}; known: {sorted(known)}")
    kw = dict(d)
    for name in tuple_fields:
        if name in kw:
            kw[name] = tuple(kw[name])
    return cls(**kw)


def changed_fields(config: Any, defaults: Any) -> dict[str, Any]:
    """The fields of ``config`` that differ from ``defaults`` (what a resuming caller asked for)."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(defaults, f.name)}


def resume_config(saved: Any, overrides: Mapping[str, Any], *, resumable: tuple[str, ...], restart: str) -> Any:
    """``saved`` (a resumed run's config) with ``overrides`` applied.

    An override that is None or equal to the saved value is ignored; any other change of a
    field outside ``resumable`` raises :class:`~facefeat.errors.ConfigError` telling the user to
    start a new run with ``restart`` (e.g. ``--init OUT/x.safetensors``) instead.
    """
    changed = {}
    for k, v in overrides.items():
        if v is None or getattr(saved, k) == v:
            continue
        if k not in resumable:
            raise ConfigError(f"resume: {k} was {getattr(saved, k)!r} in this run and cannot change to {v!r} "
                              f"(only {', '.join(resumable)} can); start a new run with {restart} to change it")
        changed[k] = v
    return dataclasses.replace(saved, **changed)
