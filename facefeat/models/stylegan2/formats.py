"""StyleGAN2 checkpoint files: readers for the official formats and facefeat's own format.

Every reader returns a :class:`RawCheckpoint` (networks as plain state_dicts, in the file's own
layout, plus what the file says about them), so building networks, converting and checking
happen in one place (:mod:`facefeat.models.checkpoints`).

* NVIDIA network pickles: :mod:`facefeat.models.stylegan2.nvidia_pickle` (restricted unpickler).
* rosinality ``.pt``: ``torch.load(weights_only=True)`` with only :class:`argparse.Namespace`
  allowed beyond tensors and containers; training checkpoints (``g``, ``d``, ``g_ema``,
  optimiser states, ``args``) and converted ones (``g_ema``, ``latent_avg``).
* facefeat: ``NAME.safetensors`` (tensors ``<network>.<key>``) + ``NAME.json`` (format,
  per-network config, sha256 of the weights, provenance). Written atomically, read strictly.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from facefeat.io.atomic import atomic_output
from facefeat.errors import ModelError
from facefeat.io.hashing import sha256_file
from facefeat.io.jsonsafe import to_jsonable
from facefeat.models.stylegan2.config import DiscriminatorConfig, GeneratorConfig
from facefeat.models.stylegan2.networks import Discriminator, Generator
from facefeat.models.stylegan2.nvidia_pickle import read_nvidia_pickle

FACEFEAT_FORMAT = "facefeat-stylegan2"
FACEFEAT_FORMAT_VERSION = 1

#: Canonical network names; rosinality's lower-case names map onto them.
NETWORK_ALIASES = {"g_ema": "G_ema", "g": "G", "d": "D"}

NVIDIA_LICENSE_NOTE = (
    "NVIDIA stylegan2-ada-pytorch network pickle: the weights (and the networks source that the pickle "
    "embeds, which facefeat neither runs nor copies) are under the NVIDIA Source Code License for "
    "StyleGAN2-ADA, non-commercial: research or evaluation use only. Check the license of the specific model."
)


def canonical_name(name: str) -> str:
    """``"g_ema" -> "G_ema"``, ``"g" -> "G"``, ``"d" -> "D"``; other names unchanged."""
    return NETWORK_ALIASES.get(name.lower(), name)


@dataclass
class RawCheckpoint:
    """What a checkpoint file holds, before any network is built.

    Attributes
    ----------
    path : Path
    format : str
        ``"nvidia-pickle"``, ``"rosinality"`` or ``"facefeat"``.
    layout : str
        Key layout of the state_dicts: ``"nvidia"``, ``"rosinality"`` or ``"facefeat"``.
    networks : dict[str, dict[str, Tensor]]
        State_dicts by canonical name (``G_ema``, ``G``, ``D``).
    kinds : dict[str, str]
        ``"generator"`` / ``"discriminator"`` per network.
    init_kwargs : dict[str, dict]
        NVIDIA constructor kwargs per network (config values shapes cannot show).
    configs : dict[str, dict]
        facefeat: the stored config per network.
    w_avg : Tensor or None
        rosinality ``latent_avg``.
    info : dict
        JSON-able facts about the file for provenance.
    """

    path: Path
    format: str
    layout: str
    networks: dict[str, dict[str, torch.Tensor]]
    kinds: dict[str, str]
    init_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    w_avg: torch.Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)
    w_avg_sources: dict[str, str] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# NVIDIA
# --------------------------------------------------------------------------------------------

_NVIDIA_KINDS = {"Generator": "generator", "Discriminator": "discriminator"}


def read_nvidia(path: str | os.PathLike) -> RawCheckpoint:
    """Read an NVIDIA stylegan2-ada-pytorch network pickle (restricted; no code runs)."""
    pk = read_nvidia_pickle(path)
    networks, kinds, init_kwargs, classes = {}, {}, {}, {}
    for name, obj in pk.networks.items():
        classes[name] = obj.class_name
        if obj.class_name not in _NVIDIA_KINDS:
            continue  # augment_pipe and the like: not networks we build
        try:
            networks[name] = obj.state_dict()
        except ModelError as exc:
            raise ModelError(f"{path}: network {name!r}: {exc}") from None
        kinds[name] = _NVIDIA_KINDS[obj.class_name]
        init_kwargs[name] = obj.init_kwargs
    if not networks:
        raise ModelError(f"{path}: the pickle holds no StyleGAN2 Generator/Discriminator objects "
                         f"(top-level entries: {sorted(pk.networks) + sorted(pk.other)})")
    srcs = sorted({o.source_sha256 for o in pk.networks.values()})
    info = {"classes": classes, "embedded_source_sha256": srcs,
            "persistence_version": sorted({o.version for o in pk.networks.values()}),
            "license": NVIDIA_LICENSE_NOTE,
            "training_set_kwargs": to_jsonable(pk.other.get("training_set_kwargs"))}
    return RawCheckpoint(path=Path(path), format="nvidia-pickle", layout="nvidia", networks=networks, kinds=kinds,
                         init_kwargs=init_kwargs, info=info)


# --------------------------------------------------------------------------------------------
# rosinality
# --------------------------------------------------------------------------------------------

def torch_load_restricted(path: str | os.PathLike) -> Any:
    """``torch.load(weights_only=True)`` allowing only :class:`argparse.Namespace` in addition.

    Raises ModelError for truncated/corrupt files and for any other pickled class (named).
    """
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError, ... here
        msg = str(exc).split("\n")
        detail = next((m.strip() for m in msg if "GLOBAL" in m or "Unsupported" in m), msg[0].strip())
        if "GLOBAL" in detail or "Unsupported" in detail or "weights_only" in str(exc).lower():
            raise ModelError(f"{path}: refusing to unpickle: {detail}. facefeat reads .pt files with "
                             f"torch.load(weights_only=True) and never runs pickled code; only tensors, plain "
                             f"containers and argparse.Namespace are allowed.") from exc
        raise ModelError(f"{path}: cannot read the PyTorch checkpoint ({type(exc).__name__}: {detail}); the file is "
                         f"truncated or corrupt, re-download it and compare its sha256") from exc


def read_rosinality(path: str | os.PathLike, obj: Any | None = None) -> RawCheckpoint:
    """Read a rosinality checkpoint (training: ``g``, ``d``, ``g_ema``, ``g_optim``, ``d_optim``,
    ``args``, ``ada_aug_p``; converted: ``g_ema``, ``latent_avg``; or a bare G state_dict)."""
    from facefeat.models.stylegan2.layouts import detect_layout

    if obj is None:
        obj = torch_load_restricted(path)
    if not isinstance(obj, Mapping):
        raise ModelError(f"{path}: holds a {type(obj).__name__}; expected a dict with 'g_ema' (rosinality "
                         f"StyleGAN2 checkpoint)")
    if "state_dict" in obj and "opts" in obj:
        raise ModelError(f"{path}: this is an e4e/pSp checkpoint, not a StyleGAN2 checkpoint; load it with "
                         f"facefeat.models.e4e.load_e4e")
    networks: dict[str, dict[str, torch.Tensor]] = {}
    kinds: dict[str, str] = {}
    if all(isinstance(v, torch.Tensor) for v in obj.values()) and obj:
        if detect_layout(obj.keys(), kind="generator") != "rosinality":
            raise ModelError(f"{path}: a bare state_dict that is not a rosinality StyleGAN2 generator "
                             f"(first keys: {list(obj)[:6]})")
        networks["G_ema"], kinds["G_ema"] = dict(obj), "generator"
    else:
        for key, kind in (("g_ema", "generator"), ("g", "generator"), ("d", "discriminator")):
            if key in obj:
                if not isinstance(obj[key], Mapping):
                    raise ModelError(f"{path}: {key!r} is a {type(obj[key]).__name__}, not a state_dict")
                networks[canonical_name(key)] = dict(obj[key])
                kinds[canonical_name(key)] = kind
    if not networks:
        raise ModelError(f"{path}: no StyleGAN2 networks found: expected 'g_ema' (and optionally 'g', 'd'); "
                         f"top-level keys are {sorted(map(str, obj))}")
    w_avg = obj.get("latent_avg")
    if w_avg is not None and not isinstance(w_avg, torch.Tensor):
        raise ModelError(f"{path}: latent_avg is a {type(w_avg).__name__}, not a tensor")
    args = obj.get("args")
    info = {"top_level_keys": sorted(map(str, obj)),
            "args": to_jsonable(vars(args)) if isinstance(args, argparse.Namespace) else to_jsonable(args),
            "has_latent_avg": w_avg is not None,
            "license": "rosinality/stylegan2-pytorch code: MIT; the weights carry the license of what they were "
                       "trained on or converted from (NVIDIA's official models: non-commercial)"}
    return RawCheckpoint(path=Path(path), format="rosinality", layout="rosinality", networks=networks, kinds=kinds,
                         w_avg=w_avg, info=info)


# --------------------------------------------------------------------------------------------
# facefeat: safetensors + JSON
# --------------------------------------------------------------------------------------------

def facefeat_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(weights, config)`` paths of a facefeat checkpoint given either file or the stem."""
    p = Path(path)
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".json")


