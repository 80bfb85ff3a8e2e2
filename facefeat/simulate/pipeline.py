"""The planted-signal simulation: render, invert, model, compare with the truth.

:func:`simulate` runs one simulated study end to end through the toolkit's own pieces
(:func:`facefeat.inversion.project` or the e4e encoder, the standard feature-table layout,
:class:`facefeat.survival.SurvivalEstimator` with :func:`facefeat.survival.cross_validate`)
and reports how much of the planted signal comes back. :func:`power_curve` repeats the
modelling over a grid of cohort sizes. See ``docs/simulate.md`` for the definitions.
"""

from __future__ import annotations

import json
import logging
import math
import time as _time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from facefeat.errors import ConfigError, FacefeatError
from facefeat.io.jsonsafe import dumps_json, to_jsonable
from facefeat.simulate import design

log = logging.getLogger(__name__)

INVERSIONS = ("projection", "encoder")
SPACES = ("w", "wplus")
CALIBRATE = ("auto", "on", "off")
#: ``auto`` output calibration acts when more than this fraction of pixel values would be clipped.
CALIBRATE_THRESHOLD = 0.05

#: Default survival model: an almost-ridge elastic-net Cox model on standardised latents whose
#: penalty is chosen by inner CV in each training fold (see docs/simulate.md for the reasons).
DEFAULT_MODEL = "coxnet"
DEFAULT_MODEL_PARAMS: dict[str, Any] = {"l1_ratio": 0.05}

#: Projection settings of the simulation that differ from :func:`facefeat.inversion.project`'s
#: defaults: renders use the generator's stored noise, so projection keeps that noise; no latent
#: noise exploration (it slows convergence on generator renders, which have an exact preimage).
PROJECTION_DEFAULTS: dict[str, Any] = {"optimize_noise": False, "initial_noise_factor": 0.0,
                                       "initial_learning_rate": 0.1, "lr_rampdown_length": 0.25,
                                       "lr_rampup_length": 0.05}


@dataclass
class Cohort:
    """One simulated cohort before modelling (latents, images, inversion)."""

    subject_ids: list[str]
    z: np.ndarray
    w: np.ndarray  # true W latents [n, w_dim]
    images: np.ndarray  # uint8 [n, R, R, 3]
    latents: np.ndarray  # recovered [n, rows, w_dim]
    column: str  # feature column name, e.g. stylegan2__latent
    diag: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    inversion: dict[str, Any] = field(default_factory=dict)


@dataclass
class SimulationResult:
    """What :func:`simulate` returns: ``summary`` (JSON-able), the cohort and the fitted models."""

    summary: dict[str, Any]
    cohort: Cohort
    clinical: pd.DataFrame
    estimator: Any
    oracle_estimator: Any
    cv: Any
    oracle_cv: Any
    out: Path | None = None

    def table(self) -> str:
        """The headline figures as a Markdown table."""
        return summary_table(self.summary)


# --------------------------------------------------------------------------------------------
# Pieces
# --------------------------------------------------------------------------------------------

