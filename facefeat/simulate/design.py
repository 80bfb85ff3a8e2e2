"""The simulated study's design: generator, latents, true hazard direction, survival times.

Everything here is a plain function of its arguments and a seed; the pipeline that renders,
inverts and models (:mod:`facefeat.simulate.pipeline`) composes them.

The generative model
--------------------
For subject ``i``: ``z_i ~ N(0, I)``, ``w_i = mapping(z_i, truncation_psi)``, a true unit
direction ``d`` in W, the standardised projection

    s_i = ((w_i - w_mean) . d - m) / sd,   m, sd: mean and SD of (w - w_mean) . d in the population

(the population moments come from :data:`POPULATION_SAMPLES` latents drawn with a fixed seed, so
they do not depend on N), the log relative hazard ``eta_i = effect * s_i`` (``effect`` is the
log hazard ratio per SD of the projection), and a survival time from the proportional-hazards
model ``h(t | w_i) = h0(t) exp(eta_i)`` with a Weibull baseline ``H0(t) = (t / scale)^shape``
(``shape = 1``: exponential) drawn by inversion (Bender, Augustin & Blettner 2005):

    T_i = scale * (-log U_i * exp(-eta_i))^(1 / shape),   U_i ~ U(0, 1).

Censoring times are independent of everything else: uniform on ``(0, c)`` or exponential with
rate ``c``, ``c`` solved so that the *expected* censored fraction over the simulated subjects,
``mean_i P(C < T_i)``, equals the target; the achieved fraction is reported.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from facefeat.errors import ConfigError, InputError, ModelError

log = logging.getLogger(__name__)

BASELINES = ("weibull", "exponential")
CENSORING_DISTS = ("uniform", "exponential")
#: Latents drawn (fixed seed) for the population mean and SD of the projection on the direction.
POPULATION_SAMPLES = 20000
POPULATION_SEED = 20240601
#: Name of the bundled tiny test generator (32 px, num_ws 8, w_dim 64).
TINY_GENERATOR = "tiny"
#: Package data file of the tiny generator (facefeat format; see facefeat/data/README.md).
_TINY_FILE = "tiny_generator.safetensors"


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------

def tiny_generator_path() -> Path:
    """Path of the bundled tiny StyleGAN2 test generator (package data, ``facefeat/data/``).

    Raises
    ------
    ModelError
        Not found (an install that left out facefeat's package data, or facefeat imported from a
        zip file).
    """
    from importlib.resources import files

    path = Path(str(files("facefeat").joinpath("data", _TINY_FILE)))
    if not path.is_file() or not path.with_suffix(".json").is_file():
        raise ModelError(f"the tiny test generator {path} (and its .json) is not installed with facefeat: reinstall "
                         "facefeat, or pass --generator with a checkpoint file or a registry name")
    return path


def resolve_generator(spec: str | os.PathLike | None) -> Path:
    """A generator checkpoint path from ``None`` / ``"tiny"`` (the bundled test generator), a file
    (NVIDIA ``.pkl``, rosinality ``.pt``, facefeat ``.safetensors``/``.json``) or a registry name."""
    if spec is None or str(spec) == TINY_GENERATOR:
        return tiny_generator_path()
    from facefeat.models.registry import resolve_model

    return resolve_model(spec)


def output_range(G, *, n: int = 512, seed: int = POPULATION_SEED, truncation_psi: float = 1.0) -> dict[str, Any]:
    """How a generator's images sit in the displayable range [-1, 1].

    Returns the fraction of pixel values outside [-1, 1] (these are clipped when an image is
    saved) and per-channel median and 99th percentile of ``|x - median|`` over ``n`` images
    rendered with the stored (``const``) noise.
    """
    import torch

    z = torch.from_numpy(np.random.RandomState(seed).randn(n, G.z_dim).astype(np.float32))
    with torch.no_grad():
        img = G.synthesis(G.mapping(z.to(G.w_avg.device), truncation_psi=truncation_psi), noise_mode="const")
    x = img.transpose(0, 1).reshape(img.shape[1], -1).double().cpu()
    med = x.median(dim=1).values
    spread = torch.quantile((x - med[:, None]).abs()[:, :: max(1, x.shape[1] // 200000)], 0.99, dim=1)
    return {"clipped_fraction": float((img.abs() > 1).float().mean()), "median": med.tolist(),
            "q99_abs_dev": spread.tolist()}


def calibrate_output(G, *, n: int = 512, seed: int = POPULATION_SEED, truncation_psi: float = 1.0,
                     before: dict[str, Any] | None = None):
    """Rescale a generator's output in place so that 99 % of pixel values fall inside [-1, 1].

    ``G'(w) = (G(w) - median) / q99`` per colour channel, exact: the image of the skip
    architecture is the sum of the (upsampled) ToRGB outputs, each linear in its weight and
    bias, and upsampling keeps constants; so every ToRGB weight and bias is divided by ``q99``
    and the last block's bias shifted by ``-median / q99``. Nothing else changes (the latent
    space and the mapping are untouched), so latents of ``G'`` are latents of ``G``.

    Meant for untrained test generators whose images are mostly outside the displayable range:
    clipping them on saving destroys the information projection needs (see docs/simulate.md).

    ``before``: :func:`output_range` of ``G`` with the same ``n``, ``seed`` and
    ``truncation_psi`` when the caller has already measured it (saves rendering it again).

    Returns
    -------
    dict
        ``median``, ``scale`` (per channel), and the clipped fraction before and after.
    """
    import torch

    if getattr(G.synthesis.config, "conv_clamp", None) is not None:
        raise ModelError("output calibration needs a generator without conv_clamp (the clamp is not scale-free); "
                         "use --calibrate-output off")
    if before is None:
        before = output_range(G, n=n, seed=seed, truncation_psi=truncation_psi)
    med = torch.tensor(before["median"], dtype=torch.float32)
    scale = torch.tensor(before["q99_abs_dev"], dtype=torch.float32).clamp_min(1e-6)
    blocks = [getattr(G.synthesis, f"b{r}") for r in G.synthesis.block_resolutions]
    with torch.no_grad():
        for b in blocks:
            dev = b.torgb.weight.device
            b.torgb.weight.div_(scale.to(dev).view(-1, 1, 1, 1))
            b.torgb.bias.div_(scale.to(dev))
            b.torgb._prepared.clear()
        blocks[-1].torgb.bias.sub_((med / scale).to(blocks[-1].torgb.bias.device))
    after = output_range(G, n=n, seed=seed, truncation_psi=truncation_psi)
    return {"median": med.tolist(), "scale": scale.tolist(), "clipped_fraction_before": before["clipped_fraction"],
            "clipped_fraction_after": after["clipped_fraction"]}


# --------------------------------------------------------------------------------------------
# Latents and direction
# --------------------------------------------------------------------------------------------

def sample_latents(G, n: int, *, seed: int | np.random.SeedSequence, truncation_psi: float = 1.0,
                   batch_size: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """``(z [n, z_dim], w [n, w_dim])``: z drawn from ``seed``, w = mapping(z, truncation_psi)."""
    import torch

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, G.z_dim)).astype(np.float32)
    out = []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            zz = torch.from_numpy(z[s:s + batch_size]).to(G.w_avg.device)
            out.append(G.mapping(zz, truncation_psi=truncation_psi)[:, 0].double().cpu().numpy())
    w = np.concatenate(out) if out else np.zeros((0, G.w_dim))
    return z, w


def random_direction(w_dim: int, *, seed: int | np.random.SeedSequence) -> np.ndarray:
    """A uniformly random unit vector in R^w_dim."""
    v = np.random.default_rng(seed).standard_normal(w_dim)
    return v / np.linalg.norm(v)


def load_direction(path: str | os.PathLike, *, w_dim: int, num_ws: int | None = None) -> tuple[np.ndarray, dict]:
    """A unit W direction from a probe file (``facefeat explain probe`` output, safetensors) or a
    ``.npy`` array.

    Accepted shapes: ``(w_dim,)``, or ``(num_ws, w_dim)`` for a W+ direction, which is reduced to
    its W equivalent ``sum_l d_l`` (the change of the score when every layer moves by the same
    W step; the same as the layer mean up to the norm).

    Raises
    ------
    InputError
        Missing file or a shape that does not fit the generator, naming ``--direction``.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"--direction {p}: no such file; give a probe file (.safetensors from 'facefeat explain "
                         f"probe') or a .npy vector of length {w_dim}, or use --direction random")
    info: dict[str, Any] = {"source": str(p)}
    if p.suffix == ".npy":
        try:
            d = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise InputError(f"--direction {p}: not a readable .npy array ({exc})") from exc
        info["kind"] = "npy"
    else:
        from facefeat.explain.probes import load_probe

        probe = load_probe(p)
        d = probe.direction()
        info.update(kind="probe", name=probe.name, space=probe.space, label_column=probe.label_column)
    d = np.asarray(d, dtype=np.float64)
    if d.ndim == 2 and d.shape[1] == w_dim and (num_ws is None or d.shape[0] == num_ws):
        d = d.sum(axis=0)
        info["reduced_from"] = "W+ (sum over layers)"
    if d.shape != (w_dim,):
        expect = f"({w_dim},)" + (f" or ({num_ws}, {w_dim})" if num_ws else "")
        raise InputError(f"--direction {p}: shape {tuple(d.shape)} does not fit this generator (w_dim {w_dim}); "
                         f"expected {expect}. Use a direction made for the same generator, or --direction random")
    norm = float(np.linalg.norm(d))
    if not np.isfinite(norm) or norm == 0:
        raise InputError(f"--direction {p}: the vector is zero or not finite; it defines no direction")
    return d / norm, info


