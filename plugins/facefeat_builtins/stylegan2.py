"""The ``stylegan2`` extractor: each aligned face projected into a StyleGAN2 latent space.

A thin plugin over :func:`facefeat.inversion.projection.project`; every column is documented in
``docs/features/stylegan2.md``. Every hyperparameter is a config key (with its default), so the
provenance the engine writes (the resolved config and the sha256 of every file from
:meth:`StyleGAN2Extractor.model_files`) is enough to reproduce a table.

Knowing the resolution without loading weights
----------------------------------------------
``requires()`` must name the aligned crop size before any image is processed, and
``output_schema()`` the latent's shape ``[num_ws, w_dim]``. Both come from the checkpoint's
*header*, found in the cheapest place that states it:

1. a registry name: the registry's ``config`` (``resolution``, ``w_dim``/``style_dim``);
2. a facefeat checkpoint: its JSON config;
3. an NVIDIA ``.pkl`` or rosinality ``.pt``: the file is read (tensors only, no network is
   built) and the shapes are inferred by :func:`facefeat.models.stylegan2.infer_generator_config`.
   For a 1024 px file this costs a few seconds, once per process; ``load()`` reads it again.

The header check (:func:`facefeat.models.headers.generator_header`) also rejects, before any image is processed, a file that is not a StyleGAN2
generator, a truncated file, and a generator whose resolution the extractor does not support.

Hybrid inversion
----------------
``init: encoder`` starts each image's projection at the codes of the e4e encoder
``init_encoder`` (read from its own aligned crop size), with the ``encoder_*`` schedule
settings (smaller learning rate, no latent exploration noise, noise maps starting at the
generator's stored noise); see ``docs/features/stylegan2.md``. The encoder's header is checked
against the generator's (style count, code width, ``latent_avg``) before any image.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa

from facefeat.engine import Extractor, FaceBatch, Requires, embedding_array, embedding_field, hookimpl
from facefeat.errors import ConfigError
from facefeat.models.headers import encoder_header
from facefeat.models.headers import generator_header as checkpoint_header  # the name tests and users know
from facefeat_builtins.reconstruction import (
    check_reconstruction_config,
    diagnostic_fields,
    generator_files,
    lpips_files,
    prop,
    record_batch,
    save_reconstructions,
)

NAME = "stylegan2"

#: ``diag__stylegan2__<name>``: (arrow type, unit, range, description).
DIAGNOSTICS: dict[str, tuple[pa.DataType, str, list, str]] = {
    "loss": (pa.float64(), "loss units", [0.0, None],
             "final image distance of the configured loss (mse: [-1,1]-scale MSE; lpips: LPIPS; mse+lpips: "
             "weighted sum), noise regularizer excluded"),
    "mse": (pa.float64(), "[0,1]^2", [0.0, 1.0], "mean squared error of the reconstruction on the [0, 1] pixel scale"),
    "psnr": (pa.float64(), "dB", [0.0, None], "peak signal-to-noise ratio of the reconstruction, -10 log10(mse)"),
    "lpips": (pa.float64(), "LPIPS", [0.0, None], "LPIPS-VGG distance of the reconstruction; null unless LPIPS "
              "weights are configured"),
    "steps": (pa.int32(), "steps", [0, None], "optimisation steps taken (fewer than 'steps' after early stopping)"),
}


#: Projection schedules by name (config key ``preset``). Every key listed here is null in the
#: config schema, meaning "the preset's value"; a value given in the config overrides it. The
#: figures behind each are in docs/features/stylegan2.md (benchmarks/bench_time_to_quality.py).
PRESETS: dict[str, dict[str, Any]] = {
    # measured best time-to-quality (see the docs): W+, 100 steps, learning rate 0.2, no latent
    # exploration noise, no early stopping (the schedule is already short)
    "fast": {"space": "wplus", "steps": 100, "initial_learning_rate": 0.2, "lr_rampup_length": 0.05,
             "lr_rampdown_length": 0.25, "initial_noise_factor": 0.0, "noise_ramp_length": 0.75,
             "early_stop_patience": 0, "early_stop_min_delta": 0.01, "early_stop_start": 0.25,
             "coarse_resolution": 0, "coarse_fraction": 0.0},
    # facefeat 1.0's defaults: NVIDIA's schedule in W+, 500 steps, early stopping
    "reference": {"space": "wplus", "steps": 500, "initial_learning_rate": 0.1, "lr_rampup_length": 0.05,
                  "lr_rampdown_length": 0.25, "initial_noise_factor": 0.05, "noise_ramp_length": 0.75,
                  "early_stop_patience": 25, "early_stop_min_delta": 0.01, "early_stop_start": 0.25,
                  "coarse_resolution": 0, "coarse_fraction": 0.0},
    # NVIDIA stylegan2-ada-pytorch projector.py defaults (with the configured loss)
    "nvidia": {"space": "w", "steps": 1000, "initial_learning_rate": 0.1, "lr_rampup_length": 0.05,
               "lr_rampdown_length": 0.25, "initial_noise_factor": 0.05, "noise_ramp_length": 0.75,
               "early_stop_patience": 0, "early_stop_min_delta": 0.01, "early_stop_start": 0.25,
               "coarse_resolution": 0, "coarse_fraction": 0.0},
}
DEFAULT_PRESET = "fast"
PRESET_KEYS = tuple(PRESETS[DEFAULT_PRESET])


def _preset_prop(type_: str, description: str, **kw: Any) -> dict[str, Any]:
    return prop([type_, "null"], None, f"{description} (null: the preset's value)", **kw)


CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["checkpoint"],
    "properties": {
        "checkpoint": {"type": "string", "minLength": 1,
                       "description": "generator checkpoint: a file (NVIDIA .pkl, rosinality .pt, facefeat "
                                      ".safetensors/.json) or a registry name (see 'facefeat models list')"},
        "network": prop("string", "G_ema", "network in the checkpoint: G_ema (default; rosinality g_ema) or G"),
        "preset": {"enum": list(PRESETS), "default": DEFAULT_PRESET,
                   "description": "projection schedule: fast (measured best time to quality), reference "
                                  "(facefeat 1.0's defaults: W+, 500 steps) or nvidia (NVIDIA's projector: W, "
                                  "1000 steps); keys set explicitly override it"},
        "space": {"enum": ["wplus", "w", None], "default": None,
                  "description": "wplus: one w per synthesis layer, stored [num_ws, w_dim]; w: one w, stored "
                                 "[1, w_dim] (null: the preset's value)"},
        "steps": _preset_prop("integer", "optimisation steps per image (NVIDIA's projector: 1000)", minimum=0),
        "batch_size": prop("integer", 8, "images optimised together (the last batch may be smaller)", minimum=1),
        "loss": {"enum": ["mse", "lpips", "mse+lpips"], "default": "mse",
                 "description": "image distance; lpips needs lpips_vgg16 and lpips_lin"},
        "mse_weight": prop("number", 1.0, "weight of the MSE term for loss=mse+lpips", minimum=0),
        "lpips_weight": prop("number", 1.0, "weight of the LPIPS term for loss=mse+lpips", minimum=0),
        "lpips_vgg16": prop(["string", "null"], None, "torchvision VGG16 weights (vgg16-397923af.pth) for LPIPS"),
        "lpips_lin": prop(["string", "null"], None, "lpips package LPIPS-VGG linear heads (weights/v0.1/vgg.pth)"),
        "seed": prop("integer", 0, "base seed; image i's random stream is seeded from (seed, image_id)"),
        "device": prop(["string", "null"], None, "cpu, cuda, cuda:N, mps; null: the run's device",
                        pattern="^(cpu|cuda(:[0-9]+)?|mps)$"),
        "init": {"enum": ["w_avg", "encoder"], "default": "w_avg",
                 "description": "start of the optimisation: the mean w (NVIDIA), or the codes of the e4e encoder "
                                "init_encoder (hybrid inversion; space w starts at the mean of the code's rows); "
                                "with an encoder far fewer steps suffice"},
        "init_encoder": prop(["string", "null"], None, "e4e checkpoint (file or registry name) for init=encoder; "
                              "its style count and latent width must match the generator"),
        "encoder_learning_rate": prop("number", 0.03, "init=encoder: replaces initial_learning_rate (a start "
                                       "near the optimum wants smaller steps than NVIDIA's 0.1)", exclusiveMinimum=0),
        "encoder_noise_factor": prop("number", 0.0, "init=encoder: replaces initial_noise_factor (exploration "
                                      "noise would throw the encoder's start away)", minimum=0),
        "encoder_noise_init": {"enum": ["const", "random"], "default": "const",
                               "description": "init=encoder: start of the optimised noise maps; const = the "
                                              "generator's stored noise, so step 0 renders the encoder's own "
                                              "reconstruction (w_avg init always starts from random maps, NVIDIA)"},
        "w_avg_samples": prop("integer", 10000, "z samples for the mean w and its spread", minimum=1),
        "w_avg_seed": prop("integer", 123, "seed of those z samples (NVIDIA's projector: 123)"),
        "initial_learning_rate": _preset_prop("number", "Adam learning rate after the ramp-up", exclusiveMinimum=0),
        "lr_rampup_length": _preset_prop("number", "fraction of steps of linear LR ramp-up", minimum=0, maximum=1),
        "lr_rampdown_length": _preset_prop("number", "fraction of steps of cosine LR ramp-down", minimum=0,
                                           maximum=1),
        "initial_noise_factor": _preset_prop("number", "latent noise std at step 0, times the w spread", minimum=0),
        "noise_ramp_length": _preset_prop("number", "fraction of steps over which latent noise goes to 0",
                                          minimum=0, maximum=1),
        "regularize_noise_weight": prop("number", 1e5, "weight of the noise-map autocorrelation penalty",
                                         minimum=0),
        "optimize_noise": prop("boolean", True, "optimise per-image noise maps (NVIDIA); false: the "
                                                 "generator's stored noise"),
        "early_stop_patience": _preset_prop("integer", "after this many steps without a relative loss "
                                            "improvement of early_stop_min_delta an image skips to the LR ramp-down, "
                                            "and a plateau there ends it; 0: never", minimum=0),
        "early_stop_min_delta": _preset_prop("number", "relative loss improvement that counts", minimum=0),
        "early_stop_start": _preset_prop("number", "fraction of steps before early stopping may act", minimum=0,
                                         maximum=1),
        "coarse_resolution": _preset_prop("integer", "coarse-to-fine: render only up to this block resolution "
                                          "for the first coarse_fraction of the steps, the loss against the "
                                          "area-downsampled crop; 0, or a value not below the generator's "
                                          "resolution: full resolution throughout", minimum=0),
        "coarse_fraction": _preset_prop("number", "fraction of the steps at coarse_resolution", minimum=0,
                                        maximum=1),
        "wplus_start": prop("number", 0.0, "space wplus: fraction of steps optimised in W first", minimum=0,
                             maximum=1),
        "batch_invariant": prop("boolean", True, "compute the generator one image at a time in each step so "
                                                  "results are bitwise independent of batching (slower on GPU)"),
        "save_reconstructions": prop("boolean", False, "write each reconstruction as <image_id>.png"),
        "reconstructions_dir": prop(["string", "null"], None, "folder for the PNGs (required with "
                                                               "save_reconstructions)"),
    },
}

#: Config keys passed through to :func:`~facefeat.inversion.projection.project` as is.
_PROJECT_KEYS = ("space", "w_avg_samples", "w_avg_seed", "initial_learning_rate", "lr_rampup_length",
                 "lr_rampdown_length", "initial_noise_factor", "noise_ramp_length", "regularize_noise_weight",
                 "optimize_noise", "loss", "mse_weight", "lpips_weight", "early_stop_min_delta",
                 "early_stop_start", "wplus_start", "batch_invariant", "coarse_fraction")


def resolve_preset(config: dict[str, Any]) -> dict[str, Any]:
    """The config with every null preset key (:data:`PRESET_KEYS`) set from ``config["preset"]``
    (default :data:`DEFAULT_PRESET`); explicit values are kept. Provenance records the result, so a
    table states the values it was made with, not only the preset's name."""
    preset = PRESETS[config.get("preset") or DEFAULT_PRESET]
    out = dict(config)
    for key in PRESET_KEYS:
        if out.get(key) is None:
            out[key] = preset[key]
    return out