def load_simulation_generator(generator: Any = None, *, device: str = "cpu", calibrate: str = "auto",
                              truncation_psi: float = 1.0):
    """Load the generator (``None``/``"tiny"``, a file or a registry name) and calibrate its
    output range when asked (``auto``: when more than 5 % of pixel values would be clipped).

    Returns ``(G, info)``; ``info`` records the checkpoint, its sha256 and the calibration.
    """
    from facefeat.io.hashing import sha256_file
    from facefeat.models.checkpoints import load_generator

    if calibrate not in CALIBRATE:
        raise ConfigError(f"--calibrate-output must be one of {CALIBRATE}, got {calibrate!r}")
    path = design.resolve_generator(generator)
    G = load_generator(path, device=device)
    info: dict[str, Any] = {"checkpoint": str(path), "sha256": sha256_file(path), "name": str(generator or "tiny"),
                            "resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim, "z_dim": G.z_dim}
    rng = design.output_range(G, truncation_psi=truncation_psi)
    info["clipped_fraction"] = rng["clipped_fraction"]
    info["calibration"] = None
    if calibrate == "on" or (calibrate == "auto" and rng["clipped_fraction"] > CALIBRATE_THRESHOLD):
        info["calibration"] = design.calibrate_output(G, truncation_psi=truncation_psi, before=rng)
        log.warning("generator output rescaled: %.0f %% of its pixel values were outside [-1, 1] (clipped on saving); "
                    "now %.1f %% (--calibrate-output off to keep it as is)", 100 * rng["clipped_fraction"],
                    100 * info["calibration"]["clipped_fraction_after"])
    return G, info


def render(G, w: np.ndarray, *, noise: str = "const", seed: int = 0, batch_size: int = 256) -> np.ndarray:
    """Images ``uint8 [n, R, R, 3]`` of W latents (every layer gets the same w)."""
    import torch

    from facefeat.inversion.metrics import synth_to_uint8

    if noise not in ("const", "random"):
        raise ConfigError(f"--render-noise must be 'const' or 'random', got {noise!r}")
    out = []
    gen = torch.Generator(device=G.w_avg.device).manual_seed(int(seed))
    with torch.no_grad():
        for s in range(0, len(w), batch_size):
            ws = torch.as_tensor(w[s:s + batch_size], dtype=torch.float32, device=G.w_avg.device)
            ws = ws.unsqueeze(1).expand(-1, G.num_ws, -1)
            out.append(synth_to_uint8(G.synthesis(ws, noise_mode=noise, generator=gen)))
    return np.concatenate(out) if out else np.zeros((0, G.img_resolution, G.img_resolution, 3), np.uint8)


def invert(G, images: np.ndarray, *, method: str = "projection", space: str = "w", steps: int = 600,
           seed: int = 0, batch_size: int | None = 400, encoder: str | None = None, device: str = "cpu",
           projection_kwargs: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray], dict]:
    """Latents ``[n, rows, w_dim]`` of rendered images, per-image diagnostics and the settings.

    ``projection``: :func:`facefeat.inversion.project` (W: rows = 1, W+: rows = num_ws), image
    ``i`` seeded ``seed + i``. ``encoder``: an e4e checkpoint's W+ codes
    (:func:`facefeat.models.e4e.encode`), then reconstruction metrics from the generator.
    """
    import torch

    from facefeat.inversion.metrics import image_mse, psnr_from_mse, to_target

    if method not in INVERSIONS:
        raise ConfigError(f"--inversion must be one of {INVERSIONS}, got {method!r}")
    if method == "projection":
        from facefeat.inversion import project

        if space not in SPACES:
            raise ConfigError(f"--space must be one of {SPACES}, got {space!r}")
        kw = {**PROJECTION_DEFAULTS, **(projection_kwargs or {})}
        # project() computes the w statistics once per call, from its own w_avg_samples / w_avg_seed
        res = project(G, to_target(images), space=space, num_steps=int(steps), seed=int(seed), device=device,
                      batch_size=batch_size, return_noises=False, **kw)
        diag = {"loss": res.loss.double().numpy(), "mse": res.mse.double().numpy(),
                "psnr": res.psnr.double().numpy(), "lpips": None, "steps": res.steps.numpy().astype(np.int32)}
        return res.latents.double().numpy(), diag, {"method": method, **res.params}
    if not encoder:
        raise ConfigError("--inversion encoder needs --encoder PATH (an e4e checkpoint for this generator, e.g. from "
                          "'facefeat train encoder')")
    from facefeat.models.e4e import encode, load_e4e
    from facefeat.models.e4e.network import STYLE_DIM

    if G.w_dim != STYLE_DIM:
        raise ConfigError(f"--inversion encoder: e4e encoders give {STYLE_DIM}-dimensional codes but this generator's "
                          f"w_dim is {G.w_dim} (the tiny test generators have 64); use --inversion projection, or a "
                          f"generator with w_dim {STYLE_DIM}")
    ck = load_e4e(encoder, device=device, num_ws=G.num_ws)
    t0 = _time.perf_counter()
    codes = encode(ck.encoder, images, latent_avg=ck.latent_avg, batch_size=batch_size or 64, device=device)
    with torch.no_grad():
        synth = G.synthesis(codes.to(G.w_avg.device), noise_mode="const")
        mse = image_mse(synth, to_target(images, device=synth.device)).double().cpu()
    diag = {"loss": mse.numpy(), "mse": mse.numpy(), "psnr": psnr_from_mse(mse).numpy(), "lpips": None,
            "steps": np.zeros(len(images), np.int32)}
    return codes.double().numpy(), diag, {"method": method, "encoder": str(encoder),
                                          "seconds": _time.perf_counter() - t0}


def w_equivalent(coef: np.ndarray, rows: int, w_dim: int) -> np.ndarray:
    """A latent-space gradient ``[rows * w_dim]`` as a W direction: the sum over the W+ rows (the
    change of the linear predictor when every layer moves by the same W step)."""
    return np.asarray(coef, float).reshape(rows, w_dim).sum(axis=0)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else math.nan


def _model_params(model: str, model_params: dict | None) -> dict[str, Any]:
    """``model_params``, or :data:`DEFAULT_MODEL_PARAMS` for the default model when none are given."""
    if model_params is not None:
        return dict(model_params)
    return dict(DEFAULT_MODEL_PARAMS) if model == DEFAULT_MODEL else {}


def make_estimator(model: str = DEFAULT_MODEL, model_params: dict | None = None, *, pca: Any = None,
                   columns: list[str] | None = None, seed: int = 0):
    """The survival estimator of the simulation: standardised latent columns (optionally PCA) and
    ``model`` (see :data:`DEFAULT_MODEL`)."""
    from facefeat.survival.blocks import FeatureBlock
    from facefeat.survival.estimator import SurvivalEstimator

    params = _model_params(model, model_params)
    block = FeatureBlock(columns=columns, categorical=(), impute="median", scale=True, pca=pca, random_state=seed)
    return SurvivalEstimator(model, model_params=params or None, blocks={"image": block}, random_state=seed)