def population_moments(G, direction: np.ndarray, *, truncation_psi: float = 1.0) -> dict[str, Any]:
    """Mean latent and mean / SD of the projection ``(w - w_mean) . d`` over the population
    (:data:`POPULATION_SAMPLES` latents, fixed seed)."""
    _, w = sample_latents(G, POPULATION_SAMPLES, seed=POPULATION_SEED, truncation_psi=truncation_psi)
    w_mean = w.mean(axis=0)
    proj = (w - w_mean) @ direction
    sd = float(proj.std(ddof=1))
    if not sd > 0:
        raise ModelError("the latents do not vary along the direction (SD 0); choose another direction")
    return {"w_mean": w_mean, "proj_mean": float(proj.mean()), "proj_sd": sd, "n": POPULATION_SAMPLES}


def standardized_projection(w: np.ndarray, direction: np.ndarray, moments: dict[str, Any]) -> np.ndarray:
    """``s = ((w - w_mean) . d - m) / sd`` (see the module notes)."""
    return ((np.asarray(w, float) - moments["w_mean"]) @ direction - moments["proj_mean"]) / moments["proj_sd"]


# --------------------------------------------------------------------------------------------
# Survival times
# --------------------------------------------------------------------------------------------

def check_design(*, n: int | None = None, effect: float | None = None, censoring: float | None = None,
                 baseline: str | None = None, shape: float | None = None, scale: float | None = None,
                 censoring_dist: str | None = None, truncation_psi: float | None = None, folds: int | None = None,
                 ) -> None:
    """Refuse bad design values with a message naming the option and the fix."""
    if effect is not None and not math.isfinite(effect):
        raise ConfigError(f"--effect must be a finite number (log hazard ratio per SD), got {effect}")
    if censoring is not None and not (0.0 <= censoring < 1.0):
        raise ConfigError(f"--censoring must be a fraction in [0, 1) (0.3 = 30 % censored), got {censoring}")
    if baseline is not None and baseline not in BASELINES:
        raise ConfigError(f"--baseline must be one of {BASELINES}, got {baseline!r}")
    if censoring_dist is not None and censoring_dist not in CENSORING_DISTS:
        raise ConfigError(f"--censoring-dist must be one of {CENSORING_DISTS}, got {censoring_dist!r}")
    if shape is not None and not (math.isfinite(shape) and shape > 0):
        raise ConfigError(f"--shape (Weibull shape) must be a positive number, got {shape}")
    if scale is not None and not (math.isfinite(scale) and scale > 0):
        raise ConfigError(f"--scale (Weibull scale, time units) must be a positive number, got {scale}")
    if truncation_psi is not None and not (math.isfinite(truncation_psi) and 0 < truncation_psi <= 1):
        raise ConfigError(f"--psi (truncation) must be in (0, 1], got {truncation_psi}")
    if folds is not None and folds < 2:
        raise ConfigError(f"--folds must be at least 2, got {folds}")
    if n is not None:
        k = folds or 2
        expected_events = n * (1.0 - (censoring or 0.0))
        need = max(10 * k, 20)
        if n < need or expected_events < 2 * k:
            raise ConfigError(f"--n {n} is too small for {k}-fold cross-validation (need at least {need} subjects "
                              f"and {2 * k} expected events; {expected_events:.0f} expected with --censoring "
                              f"{censoring}); raise --n or lower --folds")