def projection_kwargs(config: dict[str, Any], *, resolution: int | None = None) -> dict[str, Any]:
    """:func:`~facefeat.inversion.projection.project` keyword arguments for a (validated) config:
    the preset resolved, ``steps`` as ``num_steps``, 0 patience as no early stopping, the coarse
    phase dropped where ``coarse_resolution`` is 0 or not below the generator's ``resolution``, and
    the ``encoder_*`` schedule for ``init: encoder``. The one mapping the extractor and the
    benchmarks use."""
    c = resolve_preset(config)
    kw = {k: c[k] for k in _PROJECT_KEYS}
    kw["num_steps"] = c["steps"]
    kw["early_stop_patience"] = c["early_stop_patience"] or None
    coarse = c["coarse_resolution"]
    use_coarse = bool(coarse) and c["coarse_fraction"] > 0 and (resolution is None or coarse < resolution)
    kw["coarse_resolution"] = coarse if use_coarse else None
    kw["coarse_fraction"] = c["coarse_fraction"] if use_coarse else 0.0
    if c.get("init") == "encoder":
        kw.update(initial_learning_rate=c["encoder_learning_rate"], initial_noise_factor=c["encoder_noise_factor"],
                  noise_init=c["encoder_noise_init"])
    return kw


def image_seed(seed: int, image_id: str) -> int:
    """Per-image seed from the config seed and the image id (63 bits of sha256): an image's
    projection does not depend on its batch, its position or the other images of the run."""
    return int(hashlib.sha256(f"{int(seed)}:{image_id}".encode()).hexdigest()[:15], 16)