def save_facefeat(path: str | os.PathLike, networks: Mapping[str, Generator | Discriminator], *,
                  provenance: Mapping[str, Any] | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """Write networks as ``NAME.safetensors`` + ``NAME.json``; returns both paths.

    Parameters
    ----------
    path : path-like
        ``NAME.safetensors``, ``NAME.json`` or ``NAME``.
    networks : mapping
        e.g. ``{"G_ema": G, "D": D}``. Names are canonicalized (``g_ema`` -> ``G_ema``).
    provenance : mapping, optional
        JSON-able facts recorded in the config (source file and sha256, converter, license...).
    overwrite : bool
        Refuse to replace existing files unless True.
    """
    from safetensors.torch import save_file

    from facefeat import __version__

    weights, cfg_path = facefeat_paths(path)
    for p in (weights, cfg_path):
        if p.exists() and not overwrite:
            raise ModelError(f"{p}: already exists; pass overwrite=True to replace it")
    tensors: dict[str, torch.Tensor] = {}
    entries: dict[str, Any] = {}
    for name, net in networks.items():
        name = canonical_name(name)
        if isinstance(net, Generator):
            kind = "generator"
        elif isinstance(net, Discriminator):
            kind = "discriminator"
        else:
            raise TypeError(f"network {name!r} is a {type(net).__name__}, not a StyleGAN2 Generator/Discriminator")
        for key, value in net.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().to("cpu", torch.float32).contiguous().clone()
        entries[name] = {"kind": kind, "config": net.config.to_dict()}
        if kind == "generator":
            entries[name]["w_avg_source"] = getattr(net, "w_avg_source", "")
    metadata = {"format": FACEFEAT_FORMAT, "format_version": str(FACEFEAT_FORMAT_VERSION)}
    with atomic_output(weights) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    doc = {
        "format": FACEFEAT_FORMAT,
        "format_version": FACEFEAT_FORMAT_VERSION,
        "weights": {"file": weights.name, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
        "networks": entries,
        "provenance": {
            "facefeat_version": __version__,
            "torch_version": torch.__version__.split("+")[0],
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            **to_jsonable(dict(provenance or {})),
        },
    }
    text = json.dumps(doc, indent=2, sort_keys=False) + "\n"
    with atomic_output(cfg_path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return weights, cfg_path


def read_facefeat(path: str | os.PathLike, *, names: list[str] | None = None,
                  verify_hash: bool = True) -> RawCheckpoint:
    """Read a facefeat checkpoint (``NAME.safetensors`` + ``NAME.json``).

    Only the networks in ``names`` are read (all when None). Raises ModelError for a missing or
    mismatched partner file, a wrong sha256, keys belonging to no listed network, or a
    truncated/corrupt file.
    """
    from safetensors import SafetensorError, safe_open

    weights, cfg_path = facefeat_paths(path)
    if not cfg_path.exists():
        raise ModelError(f"{weights}: the config {cfg_path.name} is missing; a facefeat StyleGAN2 checkpoint is a "
                         f".safetensors file plus its .json config with the same name")
    if not weights.exists():
        raise ModelError(f"{cfg_path}: the weights file {weights.name} is missing")
    try:
        doc = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"{cfg_path}: cannot read the JSON config ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FACEFEAT_FORMAT:
        raise ModelError(f"{cfg_path}: not a facefeat StyleGAN2 config (format {doc.get('format')!r} if a dict)")
    if int(doc.get("format_version", 0)) > FACEFEAT_FORMAT_VERSION:
        raise ModelError(f"{cfg_path}: format_version {doc.get('format_version')} is newer than this facefeat "
                         f"understands ({FACEFEAT_FORMAT_VERSION}); upgrade facefeat")
    want = (doc.get("weights") or {}).get("sha256")
    if verify_hash and want:
        got = sha256_file(weights)
        if got != want:
            raise ModelError(f"{weights}: sha256 {got} does not match {want} recorded in {cfg_path.name}; the file "
                             f"is truncated, modified or not the partner of this config")
    listed = doc.get("networks") or {}
    if not isinstance(listed, dict) or not listed:
        raise ModelError(f"{cfg_path}: lists no networks")
    names = list(listed) if names is None else [canonical_name(n) for n in names]
    networks, kinds, configs, w_src = {}, {}, {}, {}
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as fh:
            keys = list(fh.keys())
            stray = sorted(k for k in keys if k.split(".", 1)[0] not in listed)
            if stray:
                raise ModelError(f"{weights}: tensors belong to no network listed in {cfg_path.name}: "
                                 f"{stray[:10]}")
            for name in names:
                if name not in listed:
                    continue
                prefix = name + "."
                networks[name] = {k[len(prefix):]: fh.get_tensor(k) for k in keys if k.startswith(prefix)}
                kinds[name] = listed[name].get("kind", "")
                configs[name] = listed[name].get("config") or {}
                w_src[name] = listed[name].get("w_avg_source", "")
    except ModelError:
        raise
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"{weights}: cannot read the safetensors file ({exc}); it is truncated or corrupt") from exc
    info = {"provenance": doc.get("provenance", {}), "available": list(listed)}
    return RawCheckpoint(path=weights, format="facefeat", layout="facefeat", networks=networks, kinds=kinds,
                         configs=configs, info=info, w_avg_sources=w_src)


def build_config(kind: str, d: Mapping[str, Any], source: str) -> GeneratorConfig | DiscriminatorConfig:
    try:
        return GeneratorConfig.from_dict(d) if kind == "generator" else DiscriminatorConfig.from_dict(d)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{source}: invalid {kind} config: {exc}") from exc
