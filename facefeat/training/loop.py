"""The StyleGAN2(-ADA) training loop: phases, lazy regularisation, EMA, ADA, snapshots, resume.

One minibatch (:meth:`Trainer.step`) runs the phases of stylegan2-ada-pytorch's training loop
in its order, each with its own optimiser step and its own latents:

==========  ======================================  ===========  ==========================
phase       loss                                    every        Adam (lazy correction)
==========  ======================================  ===========  ==========================
``Gmain``   non-saturating logistic                 minibatch    G: ``lr * c``, ``beta**c``
``Greg``    path length (x ``pl_interval``)         4th          with ``c = 4 / 5``
``Dmain``   logistic (fake + real)                  minibatch    D: ``lr * c``, ``beta**c``
``Dreg``    R1 on reals (x ``r1_interval``)         16th         with ``c = 16 / 17``
==========  ======================================  ===========  ==========================

(A regulariser with weight 0 drops its phase and its network's correction.) Then
``G_ema`` is updated (:mod:`facefeat.training.ema`), the step counters advance, and every
``ada_interval`` minibatches ADA moves p. Before each optimiser step the loss and gradients are
checked: with ``nan_policy="stop"`` a non-finite value stops the run before it touches the
weights (:class:`NonFiniteError`; the snapshots on disk are all good); ``"sanitize"`` does what
NVIDIA does (NaN -> 0, +-inf -> +-1e5) and goes on. A non-finite weight always stops the run.

Every random number comes from explicit generators seeded from ``config.seed`` (data order,
latents, crossover rows, noise, augmentation) and their states are part of a snapshot, so a run
resumed from a snapshot on the CPU repeats the uninterrupted run's losses and weights exactly.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from facefeat.devices import resolve_device
from facefeat.errors import ConfigError, FacefeatError, InputError, ModelError
from facefeat.io.jsonsafe import dumps_json
from facefeat.models.stylegan2.config import DiscriminatorConfig, GeneratorConfig
from facefeat.models.stylegan2.networks import Discriminator, Generator
from facefeat.training.augment import AdaController, AugmentPipe
from facefeat.training.config import TrainingConfig, changed_fields, resume_config
from facefeat.training.data import InfiniteSampler, TrainingImages
from facefeat.training.ema import ema_beta, update_ema
from facefeat.training.loss import StyleGAN2Loss
from facefeat.training import snapshots as snap

log = logging.getLogger("facefeat.training")

#: Shorthand names accepted by ``--init`` for registry models.
INIT_ALIASES = {"ffhq-256": "nvidia-ffhq-256", "ffhq-1024": "nvidia-ffhq-1024"}

#: Network shapes for ``--init scratch`` (stylegan2-ada-pytorch ``--cfg``).
SCRATCH_CFGS = {
    # name: (channel_base, mapping_layers, mbstd_group)
    "auto": (None, 2, 4),
    "paper256": (16384, 8, 8),
    "stylegan2": (32768, 8, 4),
}

#: Config fields a resumed run may change (they only decide logging and run length).
RESUMABLE_OVERRIDES = ("kimg", "tick_kimg", "snapshot_kimg", "sample_kimg", "metrics_kimg", "metric_samples",
                       "proj_steps", "grid_size")


class NonFiniteError(FacefeatError):
    """A loss, gradient or weight became NaN or infinite; the run stopped."""


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------

def scratch_networks(resolution: int, *, cfg: str = "auto", seed: int = 0, z_dim: int = 512, w_dim: int = 512,
                     channel_base: int | None = None, channel_max: int = 512,
                     device: torch.device | str = "cpu") -> tuple[Generator, Discriminator]:
    """Freshly initialised G and D for ``resolution`` with stylegan2-ada-pytorch's ``--cfg``
    shapes (``auto``: channel base 16384 below 512 px, else 32768; 2 mapping layers)."""
    if cfg not in SCRATCH_CFGS:
        raise ConfigError(f"--cfg {cfg!r} is unknown; choose one of {', '.join(SCRATCH_CFGS)}")
    base, mapping_layers, mbstd = SCRATCH_CFGS[cfg]
    if base is None:
        base = 32768 if resolution >= 512 else 16384
    base = channel_base if channel_base is not None else base
    try:
        gcfg = GeneratorConfig.nvidia(resolution, z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers,
                                      channel_base=base, channel_max=channel_max)
        dcfg = DiscriminatorConfig.nvidia(resolution, channel_base=base, channel_max=channel_max,
                                          mbstd_group_size=mbstd)
    except ValueError as exc:
        raise ConfigError(f"--init scratch: {exc}") from exc
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(gcfg, device=device)
        D = Discriminator(dcfg, device=device)
    G.w_avg_source = "tracked during training"
    return G, D


def _discriminator_for(G: Generator, seed: int, device: torch.device | str) -> Discriminator:
    cfg = DiscriminatorConfig(img_resolution=G.img_resolution, channels=G.config.channels,
                              img_channels=G.img_channels, mbstd_group_size=4, conv_clamp=G.config.conv_clamp)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator(cfg, device=device)


def init_networks(init: str | os.PathLike, *, device: torch.device | str = "cpu", resolution: int | None = None,
                  cfg: str = "auto", seed: int = 0,
                  channel_base: int | None = None) -> tuple[Generator, Discriminator, Generator, dict[str, Any]]:
    """``(G, D, G_ema, info)`` to start training from.

    Parameters
    ----------
    init : str or path
        ``"scratch"`` (needs ``resolution``), a registry name (``nvidia-ffhq-256``, alias
        ``ffhq-256``) or a checkpoint file in any format :func:`~facefeat.models.checkpoints.load_generator`
        reads (NVIDIA pickle, rosinality ``.pt``, facefeat ``.safetensors``). ``G`` is the
        file's raw generator (its EMA one when it has none), ``G_ema`` its EMA generator (a copy
        of ``G`` when it has none) and ``D`` its discriminator (freshly initialised, with a
        warning, when it has none).
    resolution, cfg, channel_base : for ``"scratch"``, see :func:`scratch_networks`.

    Returns
    -------
    tuple
        ``info`` records where everything came from (file, sha256, format, licence, notes).
    """
    import copy

    from facefeat.io.hashing import sha256_file
    from facefeat.models.checkpoints import load_discriminator, load_generator, read_checkpoint
    from facefeat.models.registry import resolve_model

    if str(init) == "scratch":
        if resolution is None:
            raise ConfigError("--init scratch needs --resolution (a power of two, e.g. 256)")
        G, D = scratch_networks(int(resolution), cfg=cfg, seed=seed, channel_base=channel_base, device=device)
        G_ema = copy.deepcopy(G).eval()
        info = {"init": "scratch", "cfg": cfg, "seed": seed, "generator": G.config.to_dict(),
                "discriminator": D.config.to_dict()}
        return G, D, G_ema, info
    path = resolve_model(INIT_ALIASES.get(str(init), str(init)))
    raw = read_checkpoint(path, names=None)
    gens = [n for n, k in raw.kinds.items() if k == "generator"]
    discs = [n for n, k in raw.kinds.items() if k == "discriminator"]
    notes = []
    if not gens:
        raise ModelError(f"{path}: holds no generator (networks: {sorted(raw.kinds)})")
    g_name = "G" if "G" in gens else ("G_ema" if "G_ema" in gens else gens[0])
    ema_name = "G_ema" if "G_ema" in gens else g_name
    G = load_generator(path, which=g_name, device=device)
    G_ema = load_generator(path, which=ema_name, device=device) if ema_name != g_name else copy.deepcopy(G)
    if g_name != "G":
        notes.append(f"no raw generator 'G' in the file: G starts as a copy of {g_name!r}")
    if discs:
        D = load_discriminator(path, which="D" if "D" in discs else discs[0], device=device)
    else:
        D = _discriminator_for(G, seed, device)
        msg = (f"{path}: no discriminator in this checkpoint; D starts from random weights, which makes "
               f"fine-tuning much slower and less stable. Prefer a file with D (an NVIDIA network pickle or a "
               f"rosinality training checkpoint)")
        log.warning(msg)
        notes.append(msg)
    if resolution is not None and int(resolution) != G.img_resolution:
        raise ConfigError(f"--resolution {resolution} does not match the checkpoint's {G.img_resolution} px; the "
                          f"resolution comes from the checkpoint (leave --resolution out)")
    info = {"init": str(init), "path": str(path), "sha256": sha256_file(path), "format": raw.format,
            "networks": {"G": g_name, "G_ema": ema_name, "D": "D" if discs else "random"},
            "license": raw.info.get("license") or (raw.info.get("provenance") or {}).get("license"),
            "notes": notes}
    return G, D, G_ema, info


def discriminator_layers(D: Discriminator) -> list[tuple[str, torch.nn.Module]]:
    """D's layers in stylegan2-ada-pytorch's FreezeD order: per block from the highest
    resolution, ``fromrgb``, ``conv0``, ``conv1``, ``skip`` (the 4x4 epilogue is not counted)."""
    out = []
    for res in D.block_resolutions:
        block = getattr(D, f"b{res}")
        for name in ("fromrgb", "conv0", "conv1", "skip"):
            if hasattr(block, name):
                out.append((f"b{res}.{name}", getattr(block, name)))
    return out


# --------------------------------------------------------------------------------------------
# Trainer
# --------------------------------------------------------------------------------------------

@dataclass
class Phase:
    name: str
    network: str
    params: list[torch.nn.Parameter]
    opt: torch.optim.Optimizer
    interval: int


@dataclass
class TrainingResult:
    """What :func:`train_generator` / :meth:`Trainer.train` return."""

    out: Path
    final: Path | None
    snapshots: list[Path]
    nimg: int
    step: int
    last_tick: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def kimg(self) -> float:
        return self.nimg / 1000


class Trainer:
    """Holds the networks, optimisers and every piece of resumable state of one run.

    Parameters
    ----------
    G, D, G_ema : Generator, Discriminator, Generator
        Same resolution as ``images``; moved to ``device``.
    images : TrainingImages
    config : TrainingConfig
        Auto fields are resolved for the resolution (:meth:`TrainingConfig.resolved`).
    device : torch.device or str
    init_info : dict, optional
        Provenance of the starting weights (from :func:`init_networks`).
    heldout : TrainingImages, optional
        Images kept out of training for the projection metric.
    feature_network : FeatureNetwork, optional
        For KID/FID and the projection's feature distance (default: dlib's descriptor, loaded
        when a metric first runs).

    Examples
    --------
    >>> trainer = Trainer(G, D, G_ema, images, TrainingConfig(kimg=1, batch_size=8))   # doctest: +SKIP
    >>> stats = trainer.step()                                                          # doctest: +SKIP
    >>> trainer.save_snapshot("runs/ft")                                                # doctest: +SKIP
    """

    def __init__(self, G: Generator, D: Discriminator, G_ema: Generator, images: TrainingImages,
                 config: TrainingConfig, *, device: torch.device | str = "cpu", init_info: dict | None = None,
                 heldout: TrainingImages | None = None, feature_network=None) -> None:
        res = G.img_resolution
        for what, r in (("discriminator", D.img_resolution), ("G_ema", G_ema.img_resolution),
                        ("training images", images.resolution)):
            if r != res:
                raise ConfigError(f"the generator is {res} px but the {what} is {r} px")
        cfg = config.resolved(res)
        self.config = cfg
        group = D.config.mbstd_group_size
        if group is not None and cfg.batch_size % min(group, cfg.batch_size):
            raise ConfigError(f"batch_size={cfg.batch_size} is not a multiple of the discriminator's minibatch-stddev "
                              f"group ({group}); use a multiple of {group}")
        if cfg.freeze_d > len(discriminator_layers(D)):
            raise ConfigError(f"freeze_d={cfg.freeze_d} but the discriminator has {len(discriminator_layers(D))} "
                              f"freezable layers")
        self.device = torch.device(device)
        self.G, self.D, self.G_ema = G.to(self.device), D.to(self.device), G_ema.to(self.device)
        for net in (self.G, self.D, self.G_ema):
            net.requires_grad_(False)
        self.G.train()
        self.D.train()
        self.G_ema.eval()
        self.G.w_avg_source = self.G_ema.w_avg_source = f"tracked during training (w_avg_beta={cfg.w_avg_beta})"
        frozen = {id(p) for _, layer in discriminator_layers(self.D)[:cfg.freeze_d] for p in layer.parameters()}
        self.frozen_d_layers = [name for name, _ in discriminator_layers(self.D)[:cfg.freeze_d]]
        self.images, self.heldout = images, heldout
        self.init_info = dict(init_info or {})
        self.feature_network = feature_network
        self._real_features: np.ndarray | None = None

        # Explicit random streams (their states are saved in every snapshot).
        self.generator = torch.Generator(self.device).manual_seed(cfg.seed)
        self.cpu_generator = torch.Generator().manual_seed(cfg.seed + 1)
        self.augment_pipe = None
        self.ada = None
        if cfg.augment != "none":
            self.augment_pipe = AugmentPipe(p=cfg.augment_p, strengths=cfg.augment_strengths).to(self.device)
            if cfg.augment == "ada":
                self.ada = AdaController(self.augment_pipe, target=cfg.ada_target, batch_size=cfg.batch_size,
                                         interval=cfg.ada_interval, ada_kimg=cfg.ada_kimg)
        self.loss = StyleGAN2Loss(self.G, self.D, augment_pipe=self.augment_pipe, ada=self.ada,
                                  r1_gamma=cfg.r1_gamma, style_mixing_prob=cfg.style_mixing_prob,
                                  pl_weight=cfg.pl_weight, pl_batch_shrink=cfg.pl_batch_shrink,
                                  pl_decay=cfg.pl_decay, w_avg_beta=cfg.w_avg_beta, noise_mode=cfg.noise_mode,
                                  generator=self.generator, cpu_generator=self.cpu_generator)
        g_params = list(self.G.parameters())
        d_params = [p for p in self.D.parameters() if id(p) not in frozen]
        self.phases: list[Phase] = []
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        for net, params, lr, interval, reg_on in (("G", g_params, cfg.g_lr, cfg.pl_interval, cfg.pl_weight > 0),
                                                  ("D", d_params, cfg.d_lr, cfg.r1_interval, cfg.r1_gamma > 0)):
            ratio = interval / (interval + 1) if reg_on else 1.0
            opt = torch.optim.Adam(params, lr=lr * ratio, betas=tuple(b ** ratio for b in cfg.betas), eps=cfg.eps)
            self.optimizers[net] = opt
            self.phases.append(Phase(f"{net}main", net, params, opt, 1))
            if reg_on:
                self.phases.append(Phase(f"{net}reg", net, params, opt, interval))
        self.sampler = InfiniteSampler(len(images), seed=cfg.seed, mirror=cfg.mirror)
        self.step_count = 0
        self.nimg = 0
        self.phase_seconds: dict[str, float] = defaultdict(float)
        self.train_seconds = 0.0
        self.n_sanitized = 0
        self.last_metrics: dict[str, Any] = {}
        #: How the images were given (path, align) so that ``--resume`` can find them again.
        self.data_arg: dict[str, Any] = {}

    # -- one minibatch ---------------------------------------------------------------------------
    @property
    def kimg(self) -> float:
        return self.nimg / 1000

    def _real_batch(self) -> torch.Tensor:
        idx, flips = self.sampler.next(self.config.batch_size)
        batch = self.images.load(idx, flip=flips)
        return batch.to(self.device).to(torch.float32) / 127.5 - 1

    def _check_grads(self, phase: Phase, stats: dict[str, Any]) -> None:
        grads = [p.grad for p in phase.params if p.grad is not None]
        loss_ok = math.isfinite(stats["loss"])
        grads_ok = bool(torch.stack([g.isfinite().all() for g in grads]).all()) if grads else True
        if self.config.nan_policy == "sanitize":
            if not (loss_ok and grads_ok):
                self.n_sanitized += 1
            for g in grads:
                torch.nan_to_num(g, nan=0.0, posinf=1e5, neginf=-1e5, out=g)
            return
        if not loss_ok or not grads_ok:
            what = "loss" if not loss_ok else "gradient"
            raise NonFiniteError(f"non-finite {what} in phase {phase.name} at step {self.step_count} "
                                 f"({self.kimg:.3f} kimg); {phase.network}'s weights were not updated")

    def step(self) -> dict[str, float]:
        """Train on one minibatch (all due phases, EMA, ADA); returns its statistics."""
        cfg = self.config
        t_start = time.perf_counter()
        real = self._real_batch()
        all_z = torch.randn((len(self.phases), cfg.batch_size, self.G.z_dim), generator=self.generator,
                            device=self.device)
        stats: dict[str, float] = {}
        for phase, z in zip(self.phases, all_z):
            if self.step_count % phase.interval:
                continue
            t0 = time.perf_counter()
            phase.opt.zero_grad(set_to_none=True)
            for p in phase.params:
                p.requires_grad_(True)
            try:
                s = self.loss.accumulate_gradients(phase.name, real, z, gain=phase.interval)
            finally:
                for p in phase.params:
                    p.requires_grad_(False)
            self._check_grads(phase, s)
            phase.opt.step()
            if not bool(torch.stack([p.isfinite().all() for p in phase.params]).all()):
                raise NonFiniteError(f"non-finite {phase.network} weights after phase {phase.name} at step "
                                     f"{self.step_count} ({self.kimg:.3f} kimg)")
            self.phase_seconds[phase.name] += time.perf_counter() - t0
            s.pop("loss", None)
            for k, v in s.items():
                stats[k if k.startswith(("loss/", "pl_", "r1_")) else f"{phase.name}/{k}"] = v
        beta = ema_beta(cfg.batch_size, cfg.ema_kimg, cfg.ema_rampup, self.nimg)
        update_ema(self.G_ema, self.G, beta)
        self.nimg += cfg.batch_size
        self.step_count += 1
        if self.ada is not None and self.step_count % cfg.ada_interval == 0:
            self.ada.update()
        stats["ema_beta"] = beta
        if self.augment_pipe is not None:
            stats["augment_p"] = self.augment_pipe.probability
        if self.ada is not None and self.ada.r_t is not None:
            stats["r_t"] = self.ada.r_t
        stats["pl_mean"] = float(self.loss.pl_mean)
        self.train_seconds += time.perf_counter() - t_start
        return stats

    # -- state -------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything besides the network weights that an exact resume needs."""
        return {
            "config": self.config.to_dict(),
            "step": self.step_count,
            "nimg": self.nimg,
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "pl_mean": self.loss.pl_mean.detach().cpu().clone(),
            "augment_p": None if self.augment_pipe is None else self.augment_pipe.probability,
            "ada": None if self.ada is None else self.ada.state_dict(),
            "rng": {"device": self.generator.get_state(), "cpu": self.cpu_generator.get_state()},
            "sampler": self.sampler.state_dict(),
            "data_fingerprint": self.images.fingerprint(),
            "n_images": len(self.images),
            "init": dumps_json(self.init_info),
            "phase_seconds": dict(self.phase_seconds),
            "train_seconds": self.train_seconds,
            "n_sanitized": self.n_sanitized,
            "device": str(self.device),
            "data_arg": json.dumps(self.data_arg),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["data_fingerprint"] != self.images.fingerprint():
            raise InputError(f"resume: the training images differ from the ones this run was trained on "
                             f"({state['n_images']} images, fingerprint {state['data_fingerprint'][:12]}...; now "
                             f"{len(self.images)} images, {self.images.fingerprint()[:12]}...); pass the same --images "
                             f"(and --holdout/--seed), or start a new run with --init pointing at the snapshot")
        self.step_count, self.nimg = int(state["step"]), int(state["nimg"])
        for k, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][k])
        self.loss.pl_mean.copy_(state["pl_mean"].to(self.device))
        if self.augment_pipe is not None and state.get("augment_p") is not None:
            self.augment_pipe.p.fill_(float(state["augment_p"]))
        if self.ada is not None and state.get("ada") is not None:
            self.ada.load_state_dict(state["ada"])
        self.generator.set_state(state["rng"]["device"])
        self.cpu_generator.set_state(state["rng"]["cpu"])
        self.sampler.load_state_dict(state["sampler"])
        self.phase_seconds = defaultdict(float, state.get("phase_seconds", {}))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        self.n_sanitized = int(state.get("n_sanitized", 0))

    def provenance(self) -> dict[str, Any]:
        """What a snapshot's JSON records about the training."""
        from facefeat._version import __version__

        prov = {
            "producer": "facefeat.training (facefeat train generator)",
            "training": {
                "config": self.config.to_dict(),
                "step": self.step_count, "nimg": self.nimg, "kimg": self.kimg,
                "augment_p": None if self.augment_pipe is None else self.augment_pipe.probability,
                "r_t": None if self.ada is None else self.ada.r_t,
                "pl_mean": float(self.loss.pl_mean),
                "frozen_d_layers": self.frozen_d_layers,
                "data": self.images.describe(),
                "heldout": None if self.heldout is None else {"n_images": len(self.heldout),
                                                              "fingerprint_sha256": self.heldout.fingerprint()},
                "device": str(self.device), "torch": torch.__version__, "facefeat": __version__,
                "n_sanitized_steps": self.n_sanitized,
                "metrics": self.last_metrics,
            },
            "init": self.init_info,
        }
        if self.init_info.get("license"):
            prov["license"] = ("fine-tuned from weights under this licence, which applies to the result too: "
                               + str(self.init_info["license"]))
        return prov

    def save_snapshot(self, out_dir: str | os.PathLike) -> Path:
        """Write ``network-snapshot-<nimg>`` (weights, JSON, state); returns its stem."""
        from facefeat.models.checkpoints import save_checkpoint

        stem = snap.snapshot_stem(out_dir, self.nimg)
        save_checkpoint(stem, {"G_ema": self.G_ema, "G": self.G, "D": self.D}, provenance=self.provenance(),
                        overwrite=True)
        state = self.state_dict()
        state["weights_sha256"] = snap.weights_sha256(stem)
        snap.save_state(snap.state_path(stem), state)
        return stem

    def save_final(self, out_dir: str | os.PathLike) -> Path:
        """``generator-final.safetensors`` / ``.json`` holding ``G_ema`` only."""
        from facefeat.models.checkpoints import save_checkpoint

        weights, _ = save_checkpoint(Path(out_dir) / snap.FINAL_NAME, {"G_ema": self.G_ema},
                                     provenance=self.provenance(), overwrite=True)
        return weights

    @classmethod
    def from_snapshot(cls, path: str | os.PathLike, images: TrainingImages, *, device: torch.device | str = "cpu",
                      overrides: dict[str, Any] | None = None, heldout: TrainingImages | None = None,
                      feature_network=None) -> Trainer:
        """Rebuild a trainer from a snapshot (any of its files or its stem) to continue exactly.

        ``overrides`` may change only :data:`RESUMABLE_OVERRIDES` (run length and logging).
        """
        from facefeat.models.checkpoints import load_discriminator, load_generator

        stem = snap.stem_of(path)
        state = snap.load_state(snap.state_path(stem))
        if state.get("weights_sha256") != snap.weights_sha256(stem):
            raise ModelError(f"{stem}: the state file does not belong to these weights (sha256 differs); the snapshot "
                             f"was modified, resume from another one")
        cfg = resume_config(TrainingConfig.from_dict(state["config"]), overrides or {},
                            resumable=RESUMABLE_OVERRIDES, restart=f"--init {stem}.safetensors")
        G = load_generator(stem, which="G", device=device)
        G_ema = load_generator(stem, which="G_ema", device=device)
        D = load_discriminator(stem, which="D", device=device)
        trainer = cls(G, D, G_ema, images, cfg, device=device, init_info=json.loads(state["init"]),
                      heldout=heldout, feature_network=feature_network)
        trainer.load_state_dict(state)
        return trainer

    # -- metrics and samples ------------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        """KID / FID / projection quality of ``G_ema`` (see :mod:`facefeat.training.metrics`)."""
        from facefeat.training import metrics as M

        cfg = self.config
        if not cfg.metrics:
            return {}
        if self.feature_network is None:
            self.feature_network = M.DlibFaceDescriptor()
        if {"kid", "fid"} & set(cfg.metrics) and self._real_features is None:
            reals = self.images.load(range(len(self.images)))
            self._real_features = M.compute_features(self.feature_network, reals)
        heldout = self.heldout.load(range(len(self.heldout))) if self.heldout is not None else None
        n_gen = cfg.metric_samples if cfg.metric_samples is not None else max(len(self.images), 500)
        res = M.evaluate_generator(self.G_ema, real_features=self._real_features, heldout=heldout,
                                   metrics=cfg.metrics, feature_network=self.feature_network, num_generated=n_gen,
                                   seed=cfg.seed, proj_steps=cfg.proj_steps)
        res = {"kimg": self.kimg, **res}
        self.last_metrics = {k: v for k, v in res.items() if k != "proj_mse_per_image"}
        return res

    @torch.no_grad()
    def sample_grid(self, path: str | os.PathLike) -> Path:
        """PNG grid of ``G_ema`` on the run's fixed latents (seed ``config.seed``), stored noise."""
        n = self.config.grid_size ** 2
        z = torch.randn(n, self.G.z_dim, generator=torch.Generator().manual_seed(self.config.seed))
        ws = self.G_ema.mapping(z.to(self.device))
        img = self.G_ema.synthesis(ws, noise_mode="const")
        return save_grid((img * 127.5 + 128).clamp(0, 255).to(torch.uint8).cpu(), path, self.config.grid_size)

    # -- the run -------------------------------------------------------------------------------------
    def train(self, out_dir: str | os.PathLike, *, progress: bool = True) -> TrainingResult:
        """Train until ``config.kimg``, logging, sampling, evaluating and snapshotting on schedule.

        Raises
        ------
        NonFiniteError
            A non-finite value (the message names the last good snapshot).
        """
        cfg = self.config
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        total = int(round(cfg.kimg * 1000))
        log_path = out / "metrics.jsonl"

        def due(interval_kimg: float, prev: int) -> bool:
            step = int(round(interval_kimg * 1000))
            return step > 0 and self.nimg // step > prev // step

        if self.nimg == 0:
            save_grid(self.images.load(range(min(len(self.images), cfg.grid_size ** 2))),
                      out / "reals.png", cfg.grid_size)
            self.sample_grid(out / f"fakes-{0:09d}.png")
        _write_jsonl(log_path, {"event": "start" if self.nimg == 0 else "resume", "nimg": self.nimg,
                                "kimg": self.kimg, "step": self.step_count, "total_kimg": cfg.kimg,
                                "time": time.time()})
        snapshots = [s for _, s in snap.list_snapshots(out)]
        bar = _progress_bar(cfg.kimg, self.kimg, progress)
        tick: dict[str, list[float]] = defaultdict(list)
        tick_start_nimg, tick_start_time, tick_train_start = self.nimg, time.perf_counter(), self.train_seconds
        tick_phase_start = dict(self.phase_seconds)
        last_tick: dict[str, Any] = {}
        try:
            while self.nimg < total:
                prev = self.nimg
                try:
                    stats = self.step()
                except NonFiniteError as exc:
                    last = snap.latest_snapshot(out)
                    where = f"the last good snapshot is {last}" if last else "no snapshot was written yet"
                    _write_jsonl(log_path, {"event": "stopped", "reason": str(exc), "nimg": self.nimg,
                                            "last_good_snapshot": str(last) if last else None, "time": time.time()})
                    raise NonFiniteError(f"training stopped: {exc}; {where}. Lower the learning rates or raise "
                                         f"r1_gamma, then resume from it (--resume {last})" if last else
                                         f"training stopped: {exc}; {where}") from None
                for k, v in stats.items():
                    tick[k].append(v)
                done = self.nimg >= total
                if bar is not None:
                    bar.n = self.kimg  # set, not add: float increments drift past the total
                    bar.refresh()
                if due(cfg.tick_kimg, prev) or done:
                    last_tick = self._tick_record(tick, tick_start_nimg, tick_start_time, tick_train_start,
                                                  tick_phase_start)
                    _write_jsonl(log_path, last_tick)
                    if bar is not None:
                        bar.set_postfix_str(_postfix(last_tick), refresh=True)
                    tick = defaultdict(list)
                    tick_start_nimg, tick_start_time, tick_train_start = (self.nimg, time.perf_counter(),
                                                                          self.train_seconds)
                    tick_phase_start = dict(self.phase_seconds)
                if due(cfg.sample_kimg, prev) or done:
                    self.sample_grid(out / f"fakes-{self.nimg:09d}.png")
                if cfg.metrics and ((cfg.metrics_kimg > 0 and due(cfg.metrics_kimg, prev)) or done):
                    try:
                        res = self.evaluate()
                    except Exception as exc:  # a broken metric must not end a long run; it is logged
                        log.warning("metrics at %.3f kimg failed: %s: %s", self.kimg, type(exc).__name__, exc)
                        _write_jsonl(log_path, {"event": "metrics_failed", "nimg": self.nimg,
                                                "error": f"{type(exc).__name__}: {exc}"})
                    else:
                        _write_jsonl(log_path, {"event": "metrics", "nimg": self.nimg, **res})
                        if bar is not None:
                            bar.write(format_metrics(res))
                if due(cfg.snapshot_kimg, prev) or done:
                    stem = self.save_snapshot(out)
                    if stem not in snapshots:
                        snapshots.append(stem)
                    _write_jsonl(log_path, {"event": "snapshot", "nimg": self.nimg, "path": str(stem)})
        finally:
            if bar is not None:
                bar.close()
        final = self.save_final(out)
        _write_jsonl(log_path, {"event": "done", "nimg": self.nimg, "final": str(final), "time": time.time()})
        return TrainingResult(out=out, final=final, snapshots=snapshots, nimg=self.nimg, step=self.step_count,
                              last_tick=last_tick, metrics=self.last_metrics)

    def _tick_record(self, tick: dict[str, list[float]], start_nimg: int, start_time: float, train_start: float,
                     phase_start: dict[str, float]) -> dict[str, Any]:
        kimg = max(self.nimg - start_nimg, 1) / 1000
        train_s = self.train_seconds - train_start
        phases = {k: v - phase_start.get(k, 0.0) for k, v in self.phase_seconds.items()}
        rec: dict[str, Any] = {
            "event": "tick", "kimg": self.kimg, "nimg": self.nimg, "step": self.step_count,
            "sec_per_kimg": train_s / kimg, "wall_sec_per_kimg": (time.perf_counter() - start_time) / kimg,
            "means": {k: float(np.mean(v)) for k, v in sorted(tick.items())},
            "phase_seconds": phases,
            "share_r1": phases.get("Dreg", 0.0) / train_s if train_s > 0 else 0.0,
            "share_pl": phases.get("Greg", 0.0) / train_s if train_s > 0 else 0.0,
            "augment_p": None if self.augment_pipe is None else self.augment_pipe.probability,
            "r_t": None if self.ada is None else self.ada.r_t,
            "pl_mean": float(self.loss.pl_mean),
            "peak_rss_mb": _peak_rss_mb(),
            "time": time.time(),
        }
        if self.device.type == "cuda":
            rec["cuda_peak_mb"] = torch.cuda.max_memory_allocated(self.device) / 2 ** 20
        return rec


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def save_grid(images: torch.Tensor, path: str | os.PathLike, grid_size: int) -> Path:
    """Tile uint8 ``[N, 3, R, R]`` into a ``grid_size``-wide PNG."""
    import PIL.Image

    from facefeat.io.atomic import atomic_output

    path = Path(path)
    n, c, h, w = images.shape
    cols = max(1, min(grid_size, n))
    rows = math.ceil(n / cols)
    canvas = np.zeros((rows * h, cols * w, c), dtype=np.uint8)
    arr = images.permute(0, 2, 3, 1).numpy()
    for i in range(n):
        r, q = divmod(i, cols)
        canvas[r * h:(r + 1) * h, q * w:(q + 1) * w] = arr[i]
    with atomic_output(path, umask_mode=True) as tmp:
        PIL.Image.fromarray(canvas).save(tmp, format="PNG")
    return path