# --------------------------------------------------------------------------------------------
# Extractor
# --------------------------------------------------------------------------------------------

class StyleGAN2Extractor(Extractor):
    """Latent code of each aligned face in a StyleGAN2 generator, by batched projection.

    Config: see :data:`CONFIG_SCHEMA` (every key has a default except ``checkpoint``) and
    ``docs/features/stylegan2.md``.

    Columns
    -------
    ``stylegan2__latent``
        float32 fixed-size list, shape ``[num_ws, w_dim]`` (space ``wplus``) or ``[1, w_dim]``
        (space ``w``) in the field metadata.
    ``diag__stylegan2__{loss, mse, psnr, lpips, steps}``
        See :data:`DIAGNOSTICS`; ``diag__stylegan2__reconstruction`` (PNG path) too when
        ``save_reconstructions``.
    """

    name = NAME
    version = "1.1.0"
    config_schema = CONFIG_SCHEMA

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from facefeat.engine.registry import validate_config

        super().__init__(config)
        # the registry does this too; direct construction (tests, notebooks) gets the same checks
        c = validate_config(CONFIG_SCHEMA, self.config, where=f"extractor {NAME!r}", prefix=NAME)
        # the preset's values go into the config itself: provenance and the resume fingerprint see them
        self.config = c = resolve_preset(c)
        if c["coarse_resolution"] and c["coarse_resolution"] & (c["coarse_resolution"] - 1):
            raise ConfigError(f"stylegan2.coarse_resolution = {c['coarse_resolution']} is not a power of two (a "
                              f"block resolution of the generator, e.g. 64), or 0 for none")
        if "lpips" in c["loss"] and not (c["lpips_vgg16"] and c["lpips_lin"]):
            raise ConfigError(f"stylegan2.loss = {c['loss']!r} needs the LPIPS weight files: set stylegan2.lpips_vgg16 "
                              f"(torchvision vgg16-397923af.pth) and stylegan2.lpips_lin (lpips weights/v0.1/vgg.pth), "
                              f"or use loss=mse")
        check_reconstruction_config(c, NAME)
        if c["init"] == "encoder" and not c["init_encoder"]:
            raise ConfigError("stylegan2.init = 'encoder' needs stylegan2.init_encoder: an e4e checkpoint trained for "
                              "this generator (file or registry name)")
        if c["init"] != "encoder" and c["init_encoder"]:
            raise ConfigError("stylegan2.init_encoder is set but stylegan2.init is 'w_avg': set stylegan2.init=encoder "
                              "to start from the encoder's codes, or drop init_encoder")
        if c["init"] == "encoder" and c["space"] == "wplus" and c["wplus_start"] > 0:
            raise ConfigError("stylegan2.wplus_start > 0 starts the optimisation in W from the mean w; it cannot be "
                              "combined with init=encoder (set wplus_start=0, or space=w)")
        self._header: dict[str, int] | None = None
        self._enc_header = None
        self._encoder = None
        self._G = None
        self._lpips = None
        self._w_stats = None
        self._device = None

    # -- declarations -------------------------------------------------------------------
    @property
    def header(self) -> dict[str, int]:
        """Resolution, w_dim and num_ws of the checkpoint (see the module notes)."""
        if self._header is None:
            self._header = checkpoint_header(self.config["checkpoint"], self.config["network"])
        return self._header

    @property
    def encoder_header(self):
        """The init encoder's :class:`~facefeat.models.e4e.E4EHeader` (``init=encoder``), checked against
        the generator; None for ``init=w_avg``."""
        if self.config["init"] != "encoder":
            return None
        if self._enc_header is None:
            from facefeat.models.e4e import check_generator_compat

            h = encoder_header(self.config["init_encoder"], where="stylegan2.init_encoder")
            check_generator_compat(h, num_ws=self.header["num_ws"], w_dim=self.header["w_dim"],
                                   generator=self.config["checkpoint"])
            self._enc_header = h
        return self._enc_header

    def requires(self) -> Requires:
        sizes = {self.header["resolution"]}
        if self.encoder_header is not None:  # the encoder reads its own crop size (256 for official encoders)
            sizes.add(self.encoder_header.input_size)
        return Requires(aligned_sizes=tuple(sorted(sizes)), landmarks=False, original=False)

    def latent_shape(self) -> list[int]:
        h = self.header
        return [h["num_ws"] if self.config["space"] == "wplus" else 1, h["w_dim"]]

    def output_schema(self) -> pa.Schema:
        shape = self.latent_shape()
        fields = [embedding_field(f"{NAME}__latent", shape,
                                  f"StyleGAN2 {'W+' if shape[0] > 1 else 'W'} latent of the projected face "
                                  f"({self.config['checkpoint']}, {self.config['network']})")]
        fields += diagnostic_fields(NAME, DIAGNOSTICS, save_reconstructions=self.config["save_reconstructions"])
        return pa.schema(fields)

    def model_files(self) -> dict[str, str]:
        self.header  # fail here, before any image, on a file that is not a usable generator
        files = {**generator_files(self.config["checkpoint"], "checkpoint"), **lpips_files(self.config)}
        if self.encoder_header is not None:
            files["init_encoder"] = str(self.encoder_header.path)
        return files

    # -- work ---------------------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        from facefeat.devices import check_device
        from facefeat.inversion import load_lpips_vgg, w_stats
        from facefeat.models.checkpoints import load_generator
        from facefeat.models.registry import resolve_model

        c = self.config
        # a GPU that is not there: ConfigError listing the available devices, not a torch assertion
        self._device = check_device(c["device"] or device, option=f"{NAME}.device" if c["device"] else "device")
        path = resolve_model(c["checkpoint"])
        self._G = load_generator(path, which=c["network"], device=self._device,
                                 expected_resolution=self.header["resolution"])
        if c["lpips_vgg16"]:
            self._lpips = load_lpips_vgg(c["lpips_vgg16"], c["lpips_lin"], device=self._device)
        self._w_stats = w_stats(self._G, c["w_avg_samples"], seed=c["w_avg_seed"])
        if self.encoder_header is not None:
            from facefeat.models.e4e import load_e4e

            self._encoder = load_e4e(self.encoder_header.path, device=self._device, num_ws=self._G.num_ws)

    def initial_latents(self, batch: FaceBatch):
        """Starting latents of the projection: ``"w_avg"``, or the encoder's codes ``[B, num_ws, w_dim]``
        (space ``w``: ``[B, 1, w_dim]``, the mean of the rows -- the single w closest to the code in the
        least-squares sense). With ``batch_invariant`` the encoder sees one image at a time, so an
        image's start (and result) does not depend on its batch."""
        if self._encoder is None:
            return "w_avg"
        from facefeat.models.e4e import encode

        c = self.config
        codes = encode(self._encoder.encoder, batch.aligned(self.encoder_header.input_size),
                       latent_avg=self._encoder.latent_avg, batch_size=1 if c["batch_invariant"] else c["batch_size"],
                       device=self._device)
        return codes.mean(1, keepdim=True) if c["space"] == "w" else codes

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        from facefeat.inversion import project
        from facefeat.inversion.metrics import synth_to_uint8

        schema = self.output_schema()
        n = len(batch)
        if n == 0:
            return pa.RecordBatch.from_pylist([], schema=schema)
        if self._G is None:
            self.load(self.config["device"] or "cpu")
        c = self.config
        res = self.header["resolution"]
        target = batch.aligned(res)
        init = self.initial_latents(batch)
        kw = projection_kwargs(c, resolution=res)
        result = project(
            self._G, target, perceptual=self._lpips, batch_size=c["batch_size"],
            seed=[image_seed(c["seed"], f.image_id) for f in batch], device=self._device,
            w_stats_cache=self._w_stats, return_images=c["save_reconstructions"], return_noises=False, init=init,
            **kw)
        latents = result.latents.numpy().astype(np.float32)
        columns: dict[str, Any] = {
            f"{NAME}__latent": embedding_array(latents.reshape(n, -1)),
            f"diag__{NAME}__loss": result.loss.double().numpy(),
            f"diag__{NAME}__mse": result.mse.double().numpy(),
            f"diag__{NAME}__psnr": result.psnr.double().numpy(),
            f"diag__{NAME}__lpips": None if result.lpips is None else result.lpips.double().numpy(),
            f"diag__{NAME}__steps": result.steps.numpy().astype(np.int32),
        }
        if c["save_reconstructions"]:
            columns[f"diag__{NAME}__reconstruction"] = save_reconstructions(
                c["reconstructions_dir"], [face.image_id for face in batch], synth_to_uint8(result.images))
        return record_batch(schema, columns, n)


@hookimpl
def facefeat_register(registry) -> None:
    registry.add_extractor(StyleGAN2Extractor)
