"""StyleGAN2 checkpoint loading: format detection and the one entry point for every format.

Formats, told apart by their content (not their file name):

* ``"nvidia-pickle"``: an NVlabs/stylegan2-ada-pytorch network pickle (``G_ema``, ``G``, ``D``),
  recognised by its pickle protocol header; read with a restricted unpickler, the embedded
  networks source is never run.
* ``"rosinality"``: a rosinality/stylegan2-pytorch ``.pt`` (``g_ema``, ``g``, ``d``,
  ``latent_avg``, ``args``), a torch zip or legacy file; read with
  ``torch.load(weights_only=True)`` allowing ``argparse.Namespace`` only.
* ``"facefeat"``: ``NAME.safetensors`` + ``NAME.json`` (configs, sha256 of the weights,
  provenance); the sha256 is checked on load.

Examples
--------
>>> G = load_generator("network-snapshot.pkl", device="cuda")          # doctest: +SKIP
>>> G = load_generator("stylegan2-ffhq-config-f.pt", which="g_ema")    # doctest: +SKIP
>>> convert_checkpoint("network-snapshot.pkl", "models/ffhq256")        # doctest: +SKIP
>>> G = load_generator("models/ffhq256.safetensors", expected_resolution=256)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any

import torch

from facefeat.errors import ModelError
from facefeat.io.hashing import sha256_file
from facefeat.models.stylegan2.formats import (
    NVIDIA_LICENSE_NOTE,
    RawCheckpoint,
    build_config,
    canonical_name,
    facefeat_paths,
    read_facefeat,
    read_nvidia,
    read_rosinality,
    save_facefeat,
)
from facefeat.models.stylegan2.layouts import (
    check_resolution,
    discriminator_from_state_dict,
    generator_from_state_dict,
)
from facefeat.models.stylegan2.networks import Discriminator, Generator

__all__ = [
    "FORMATS",
    "check_resolution",
    "convert_checkpoint",
    "detect_format",
    "load_discriminator",
    "load_generator",
    "read_checkpoint",
    "save_checkpoint",
]

FORMATS = ("nvidia-pickle", "rosinality", "facefeat")

# The first pickle of a legacy (pre-1.6, non-zip) torch.save file is this magic number.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"
_DEFAULTS = {"generator": "G_ema", "discriminator": "D"}


def detect_format(path: str | os.PathLike) -> str:
    """Tell the checkpoint format from the file's first bytes.

    Returns ``"nvidia-pickle"`` (a plain pickle), ``"rosinality"`` (a torch zip or legacy
    torch file) or ``"facefeat"`` (safetensors, or its JSON config).

    Raises
    ------
    ModelError
        Missing, empty or too-short file, or none of the known formats.
    """
    p = Path(path)
    if p.suffix not in (".json", ".safetensors") and not p.exists():
        w, c = facefeat_paths(p)
        if w.exists() or c.exists():
            return "facefeat"
    if not p.exists():
        raise ModelError(f"{p}: file not found")
    if p.is_dir():
        raise ModelError(f"{p}: is a directory, not a checkpoint file")
    size = p.stat().st_size
    with open(p, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise ModelError(f"{p}: file is empty")
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p) as zf:
                if any(n.endswith("/data.pkl") or n == "data.pkl" for n in zf.namelist()):
                    return "rosinality"
        except zipfile.BadZipFile as exc:
            raise ModelError(f"{p}: a zip file that cannot be read ({exc}); the torch checkpoint is truncated or "
                             f"corrupt, re-download it") from exc
        raise ModelError(f"{p}: a zip archive but not a torch.save checkpoint (no data.pkl)")
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return "rosinality"
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:  # PROTO opcode + protocol 2..5
        return "nvidia-pickle"
    if head.lstrip()[:1] == b"{" and p.suffix == ".json":
        return "facefeat"
    if len(head) >= 9:
        n = int.from_bytes(head[:8], "little")
        if head[8:9] == b"{" and 8 + n <= size:
            return "facefeat"
        if head[8:9] == b"{":
            raise ModelError(f"{p}: safetensors header claims {n} bytes but the file has {size}; truncated")
    raise ModelError(f"{p}: unknown checkpoint format (first bytes {head[:8]!r}); expected an NVIDIA "
                     f"stylegan2-ada-pytorch .pkl, a rosinality .pt or a facefeat .safetensors + .json")


def read_checkpoint(path: str | os.PathLike, *, names: list[str] | None = None,
                    verify_hash: bool = True) -> RawCheckpoint:
    """Read any supported checkpoint into a :class:`RawCheckpoint` (state_dicts, no networks built)."""
    fmt = detect_format(path)
    if fmt == "nvidia-pickle":
        return read_nvidia(path)
    if fmt == "rosinality":
        return read_rosinality(path)
    return read_facefeat(path, names=names, verify_hash=verify_hash)


def _pick(raw: RawCheckpoint, which: str | None, kind: str) -> str:
    name = canonical_name(which) if which is not None else _DEFAULTS[kind]
    if name not in raw.networks:
        have = [n for n, k in raw.kinds.items() if k == kind] or sorted(raw.networks)
        raise ModelError(f"{raw.path}: no network {name!r} in this {raw.format} file; it holds {have}. Pass "
                         f"which=... with one of those.")
    if raw.kinds.get(name) != kind:
        raise ModelError(f"{raw.path}: network {name!r} is a {raw.kinds.get(name)}, not a {kind}")
    return name


def _provenance(raw: RawCheckpoint, name: str, *, file_sha256: str | None = None) -> dict[str, Any]:
    out = {"source_file": str(raw.path), "source_format": raw.format, "source_layout": raw.layout,
           "network": name}
    if file_sha256:
        out["source_sha256"] = file_sha256
    if raw.format == "nvidia-pickle":
        out["license"] = NVIDIA_LICENSE_NOTE
        out["init_kwargs"] = raw.init_kwargs.get(name, {})
    elif raw.format == "facefeat":
        out["stored_provenance"] = raw.info.get("provenance", {})
    return out


def _generator(raw: RawCheckpoint, name: str, device: torch.device | str, *, w_avg_samples: int,
               w_avg_seed: int) -> Generator:
    source = f"{raw.path} [{name}]"
    if raw.layout == "facefeat":
        cfg = build_config("generator", raw.configs.get(name, {}), source)
        G = generator_from_state_dict(raw.networks[name], layout="facefeat", config=cfg, device=device,
                                      source=source)
        G.w_avg_source = raw.w_avg_sources.get(name) or "mapping.w_avg"
        return G
    return generator_from_state_dict(raw.networks[name], layout=raw.layout, device=device, source=source,
                                     init_kwargs=raw.init_kwargs.get(name), w_avg=raw.w_avg,
                                     w_avg_samples=w_avg_samples, w_avg_seed=w_avg_seed)


def _discriminator(raw: RawCheckpoint, name: str, device: torch.device | str) -> Discriminator:
    source = f"{raw.path} [{name}]"
    if raw.layout == "facefeat":
        cfg = build_config("discriminator", raw.configs.get(name, {}), source)
        return discriminator_from_state_dict(raw.networks[name], layout="facefeat", config=cfg, device=device,
                                             source=source)
    return discriminator_from_state_dict(raw.networks[name], layout=raw.layout, device=device, source=source,
                                         init_kwargs=raw.init_kwargs.get(name))


def load_generator(path: str | os.PathLike, *, which: str | None = None, device: torch.device | str = "cpu",
                   expected_resolution: int | None = None, w_avg_samples: int = 10000,
                   w_avg_seed: int = 0) -> Generator:
    """Load a StyleGAN2 generator from any supported checkpoint, strictly.

    Parameters
    ----------
    path : path-like
        NVIDIA ``.pkl``, rosinality ``.pt``, or facefeat ``.safetensors`` / ``.json``.
    which : str, optional
        Network name: ``"G_ema"`` (default), ``"G"``; rosinality's ``"g_ema"``/``"g"`` are the
        same names. Real rosinality files hold ``g`` and ``g_ema`` with *different* noise
        buffers; the EMA generator is the one to use for inference.
    device : torch.device or str, default "cpu"
    expected_resolution : int, optional
        Raise ModelError unless ``G.img_resolution`` equals this (the aligned crop size).
    w_avg_samples, w_avg_seed : int
        A rosinality training checkpoint has no ``latent_avg``; ``G.w_avg`` is then
        ``G.mean_w(w_avg_samples, w_avg_seed)`` (recorded in ``G.w_avg_source``).

    Returns
    -------
    Generator
        In eval mode, ``requires_grad_(False)``, with ``G.provenance`` (a dict: source file,
        format, layout, network, license note).

    Raises
    ------
    ModelError
        Unknown format, truncated file, disallowed pickled global, keys that do not map
        (missing and unexpected keys listed), no such network, wrong resolution.
    ConfigError
        ``device`` is not on this machine (the message lists the devices that are).
    """
    from facefeat.devices import check_device

    device = check_device(device, option="device", meta=True)  # before reading a large file for a GPU that is not there
    raw = read_checkpoint(path, names=[which or "G_ema"])
    name = _pick(raw, which, "generator")
    G = _generator(raw, name, device, w_avg_samples=w_avg_samples, w_avg_seed=w_avg_seed)
    if expected_resolution is not None:
        check_resolution(G, expected_resolution, source=str(path))
    G.provenance = _provenance(raw, name)
    return G


def load_discriminator(path: str | os.PathLike, *, which: str | None = None,
                       device: torch.device | str = "cpu") -> Discriminator:
    """Load a StyleGAN2 discriminator (``"D"`` / rosinality ``"d"``) strictly; see :func:`load_generator`."""
    raw = read_checkpoint(path, names=[which or "D"])
    name = _pick(raw, which, "discriminator")
    D = _discriminator(raw, name, device)
    D.provenance = _provenance(raw, name)
    return D


def save_checkpoint(path: str | os.PathLike, networks: dict[str, Generator | Discriminator], *,
                    provenance: dict[str, Any] | None = None, overwrite: bool = False) -> tuple[Path, Path]:
    """Write networks in facefeat's format (``NAME.safetensors`` + ``NAME.json``)."""
    return save_facefeat(path, networks, provenance=provenance, overwrite=overwrite)