def _latent_frame(latents: np.ndarray, column: str, index: list[str]) -> pd.DataFrame:
    from facefeat.io.features import flat_columns

    flat = latents.reshape(len(latents), -1)
    # the names every reader of the feature table gives a flattened embedding column
    return pd.DataFrame(flat, columns=flat_columns(column, flat.shape[1]), index=pd.Index(index, name="subject_id"))


def _fit_cv(X: pd.DataFrame, y: np.ndarray, *, model, model_params, pca, folds, repeats, seed):
    from sklearn.base import clone

    from facefeat.survival.cox import hazard_ratio_per_sd
    from facefeat.survival.validation import cross_validate

    est = make_estimator(model, model_params, pca=pca, columns=list(X.columns), seed=seed)
    cv = cross_validate(est, X, y, n_splits=folds, n_repeats=repeats, random_state=seed)
    row = cv.summary.set_index("metric").loc["c_index"]
    oof = cv.oof
    test = hazard_ratio_per_sd(oof["risk"].to_numpy(), oof["time"].to_numpy(), oof["event"].to_numpy(bool))
    fitted = clone(est).fit(X, y)
    figures = {"c_index": float(row["mean"]), "c_index_ci": [float(row["ci_low"]), float(row["ci_high"])],
               "c_index_sd": float(row["sd"]), "oof_hr_per_sd": test["hr"], "oof_p": test["p"]}
    return fitted, cv, figures


def _direction_of(est, rows: int, w_dim: int) -> np.ndarray:
    coef = est.coefficients(space="input").to_numpy()
    return w_equivalent(coef, rows, w_dim)


def inversion_quality(w_true: np.ndarray, latents: np.ndarray, direction: np.ndarray,
                      moments: dict[str, Any]) -> dict[str, float]:
    """How well inversion recovered the latents: median over dims of corr(w_j, w_hat_j), median
    per-subject cosine of the centred latents, and corr(s, s_hat) of the true standardised
    projection with the one computed from the recovered (W-equivalent: layer mean) latents."""
    w_hat = latents.mean(axis=1)
    corr = [np.corrcoef(w_true[:, j], w_hat[:, j])[0, 1] for j in range(w_true.shape[1])]
    c = moments["w_mean"]
    a, b = w_true - c, w_hat - c
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    s = design.standardized_projection(w_true, direction, moments)
    s_hat = design.standardized_projection(w_hat, direction, moments)
    return {"median_dim_corr": float(np.nanmedian(corr)), "median_latent_cosine": float(np.median(cos)),
            "score_corr": float(np.corrcoef(s, s_hat)[0, 1])}


# --------------------------------------------------------------------------------------------
# One study
# --------------------------------------------------------------------------------------------

def _seeds(seed: int) -> dict[str, np.random.SeedSequence]:
    names = ("direction", "latents", "times", "render", "projection")
    return dict(zip(names, np.random.SeedSequence(int(seed)).spawn(len(names))))


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def make_cohort(G, n: int, *, seed: int, truncation_psi: float = 1.0, render_noise: str = "const",
                inversion: str = "projection", space: str = "w", steps: int = 600, encoder: str | None = None,
                device: str = "cpu", batch_size: int | None = 400, projection_kwargs: dict | None = None) -> Cohort:
    """Sample ``n`` latents, render them and invert the renders (timed)."""
    ss = _seeds(seed)
    t0 = _time.perf_counter()
    z, w = design.sample_latents(G, n, seed=ss["latents"], truncation_psi=truncation_psi)
    images = render(G, w, noise=render_noise, seed=_int_seed(ss["render"]))
    t1 = _time.perf_counter()
    latents, diag, params = invert(G, images, method=inversion, space=space, steps=steps, seed=_int_seed(ss["projection"]),
                                   batch_size=batch_size, encoder=encoder, device=device,
                                   projection_kwargs=projection_kwargs)
    t2 = _time.perf_counter()
    width = max(4, len(str(n)))
    column = "stylegan2__latent" if inversion == "projection" else "e4e__latent"
    return Cohort([f"S{i + 1:0{width}d}" for i in range(n)], z, w, images, latents, column, diag,
                  {"render": t1 - t0, "invert": t2 - t1}, params)