def _write_jsonl(path: Path, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(dumps_json(record) + "\n")  # NaN / inf losses are written as null


def _peak_rss_mb() -> float | None:
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 / (1024 if sys.platform == "darwin" else 1)


def _progress_bar(total_kimg: float, start_kimg: float, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total_kimg, initial=start_kimg, unit="kimg", desc="train", dynamic_ncols=True,
                bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.3f}/{total:.3f} kimg "
                           "[{elapsed}<{remaining}{postfix}]")


def _postfix(rec: dict[str, Any]) -> str:
    m = rec.get("means", {})
    parts = []
    for key, label in (("loss/G", "G"), ("loss/D", "D"), ("loss/r1", "r1"), ("loss/pl", "pl")):
        if key in m:
            parts.append(f"{label} {m[key]:.3g}")
    if rec.get("augment_p") is not None:
        parts.append(f"p {rec['augment_p']:.3f}")
    if rec.get("r_t") is not None:
        parts.append(f"r_t {rec['r_t']:.2f}")
    parts.append(f"{rec['sec_per_kimg']:.1f} s/kimg")
    return " ".join(parts)


def format_metrics(res: dict[str, Any]) -> str:
    """One line: the metrics and the feature network they were measured with."""
    net = (res.get("feature_network") or {}).get("name", "?")
    parts = [f"{res.get('kimg', 0):.3f} kimg"]
    if "kid" in res:
        parts.append(f"KID {res['kid']:.4f}")
    if "fid" in res:
        parts.append(f"FID {res['fid']:.2f}")
    if "kid" in res or "fid" in res:
        parts.append(f"({net} features, {res.get('n_real')} real / {res.get('n_generated')} generated)")
    if "proj_mse" in res:
        s = f"held-out projection: MSE {res['proj_mse']:.4f}, PSNR {res['proj_psnr']:.2f} dB"
        if "proj_same_person" in res:
            s += f", same person {100 * res['proj_same_person']:.0f}%"
        parts.append(s + f" [{(res.get('projector') or {}).get('name', '?')}]")
    return "metrics: " + "; ".join(parts)


