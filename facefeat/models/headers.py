"""Cheap model-file headers: the shapes a run needs before any weight is loaded.

An extractor must name its aligned crop size and its output shape before the first image, so
the shapes come from the cheapest place that states them:

- a StyleGAN2 generator (:func:`generator_header`): the registry's ``config`` for a registry
  name, the JSON config of a facefeat checkpoint, else the NVIDIA ``.pkl`` / rosinality ``.pt``
  file read as tensors only (no network built) with shapes inferred by
  :func:`facefeat.models.stylegan2.infer_generator_config` (a few seconds for a 1024 px file,
  once per process: cached by path, size and mtime);
- an e4e encoder (:func:`encoder_header`): :func:`facefeat.models.e4e.read_e4e_header`.

Both the ``stylegan2`` and the ``e4e`` extractors read both kinds (hybrid inversion starts at
an encoder's codes; e4e reconstructions need a generator), so the readers live here and not in
either plugin.
"""

from __future__ import annotations

import json
from pathlib import Path

from facefeat.errors import ModelError

#: Generator resolutions the extractors accept (FFHQ alignment at 32..1024 px, a power of two).
MIN_RESOLUTION, MAX_RESOLUTION = 32, 1024

_GENERATOR_CACHE: dict[tuple, dict[str, int]] = {}


def generator_header(checkpoint: str, network: str = "G_ema", *,
                     where: str = "stylegan2.checkpoint") -> dict[str, int]:
    """``{"resolution", "w_dim", "num_ws"}`` of a generator checkpoint, as cheaply as possible.

    Parameters
    ----------
    checkpoint : str
        Registry name or path (NVIDIA ``.pkl``, rosinality ``.pt``, facefeat ``.json`` /
        ``.safetensors``).
    network : str
        Network inside the file (``G_ema``, ``g_ema``, ...).
    where : str
        The config key that named ``checkpoint`` (used in error messages).

    Raises
    ------
    ModelError
        Unknown registry name or model not in the cache, missing file, not a StyleGAN2
        generator, truncated file, no such network, unsupported resolution.
    """
    from facefeat.models.registry import REGISTRY, resolve_model
    from facefeat.models.stylegan2 import num_ws_for_resolution

    if checkpoint in REGISTRY and not Path(checkpoint).expanduser().exists():
        entry = REGISTRY[checkpoint]
        if entry.format not in ("nvidia-pkl", "rosinality-pt", "facefeat"):
            raise ModelError(f"{where} = {checkpoint!r} is a {entry.format} model, not a StyleGAN2 generator")
        resolve_model(checkpoint)  # raises with pull / offline instructions when not cached
        cfg = entry.config
        res = int(cfg["resolution"])
        w_dim = int(cfg.get("w_dim", cfg.get("style_dim", 512)))
        return _checked({"resolution": res, "w_dim": w_dim,
                         "num_ws": int(cfg.get("num_ws", num_ws_for_resolution(res)))}, checkpoint)
    path = resolve_model(checkpoint)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, network)
    if key not in _GENERATOR_CACHE:
        _GENERATOR_CACHE[key] = _checked(_read_generator_header(path, network, where), str(path))
    return dict(_GENERATOR_CACHE[key])


def _checked(header: dict[str, int], source: str) -> dict[str, int]:
    res = header["resolution"]
    if not (MIN_RESOLUTION <= res <= MAX_RESOLUTION) or res & (res - 1):
        raise ModelError(f"{source}: generator resolution {res} px is not supported "
                         f"(aligned crops of {MIN_RESOLUTION}..{MAX_RESOLUTION} px, a power of two)")
    return header


def _read_generator_header(path: Path, network: str, where: str) -> dict[str, int]:
    from facefeat.models.checkpoints import detect_format, read_checkpoint
    from facefeat.models.stylegan2 import infer_generator_config, num_ws_for_resolution
    from facefeat.models.stylegan2.formats import canonical_name, facefeat_paths

    name = canonical_name(network)
    network_key = where.rpartition(".")[0] + ".network" if "." in where else "network"
    # facefeat: the JSON says it all (the weights are not even opened)
    fmt = "facefeat" if path.suffix in (".json", ".safetensors") else detect_format(path)
    if fmt == "facefeat":
        _, cfg_path = facefeat_paths(path)
        try:
            doc = json.loads(cfg_path.read_text(encoding="utf-8"))
            entry = doc["networks"][name]
            cfg = entry["config"]
            kind = entry.get("kind")
            res, w_dim = int(cfg["img_resolution"]), int(cfg["w_dim"])
        except KeyError as exc:
            raise ModelError(f"{cfg_path}: no generator network {name!r} with img_resolution and w_dim in this "
                             f"facefeat config (missing {exc}); set {network_key}") from None
        except (OSError, ValueError, TypeError) as exc:
            raise ModelError(f"{cfg_path}: cannot read the facefeat checkpoint config ({exc})") from exc
        if kind not in (None, "generator"):
            raise ModelError(f"{cfg_path}: network {name!r} is a {kind}, not a generator")
        return {"resolution": res, "w_dim": w_dim, "num_ws": num_ws_for_resolution(res)}
    raw = read_checkpoint(path, names=[name])
    if name not in raw.networks:
        have = [n for n, k in raw.kinds.items() if k == "generator"]
        raise ModelError(f"{path}: no network {name!r} in this {raw.format} file; its generators are {have}. "
                         f"Set {network_key} to one of them.")
    if raw.kinds.get(name) != "generator":
        raise ModelError(f"{path}: network {name!r} is a {raw.kinds.get(name)}, not a generator")
    cfg = infer_generator_config(raw.networks[name], raw.layout, source=f"{path} [{name}]",
                                 init_kwargs=raw.init_kwargs.get(name))
    return {"resolution": cfg.img_resolution, "w_dim": cfg.w_dim, "num_ws": cfg.num_ws}


def encoder_header(encoder: str, *, where: str):
    """:class:`~facefeat.models.e4e.E4EHeader` of an e4e encoder path or registry name.

    A file without ``latent_avg`` raises (e4e codes are offsets from it); ``where`` names the
    config key in messages.

    Raises
    ------
    ModelError
        A registry name of another kind of model, a missing or unreadable file, no ``latent_avg``.
    """
    from facefeat.models.e4e import missing_latent_avg_error, read_e4e_header
    from facefeat.models.registry import REGISTRY, resolve_model

    if encoder in REGISTRY and not Path(encoder).expanduser().exists() and REGISTRY[encoder].format != "e4e-pt":
        raise ModelError(f"{where} = {encoder!r} is a {REGISTRY[encoder].format} model, not an e4e encoder "
                         f"(e.g. e4e-ffhq-encode; see 'facefeat models list')")
    path = resolve_model(encoder)
    header = read_e4e_header(path)
    if not header.has_latent_avg:
        raise missing_latent_avg_error(path, where=where)
    return header