def simulate(
    *,
    generator: Any = None,
    n: int = 400,
    seed: int = 0,
    direction: str | np.ndarray = "random",
    effect: float = 1.0,
    baseline: str = "weibull",
    shape: float = 1.5,
    scale: float = 5.0,
    censoring: float = 0.3,
    censoring_dist: str = "uniform",
    truncation_psi: float = 1.0,
    calibrate_output: str = "auto",
    render_noise: str = "const",
    inversion: str = "projection",
    space: str = "w",
    steps: int = 600,
    encoder: str | None = None,
    projection_kwargs: dict[str, Any] | None = None,
    model: str = DEFAULT_MODEL,
    model_params: dict[str, Any] | None = None,
    pca: int | float | None = None,
    folds: int = 5,
    repeats: int = 1,
    device: str = "cpu",
    batch_size: int | None = 400,
    out: str | Path | None = None,
    G=None,
    generator_info: dict | None = None,
) -> SimulationResult:
    """Simulate a cohort with a planted latent hazard direction and run the real pipeline on it.

    Parameters
    ----------
    generator : str or path, optional
        ``None`` / ``"tiny"``: the bundled 32 px test generator; else a checkpoint file or a
        registry name (:func:`facefeat.simulate.design.resolve_generator`).
    n : int
        Subjects (one photo each).
    seed : int
        Seeds everything (direction, latents, render noise, times, projection, CV folds).
    direction : "random", path or array
        True hazard direction in W: a random unit vector, a probe file / ``.npy``
        (:func:`~facefeat.simulate.design.load_direction`) or a ``(w_dim,)`` array.
    effect : float
        Log hazard ratio per SD of the projection of w on the direction.
    baseline, shape, scale, censoring, censoring_dist :
        See :func:`~facefeat.simulate.design.simulate_times`.
    truncation_psi : float
        Truncation of the sampled latents (1 = none).
    calibrate_output : {"auto", "on", "off"}
        Rescale the generator's output into [-1, 1] (:func:`~facefeat.simulate.design.calibrate_output`);
        ``auto``: when more than 5 % of pixel values would be clipped (the untrained test generators).
    render_noise : {"const", "random"}
        Noise maps of the renders: the generator's stored ones, or fresh per image.
    inversion : {"projection", "encoder"}, space : {"w", "wplus"}, steps : int, encoder : path
        How the renders are embedded; ``projection_kwargs`` override :data:`PROJECTION_DEFAULTS`.
    model, model_params, pca :
        The survival model on the standardised latent columns (:func:`make_estimator`).
    folds, repeats : int
        Cross-validation (stratified on the event).
    out : path, optional
        Write the study in the standard layout there (:func:`write_study`).
    G, generator_info :
        An already loaded (and calibrated) generator and its info, to reuse across runs.

    Returns
    -------
    SimulationResult
    """
    design.check_design(n=n, effect=effect, censoring=censoring, baseline=baseline, shape=shape, scale=scale,
                        censoring_dist=censoring_dist, truncation_psi=truncation_psi, folds=folds)
    if inversion not in INVERSIONS:
        raise ConfigError(f"--inversion must be one of {INVERSIONS}, got {inversion!r}")
    if inversion == "projection" and (not isinstance(steps, int) or steps < 1):
        raise ConfigError(f"--steps must be a positive integer, got {steps!r}")
    t_start = _time.perf_counter()
    if G is None:
        G, generator_info = load_simulation_generator(generator, device=device, calibrate=calibrate_output,
                                                      truncation_psi=truncation_psi)
    generator_info = generator_info or {}
    ss = _seeds(seed)
    d, d_info = _resolve_direction(direction, G, ss["direction"])
    moments = design.population_moments(G, d, truncation_psi=truncation_psi)

    cohort = make_cohort(G, n, seed=seed, truncation_psi=truncation_psi, render_noise=render_noise,
                         inversion=inversion, space=space, steps=steps, encoder=encoder, device=device,
                         batch_size=batch_size, projection_kwargs=projection_kwargs)
    s = design.standardized_projection(cohort.w, d, moments)
    eta = effect * s
    times = design.simulate_times(eta, seed=ss["times"], baseline=baseline, shape=shape, scale=scale,
                                  censoring=censoring, censoring_dist=censoring_dist)
    clinical = pd.DataFrame({"subject_id": cohort.subject_ids, "time": times["time"],
                             "event": times["event"].astype(int), "true_risk": eta, "true_projection": s})
    result = model_cohort(cohort, clinical, d, moments, model=model, model_params=model_params, pca=pca,
                          folds=folds, repeats=repeats, seed=seed, out=Path(out) if out is not None else None)
    summary = result.summary
    summary["design"] = {
        "n": n, "seed": seed, "effect": effect, "baseline": baseline, "shape": times["shape"], "scale": scale,
        "censoring_target": censoring, "censoring_dist": censoring_dist, "truncation_psi": truncation_psi,
        "render_noise": render_noise, "direction": d_info, "projection_mean": moments["proj_mean"],
        "projection_sd": moments["proj_sd"], "population_samples": moments["n"],
    }
    summary["censoring"] = {"target": censoring, "achieved": times["censoring_achieved"],
                            "expected": times["censoring_expected"], "param": times["censoring_param"],
                            "dist": censoring_dist, "events": int(times["event"].sum())}
    summary["generator"] = dict(generator_info)
    summary["inversion"] = {"method": inversion, "space": space if inversion == "projection" else "wplus",
                            "steps": steps if inversion == "projection" else None,
                            "median_psnr": float(np.median(cohort.diag["psnr"])),
                            **inversion_quality(cohort.w, cohort.latents, d, moments),
                            "params": cohort.inversion}
    summary["timings"] = {**cohort.seconds, **summary.get("timings", {}), "total": _time.perf_counter() - t_start}
    result.summary = summary
    if out is not None:
        write_study(Path(out), result, G=G, generator_info=generator_info, direction=d, moments=moments, times=times)
    return result