def _describe_machine(device: torch.device) -> dict[str, Any]:
    return {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None}


def train_generator(*, init: str | os.PathLike | None, images: str | os.PathLike | TrainingImages,
                    out: str | os.PathLike, config: TrainingConfig | None = None,
                    device: torch.device | str = "cpu", resume: bool | str | os.PathLike = False,
                    align: bool = False, feature_network=None, resolution: int | None = None,
                    scratch_cfg: str = "auto", channel_base: int | None = None,
                    progress: bool = True) -> TrainingResult:
    """Fine-tune (or train) a StyleGAN2 generator on aligned face crops.

    Parameters
    ----------
    init : str or path
        See :func:`init_networks` (ignored when resuming).
    images : path or TrainingImages
        See :func:`facefeat.training.data.load_training_images`.
    out : path
        Output folder (snapshots, ``metrics.jsonl``, sample grids, ``generator-final``).
    config : TrainingConfig, optional
        Hyperparameters (defaults: the published ones). On resume the saved config is used;
        only :data:`RESUMABLE_OVERRIDES` fields of ``config`` that differ from the defaults
        are applied.
    device : str or torch.device
    resume : bool or path
        ``True``: continue from the newest complete snapshot in ``out``; a path: from that
        snapshot.
    align : bool
        ``images`` is a folder of photos to align on the fly.
    feature_network : str, path or FeatureNetwork, optional
        For KID/FID (default: dlib's face descriptor).
    resolution, scratch_cfg, channel_base : for ``init="scratch"`` (see :func:`scratch_networks`).
    progress : bool
        Show a progress bar.

    Returns
    -------
    TrainingResult

    Raises
    ------
    ConfigError, InputError, ModelError
        Bad settings, images or checkpoints (the message says which and how to fix it).
    NonFiniteError
        The run diverged; the message names the last good snapshot.
    """
    from facefeat.training.data import load_training_images
    from facefeat.training.metrics import load_feature_network

    out = Path(out).expanduser()
    device = resolve_device(device, option="device")  # a missing GPU: ConfigError listing what there is
    config = config if config is not None else TrainingConfig()
    existing = snap.list_snapshots(out)
    if resume:
        stem = snap.latest_snapshot(out) if resume is True else snap.stem_of(resume)
        if stem is None:
            raise ConfigError(f"{out}: --resume given but there is no complete snapshot (network-snapshot-*.state.pt) "
                              f"in this folder")
        state = snap.load_state(snap.state_path(stem))
        saved = TrainingConfig.from_dict(state["config"])
        # Whatever the caller set away from the defaults must either be allowed to change or
        # agree with the saved run (Trainer.from_snapshot checks).
        overrides = changed_fields(config, TrainingConfig())
        res = json.loads(snap.stem_of(stem).with_name(snap.stem_of(stem).name + ".json").read_text())
        resolution = int(res["networks"]["G_ema"]["config"]["img_resolution"])
        cfg_for_data = saved
        if images is None:  # the run's own --images (and --align), recorded in its state
            data_arg = json.loads(state.get("data_arg") or "{}")
            if not data_arg.get("path"):
                raise ConfigError(f"{stem}: the snapshot does not record its training images; pass --images")
            images, align = data_arg["path"], bool(data_arg.get("align"))
    else:
        if existing:
            raise ConfigError(f"{out}: already holds training snapshots ({existing[-1][1].name}); pass --resume to "
                              f"continue that run, or choose a new --out")
        if init is None:
            raise ConfigError("--init is required (a checkpoint, a registry name such as nvidia-ffhq-256, or scratch)")
        G, D, G_ema, info = init_networks(init, device=device, resolution=resolution, cfg=scratch_cfg,
                                          seed=config.seed, channel_base=channel_base)
        resolution = G.img_resolution
        cfg_for_data = config
    if images is None:
        raise ConfigError("--images is required (a facefeat extract run folder or a folder of aligned crops)")
    if isinstance(images, TrainingImages):
        all_images = images
    else:
        all_images = load_training_images(images, resolution, align=align, cache_dir=out / ".cache" / "aligned")
    holdout = cfg_for_data.holdout if "proj" in cfg_for_data.metrics else 0
    train_images, heldout = all_images.split(holdout, seed=cfg_for_data.seed)
    net = None
    if cfg_for_data.metrics and ({"kid", "fid"} & set(cfg_for_data.metrics) or heldout is not None):
        net = load_feature_network(feature_network, device=device)
    if resume:
        trainer = Trainer.from_snapshot(stem, train_images, device=device, overrides=overrides, heldout=heldout,
                                        feature_network=net)
        log.info("resuming from %s at %.3f kimg", stem, trainer.kimg)
    else:
        trainer = Trainer(G, D, G_ema, train_images, config, device=device, init_info=info, heldout=heldout,
                          feature_network=net)
    if not isinstance(images, TrainingImages):
        trainer.data_arg = {"path": str(Path(images).expanduser().resolve()), "align": bool(align)}
    out.mkdir(parents=True, exist_ok=True)
    options = {"config": trainer.config.to_dict(), "init": trainer.init_info, "data": train_images.describe(),
               "heldout": None if heldout is None else heldout.describe(),
               "feature_network": None if net is None else net.info, "machine": _describe_machine(device),
               "resumed_from": str(stem) if resume else None}
    (out / "training_options.json").write_text(dumps_json(options, indent=2) + "\n")
    for f, why in all_images.skipped:
        log.info("not used for training: %s (%s)", f, why)
    return trainer.train(out, progress=progress)