def _bisect(f, lo: float, hi: float, *, iters: int = 200) -> float:
    """Root of a monotone increasing ``f`` in [lo, hi] (hi is widened until f(hi) >= 0)."""
    for _ in range(200):
        if f(hi) >= 0:
            break
        lo, hi = hi, hi * 2
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def calibrate_censoring(event_time: np.ndarray, target: float, dist: str = "uniform") -> float:
    """The censoring parameter whose expected censored fraction over these event times is ``target``.

    ``uniform``: the upper bound ``c`` of ``C ~ U(0, c)``; ``P(C < T) = min(T, c) / c``.
    ``exponential``: the rate ``c`` of ``C ~ Exp(c)``; ``P(C < T) = 1 - exp(-c T)``.
    """
    t = np.asarray(event_time, float)
    if dist == "uniform":
        # expected fraction decreases in c: solve g(c) = target - mean(min(t, c) / c) = 0 on 1/c
        frac = lambda inv_c: float(np.mean(np.minimum(t * inv_c, 1.0))) - target  # noqa: E731
        return 1.0 / _bisect(frac, 0.0, 1.0 / float(np.median(t)))
    if dist == "exponential":
        frac = lambda rate: float(np.mean(-np.expm1(-rate * t))) - target  # noqa: E731
        return _bisect(frac, 0.0, 1.0 / float(np.median(t)))
    raise ConfigError(f"censoring distribution must be one of {CENSORING_DISTS}, got {dist!r}")