def _resolve_direction(direction, G, ss) -> tuple[np.ndarray, dict]:
    if isinstance(direction, str) and direction == "random":
        return design.random_direction(G.w_dim, seed=ss), {"kind": "random"}
    if isinstance(direction, (str, Path)):
        return design.load_direction(direction, w_dim=G.w_dim, num_ws=G.num_ws)
    d = np.asarray(direction, float)
    if d.shape != (G.w_dim,) or not np.isfinite(d).all() or not np.linalg.norm(d) > 0:
        raise ConfigError(f"direction must be 'random', a file, or a non-zero finite vector of length {G.w_dim}; "
                          f"got shape {d.shape}")
    return d / np.linalg.norm(d), {"kind": "array"}


def model_cohort(cohort: Cohort, clinical: pd.DataFrame, direction: np.ndarray, moments: dict, *,
                 model: str = DEFAULT_MODEL, model_params: dict | None = None, pca: Any = None, folds: int = 5,
                 repeats: int = 1, seed: int = 0, rows: np.ndarray | None = None,
                 out: Path | None = None) -> SimulationResult:
    """Cross-validate the survival model on the recovered latents and on the true ones (oracle),
    fit both on everyone, and compare directions. ``rows`` picks a subset of the cohort."""
    from facefeat.survival.target import to_structured

    idx = np.arange(len(cohort.subject_ids)) if rows is None else np.asarray(rows)
    ids = [cohort.subject_ids[i] for i in idx]
    clin = clinical.iloc[idx].reset_index(drop=True)
    y = to_structured(clin["event"].to_numpy(bool), clin["time"].to_numpy(float))
    n_rows, w_dim = cohort.latents.shape[1], cohort.latents.shape[2]
    t0 = _time.perf_counter()
    X = _latent_frame(cohort.latents[idx], cohort.column, ids)
    est, cv, fig = _fit_cv(X, y, model=model, model_params=model_params, pca=pca, folds=folds, repeats=repeats,
                           seed=seed)
    t1 = _time.perf_counter()
    Xo = _latent_frame(cohort.w[idx][:, None, :], "true__w", ids)
    oest, ocv, ofig = _fit_cv(Xo, y, model=model, model_params=model_params, pca=pca, folds=folds, repeats=repeats,
                              seed=seed)
    t2 = _time.perf_counter()
    rec_dir = _direction_of(est, n_rows, w_dim)
    orc_dir = _direction_of(oest, 1, w_dim)
    summary = {
        "n": len(idx),
        # a penalty that removes every coefficient leaves no direction: cosine NaN, null_model True
        "recovered": {**fig, "cosine": cosine(rec_dir, direction), "null_model": not np.any(rec_dir)},
        "oracle": {**ofig, "cosine": cosine(orc_dir, direction), "null_model": not np.any(orc_dir)},
        "c_index_gap": ofig["c_index"] - fig["c_index"],
        "model": {"name": model, "params": _model_params(model, model_params), "pca": pca, "folds": folds,
                  "repeats": repeats, "scaling": "standardised columns (training fold)"},
        "timings": {"fit_cv": t1 - t0, "oracle_fit_cv": t2 - t1},
        "recovered_direction": rec_dir.tolist(),
    }
    return SimulationResult(summary, cohort, clin, est, oest, cv, ocv, out)


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def summary_table(summary: dict[str, Any]) -> str:
    """Headline figures of a simulation summary as a Markdown table."""
    rec, orc = summary["recovered"], summary["oracle"]
    rows = [
        ("subjects / events", f"{summary['n']} / {summary.get('censoring', {}).get('events', '')}", ""),
        ("censoring target / achieved", f"{summary['censoring']['target']:.2f} / {summary['censoring']['achieved']:.3f}", "")
        if "censoring" in summary else None,
        ("C-index (CV mean [95 % CI])", f"{rec['c_index']:.3f} [{rec['c_index_ci'][0]:.3f}, {rec['c_index_ci'][1]:.3f}]",
         f"{orc['c_index']:.3f} [{orc['c_index_ci'][0]:.3f}, {orc['c_index_ci'][1]:.3f}]"),
        ("cosine(fitted direction, true)", f"{rec['cosine']:.3f}", f"{orc['cosine']:.3f}"),
        ("HR per SD of out-of-fold risk (p)", f"{rec['oof_hr_per_sd']:.2f} (p={rec['oof_p']:.2g})",
         f"{orc['oof_hr_per_sd']:.2f} (p={orc['oof_p']:.2g})"),
    ]
    inv = summary.get("inversion")
    if inv:
        rows.append(("inversion: median PSNR / dim corr / score corr",
                     f"{inv['median_psnr']:.1f} dB / {inv['median_dim_corr']:.3f} / {inv['score_corr']:.3f}", ""))
    t = summary.get("timings", {})
    if t:
        rows.append(("seconds: render / invert / fit+CV / total",
                     " / ".join(f"{t.get(k, float('nan')):.1f}" for k in ("render", "invert", "fit_cv", "total")), ""))
    lines = ["| | recovered (inverted photos) | oracle (true latents) |", "| --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in (r for r in rows if r)]
    return "\n".join(lines) + "\n"


def simulation_extractor(inversion: dict[str, Any], checkpoint: Path):
    """The registered extractor whose table a simulated cohort's latents go into: ``stylegan2``
    for projection (space as simulated), ``e4e`` for the encoder; its ``output_schema()`` gives
    the table's columns, so a simulated study reads exactly like an extracted one."""
    from facefeat.engine.registry import load_registry

    registry = load_registry()
    if inversion["method"] == "projection":
        return registry.create("stylegan2", {"checkpoint": str(checkpoint),
                                             "space": "wplus" if inversion["space"] == "wplus" else "w"})
    return registry.create("e4e", {"encoder": str(inversion.get("encoder") or inversion.get("params", {}).get("encoder")),
                                   "generator": str(checkpoint)})


def write_study(out: Path, result: SimulationResult, *, G, generator_info: dict, direction: np.ndarray,
                moments: dict, times: dict) -> None:
    """Write the simulated study in the toolkit's standard layout (see docs/simulate.md)."""
    import pyarrow as pa
    from sklearn.base import clone

    from facefeat._version import __version__
    from facefeat.engine.extractor import embedding_array
    from facefeat.io.atomic import write_bytes_atomic
    from facefeat.io.hashing import sha256_bytes, sha256_file
    from facefeat.io.tables import assemble_table, write_feature_table
    from facefeat.report.figures import array_png
    from facefeat.survival.dataset import dataset_schema, load_survival_data
    from facefeat.survival.persist import save_model

    out.mkdir(parents=True, exist_ok=True)
    cohort, summary = result.cohort, result.summary
    # the generator the latents belong to (the calibrated copy when the output was rescaled)
    checkpoint = Path(generator_info.get("checkpoint", ""))
    if generator_info.get("calibration"):
        from facefeat.models.checkpoints import save_checkpoint

        weights, _ = save_checkpoint(out / "generator" / "generator", {"G_ema": G}, overwrite=True, provenance={
            "source_file": generator_info.get("checkpoint"), "source_sha256": generator_info.get("sha256"),
            "made_by": "facefeat simulate: output range calibration", "calibration": generator_info["calibration"]})
        checkpoint = weights.resolve()
    # images
    img_dir = out / "images"
    ids, paths = [], []
    for sid, img in zip(cohort.subject_ids, cohort.images):
        data = array_png(img)
        p = img_dir / f"{sid}.png"
        write_bytes_atomic(p, data)
        ids.append(sha256_bytes(data))
        paths.append(str(p.resolve()))
    # feature table in the layout and with the columns of the extractor that makes such latents
    n, rows, w_dim = cohort.latents.shape
    inv = summary["inversion"]
    col = cohort.column
    ext = simulation_extractor(inv, checkpoint)
    ext_schema = ext.output_schema()
    if col not in ext_schema.names or ext_schema.field(col).type.list_size != rows * w_dim:
        raise RuntimeError(f"the {ext.name} extractor's {col} does not hold {rows} x {w_dim} latents")  # a bug
    config = {**ext.config, "seed": summary["design"]["seed"],
              **{k: v for k, v in (cohort.inversion or {}).items() if k in (
                  "optimize_noise", "initial_noise_factor", "initial_learning_rate", "lr_rampdown_length",
                  "lr_rampup_length", "noise_ramp_length", "w_avg_samples", "w_avg_seed", "loss",
                  "regularize_noise_weight", "early_stop_patience", "wplus_start")}}
    if inv["method"] == "projection":
        config["steps"] = inv["steps"]
    # simulate runs its own projection schedule (recorded above from the inversion it ran), not an
    # extractor preset: a preset name here would claim settings the latents were not made with
    config.pop("preset", None)
    provenance = {
        "facefeat_version": __version__,
        "created": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "extractor": {"name": ext.name, "version": f"{ext.version}+simulate", "config": to_jsonable(config)},
        "models_sha256": {"checkpoint": sha256_file(checkpoint) if checkpoint.is_file() else None},
        "simulation": to_jsonable({"design": summary["design"], "generator": generator_info,
                             "inversion": {k: v for k, v in inv.items() if k != "params"}}),
        "input": {"source": str(img_dir.resolve()), "n_images": n},
        "status_counts": {"ok": n},
    }
    res = cohort.images.shape[1]
    columns: dict[str, Any] = {
        "image_id": ids, "subject_id": list(cohort.subject_ids), "path": paths, "status": ["ok"] * n,
        "diag__image_width": [res] * n, "diag__image_height": [res] * n, "diag__image_format": ["PNG"] * n,
        col: embedding_array(cohort.latents.reshape(n, -1).astype(np.float32)),
    }
    # the inversion's diagnostics under the extractor's own names (those it does not have are left out)
    for name, value in cohort.diag.items():
        if f"diag__{ext.name}__{name}" in ext_schema.names and value is not None:
            columns[f"diag__{ext.name}__{name}"] = pa.array(value, ext_schema.field(f"diag__{ext.name}__{name}").type)
    write_feature_table(assemble_table(ext_schema, columns, provenance=provenance), out / "features" / f"{ext.name}.parquet")
    # clinical table and truth
    result.clinical.to_csv(out / "clinical.csv", index=False, float_format="%.10g")
    np.savez_compressed(out / "truth.npz", z=cohort.z, w=cohort.w, direction=direction, w_mean=moments["w_mean"],
                        projection_mean=moments["proj_mean"], projection_sd=moments["proj_sd"],
                        true_risk=result.clinical["true_risk"].to_numpy(), event_time=times["event_time"],
                        censor_time=times["censor_time"], recovered_latents=cohort.latents,
                        recovered_direction=np.asarray(summary["recovered_direction"]), subject_id=np.array(cohort.subject_ids))
    # the model, fitted the way 'facefeat fit' does on the files just written
    ds = load_survival_data(clinical=out / "clinical.csv", features=out / "features", covariates="none")
    if list(ds.X.columns) != list(result.estimator.feature_names_in_):
        raise RuntimeError("the feature table read back does not give the modelled columns")  # a bug, not user input
    est = clone(result.estimator).fit(ds.X, ds.y)  # the modelled estimator's settings, refitted on the table
    risk = est.predict(ds.X)
    settings = {"id_column": "subject_id", "time": "time", "event": "event", "covariates": "none", "categorical": None,
                "aggregate": "mean", "image_order": None, "block_per_extractor": False,
                "time_unit": "simulated time units", "risk_cutoffs": np.quantile(risk, [0.5]).tolist(), "covariates_used": []}
    save_model(out / "model", est, schema=dataset_schema(ds), settings=settings, provenance={
        "sources": ds.sources, "n_subjects": int(len(ds.y)), "n_events": int(ds.y["event"].sum()),
        "feature_table_metadata": [t.get("metadata") for t in ds.feature_schema], "simulation": "facefeat simulate"})
    # the simulation's own cross-validation, stored where 'facefeat report' looks for it and marked with the
    # model's specification, so the report shows the figures simulate printed instead of recomputing others
    from facefeat.survival.persist import spec_fingerprint
    from facefeat.survival.results import write_cv_results

    write_cv_results(out / "model" / "cv", result.cv, model=est.model, fusion=est.fusion,
                     spec_sha256=spec_fingerprint(est, dataset_schema(ds), settings),
                     title="Cross-validation of the recovered model (facefeat simulate)")
    (out / "cv_recovered.json").write_text(json.dumps(to_jsonable(result.cv.to_dict()), indent=2))
    (out / "cv_oracle.json").write_text(json.dumps(to_jsonable(result.oracle_cv.to_dict()), indent=2))
    (out / "summary.md").write_text("# Simulated study\n\n" + summary_table(summary))
    # last and whole: a summary.json marks a finished study ('facefeat simulate' tells an interrupted one by it)
    write_bytes_atomic(out / "summary.json", dumps_json(summary, indent=2).encode())


# --------------------------------------------------------------------------------------------
# Power curve
# --------------------------------------------------------------------------------------------

def power_curve(
    grid: list[int],
    *,
    replicates: int = 20,
    alpha: float = 0.05,
    seed: int = 0,
    generator: Any = None,
    G=None,
    generator_info: dict | None = None,
    direction: str | np.ndarray = "random",
    effect: float = 1.0,
    baseline: str = "weibull",
    shape: float = 1.5,
    scale: float = 5.0,
    censoring: float = 0.3,
    censoring_dist: str = "uniform",
    truncation_psi: float = 1.0,
    calibrate_output: str = "auto",
    render_noise: str = "const",
    inversion: str = "projection",
    space: str = "w",
    steps: int = 600,
    encoder: str | None = None,
    projection_kwargs: dict | None = None,
    model: str = DEFAULT_MODEL,
    model_params: dict | None = None,
    pca: Any = None,
    folds: int = 5,
    device: str = "cpu",
    batch_size: int | None = 400,
    pool: Cohort | None = None,
    out: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Recovered C-index, cosine and power over a grid of cohort sizes.

    A pool of ``max(grid)`` subjects is rendered and inverted once (or ``pool`` is reused);
    each replicate at size N draws N subjects from it without replacement and fresh survival
    and censoring times (its own seed), then cross-validates the model on the recovered and
    the true latents. Power at N is the fraction of replicates in which the Wald test of a
    one-covariate Cox model on the out-of-fold risk score has ``p < alpha`` (see docs).

    Returns ``(per_replicate, per_n)`` DataFrames; with ``out``, writes ``power.csv``,
    ``power_replicates.csv`` and ``power.png``.
    """
    grid = sorted({int(g) for g in grid})
    if not grid:
        raise ConfigError("--grid needs at least one cohort size, e.g. --grid 100,200,400")
    if replicates < 1:
        raise ConfigError(f"--replicates must be at least 1, got {replicates}")
    for g in grid:
        design.check_design(n=g, effect=effect, censoring=censoring, folds=folds)
    design.check_design(baseline=baseline, shape=shape, scale=scale, censoring_dist=censoring_dist,
                        truncation_psi=truncation_psi)
    if G is None:
        G, generator_info = load_simulation_generator(generator, device=device, calibrate=calibrate_output,
                                                      truncation_psi=truncation_psi)
    ss = _seeds(seed)
    d, _ = _resolve_direction(direction, G, ss["direction"])
    moments = design.population_moments(G, d, truncation_psi=truncation_psi)
    if pool is None or len(pool.subject_ids) < max(grid):
        pool = make_cohort(G, max(grid), seed=seed + 1_000_003, truncation_psi=truncation_psi,
                           render_noise=render_noise, inversion=inversion, space=space, steps=steps, encoder=encoder,
                           device=device, batch_size=batch_size, projection_kwargs=projection_kwargs)
    eta = effect * design.standardized_projection(pool.w, d, moments)
    records = []
    rep_seeds = np.random.SeedSequence([int(seed), 7]).spawn(len(grid) * replicates)
    for gi, n in enumerate(grid):
        for r in range(replicates):
            rs = rep_seeds[gi * replicates + r]
            pick_ss, time_ss = rs.spawn(2)
            rows = np.sort(np.random.default_rng(pick_ss).choice(len(pool.subject_ids), size=n, replace=False))
            times = design.simulate_times(eta, seed=time_ss, baseline=baseline, shape=shape, scale=scale,
                                          censoring=censoring, censoring_dist=censoring_dist)
            clin = pd.DataFrame({"subject_id": pool.subject_ids, "time": times["time"],
                                 "event": times["event"].astype(int), "true_risk": eta})
            events = int(clin["event"].to_numpy()[rows].sum())
            try:
                res = model_cohort(pool, clin, d, moments, model=model, model_params=model_params, pca=pca,
                                   folds=folds, repeats=1, seed=_int_seed(rs) % (2**31), rows=rows)
            except FacefeatError as exc:
                # e.g. too few events in a fold: the replicate counts as not significant
                records.append({"n": n, "replicate": r, "events": events, "error": str(exc)})
                if progress:
                    progress(f"N={n} replicate {r + 1}/{replicates}: failed ({exc})")
                continue
            rec, orc = res.summary["recovered"], res.summary["oracle"]
            records.append({"n": n, "replicate": r, "events": events,
                            "c_index": rec["c_index"], "c_index_ci_low": rec["c_index_ci"][0],
                            "c_index_ci_high": rec["c_index_ci"][1], "cosine": rec["cosine"], "p": rec["oof_p"],
                            "oracle_c_index": orc["c_index"], "oracle_cosine": orc["cosine"], "oracle_p": orc["oof_p"],
                            "error": None})
            if progress:
                progress(f"N={n} replicate {r + 1}/{replicates}: C {rec['c_index']:.3f} (oracle {orc['c_index']:.3f}), "
                         f"cosine {rec['cosine']:.3f}, p {rec['oof_p']:.2g}")
    per_rep = pd.DataFrame(records)
    for col in ("c_index", "c_index_ci_low", "c_index_ci_high", "cosine", "p", "oracle_c_index", "oracle_cosine",
                "oracle_p"):
        if col not in per_rep:
            per_rep[col] = np.nan
    agg = []
    for n, g in per_rep.groupby("n"):
        row = {"n": n, "replicates": len(g), "failed": int(g["error"].notna().sum()),
               "power": float((g["p"] < alpha).mean()),
               "power_ci_above_half": float((g["c_index_ci_low"] > 0.5).mean()),
               "oracle_power": float((g["oracle_p"] < alpha).mean())}
        for m in ("c_index", "cosine", "oracle_c_index", "oracle_cosine"):
            row[f"{m}_mean"] = float(g[m].mean())
            row[f"{m}_p10"] = float(g[m].quantile(0.1))
            row[f"{m}_p90"] = float(g[m].quantile(0.9))
        agg.append(row)
    per_n = pd.DataFrame(agg)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        per_rep.to_csv(out / "power_replicates.csv", index=False)
        per_n.to_csv(out / "power.csv", index=False)
        plot_power(per_n, out / "power.png", alpha=alpha, title=f"effect {effect} log-HR/SD, censoring {censoring}")
    return per_rep, per_n


def plot_power(per_n: pd.DataFrame, path: str | Path, *, alpha: float = 0.05, title: str = "") -> None:
    """Three panels against N: C-index (recovered and oracle, 10-90 % bands), cosine, power."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    n = per_n["n"].to_numpy()
    for ax, metric, label in ((axes[0], "c_index", "C-index (CV)"), (axes[1], "cosine", "cosine to true direction")):
        for prefix, name, color in (("", "recovered", "C0"), ("oracle_", "oracle (true latents)", "C1")):
            m = f"{prefix}{metric}"
            ax.plot(n, per_n[f"{m}_mean"], "o-", color=color, label=name)
            ax.fill_between(n, per_n[f"{m}_p10"], per_n[f"{m}_p90"], color=color, alpha=0.2)
        ax.set_xlabel("N subjects")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    axes[0].axhline(0.5, color="grey", lw=0.8, ls=":")
    axes[2].plot(n, per_n["power"], "o-", color="C0", label="recovered")
    axes[2].plot(n, per_n["oracle_power"], "o-", color="C1", label="oracle")
    axes[2].set_ylim(-0.02, 1.02)
    axes[2].set_xlabel("N subjects")
    axes[2].set_ylabel(f"power (out-of-fold risk, p < {alpha:g})")
    axes[2].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
