"""Encoder training: an e4e encoder (:class:`~facefeat.models.e4e.Encoder4Editing`) for a given,
possibly fine-tuned, StyleGAN2 generator.

The seed paper fine-tunes a generator on the cohort; the official FFHQ e4e encoder then no
longer matches it. This module trains one that does, the way e4e's ``training/coach.py``
trains (Tov et al. 2021), minus the parts that need downloaded networks:

==================  ==========================================================  ============
loss                definition                                                  default
==================  ==========================================================  ============
``pixel``           mean squared error of ``G(E(x) + w_avg)`` vs ``x``, [-1,1]   1.0
``lpips``           LPIPS-VGG (only when its two weight files are given)        0.8
``latent``          mean squared error of the W+ codes vs the true ``ws`` of     1.0
                    generator samples (synthetic samples only)
``delta``           e4e's delta regularisation: ``sum_i mean_b ||w_i - w_0||_2``  2e-4
                    over the style rows in use (keeps W+ near W: editability)
==================  ==========================================================  ============

Not included: e4e's identity loss (ArcFace weights) and latent discriminator; the encoder's
backbone starts from random weights unless ``init_from`` gives an official e4e checkpoint
(whose style count must match the generator).

Data
----
* **synthetic** (``config.synthetic = N``): a pool of ``N`` generator samples. Sample ``i`` has
  the latent ``z_i`` drawn from a generator seeded by ``(seed, i)``, so the pool needs no memory
  and is the same on every machine; the true ``ws`` are known, which enables the latent loss.
  With probability ``mixing_prob`` a sample is a style mix (a second, fresh ``w`` from a random
  row on), which makes the targets true W+ codes. Targets are rendered with the stored noise
  (``noise_mode="const"``), the noise the extractors render with.
* **real** (``images``): FFHQ-aligned crops at the generator's resolution, found by
  :func:`facefeat.training.data.load_training_images` (a ``facefeat extract`` run folder, a folder
  of aligned crops, or photos with ``align=True``); ``config.holdout`` of them are kept out for
  evaluation. Both together: ``synthetic_fraction`` of every minibatch is synthetic.

Encoder input
-------------
e4e's input handling: an image in [-1, 1] resized to ``input_size`` (bilinear, antialiased when
shrinking; :func:`facefeat.models.e4e.encode` does the same at inference). The default
``input_size`` is 256 (the official size) for generators of 256 px and more, and the generator's
own resolution (at least 32) below that: a 32-128 px generator's images are fed unresampled,
which also makes CPU training practical (a 32 px input costs about 1/50 of a 256 px one).

Output folder
-------------
``metrics.jsonl``
    One ``{"event": "step"}`` line per step (every loss, learning rate, seconds), ``"eval"``
    lines with the held-out evaluation (reconstruction MSE/PSNR of the encoder and of the
    ``w_avg`` render, latent correlation), ``"snapshot"``, ``"start"``/``"resume"``, ``"done"``.
``samples-<step>.png``
    Held-out inputs above their reconstructions (synthetic rows, then real rows).
``encoder-snapshot-<step>.pt``
    Everything an exact resume needs (encoder, Adam state, random-generator and data-order
    states, step, config, generator fingerprint); the newest ``keep_snapshots`` are kept.
``encoder-final.pt``
    The official e4e layout (:func:`facefeat.models.e4e.save_e4e_checkpoint`): ``encoder.*``,
    ``decoder.*`` (the generator in rosinality's layout, when its config has one:
    :func:`facefeat.models.e4e.rosinality_decoder_state_dict`), ``opts`` and
    ``latent_avg`` (the generator's mean ``w``, one row per style). ``load_e4e`` and the ``e4e``
    extractor load it.
``training_options.json``
    The resolved config, the generator and data provenance.

Resume
------
``resume=True`` continues the newest snapshot in ``out`` (or a given one). On the CPU the
resumed run repeats the uninterrupted run's losses and weights bitwise (same thread count);
``metrics.jsonl`` lines after the snapshot's step, left by the interrupted run, are dropped.

Python API
----------
``train_encoder(generator, *, out, images=None, config=None, init_from=None, lpips=None,
device="cpu", resume=False, progress=True, include_decoder=True, align=False)
-> EncoderTrainingResult``

    ``generator``: a checkpoint path (any format ``load_generator`` reads), a registry name, or
    a :class:`~facefeat.models.stylegan2.Generator`; its ``w_dim`` must be 512 (e4e's style
    width). ``config``: :class:`EncoderTrainingConfig`. ``lpips``: an
    :class:`~facefeat.inversion.perceptual.LPIPS` or ``(vgg16.pth, lpips_vgg.pth)``. The result
    holds ``final`` (the e4e checkpoint), ``encoder`` (trained, eval mode), ``latent_avg``,
    ``last_eval`` (the held-out figures) and timings. ``toy_generator()`` gives a seeded 32 px
    generator with ``w_dim`` 512 for tests and benchmarks (the repository's tiny fixture
    generators have ``w_dim`` 64, which an e4e encoder cannot produce)::

        from facefeat.training.encoder import EncoderTrainingConfig, toy_generator, train_encoder
        res = train_encoder(toy_generator(), out="runs/enc",
                            config=EncoderTrainingConfig(synthetic=100_000, steps=300, lr=1e-4))
        res.final          # runs/enc/encoder-final.pt, loads with facefeat.models.e4e.load_e4e
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from facefeat.devices import resolve_device
from facefeat.errors import ConfigError, InputError, ModelError
from facefeat.io.jsonsafe import dumps_json, to_jsonable
from facefeat.training.config import changed_fields, config_from_dict, config_to_dict, resume_config
from facefeat.training.snapshots import numbered_files

log = logging.getLogger("facefeat.training.encoder")

#: e4e's style width: the encoder's codes are 512-D, so the generator's ``w_dim`` must be too.
STYLE_DIM = 512
SNAPSHOT_PREFIX = "encoder-snapshot-"
SNAPSHOT_SUFFIX = ".pt"
FINAL_NAME = "encoder-final.pt"
STATE_KIND = "facefeat-encoder-training"

#: Config fields a resumed run may change (run length, logging, evaluation).
RESUMABLE_OVERRIDES = ("steps", "save_every", "sample_every", "eval_every", "keep_snapshots", "n_eval", "grid_size")


@dataclass(frozen=True)
class EncoderTrainingConfig:
    """Settings of :func:`train_encoder` (recorded in every snapshot and in the final ``opts``).

    Attributes
    ----------
    steps : int
        Total optimiser steps (also on resume: the run continues up to ``steps``).
    batch_size : int
        Images per step.
    lr : float
        Adam learning rate (e4e: 1e-4 with Ranger; here Adam).
    betas : tuple of float
        Adam betas.
    lambda_pixel, lambda_lpips, lambda_latent, lambda_delta : float
        Loss weights (see the module notes); ``lambda_lpips`` only applies when LPIPS weights
        are given.
    synthetic : int
        Size of the pool of generator samples to train on (0: real images only).
    synthetic_fraction : float or None
        Share of each minibatch that is synthetic when real images are given too (None: 0.5).
    mixing_prob : float
        Probability that a synthetic sample is a style mix (a W+ target).
    truncation_psi : float
        Truncation of the synthetic latents (1: none).
    input_size : int or None
        Encoder input side (None: 256 for generators >= 256 px, else the generator's resolution,
        at least 32). Taken from ``init_from`` when that is given.
    progressive_every : int
        e4e's progressive training: 0 trains every style row's delta from the start; ``k > 0``
        enables one more row every ``k`` steps (row 0 alone first).
    noise_mode : {"const", "none"}
        Synthesis noise while training and evaluating.
    mirror : bool
        Also train on x-flipped real images.
    holdout : int
        Real images kept out of training for evaluation.
    n_eval : int
        Held-out synthetic samples (pure W, drawn from a stream disjoint from the pool).
    eval_every, sample_every, save_every : int
        Steps between evaluations, sample grids and snapshots (0: at the end only).
    keep_snapshots : int
        Newest snapshots kept (older ones are deleted; 0 keeps all).
    grid_size : int
        Columns of the sample grids.
    seed : int
        Seeds the encoder's initial weights, the data order, the pool and the mixing.
    """

    steps: int = 20000
    batch_size: int = 8
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    lambda_pixel: float = 1.0
    lambda_lpips: float = 0.8
    lambda_latent: float = 1.0
    lambda_delta: float = 2e-4
    synthetic: int = 0
    synthetic_fraction: float | None = None
    mixing_prob: float = 0.5
    truncation_psi: float = 1.0
    input_size: int | None = None
    progressive_every: int = 0
    noise_mode: str = "const"
    mirror: bool = False
    holdout: int = 8
    n_eval: int = 64
    eval_every: int = 500
    sample_every: int = 500
    save_every: int = 1000
    keep_snapshots: int = 2
    grid_size: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        def positive(name: str, value: Any, minimum: float = 1) -> None:
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
                raise ConfigError(f"encoder training: {name}={value!r} must be a number >= {minimum}")

        for name in ("steps", "batch_size", "n_eval", "grid_size"):
            positive(name, getattr(self, name))
        for name in ("synthetic", "progressive_every", "holdout", "eval_every", "sample_every", "save_every",
                     "keep_snapshots", "seed"):
            positive(name, getattr(self, name), 0)
            if int(getattr(self, name)) != getattr(self, name):
                raise ConfigError(f"encoder training: {name}={getattr(self, name)!r} must be an integer")
        for name in ("lambda_pixel", "lambda_lpips", "lambda_latent", "lambda_delta"):
            positive(name, getattr(self, name), 0)
        if not (isinstance(self.lr, (int, float)) and self.lr > 0):
            raise ConfigError(f"encoder training: lr={self.lr!r} must be > 0")
        for name in ("mixing_prob",) + (("synthetic_fraction",) if self.synthetic_fraction is not None else ()):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ConfigError(f"encoder training: {name}={v!r} must lie in [0, 1]")
        if not isinstance(self.truncation_psi, (int, float)) or self.truncation_psi <= 0:
            raise ConfigError(f"encoder training: truncation_psi={self.truncation_psi!r} must be > 0")
        if self.noise_mode not in ("const", "none"):
            raise ConfigError(f"encoder training: noise_mode={self.noise_mode!r}; use 'const' (the stored noise, "
                              f"as the extractors render) or 'none'")
        if self.input_size is not None:
            s = self.input_size
            if not isinstance(s, int) or s < 32 or s & (s - 1):
                raise ConfigError(f"encoder training: input_size={s!r} must be a power of two >= 32 (e4e: 256)")

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self, ("betas",))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncoderTrainingConfig:
        return config_from_dict(cls, d, label="encoder training config", tuple_fields=("betas",))

    def replace(self, **changes: Any) -> EncoderTrainingConfig:
        return dataclasses.replace(self, **changes)


@dataclass
class EncoderTrainingResult:
    """What :func:`train_encoder` / :meth:`EncoderTrainer.train` return."""

    out: Path
    final: Path
    encoder: Any
    latent_avg: torch.Tensor
    step: int
    snapshots: list[Path] = field(default_factory=list)
    last_eval: dict[str, Any] = field(default_factory=dict)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0

    @property
    def sec_per_step(self) -> float:
        return self.train_seconds / max(self.step, 1)


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------

def default_input_size(resolution: int) -> int:
    """Encoder input side for a generator resolution (see the module notes)."""
    return 256 if resolution >= 256 else max(32, int(resolution))


def toy_generator(resolution: int = 32, *, seed: int = 0, z_dim: int = 8, channel_base: int = 1024,
                  channel_max: int = 64, output_gain: float = 0.4, device: torch.device | str = "cpu"):
    """A seeded, randomly initialised StyleGAN2 generator with ``w_dim = 512``, for tests and
    benchmarks of encoder training.

    e4e's codes are 512-D, and the repository's tiny fixture generators have ``w_dim`` 64. The
    weights come from ``torch.manual_seed(seed)`` (NVIDIA's initialisation), two mapping
    layers, channels ``min(channel_base // res, channel_max)``; ``w_avg`` is
    ``mean_w(10000, seed)``. ``z_dim`` is small by default (8): its W is a low-dimensional
    manifold in 512-D, as a trained generator's effectively is, so that a few CPU minutes of
    training recover the latents measurably (with ``z_dim=512`` and random weights most
    directions of w barely change the image). The ToRGB weights are multiplied by
    ``output_gain`` so that the images mostly lie in [-1, 1] (a fresh initialisation saturates
    most pixels). In eval mode without gradients.
    """
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    cfg = GeneratorConfig.nvidia(resolution, z_dim=z_dim, w_dim=STYLE_DIM, mapping_layers=2,
                                 channel_base=channel_base, channel_max=channel_max)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(cfg)
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:
            getattr(G.synthesis, f"b{res}").torgb.weight.mul_(output_gain)
    G.mapping.w_avg.copy_(G.mean_w(10000, seed=seed))
    G.w_avg_source = f"mean_w(n=10000, seed={seed})"
    G.provenance = {"source": "facefeat.training.encoder.toy_generator", "resolution": resolution, "seed": seed,
                    "z_dim": z_dim, "channel_base": channel_base, "channel_max": channel_max,
                    "output_gain": output_gain}
    return G.to(device).eval().requires_grad_(False)


def check_init_checkpoint(path: str | os.PathLike, num_ws: int, *, generator: str = "the generator") -> None:
    """Fail fast (shapes only, memory-mapped) unless ``path`` is an e4e checkpoint whose encoder
    can drive a generator with ``num_ws`` rows of width 512.

    Raises
    ------
    ModelError
        Not an e4e checkpoint, or a style count / width that does not match the generator.
    """
    from facefeat.models.e4e import check_generator_compat, read_e4e_header

    try:
        header = read_e4e_header(path)
    except ModelError as exc:
        raise ModelError(f"--init-from {path}: {exc}") from exc
    try:
        check_generator_compat(header, num_ws=num_ws, w_dim=STYLE_DIM, generator=generator)
    except ModelError as exc:
        raise ModelError(f"--init-from: {exc} An e4e checkpoint can only initialise an encoder for a generator of "
                         f"the same resolution; leave --init-from out to start from random weights.") from None


def generator_fingerprint(G) -> str:
    """sha256 over a generator's state_dict (names, shapes, bytes) in key order."""
    h = hashlib.sha256()
    for k, v in sorted(G.state_dict().items()):
        t = v.detach().to("cpu").contiguous()
        h.update(f"{k}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def load_encoder_generator(spec, *, device: torch.device | str = "cpu"):
    """``(G, info)`` for ``spec`` (a Generator, a checkpoint path or a registry name); checks
    that its ``w_dim`` is 512."""
    from facefeat.models.stylegan2 import Generator

    if isinstance(spec, Generator):
        G = spec.to(device).eval().requires_grad_(False)
        info = {"source": "in-memory Generator", "provenance": to_jsonable(getattr(G, "provenance", {}))}
        where = "the generator"
    else:
        from facefeat.io.hashing import sha256_file
        from facefeat.models.checkpoints import load_generator
        from facefeat.models.registry import resolve_model

        try:
            path = resolve_model(str(spec))
            G = load_generator(path, device=device)
        except ModelError as exc:
            raise ModelError(f"--generator {spec}: {exc}. Give a StyleGAN2 generator checkpoint (NVIDIA .pkl, "
                             f"rosinality .pt or facefeat .safetensors, e.g. OUT/generator-final.safetensors of "
                             f"'facefeat train generator') or a registry name") from exc
        info = {"source": str(path), "sha256": sha256_file(path) if Path(path).is_file() else None,
                "provenance": to_jsonable(getattr(G, "provenance", {}))}
        where = f"--generator {spec}"
    if G.w_dim != STYLE_DIM:
        raise ModelError(f"{where}: w_dim is {G.w_dim}, but e4e encoders produce {STYLE_DIM}-D codes (every "
                         f"official StyleGAN2 generator has w_dim 512). Use a generator with w_dim 512 (for a "
                         f"quick test: facefeat.training.encoder.toy_generator())")
    info.update({"resolution": G.img_resolution, "num_ws": G.num_ws, "w_dim": G.w_dim,
                 "w_avg_source": getattr(G, "w_avg_source", None), "fingerprint_sha256": generator_fingerprint(G)})
    return G, info


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------

def _pool_seed(seed: int, index: int, split: int) -> int:
    # split 0: training pool, 1: held-out evaluation; disjoint for a given seed (parity differs)
    return (int(seed) * 0x9E3779B1 + 2 * int(index) + split) % (2 ** 63 - 1)


def pool_latents(z_dim: int, indices, *, seed: int, split: int = 0) -> torch.Tensor:
    """The z of pool samples ``indices`` (``[n, z_dim]``, CPU): each from its own seeded generator."""
    return torch.stack([torch.randn(z_dim, generator=torch.Generator().manual_seed(_pool_seed(seed, i, split)))
                        for i in indices]) if len(indices) else torch.zeros(0, z_dim)


class EncoderTrainer:
    """One encoder-training run: encoder, optimiser, data streams and every piece of resumable state.

    Parameters
    ----------
    G : Generator
        Frozen target generator (``w_dim`` 512).
    config : EncoderTrainingConfig
    images : TrainingImages, optional
        Real aligned crops to train on (already without the held-out ones).
    heldout : TrainingImages, optional
        Real crops for evaluation.
    init_from : path, optional
        Official e4e checkpoint to start from (its style count must match ``G.num_ws``).
    lpips : LPIPS, optional
        Perceptual loss network.
    device : torch.device or str
    generator_info : dict, optional
        Provenance of ``G`` (from :func:`load_encoder_generator`).
    input_size : int, optional
        Encoder input side (overrides ``config.input_size``; a resumed run passes its own).
    """

    def __init__(self, G, config: EncoderTrainingConfig, *, images=None, heldout=None, init_from=None,
                 lpips=None, device: torch.device | str = "cpu", generator_info: dict | None = None,
                 input_size: int | None = None) -> None:
        from facefeat.models.e4e import Encoder4Editing
        from facefeat.training.data import InfiniteSampler

        self.device = torch.device(device)
        if G.w_dim != STYLE_DIM:
            raise ModelError(f"the generator's w_dim is {G.w_dim}; e4e encoders need {STYLE_DIM}")
        cfg = config
        if cfg.synthetic == 0 and images is None:
            raise ConfigError("encoder training needs data: real aligned images (--images DIR) and/or generator "
                              "samples (--synthetic N)")
        if images is not None and images.resolution != G.img_resolution:
            raise InputError(f"the training images are {images.resolution} px but the generator is "
                             f"{G.img_resolution} px")
        self.G = G.to(self.device).eval().requires_grad_(False)
        self.config = cfg
        self.images, self.heldout = images, heldout
        self.lpips = lpips.to(self.device).eval().requires_grad_(False) if lpips is not None else None
        self.generator_info = dict(generator_info or {})
        if "fingerprint_sha256" not in self.generator_info:
            self.generator_info["fingerprint_sha256"] = generator_fingerprint(self.G)
        self.init_info: dict[str, Any] = {"init": "random", "seed": cfg.seed}

        if cfg.synthetic and images is not None:
            frac = 0.5 if cfg.synthetic_fraction is None else cfg.synthetic_fraction
            self.n_synthetic = int(round(cfg.batch_size * frac))
        else:
            self.n_synthetic = cfg.batch_size if cfg.synthetic else 0
        self.n_real = cfg.batch_size - self.n_synthetic

        encoder = None
        latent_avg = self.G.mean_w(10000, seed=cfg.seed).to(self.device)
        if init_from is not None:
            from facefeat.io.hashing import sha256_file
            from facefeat.models.e4e import load_e4e

            check_init_checkpoint(init_from, self.G.num_ws,
                                  generator=str(self.generator_info.get("source", "the generator")))
            try:
                # the generator's mean w replaces the file's latent_avg (which it may lack)
                ck = load_e4e(init_from, device=self.device, num_ws=self.G.num_ws, latent_avg=latent_avg)
            except ModelError as exc:
                raise ModelError(f"--init-from {init_from}: {exc}") from exc
            encoder = ck.encoder
            if cfg.input_size is not None and cfg.input_size != encoder.input_size:
                raise ConfigError(f"--init-from {init_from}: the checkpoint's encoder takes {encoder.input_size} px "
                                  f"inputs but input_size={cfg.input_size} was asked for; leave --input-size out")
            self.init_info = {"init": str(init_from), "sha256": sha256_file(init_from), "opts": ck.opts,
                              "note": "latent_avg is the generator's mean w, not the checkpoint's"}
        if encoder is not None:
            input_size = encoder.input_size
        else:
            input_size = input_size or cfg.input_size or default_input_size(self.G.img_resolution)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.seed)
                encoder = Encoder4Editing(self.G.img_resolution, input_size=input_size)
        self.input_size = input_size
        self.encoder = encoder.to(self.device).train().requires_grad_(True)
        self.latent_avg = latent_avg  # [w_dim]
        self.optimizer = torch.optim.Adam(self.encoder.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        self.rng = torch.Generator().manual_seed(cfg.seed + 17)  # mixing decisions, second latents
        self.syn_sampler = InfiniteSampler(cfg.synthetic, seed=cfg.seed) if cfg.synthetic else None
        self.real_sampler = (InfiniteSampler(len(images), seed=cfg.seed + 1, mirror=cfg.mirror)
                             if images is not None and self.n_real else None)
        self.step_count = 0
        self.train_seconds = 0.0
        self.last_eval: dict[str, Any] = {}
        self._eval_cache: dict[str, torch.Tensor] | None = None
        self.set_stage()

    # -- the progressive stage ---------------------------------------------------------------------
    def stage(self, step: int | None = None) -> int:
        """Style rows (after row 0) whose delta is trained at ``step`` (default: the current step)."""
        n = self.encoder.n_styles - 1
        k = self.config.progressive_every
        step = self.step_count if step is None else step
        return n if k <= 0 else min(step // k, n)

    def set_stage(self) -> None:
        s = self.stage()
        self.encoder.progressive_stage = None if s >= self.encoder.n_styles - 1 else s

    # -- data ----------------------------------------------------------------------------------------
    def encoder_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] at the generator's resolution -> the encoder's input size."""
        x = images.clamp(-1, 1)
        size = x.shape[-1]
        if size != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False,
                              antialias=size > self.input_size).clamp(-1, 1)
        return x

    @torch.no_grad()
    def render(self, ws: torch.Tensor) -> torch.Tensor:
        return self.G.synthesis(ws, noise_mode=self.config.noise_mode)

    @torch.no_grad()
    def synthetic_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images in [-1, 1], true ws)`` of the next ``n`` pool samples (style-mixed with
        probability ``mixing_prob``). The random draws do not depend on their values, so the
        stream is the same on every device."""
        cfg, G = self.config, self.G
        idx, _ = self.syn_sampler.next(n)
        z = pool_latents(G.z_dim, idx, seed=cfg.seed)
        mix = torch.rand(n, generator=self.rng) < cfg.mixing_prob
        z2 = torch.randn(n, G.z_dim, generator=self.rng)
        cut = torch.randint(1, G.num_ws, (n,), generator=self.rng)
        w = G.mapping(z.to(self.device), truncation_psi=cfg.truncation_psi)
        w2 = G.mapping(z2.to(self.device), truncation_psi=cfg.truncation_psi)
        rows = torch.arange(G.num_ws)
        second = (mix[:, None] & (rows[None, :] >= cut[:, None])).to(self.device)
        ws = torch.where(second[:, :, None], w2, w)
        return self.render(ws).clamp(-1, 1), ws

    def real_batch(self, n: int) -> torch.Tensor:
        idx, flips = self.real_sampler.next(n)
        return self.images.load(idx, flip=flips).to(self.device, torch.float32) / 127.5 - 1

    # -- one step ------------------------------------------------------------------------------------
    def codes(self, x: torch.Tensor) -> torch.Tensor:
        """W+ codes (with ``latent_avg``) of encoder inputs ``x``."""
        return self.encoder(x) + self.latent_avg

    def losses(self, target: torch.Tensor, ws_true: torch.Tensor | None) -> dict[str, torch.Tensor]:
        cfg = self.config
        codes = self.codes(self.encoder_input(target))
        recon = self.G.synthesis(codes, noise_mode=cfg.noise_mode)
        out: dict[str, torch.Tensor] = {"pixel": (recon - target).square().mean()}
        total = cfg.lambda_pixel * out["pixel"]
        if self.lpips is not None and cfg.lambda_lpips > 0:
            out["lpips"] = self.lpips(recon, target).mean()
            total = total + cfg.lambda_lpips * out["lpips"]
        if ws_true is not None and len(ws_true):
            out["latent"] = (codes[:len(ws_true)] - ws_true).square().mean()
            total = total + cfg.lambda_latent * out["latent"]
        stage = self.stage()
        if stage > 0:
            w0 = codes[:, 0]
            delta = sum(torch.linalg.vector_norm(codes[:, i] - w0, dim=1).mean() for i in range(1, stage + 1))
        else:
            delta = codes.new_zeros(())
        out["delta"] = delta
        total = total + cfg.lambda_delta * delta
        out["total"] = total
        return out

    def step(self) -> dict[str, float]:
        """One optimiser step; returns its losses (floats)."""
        from facefeat.training.loop import NonFiniteError

        t0 = time.perf_counter()
        self.set_stage()
        parts, ws_true = [], None
        if self.n_synthetic:
            img, ws_true = self.synthetic_batch(self.n_synthetic)
            parts.append(img)
        if self.n_real:
            parts.append(self.real_batch(self.n_real))
        target = torch.cat(parts) if len(parts) > 1 else parts[0]
        losses = self.losses(target, ws_true)
        # one device-to-host copy for all the losses (not one sync per loss)
        values = torch.stack([v.detach() for v in losses.values()]).tolist()
        stats = {f"loss/{k}": v for k, v in zip(losses, values)}
        if not math.isfinite(stats["loss/total"]):
            raise NonFiniteError(f"non-finite encoder loss at step {self.step_count} ({stats}); the weights were "
                                 f"not updated")
        self.optimizer.zero_grad(set_to_none=True)
        losses["total"].backward()
        self.optimizer.step()
        self.step_count += 1
        stats["stage"] = self.stage(self.step_count - 1)
        self.train_seconds += time.perf_counter() - t0
        return stats

    # -- evaluation ------------------------------------------------------------------------------------
    @torch.no_grad()
    def _eval_set(self) -> dict[str, torch.Tensor]:
        if self._eval_cache is None or len(self._eval_cache["ws"]) != self.config.n_eval:
            cfg, G = self.config, self.G
            z = pool_latents(G.z_dim, range(cfg.n_eval), seed=cfg.seed, split=1)
            w = G.mapping(z.to(self.device), truncation_psi=cfg.truncation_psi)
            imgs = torch.cat([self.render(w[i:i + cfg.batch_size]).clamp(-1, 1)
                              for i in range(0, len(w), cfg.batch_size)])
            avg = self.render(self.latent_avg.reshape(1, 1, -1).expand(1, G.num_ws, -1)).clamp(-1, 1)
            self._eval_cache = {"ws": w, "images": imgs, "w_avg_image": avg}
            if self.heldout is not None and len(self.heldout):
                self._eval_cache["real"] = (self.heldout.load(range(len(self.heldout))).to(self.device,
                                                                                             torch.float32)
                                            / 127.5 - 1)
        return self._eval_cache

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(codes, reconstructions)`` of images in [-1, 1], encoder in eval mode, in batches."""
        was = self.encoder.training
        self.encoder.eval()
        try:
            codes, recons = [], []
            for i in range(0, len(images), self.config.batch_size):
                c = self.codes(self.encoder_input(images[i:i + self.config.batch_size]))
                codes.append(c)
                recons.append(self.render(c))
        finally:
            self.encoder.train(was)
        return torch.cat(codes), torch.cat(recons)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """Held-out reconstruction quality and latent recovery (see :func:`latent_correlation`).

        ``synthetic``: ``n_eval`` generator samples (pure W, never trained on): ``mse`` / ``psnr``
        of the encoder's reconstructions and ``mse_w_avg`` / ``psnr_w_avg`` of the render of the
        mean w (the baseline an encoder must beat), on the [0, 1] scale; ``latent_r`` and the
        other latent figures. ``real``: the same image figures on the held-out real crops.
        """
        from facefeat.inversion.metrics import image_mse, psnr_from_mse

        ev = self._eval_set()
        out: dict[str, Any] = {"step": self.step_count}
        sets = [("synthetic", ev["images"])] + ([("real", ev["real"])] if "real" in ev else [])
        for name, imgs in sets:
            codes, recon = self.encode_images(imgs)
            target = (imgs + 1) * 127.5
            mse = image_mse(recon, target)
            base = image_mse(ev["w_avg_image"].expand_as(imgs), target)
            rec = {"n": len(imgs), "mse": float(mse.mean()), "mse_w_avg": float(base.mean()),
                   "psnr": float(psnr_from_mse(mse).mean()), "psnr_w_avg": float(psnr_from_mse(base).mean()),
                   "mse_ratio": float(mse.mean() / base.mean())}
            if name == "synthetic":
                rec.update(latent_correlation(codes, ev["ws"]))
            out[name] = rec
        self.last_eval = out
        return out

    @torch.no_grad()
    def sample_grid(self, path: str | os.PathLike) -> Path:
        """PNG: held-out synthetic inputs over their reconstructions, then the real ones."""
        from facefeat.inversion.metrics import synth_to_unit
        from facefeat.training.loop import save_grid

        ev = self._eval_set()
        k = self.config.grid_size
        rows = []
        for imgs in [ev["images"][:k]] + ([ev["real"][:k]] if "real" in ev else []):
            _, recon = self.encode_images(imgs)
            pad = k - len(imgs)
            for part in (imgs, recon):
                if pad:
                    part = torch.cat([part, part.new_full((pad, *part.shape[1:]), -1.0)])
                rows.append(part)
        grid = (synth_to_unit(torch.cat(rows)) * 255 + 0.5).floor().to(torch.uint8).cpu()
        return save_grid(grid, path, k)

    # -- state ---------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything an exact resume needs (weights included)."""
        return {
            "kind": STATE_KIND,
            "config": self.config.to_dict(),
            "step": self.step_count,
            "encoder": {k: v.detach().cpu().clone() for k, v in self.encoder.state_dict().items()},
            "resolution": self.encoder.resolution,
            "input_size": self.input_size,
            "optimizer": self.optimizer.state_dict(),
            "rng": self.rng.get_state(),
            "syn_sampler": None if self.syn_sampler is None else self.syn_sampler.state_dict(),
            "real_sampler": None if self.real_sampler is None else self.real_sampler.state_dict(),
            "latent_avg": self.latent_avg.detach().cpu().clone(),
            "generator": dumps_json(self.generator_info),
            "data_fingerprint": None if self.images is None else self.images.fingerprint(),
            "init": dumps_json(self.init_info),
            "train_seconds": self.train_seconds,
            "lpips": self.lpips is not None,
            "data_arg": json.dumps(getattr(self, "data_arg", {})),
        }

    def load_state_dict(self, state: dict[str, Any], *, source: str = "snapshot") -> None:
        if state.get("kind") != STATE_KIND:
            raise ModelError(f"{source}: not an encoder-training snapshot")
        saved_gen = json.loads(state["generator"])
        if saved_gen.get("fingerprint_sha256") != self.generator_info.get("fingerprint_sha256"):
            raise InputError(f"{source}: the generator differs from the one this encoder was trained for "
                             f"({saved_gen.get('source')}); pass the same --generator to resume, or start a new "
                             f"run with --init-from OUT/{FINAL_NAME}")
        fp = None if self.images is None else self.images.fingerprint()
        if state.get("data_fingerprint") != fp:
            raise InputError(f"{source}: the real training images differ from this run's (pass the same --images "
                             f"and --holdout/--seed to resume)")
        if bool(state.get("lpips")) != (self.lpips is not None):
            raise ConfigError(f"{source}: the run was trained {'with' if state.get('lpips') else 'without'} LPIPS; "
                              f"resume it the same way (same --lpips-vgg16/--lpips-lin)")
        self.encoder.load_state_dict(state["encoder"], strict=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.rng.set_state(state["rng"])
        if self.syn_sampler is not None:
            self.syn_sampler.load_state_dict(state["syn_sampler"])
        if self.real_sampler is not None:
            self.real_sampler.load_state_dict(state["real_sampler"])
        self.latent_avg = state["latent_avg"].to(self.device)
        self.step_count = int(state["step"])
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.init_info = json.loads(state.get("init") or "{}")
        self.set_stage()

    def save_snapshot(self, out_dir: str | os.PathLike) -> Path:
        from facefeat.training import snapshots as snap

        path = snapshot_path(out_dir, self.step_count)
        snap.save_state(path, self.state_dict())
        keep = self.config.keep_snapshots
        if keep:
            for _, old in list_encoder_snapshots(out_dir)[:-keep]:
                old.unlink(missing_ok=True)
        return path

    def opts(self) -> dict[str, Any]:
        """Plain-valued training options for the e4e checkpoint (e4e's names where they exist)."""
        cfg = self.config
        return {
            "stylegan_size": self.G.img_resolution, "encoder_type": "Encoder4Editing", "start_from_latent_avg": True,
            "input_size": self.input_size, "batch_size": cfg.batch_size, "learning_rate": cfg.lr,
            "optim_name": "adam", "max_steps": cfg.steps, "l2_lambda": cfg.lambda_pixel,
            "lpips_lambda": cfg.lambda_lpips if self.lpips is not None else 0.0,
            "delta_norm_lambda": cfg.lambda_delta, "delta_norm": 2, "latent_lambda": cfg.lambda_latent,
            "progressive_step_every": cfg.progressive_every, "id_lambda": 0.0, "w_discriminator_lambda": 0.0,
            "trained_steps": self.step_count, "producer": "facefeat.training.encoder (facefeat train encoder)",
            "facefeat_config": json.dumps(cfg.to_dict()),
            "generator": dumps_json(self.generator_info),
            "init": dumps_json(self.init_info),
            "last_eval": dumps_json(self.last_eval),
        }

    def save_final(self, out_dir: str | os.PathLike, *, include_decoder: bool = True) -> Path:
        """``encoder-final.pt`` in the official e4e layout (see the module notes)."""
        from facefeat.models.e4e import rosinality_decoder_state_dict, save_e4e_checkpoint

        opts = self.opts()
        decoder = None
        if include_decoder:
            try:
                decoder = rosinality_decoder_state_dict(self.G)
                opts["decoder"] = "rosinality-layout generator"
            except ModelError as exc:  # e.g. z_dim != w_dim: rosinality's layout cannot hold it
                log.info("the final checkpoint has no decoder: %s", exc)
                opts["decoder"] = f"not included: {exc}"
        else:
            opts["decoder"] = "not included (include_decoder=False): pass the generator separately"
        la = self.latent_avg.detach().reshape(1, -1).expand(self.encoder.n_styles, -1).contiguous()
        return save_e4e_checkpoint(Path(out_dir) / FINAL_NAME, self.encoder, latent_avg=la, opts=opts,
                                   decoder_state_dict=decoder)

    # -- the run -------------------------------------------------------------------------------------
    def train(self, out_dir: str | os.PathLike, *, progress: bool = True,
              include_decoder: bool = True) -> EncoderTrainingResult:
        """Train until ``config.steps``: logging, evaluating, sampling and snapshotting on schedule."""
        from facefeat.training.loop import NonFiniteError, _write_jsonl

        cfg = self.config
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        log_path = out / "metrics.jsonl"
        t_wall = time.perf_counter()
        if self.step_count == 0:
            log_path.unlink(missing_ok=True)
            _write_jsonl(log_path, {"event": "start", "step": 0, "total_steps": cfg.steps, "time": time.time()})
            _write_jsonl(log_path, {"event": "eval", **self.evaluate()})
            self.sample_grid(out / f"samples-{0:07d}.png")
        else:
            _truncate_log(log_path, self.step_count)
            _write_jsonl(log_path, {"event": "resume", "step": self.step_count, "total_steps": cfg.steps,
                                    "time": time.time()})
        snapshots = [p for _, p in list_encoder_snapshots(out)]

        def due(every: int) -> bool:
            return every > 0 and self.step_count % every == 0

        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=self.step_count, unit="step", desc="encoder", dynamic_ncols=True)
        try:
            while self.step_count < cfg.steps:
                t0 = time.perf_counter()
                try:
                    stats = self.step()
                except NonFiniteError as exc:
                    last = latest_encoder_snapshot(out)
                    _write_jsonl(log_path, {"event": "stopped", "reason": str(exc), "step": self.step_count,
                                            "last_good_snapshot": str(last) if last else None})
                    raise NonFiniteError(f"training stopped: {exc}; "
                                         + (f"resume from the last good snapshot {last} with a lower --lr" if last
                                            else "no snapshot was written yet; lower --lr")) from None
                done = self.step_count >= cfg.steps
                _write_jsonl(log_path, {"event": "step", "step": self.step_count, **stats,
                                        "lr": self.optimizer.param_groups[0]["lr"],
                                        "sec": time.perf_counter() - t0})
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix_str(" ".join(f"{k[5:]} {v:.4g}" for k, v in stats.items()
                                                 if k.startswith("loss/")), refresh=False)
                if due(cfg.eval_every) or done:
                    res = self.evaluate()
                    _write_jsonl(log_path, {"event": "eval", **res})
                    if bar is not None:
                        bar.write(format_eval(res))
                if due(cfg.sample_every) or done:
                    self.sample_grid(out / f"samples-{self.step_count:07d}.png")
                if due(cfg.save_every) or done:
                    path = self.save_snapshot(out)
                    snapshots = [p for p in snapshots if p.exists() and p != path] + [path]
                    _write_jsonl(log_path, {"event": "snapshot", "step": self.step_count, "path": str(path)})
        finally:
            if bar is not None:
                bar.close()
        final = self.save_final(out, include_decoder=include_decoder)
        _write_jsonl(log_path, {"event": "done", "step": self.step_count, "final": str(final),
                                "train_seconds": self.train_seconds, "time": time.time()})
        return EncoderTrainingResult(out=out, final=final, encoder=self.encoder.eval(), latent_avg=self.latent_avg,
                                     step=self.step_count, snapshots=snapshots, last_eval=self.last_eval,
                                     train_seconds=self.train_seconds, wall_seconds=time.perf_counter() - t_wall)


# --------------------------------------------------------------------------------------------
# Metrics and helpers
# --------------------------------------------------------------------------------------------

def latent_correlation(pred: torch.Tensor, true: torch.Tensor) -> dict[str, float]:
    """How well predicted codes ``[N, L, D]`` recover true ones (same shape).

    * ``latent_r``: Pearson r across the N samples, per (row, dimension), averaged over all
      ``L * D`` of them (each dimension's own scale and mean removed: the headline figure).
    * ``latent_r_w0``: the same for row 0 only (the W code e4e builds the others on).
    * ``latent_r_pooled``: one Pearson r over every value, after subtracting the true codes'
      per-(row, dimension) mean from both.
    * ``latent_mse``: mean squared error; ``latent_mse_w_avg``: that of predicting the mean.
    """
    p = pred.detach().to(torch.float64).cpu()
    t = true.detach().to(torch.float64).cpu()
    mu = t.mean(0, keepdim=True)
    pc, tc = p - p.mean(0, keepdim=True), t - mu
    den = (pc.norm(dim=0) * tc.norm(dim=0)).clamp_min(1e-12)
    r = (pc * tc).sum(0) / den                                 # [L, D]
    a, b = (p - mu).flatten(), tc.flatten()
    a, b = a - a.mean(), b - b.mean()
    pooled = float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))
    return {"latent_r": float(r.mean()), "latent_r_w0": float(r[0].mean()), "latent_r_pooled": pooled,
            "latent_mse": float((p - t).square().mean()), "latent_mse_w_avg": float(tc.square().mean())}


def format_eval(res: dict[str, Any]) -> str:
    """One line of held-out figures."""
    parts = [f"step {res.get('step')}"]
    for name in ("synthetic", "real"):
        r = res.get(name)
        if r:
            s = f"{name}: MSE {r['mse']:.4f} (w_avg {r['mse_w_avg']:.4f})"
            if "latent_r" in r:
                s += f", latent r {r['latent_r']:.3f}"
            parts.append(s)
    return "eval " + "; ".join(parts)


def snapshot_path(out_dir: str | os.PathLike, step: int) -> Path:
    return Path(out_dir) / f"{SNAPSHOT_PREFIX}{int(step):07d}{SNAPSHOT_SUFFIX}"


def list_encoder_snapshots(out_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Complete encoder snapshots in ``out_dir`` as ``(step, path)``, oldest first."""
    return numbered_files(out_dir, prefix=SNAPSHOT_PREFIX, suffix=SNAPSHOT_SUFFIX)


def latest_encoder_snapshot(out_dir: str | os.PathLike) -> Path | None:
    snaps = list_encoder_snapshots(out_dir)
    return snaps[-1][1] if snaps else None


def _truncate_log(path: Path, step: int) -> None:
    """Drop the lines an interrupted run wrote after ``step`` (so the log equals an uninterrupted run's)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut by the interruption
        if (int(rec.get("step", 0) or 0) <= step or rec.get("event") == "start") and rec.get("event") != "done":
            keep.append(line)
    from facefeat.io.atomic import atomic_output

    with atomic_output(path, umask_mode=True) as tmp:
        tmp.write_text("".join(line + "\n" for line in keep), encoding="utf-8")


def _load_lpips(lpips, device):
    if lpips is None:
        return None
    if isinstance(lpips, (tuple, list)):
        from facefeat.inversion.perceptual import load_lpips_vgg

        if len(lpips) != 2:
            raise ConfigError("lpips must be an LPIPS module or (vgg16.pth, lpips vgg.pth)")
        return load_lpips_vgg(lpips[0], lpips[1], device=device)
    return lpips


def train_encoder(generator=None, *, out: str | os.PathLike, images=None,
                  config: EncoderTrainingConfig | None = None, init_from: str | os.PathLike | None = None,
                  lpips=None, device: torch.device | str = "cpu", resume: bool | str | os.PathLike = False,
                  progress: bool = True, include_decoder: bool = True, align: bool = False) -> EncoderTrainingResult:
    """Train an e4e encoder for ``generator`` (see the module notes for data, losses and outputs).

    Parameters
    ----------
    generator : Generator, path or str
        The (fine-tuned) generator: a :class:`~facefeat.models.stylegan2.Generator`, a checkpoint
        file or a registry name; ``w_dim`` must be 512. On resume, None uses the run's own.
    out : path
        Output folder.
    images : path or TrainingImages, optional
        Real aligned crops (see :func:`facefeat.training.data.load_training_images`).
    config : EncoderTrainingConfig, optional
        Hyperparameters. On resume the snapshot's config is used; fields of ``config`` in
        :data:`RESUMABLE_OVERRIDES` that differ from the defaults are applied, others must agree.
    init_from : path, optional
        An official e4e checkpoint to start from (style count must match the generator).
    lpips : LPIPS or (path, path), optional
        Perceptual loss: a loaded :class:`~facefeat.inversion.perceptual.LPIPS` or the two
        weight files of :func:`~facefeat.inversion.perceptual.load_lpips_vgg`.
    device : str or torch.device
    resume : bool or path
        True: continue the newest ``encoder-snapshot-*.pt`` in ``out``; a path: that snapshot.
    progress : bool
        tqdm progress bar with the losses.
    include_decoder : bool
        Put the generator into the final checkpoint as ``decoder.*`` (rosinality layout).
    align : bool
        ``images`` is a folder of photos to detect and align on the fly.

    Returns
    -------
    EncoderTrainingResult

    Raises
    ------
    ConfigError, InputError, ModelError
        Bad settings, images, generator or init checkpoint (the message names it and the fix).
    NonFiniteError
        The loss diverged (the message names the last good snapshot).
    """
    from facefeat.training import snapshots as snap
    from facefeat.training.data import TrainingImages, load_training_images

    out = Path(out).expanduser()
    device = resolve_device(device, option="device")  # a missing GPU: ConfigError listing what there is
    config = config if config is not None else EncoderTrainingConfig()
    state = None
    if resume:
        path = latest_encoder_snapshot(out) if resume is True else Path(resume)
        if path is None:
            raise ConfigError(f"{out}: --resume given but there is no encoder snapshot ({SNAPSHOT_PREFIX}*.pt) in "
                              f"this folder")
        state = snap.load_state(path)
        if state.get("kind") != STATE_KIND:
            raise ModelError(f"{path}: not an encoder-training snapshot (kind {state.get('kind')!r})")
        config = resume_config(EncoderTrainingConfig.from_dict(state["config"]),
                               changed_fields(config, EncoderTrainingConfig()), resumable=RESUMABLE_OVERRIDES,
                               restart=f"--init-from {out / FINAL_NAME}")
        if generator is None:
            generator = json.loads(state["generator"]).get("source")
            if generator in (None, "in-memory Generator"):
                raise ConfigError(f"{path}: the run was trained on an in-memory generator; pass it again to resume")
        if images is None:
            data_arg = json.loads(state.get("data_arg") or "{}")
            if data_arg.get("path"):
                images, align = data_arg["path"], bool(data_arg.get("align"))
    else:
        existing = list_encoder_snapshots(out)
        if existing:
            raise ConfigError(f"{out}: already holds encoder snapshots ({existing[-1][1].name}); pass --resume to "
                              f"continue that run, or choose a new --out")
    if generator is None:
        raise ConfigError("--generator is required (the StyleGAN2 checkpoint the encoder is trained for)")
    G, gen_info = load_encoder_generator(generator, device=device)

    train_images = heldout = None
    data_arg: dict[str, Any] = {}
    if images is not None:
        if isinstance(images, TrainingImages):
            all_images = images
        else:
            all_images = load_training_images(images, G.img_resolution, align=align,
                                              cache_dir=out / ".cache" / "aligned")
            data_arg = {"path": str(Path(images).expanduser().resolve()), "align": bool(align)}
        train_images, heldout = all_images.split(config.holdout, seed=config.seed)
    elif config.synthetic == 0:
        raise ConfigError("encoder training needs data: --images DIR (aligned crops) and/or --synthetic N "
                          "(generator samples)")
    lp = _load_lpips(lpips, device)
    trainer = EncoderTrainer(G, config, images=train_images, heldout=heldout,
                             init_from=None if state is not None else init_from, lpips=lp, device=device,
                             generator_info=gen_info,
                             input_size=int(state["input_size"]) if state is not None else None)
    trainer.data_arg = data_arg
    if state is not None:
        trainer.load_state_dict(state, source=str(path))
        log.info("resuming the encoder run from %s at step %d", path, trainer.step_count)
    out.mkdir(parents=True, exist_ok=True)
    options = {"config": trainer.config.to_dict(), "generator": gen_info, "init": trainer.init_info,
               "input_size": trainer.input_size, "n_styles": trainer.encoder.n_styles,
               "batch": {"synthetic": trainer.n_synthetic, "real": trainer.n_real},
               "data": None if train_images is None else train_images.describe(),
               "heldout": None if heldout is None else heldout.describe(),
               "lpips": None if lp is None else getattr(lp, "provenance", {}),
               "machine": {"device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads()},
               "resumed_from": str(path) if state is not None else None}
    (out / "training_options.json").write_text(dumps_json(options, indent=2) + "\n")
    return trainer.train(out, progress=progress, include_decoder=include_decoder)