def simulate_times(eta: np.ndarray, *, seed: int | np.random.SeedSequence, baseline: str = "weibull",
                   shape: float = 1.5, scale: float = 5.0, censoring: float = 0.3,
                   censoring_dist: str = "uniform") -> dict[str, Any]:
    """Survival times under proportional hazards with log relative hazards ``eta``.

    Parameters
    ----------
    eta : array (n,)
        Log relative hazard of each subject.
    seed : int or SeedSequence
        One stream for the event times, a second for the censoring times.
    baseline : {"weibull", "exponential"}
        ``H0(t) = (t / scale)^shape``; exponential forces ``shape = 1`` (constant hazard 1/scale).
    shape, scale : float
        Weibull shape (> 1: hazard increasing with time) and scale (time units; the median
        survival of a subject with ``eta = 0`` is ``scale * log(2)^(1/shape)``).
    censoring : float in [0, 1)
        Target censored fraction; 0 means every event is observed.
    censoring_dist : {"uniform", "exponential"}

    Returns
    -------
    dict
        ``time``, ``event`` (bool), ``event_time``, ``censor_time`` (inf when uncensored) arrays,
        ``censoring_param`` (uniform upper bound or exponential rate; None without censoring),
        ``censoring_achieved`` (fraction censored) and ``censoring_expected``.
    """
    check_design(censoring=censoring, baseline=baseline, shape=shape, scale=scale, censoring_dist=censoring_dist)
    eta = np.asarray(eta, dtype=np.float64)
    k = 1.0 if baseline == "exponential" else float(shape)
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    s_event, s_cens = ss.spawn(2)
    u = np.random.default_rng(s_event).uniform(size=len(eta))
    u = np.clip(u, np.finfo(float).tiny, 1.0)
    event_time = scale * (-np.log(u) * np.exp(-eta)) ** (1.0 / k)
    param = None
    expected = 0.0
    if censoring > 0 and len(eta):
        param = calibrate_censoring(event_time, censoring, censoring_dist)
        rng = np.random.default_rng(s_cens)
        if censoring_dist == "uniform":
            censor_time = rng.uniform(0.0, param, size=len(eta))
            expected = float(np.mean(np.minimum(event_time / param, 1.0)))
        else:
            censor_time = rng.exponential(1.0 / param, size=len(eta))
            expected = float(np.mean(-np.expm1(-param * event_time)))
    else:
        censor_time = np.full(len(eta), np.inf)
    event = event_time <= censor_time
    time = np.where(event, event_time, censor_time)
    return {"time": time, "event": event, "event_time": event_time, "censor_time": censor_time,
            "censoring_param": param, "censoring_expected": expected,
            "censoring_achieved": float(1.0 - event.mean()) if len(eta) else math.nan,
            "baseline": baseline, "shape": k, "scale": float(scale), "censoring_dist": censoring_dist,
            "censoring_target": float(censoring)}