def convert_checkpoint(src: str | os.PathLike, dst: str | os.PathLike, *, networks: list[str] | None = None,
                       overwrite: bool = False, w_avg_samples: int = 10000, w_avg_seed: int = 0) -> tuple[Path, Path]:
    """Convert an NVIDIA pickle or rosinality checkpoint to facefeat's format.

    Every network in ``src`` (or those named in ``networks``) is built and loaded strictly,
    then written to ``dst`` (``NAME``, ``NAME.safetensors`` or ``NAME.json``). The JSON records
    the source file, its sha256 and format, the inferred configs and the license note. NVIDIA's
    embedded source code is not copied. Returns ``(weights_path, config_path)``.
    """
    raw = read_checkpoint(src)
    names = list(raw.networks) if networks is None else [canonical_name(n) for n in networks]
    built: dict[str, Generator | Discriminator] = {}
    for name in names:
        if name not in raw.networks:
            raise ModelError(f"{src}: no network {name!r}; it holds {sorted(raw.networks)}")
        if raw.kinds[name] == "generator":
            built[name] = _generator(raw, name, "cpu", w_avg_samples=w_avg_samples, w_avg_seed=w_avg_seed)
        else:
            built[name] = _discriminator(raw, name, "cpu")
    prov = {"source_file": Path(src).name, "source_sha256": sha256_file(src), "source_format": raw.format,
            "source_layout": raw.layout, "source_info": raw.info,
            "w_avg_source": {n: getattr(m, "w_avg_source", None) for n, m in built.items() if isinstance(m, Generator)}}
    if raw.init_kwargs:
        prov["source_init_kwargs"] = raw.init_kwargs
    return save_facefeat(dst, built, provenance=prov, overwrite=overwrite)
