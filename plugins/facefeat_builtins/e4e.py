"""The ``e4e`` extractor: each aligned face encoded into W+ by an e4e encoder in one pass.

A thin plugin over :func:`facefeat.models.e4e.encode` (codes) and the StyleGAN2 generator
(reconstruction diagnostics); every column is documented in ``docs/features/e4e.md``.

Which generator renders the reconstructions
-------------------------------------------
``generator`` (config):

* ``null`` (default): the decoder bundled in the encoder file (official e4e checkpoints and
  ``facefeat train encoder`` outputs carry one), i.e. exactly the generator the encoder was
  trained against. A file without a decoder gets no reconstruction: ``diag__e4e__mse/psnr/
  lpips`` are null and a warning is logged once per run.
* a file or registry name: that generator (e.g. the fine-tuned cohort generator when the
  encoder was trained for it and saved without a decoder). Its ``num_ws`` and ``w_dim`` must
  match the encoder (checked before any image).
* ``"none"``: no reconstruction even if the file has a decoder (fastest).

Knowing the shapes without loading weights
------------------------------------------
``requires()`` and ``output_schema()`` come from :func:`facefeat.models.e4e.read_e4e_header`
(the checkpoint memory-mapped, keys checked on the meta device) and, for a separate
generator, from the ``stylegan2`` extractor's header reader. Bad input fails there, before any
image: a file that is not an e4e checkpoint, a missing ``latent_avg``, an encoder whose style
count or latent width does not match the generator.

Aligned crops
-------------
The encoder gets the FFHQ-aligned crop at its own input size (256 for the official encoders;
e4e's own alignment script aligns at 256 directly), the reconstruction metrics compare with
the crop at the generator's resolution. Both come from the engine's alignment; raw photos
never reach the encoder.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from facefeat.engine import Extractor, FaceBatch, Requires, embedding_array, embedding_field, hookimpl
from facefeat.errors import ConfigError
from facefeat.models.headers import encoder_header, generator_header
from facefeat_builtins.reconstruction import (
    check_reconstruction_config,
    diagnostic_fields,
    generator_files,
    lpips_files,
    prop,
    record_batch,
    save_reconstructions,
)

log = logging.getLogger(__name__)

NAME = "e4e"

#: ``diag__e4e__<name>``: (arrow type, unit, range, description).
DIAGNOSTICS: dict[str, tuple[pa.DataType, str, list, str]] = {
    "mse": (pa.float64(), "[0,1]^2", [0.0, 1.0],
            "mean squared error between the generator's rendering of the code and the aligned crop, on the "
            "[0, 1] pixel scale; null without a generator"),
    "psnr": (pa.float64(), "dB", [0.0, None], "peak signal-to-noise ratio of that reconstruction, -10 log10(mse); "
             "null without a generator"),
    "lpips": (pa.float64(), "LPIPS", [0.0, None], "LPIPS-VGG distance of that reconstruction; null unless LPIPS "
              "weights and a generator are configured"),
}


CONFIG_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["encoder"],
    "properties": {
        "encoder": {"type": "string", "minLength": 1,
                    "description": "e4e checkpoint: an official e4e .pt, one written by facefeat train encoder, or "
                                   "a registry name (e.g. e4e-ffhq-encode)"},
        "generator": prop(["string", "null"], None,
                           "generator rendering the codes for the reconstruction diagnostics: null = the decoder "
                           "bundled in the encoder file (none there: no reconstruction); a file or registry name; "
                           "'none' = no reconstruction"),
        "network": prop("string", "G_ema", "network in a separate generator file (G_ema or G)"),
        "batch_size": prop("integer", 16, "images per encoder/generator pass (the last batch may be smaller)",
                            minimum=1),
        "device": prop(["string", "null"], None, "cpu, cuda, cuda:N, mps; null: the run's device",
                        pattern="^(cpu|cuda(:[0-9]+)?|mps)$"),
        "lpips_vgg16": prop(["string", "null"], None, "torchvision VGG16 weights (vgg16-397923af.pth) for "
                                                       "diag__e4e__lpips"),
        "lpips_lin": prop(["string", "null"], None, "lpips package LPIPS-VGG linear heads (weights/v0.1/vgg.pth)"),
        "save_reconstructions": prop("boolean", False, "write each reconstruction as <image_id>.png"),
        "reconstructions_dir": prop(["string", "null"], None, "folder for the PNGs (required with "
                                                               "save_reconstructions)"),
    },
}


class E4EExtractor(Extractor):
    """W+ code of each aligned face from an e4e encoder, with reconstruction diagnostics.

    Config: see :data:`CONFIG_SCHEMA` (every key has a default except ``encoder``) and
    ``docs/features/e4e.md``.

    Columns
    -------
    ``e4e__latent``
        float32 fixed-size list, shape ``[n_styles, 512]`` in the field metadata (``latent_avg``
        included: ready for the generator's synthesis network).
    ``diag__e4e__{mse, psnr, lpips}``
        See :data:`DIAGNOSTICS`; ``diag__e4e__reconstruction`` (PNG path) too when
        ``save_reconstructions``.
    """

    name = NAME
    version = "1.0.0"
    config_schema = CONFIG_SCHEMA

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        from facefeat.engine.registry import validate_config

        super().__init__(config)
        # the registry does this too; direct construction (tests, notebooks) gets the same checks
        self.config = c = validate_config(CONFIG_SCHEMA, self.config, where=f"extractor {NAME!r}", prefix=NAME)
        check_reconstruction_config(c, NAME)
        self._header = None
        self._gen_header: dict[str, Any] | None = None
        self._ck = None
        self._G = None
        self._lpips = None
        self._device = None

    # -- declarations -------------------------------------------------------------------
    @property
    def header(self):
        """The encoder's :class:`~facefeat.models.e4e.E4EHeader`."""
        if self._header is None:
            self._header = encoder_header(self.config["encoder"], where="e4e.encoder")
        return self._header

    @property
    def generator_header(self) -> dict[str, Any] | None:
        """``{"source", "resolution", "w_dim", "num_ws"}`` of the reconstructing generator, None without one.

        ``source`` is ``"bundled"`` (the encoder file's decoder) or ``"file"``.
        """
        if self._gen_header is None:
            c = self.config
            gen = c["generator"]
            if gen == "none":
                self._gen_header = {}
            elif gen is None:
                dec = self.header.decoder
                self._gen_header = {} if dec is None else {"source": "bundled", **dec}
            else:
                from facefeat.models.e4e import check_generator_compat
                from facefeat.models.registry import REGISTRY

                if gen in REGISTRY and not Path(gen).expanduser().exists() and REGISTRY[gen].format == "e4e-pt":
                    raise ConfigError(f"e4e.generator = {gen!r} is an e4e checkpoint; give a generator, or leave "
                                      f"e4e.generator unset to use the decoder inside e4e.encoder")
                h = generator_header(gen, c["network"], where="e4e.generator")
                check_generator_compat(self.header, num_ws=h["num_ws"], w_dim=h["w_dim"], generator=gen)
                self._gen_header = {"source": "file", **h}
            if c["save_reconstructions"] and not self._gen_header:
                raise ConfigError(f"e4e.save_reconstructions needs a generator, but e4e.generator = {gen!r} and "
                                  f"{self.header.path} has no bundled decoder: set e4e.generator to a generator file")
        return self._gen_header or None

    def requires(self) -> Requires:
        sizes = {self.header.input_size}
        if self.generator_header:
            sizes.add(self.generator_header["resolution"])
        return Requires(aligned_sizes=tuple(sorted(sizes)), landmarks=False, original=False)

    def latent_shape(self) -> list[int]:
        return [self.header.n_styles, self.header.style_dim]

    def output_schema(self) -> pa.Schema:
        fields = [embedding_field(f"{NAME}__latent", self.latent_shape(),
                                  f"e4e W+ code (latent_avg added) of the aligned face ({self.config['encoder']})")]
        fields += diagnostic_fields(NAME, DIAGNOSTICS, save_reconstructions=self.config["save_reconstructions"])
        return pa.schema(fields)

    def model_files(self) -> dict[str, str]:
        files = {"encoder": str(self.header.path)}  # the header read fails here, before any image
        gh = self.generator_header
        if gh and gh["source"] == "file":
            files.update(generator_files(self.config["generator"], "generator"))
        files.update(lpips_files(self.config))
        return files

    # -- work ---------------------------------------------------------------------------
    def load(self, device: str = "cpu") -> None:
        from facefeat.devices import check_device
        from facefeat.inversion import load_lpips_vgg
        from facefeat.models.checkpoints import load_generator
        from facefeat.models.e4e import load_e4e
        from facefeat.models.registry import resolve_model

        c = self.config
        # a GPU that is not there: ConfigError listing the available devices, not a torch assertion
        self._device = check_device(c["device"] or device, option=f"{NAME}.device" if c["device"] else "device")
        gh = self.generator_header
        bundled = bool(gh) and gh["source"] == "bundled"
        self._ck = load_e4e(self.header.path, device=self._device,
                            num_ws=gh["num_ws"] if gh else None, decoder_loader="default" if bundled else None)
        if bundled:
            self._G = self._ck.decoder
        elif gh:
            self._G = load_generator(resolve_model(c["generator"]), which=c["network"], device=self._device,
                                     expected_resolution=gh["resolution"])
        else:
            log.warning("e4e: no generator (e4e.generator = %r, no decoder in %s): the reconstruction columns "
                        "diag__e4e__mse/psnr/lpips are null", c["generator"], self.header.path)
        if c["lpips_vgg16"] and self._G is not None:
            self._lpips = load_lpips_vgg(c["lpips_vgg16"], c["lpips_lin"], device=self._device)

    def extract(self, batch: FaceBatch) -> pa.RecordBatch:
        import torch

        from facefeat.inversion.metrics import image_mse, psnr_from_mse, synth_to_uint8, to_target
        from facefeat.models.e4e import encode

        schema = self.output_schema()
        n = len(batch)
        if n == 0:
            return pa.RecordBatch.from_pylist([], schema=schema)
        if self._ck is None:
            self.load(self.config["device"] or "cpu")
        c = self.config
        codes = encode(self._ck.encoder, batch.aligned(self.header.input_size), latent_avg=self._ck.latent_avg,
                       batch_size=c["batch_size"], device=self._device)
        columns: dict[str, Any] = {f"{NAME}__latent": embedding_array(codes.numpy().reshape(n, -1)),
                                   f"diag__{NAME}__mse": None, f"diag__{NAME}__psnr": None,
                                   f"diag__{NAME}__lpips": None}
        if self._G is not None:
            target = to_target(batch.aligned(self._G.img_resolution), device=self._device)
            mse, lp, images = [], [], []
            with torch.no_grad():
                for start in range(0, n, c["batch_size"]):
                    sl = slice(start, start + c["batch_size"])
                    synth = render(self._G, codes[sl].to(self._device))
                    mse.append(image_mse(synth, target[sl]).double().cpu())
                    if self._lpips is not None:
                        lp.append(self._lpips(synth, target[sl] / 127.5 - 1.0).double().cpu())
                    if c["save_reconstructions"]:
                        images.append(synth.cpu())
            mse_t = torch.cat(mse)
            columns[f"diag__{NAME}__mse"] = mse_t.numpy()
            columns[f"diag__{NAME}__psnr"] = psnr_from_mse(mse_t).numpy()
            if lp:
                columns[f"diag__{NAME}__lpips"] = torch.cat(lp).numpy()
            if c["save_reconstructions"]:
                columns[f"diag__{NAME}__reconstruction"] = save_reconstructions(
                    c["reconstructions_dir"], [face.image_id for face in batch], synth_to_uint8(torch.cat(images)))
        return record_batch(schema, columns, n)


def render(G, codes):
    """The generator's image of W+ codes ``[B, num_ws, w_dim]``, with its stored (``const``) noise,
    as e4e's inference renders them (``randomize_noise=False``); near [-1, 1]."""
    return G.synthesis(codes.to(G.w_avg.device, dtype=G.w_avg.dtype), noise_mode="const")


@hookimpl
def facefeat_register(registry) -> None:
    registry.add_extractor(E4EExtractor)
