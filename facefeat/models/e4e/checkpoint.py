"""Official e4e checkpoints: reading, strict loading, saving in the same layout.

The release files (``e4e_ffhq_encode.pt`` and the cars/horse/church ones) are dicts saved by
e4e's ``training/coach.py``::

    {"state_dict": pSp.state_dict(),      # "encoder.*" (Encoder4Editing) + "decoder.*"
     "opts": vars(train_options),          # stylegan_size, encoder_type, start_from_latent_avg, ...
     "latent_avg": Tensor}                 # (n_styles, 512), or (512,)

``decoder.*`` is a rosinality-layout StyleGAN2 generator. This module loads the encoder
strictly by name and hands the decoder's state_dict (prefix stripped) to a generator loader
supplied by the caller (:func:`load_e4e`'s ``decoder_loader``), so generator code lives in one
place (``facefeat.models.stylegan2`` / ``facefeat.models.checkpoints``).

Files are read with ``torch.load(weights_only=True)``; the only class allowed beyond tensors
and plain containers is :class:`argparse.Namespace` (some pSp-family checkpoints store
``opts`` that way). No pickled code is ever executed.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from facefeat.io.atomic import atomic_output
from facefeat.errors import ModelError
from facefeat.models.e4e.network import (
    INPUT_SIZE,
    STYLE_DIM,
    Encoder4Editing,
    n_styles_for_resolution,
    resolution_for_n_styles,
)

#: Metadata of the official FFHQ e4e checkpoint, for the model registry. The code is MIT; the
#: weights were trained on FFHQ (CC BY-NC-SA 4.0: non-commercial, share-alike) and include a
#: rosinality-converted StyleGAN2 FFHQ generator (NVIDIA weights, non-commercial).
E4E_FFHQ_ENCODE: dict[str, Any] = {
    "name": "e4e-ffhq-encode",  # as in facefeat.models.registry
    "filename": "e4e_ffhq_encode.pt",
    "url": "https://drive.google.com/file/d/1cUv_reLE6k3604or78EranS7XzuVMWeO/view?usp=sharing",
    "sha256": None,  # not published by the authors; pin it once a copy has been verified
    "size_bytes": None,
    "format": "e4e",
    "code_license": "MIT (omertov/encoder4editing)",
    "weights_license": (
        "trained on FFHQ (CC BY-NC-SA 4.0); the bundled decoder is NVIDIA's StyleGAN2 FFHQ "
        "generator (non-commercial): research use only"
    ),
    "source": "https://github.com/omertov/encoder4editing",
    "citation": "Tov et al., Designing an Encoder for StyleGAN Image Manipulation, SIGGRAPH 2021 (arXiv:2102.02766)",
    "config": {
        "architecture": "Encoder4Editing",
        "backbone": "ir_se_50",
        "stylegan_size": 1024,
        "n_styles": 18,
        "input_size": 256,
        "input_normalisation": "RGB [0,1], mean 0.5, std 0.5",
        "latent_avg_shape": [18, 512],
        "decoder": "rosinality StyleGAN2 Generator(1024, 512, 8, channel_multiplier=2)",
    },
}

#: Signature of the hook that builds the decoder: ``loader(state_dict, *, resolution, device)``
#: with the rosinality-layout generator state_dict (``decoder.`` prefix removed).
DecoderLoader = Callable[..., nn.Module]

_MAX_LISTED = 20
_STYLE_KEY = re.compile(r"^styles\.(\d+)\.")


@dataclass
class E4ECheckpoint:
    """An e4e checkpoint loaded for inference.

    Attributes
    ----------
    path : Path or None
        The file it came from.
    encoder : Encoder4Editing
        Weights loaded strictly, in eval mode, on the requested device.
    latent_avg : torch.Tensor
        float32 ``(n_styles, 512)`` or ``(512,)``, on the encoder's device; add it to the
        encoder output (:func:`facefeat.models.e4e.add_latent_avg`).
    opts : dict
        The training options stored in the file (``{}`` if none).
    decoder_state_dict : dict
        The rosinality-layout generator weights (``decoder.`` prefix removed; empty if the file
        has no decoder).
    decoder : torch.nn.Module or None
        The generator, when a ``decoder_loader`` was given.
    """

    path: Path | None
    encoder: Encoder4Editing
    latent_avg: torch.Tensor
    opts: dict[str, Any] = field(default_factory=dict)
    decoder_state_dict: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    decoder: nn.Module | None = None

    @property
    def n_styles(self) -> int:
        """Number of W+ rows the encoder produces."""
        return self.encoder.n_styles

    @property
    def resolution(self) -> int:
        """Resolution of the generator the encoder belongs to."""
        return self.encoder.resolution


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED])
    more = f" ... and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return f"[{shown}{more}]"


def read_checkpoint(path: str | os.PathLike, *, mmap: bool = False) -> dict[str, Any]:
    """Read an e4e checkpoint file with ``torch.load(weights_only=True)``, onto the CPU.

    Returns the raw dict after checking that it has a ``state_dict`` mapping; ``opts`` is
    returned as a dict (a stored :class:`argparse.Namespace` is converted). With ``mmap=True``
    the tensors are memory-mapped (nothing is read until used; a header read of the 1.2 GB
    official file costs milliseconds); files in torch's legacy format are read whole.

    Raises
    ------
    ModelError
        If the file is missing, unreadable, holds objects ``weights_only`` loading refuses, or
        is not an e4e checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(
            f"e4e checkpoint not found: {path}. Download it (facefeat models pull e4e-ffhq-encode) "
            f"or put the file there by hand, then pass its path."
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not (mmap and "mmap" in str(exc)):  # legacy (non-zip) file: no mmap
                    raise
                ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, truncated files
        raise ModelError(
            f"cannot read e4e checkpoint {path}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}. "
            f"facefeat reads checkpoints with torch.load(weights_only=True) and never runs pickled code; "
            f"the file must hold only tensors, plain containers and an opts dict/Namespace "
            f"(re-download it if it is truncated, or re-save it with save_e4e_checkpoint)."
        ) from exc
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        found = sorted(map(str, ckpt.keys())) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise ModelError(
            f"{path} is not an e4e checkpoint: expected a dict with 'state_dict' (encoder.*, decoder.*), "
            f"'opts' and 'latent_avg', found {found}. Pass an official e4e .pt file or one written by "
            f"save_e4e_checkpoint."
        )
    ckpt = dict(ckpt)
    opts = ckpt.get("opts")
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    ckpt["opts"] = dict(opts) if isinstance(opts, Mapping) else {}
    return ckpt


def split_state_dict(state_dict: Mapping[str, Any], *, source: str = "state_dict") -> tuple[dict, dict]:
    """Split a pSp/e4e state_dict into ``(encoder_sd, decoder_sd)`` with prefixes removed.

    Raises
    ------
    ModelError
        If keys other than ``encoder.*`` / ``decoder.*`` are present (listed), or there is no
        ``encoder.*`` key.
    """
    enc, dec, other = {}, {}, []
    for key, value in state_dict.items():
        if key.startswith("encoder."):
            enc[key[len("encoder."):]] = value
        elif key.startswith("decoder."):
            dec[key[len("decoder."):]] = value
        else:
            other.append(key)
    if other:
        raise ModelError(
            f"{source}: unexpected state_dict keys outside encoder.* / decoder.*: {_listing(sorted(other))}. "
            f"This is not an official e4e checkpoint layout (pSp-family files with extra heads are not supported)."
        )
    if not enc:
        raise ModelError(f"{source}: the state_dict has no encoder.* keys; it is not an e4e checkpoint.")
    return enc, dec


def _input_size(encoder_sd: Mapping[str, Any]) -> int:
    """Network input side inferred from the weights: style block 0 has log2(input/16) convolutions."""
    n_convs = len({k for k in encoder_sd if re.match(r"^styles\.0\.convs\.\d+\.weight$", k)})
    return 16 * 2 ** n_convs if n_convs else INPUT_SIZE


def _count_styles(encoder_sd: Mapping[str, Any]) -> int:
    idx = {int(m.group(1)) for k in encoder_sd if (m := _STYLE_KEY.match(k))}
    return max(idx) + 1 if idx else 0


def check_num_ws(n_styles: int, num_ws: int, *, source: str = "encoder") -> None:
    """Raise :class:`ModelError` if an encoder's style count does not match a generator's ``num_ws``."""
    if int(n_styles) != int(num_ws):
        try:
            enc_res = f"{resolution_for_n_styles(int(n_styles))} px"
        except ValueError:
            enc_res = "no valid resolution"
        raise ModelError(
            f"{source} produces {n_styles} W+ rows (a {enc_res} generator) but the generator expects "
            f"num_ws={num_ws}. Use an encoder trained for this generator (e.g. facefeat train encoder "
            f"--generator ...) or the generator the encoder was trained with."
        )


def generator_num_ws(generator: nn.Module) -> int | None:
    """The number of W+ rows a generator takes (``num_ws`` NVIDIA-style, ``n_latent`` rosinality-style)."""
    for attr in ("num_ws", "n_latent"):
        value = getattr(generator, attr, None)
        if isinstance(value, int):
            return value
    return None


def _check_encoder_keys(encoder: Encoder4Editing, encoder_sd: Mapping[str, Any], *, source: str) -> None:
    """Strict name/shape check with every missing, unexpected and mismatched key listed."""
    expected = encoder.state_dict()
    missing = sorted(set(expected) - set(encoder_sd))
    unexpected = sorted(set(encoder_sd) - set(expected))
    bad_shape = sorted(
        f"{k} {tuple(encoder_sd[k].shape)} != {tuple(expected[k].shape)}"
        for k in set(expected) & set(encoder_sd)
        if not isinstance(encoder_sd[k], torch.Tensor) or tuple(encoder_sd[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"missing encoder keys {_listing(['encoder.' + k for k in missing])}")
        if unexpected:
            parts.append(f"unexpected encoder keys {_listing(['encoder.' + k for k in unexpected])}")
        if bad_shape:
            parts.append(f"shape mismatches {_listing(['encoder.' + k for k in bad_shape])}")
        raise ModelError(
            f"{source}: encoder weights do not match Encoder4Editing (IR-SE-50, {encoder.n_styles} styles): "
            + "; ".join(parts)
            + ". The file is not an official e4e checkpoint or was saved by a modified model."
        )


def encoder_from_state_dict(
    encoder_sd: Mapping[str, torch.Tensor],
    *,
    resolution: int | None = None,
    device: str | torch.device = "cpu",
    source: str = "state_dict",
) -> Encoder4Editing:
    """Build an :class:`Encoder4Editing` and load ``encoder_sd`` (no ``encoder.`` prefix) strictly.

    The module is created on the ``meta`` device and the tensors are assigned, so no memory is
    spent on a random initialisation; floating tensors are cast to float32.

    Parameters
    ----------
    encoder_sd : mapping
        Encoder weights named as in ``Encoder4Editing.state_dict()``.
    resolution : int, optional
        Generator resolution; inferred from the number of ``styles.N`` blocks when omitted.
    device : str or torch.device
        Where the returned module lives (``"meta"`` works for key checks without weights).
    source : str
        Name used in error messages (the file).

    Raises
    ------
    ModelError
        Missing, unexpected or wrongly shaped keys (listed), or a style count that is not
        ``2*log2(res)-2``.
    """
    n_found = _count_styles(encoder_sd)
    if resolution is None:
        try:
            resolution = resolution_for_n_styles(n_found)
        except ValueError:
            raise ModelError(
                f"{source}: found {n_found} encoder style blocks (styles.N); e4e needs 2*log2(res)-2 of them "
                f"(18 for a 1024 px generator). The checkpoint is incomplete or not an e4e file."
            ) from None
    input_size = _input_size(encoder_sd)
    try:
        with torch.device("meta"):
            encoder = Encoder4Editing(resolution, input_size=input_size)
    except ValueError:
        raise ModelError(f"{source}: style block 0 implies an input of {input_size} px, below the 32 px "
                         f"minimum; the checkpoint is not an e4e encoder.") from None
    _check_encoder_keys(encoder, encoder_sd, source=source)
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in encoder_sd.items()}
    encoder.load_state_dict(sd, strict=True, assign=True)
    return encoder.to(device).eval()


def _latent_avg(value: Any, n_styles: int, *, source: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) and value is not None:
        value = torch.as_tensor(value)
    shape = tuple(value.shape)
    if shape not in ((n_styles, STYLE_DIM), (STYLE_DIM,)):
        raise ModelError(
            f"{source}: latent_avg has shape {shape}; expected ({n_styles}, {STYLE_DIM}) (one row per W+ layer) "
            f"or ({STYLE_DIM},) for an encoder with {n_styles} styles."
        )
    return value.float()


def load_e4e(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    num_ws: int | None = None,
    latent_avg: torch.Tensor | None = None,
    decoder_loader: DecoderLoader | str | None = None,
) -> E4ECheckpoint:
    """Load an official e4e checkpoint strictly: the encoder, ``latent_avg`` and optionally the decoder.

    Parameters
    ----------
    path : path-like
        The ``.pt`` file (``{'state_dict', 'opts', 'latent_avg'}``).
    device : str or torch.device, default "cpu"
        Device of the returned encoder, latent_avg and decoder.
    num_ws : int, optional
        W+ rows of the generator the codes will be fed to (``G.num_ws``); a different style
        count raises :class:`ModelError` here instead of failing later.
    latent_avg : torch.Tensor, optional
        Use this average latent instead of the one in the file (required when the file has
        none). ``(n_styles, 512)`` or ``(512,)``.
    decoder_loader : callable or "default", optional
        ``decoder_loader(state_dict, *, resolution, device) -> nn.Module`` building the
        rosinality-layout generator from ``decoder.*`` (prefix removed), strictly.
        ``"default"`` uses :func:`default_decoder_loader` (facefeat's StyleGAN2
        :class:`~facefeat.models.stylegan2.Generator`, its ``w_avg`` set from the checkpoint's
        ``latent_avg``). Without it the decoder weights are returned unbuilt in
        ``decoder_state_dict``.

    Returns
    -------
    E4ECheckpoint

    Raises
    ------
    ModelError
        Missing or unreadable file; missing ``latent_avg``; keys that do not map (listed);
        a style count that disagrees with ``opts.stylegan_size``, ``num_ws`` or the decoder;
        an ``encoder_type`` other than Encoder4Editing.

    Examples
    --------
    >>> ck = load_e4e("e4e_ffhq_encode.pt", num_ws=18)                 # doctest: +SKIP
    >>> codes = encode(ck.encoder, images, latent_avg=ck.latent_avg)   # doctest: +SKIP
    """
    from facefeat.devices import check_device

    device = check_device(device, option="device", meta=True)  # a GPU that is not there: ConfigError listing what is
    ckpt = read_checkpoint(path)
    source = str(path)
    return e4e_from_checkpoint(
        ckpt, source=source, path=Path(path), device=device, num_ws=num_ws,
        latent_avg=latent_avg, decoder_loader=decoder_loader,
    )


def e4e_from_checkpoint(
    ckpt: Mapping[str, Any],
    *,
    source: str = "checkpoint",
    path: Path | None = None,
    device: str | torch.device = "cpu",
    num_ws: int | None = None,
    latent_avg: torch.Tensor | None = None,
    decoder_loader: DecoderLoader | str | None = None,
) -> E4ECheckpoint:
    """Same as :func:`load_e4e` for a checkpoint dict already in memory (see there)."""
    opts = ckpt.get("opts") or {}
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    opts = dict(opts)
    encoder_type = opts.get("encoder_type")
    if encoder_type is not None and encoder_type != "Encoder4Editing":
        # pSp's GradualStyleEncoder has the same key names but another forward pass: loading it
        # strictly would succeed and give wrong codes.
        raise ModelError(
            f"{source}: opts.encoder_type is {encoder_type!r}; only 'Encoder4Editing' (e4e) checkpoints are "
            f"supported. pSp / ReStyle encoders share key names but compute codes differently."
        )
    encoder_sd, decoder_sd = split_state_dict(ckpt["state_dict"], source=source)

    n_found = _count_styles(encoder_sd)
    stylegan_size = opts.get("stylegan_size")
    if stylegan_size is not None:
        try:
            n_opts = n_styles_for_resolution(int(stylegan_size))
        except ValueError:
            raise ModelError(f"{source}: opts.stylegan_size={stylegan_size!r} is not a power of two >= 4.") from None
        if n_opts != n_found:
            raise ModelError(
                f"{source}: opts.stylegan_size={stylegan_size} means {n_opts} styles but the encoder weights have "
                f"{n_found} style blocks; the checkpoint is inconsistent (fix opts['stylegan_size'] and re-save)."
            )
    encoder = encoder_from_state_dict(encoder_sd, device=device, source=source)
    if num_ws is not None:
        check_num_ws(encoder.n_styles, num_ws, source=f"e4e encoder {source}")

    if latent_avg is None:
        latent_avg = ckpt.get("latent_avg")
        if latent_avg is None:
            raise ModelError(
                f"{source} has no 'latent_avg' (saved without start_from_latent_avg?). e4e codes are offsets "
                f"from the average latent: pass latent_avg= explicitly, e.g. the generator's mean W "
                f"(shape (512,) or ({encoder.n_styles}, 512)), or torch.zeros(512) if the encoder was "
                f"trained without start_from_latent_avg."
            )
        what = source
    else:
        what = "latent_avg argument"
    latent_avg = _latent_avg(latent_avg, encoder.n_styles, source=what).to(device)

    decoder = None
    if decoder_loader is not None:
        if not decoder_sd:
            raise ModelError(f"{source} has no decoder.* weights; load the generator from its own file instead.")
        if isinstance(decoder_loader, str):
            if decoder_loader != "default":
                raise ModelError(f"decoder_loader must be a callable or 'default', got {decoder_loader!r}")
            decoder = default_decoder_loader(decoder_sd, resolution=encoder.resolution, device=device,
                                             w_avg=latent_avg, source=f"{source} [decoder]")
        else:
            decoder = decoder_loader(decoder_sd, resolution=encoder.resolution, device=device)
        dec_ws = generator_num_ws(decoder)
        if dec_ws is not None:
            check_num_ws(encoder.n_styles, dec_ws, source=f"e4e encoder {source} (its own decoder)")
    return E4ECheckpoint(
        path=path, encoder=encoder, latent_avg=latent_avg, opts=opts, decoder_state_dict=decoder_sd, decoder=decoder
    )


def _to_cpu(t: torch.Tensor) -> torch.Tensor:
    # meta tensors (key-only checkpoints, used in tests) are written as they are
    t = t.detach()
    return t if t.device.type == "meta" else t.cpu()


def save_e4e_checkpoint(
    path: str | os.PathLike,
    encoder: Encoder4Editing,
    *,
    latent_avg: torch.Tensor | None,
    opts: Mapping[str, Any] | None = None,
    decoder_state_dict: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``encoder`` (and a generator) in the official e4e layout, atomically.

    ``opts`` must hold only plain values (str, int, float, bool, None, lists) so the file
    reads back with ``weights_only=True``; ``stylegan_size``, ``encoder_type`` and
    ``start_from_latent_avg`` are filled in when absent. Tensors are written from the CPU.
    """
    path = Path(path)
    sd: dict[str, torch.Tensor] = {f"encoder.{k}": _to_cpu(v) for k, v in encoder.state_dict().items()}
    for k, v in (decoder_state_dict or {}).items():
        sd[f"decoder.{k}"] = _to_cpu(v)
    opts = dict(opts or {})
    opts.setdefault("stylegan_size", encoder.resolution)
    # Not an official option (they are all 256): recorded for readers; loading infers it from the weights.
    opts.setdefault("input_size", encoder.input_size)
    opts.setdefault("encoder_type", "Encoder4Editing")
    opts.setdefault("start_from_latent_avg", latent_avg is not None)
    ckpt: dict[str, Any] = {"state_dict": sd, "opts": opts}
    if latent_avg is not None:
        ckpt["latent_avg"] = _to_cpu(latent_avg)
    with atomic_output(path) as tmp:
        torch.save(ckpt, tmp)
    return path


# --------------------------------------------------------------------------------------------
# Decoder: loading, export, header
# --------------------------------------------------------------------------------------------

def default_decoder_loader(
    state_dict: Mapping[str, torch.Tensor],
    *,
    resolution: int | None = None,
    device: str | torch.device = "cpu",
    w_avg: torch.Tensor | None = None,
    source: str = "e4e decoder",
) -> nn.Module:
    """The ``decoder.*`` weights (rosinality layout) as a facefeat StyleGAN2 ``Generator``, strictly.

    A :data:`DecoderLoader` (``load_e4e(..., decoder_loader="default")`` uses it). ``w_avg``
    (the checkpoint's ``latent_avg``; a ``(n_styles, 512)`` one is averaged over its rows)
    becomes ``G.w_avg``; e4e computes ``latent_avg`` as the decoder's mean latent, so this
    skips a 10k-sample mapping pass. Without it ``G.w_avg`` is the generator's mean w.
    """
    from facefeat.models.stylegan2 import generator_from_state_dict

    wa = None
    if w_avg is not None and w_avg.device.type != "meta":
        wa = w_avg.detach().float().cpu()
        wa = wa.mean(0) if wa.dim() == 2 else wa.reshape(-1)
    return generator_from_state_dict(state_dict, layout="rosinality", device=device, w_avg=wa,
                                     resolution=resolution, source=source)


def _rosinality_shape(key: str, t: torch.Tensor) -> torch.Tensor:
    """A facefeat generator tensor reshaped as rosinality's module stores it."""
    if key == "input.input" or key.endswith(".conv.weight"):
        return t.unsqueeze(0)
    if key.endswith(".noise.weight"):
        return t.reshape(1)
    if re.match(r"^(to_rgb1|to_rgbs\.\d+)\.bias$", key):  # the ToRGB bias itself, not its modulation's
        return t.reshape(1, -1, 1, 1)
    if key.startswith("noises."):
        return t.reshape(1, 1, *t.shape[-2:])
    return t


def rosinality_decoder_state_dict(generator: nn.Module) -> dict[str, torch.Tensor]:
    """A facefeat StyleGAN2 ``Generator`` as a rosinality-layout state_dict (e4e's ``decoder.*``).

    The inverse of the rosinality key map used for loading (every key, rosinality's shapes,
    the blur kernels rebuilt from the config's filter), so ``save_e4e_checkpoint(...,
    decoder_state_dict=rosinality_decoder_state_dict(G))`` writes a file whose decoder loads
    back (:func:`default_decoder_loader`) into the same network.

    Raises
    ------
    ModelError
        For a generator rosinality's layout cannot express (``z_dim != w_dim``, mapping width
        or learning-rate multiplier other than rosinality's, a ``conv_clamp``, float16 layers).
    """
    from facefeat.models.stylegan2.layouts import generator_entries
    from facefeat.models.stylegan2.ops import make_filter

    cfg = generator.config
    if (cfg.z_dim != cfg.w_dim or cfg.conv_clamp is not None or cfg.num_fp16_res
            or cfg.mapping_features not in (None, cfg.w_dim) or cfg.mapping_lr_multiplier != 0.01):
        raise ModelError(
            f"this generator cannot be written in rosinality's layout (e4e's decoder): it needs z_dim == w_dim "
            f"(got {cfg.z_dim}, {cfg.w_dim}), mapping layers of width w_dim (got {cfg.mapping_features}) with "
            f"lr multiplier 0.01 (got {cfg.mapping_lr_multiplier}), no conv_clamp (got {cfg.conv_clamp}) and no "
            f"float16 layers (got num_fp16_res={cfg.num_fp16_res}). Save the encoder without a decoder and pass "
            f"the generator file separately."
        )
    sd = generator.state_dict()
    out: dict[str, torch.Tensor] = {}
    for e in generator_entries(cfg, "rosinality"):
        if e.dst is None:
            out[e.src] = make_filter(cfg.resample_filter) * e.gain
        else:
            out[e.src] = _rosinality_shape(e.src, sd[e.dst].detach().cpu().clone())
    return out


@dataclass(frozen=True)
class E4EHeader:
    """What an e4e checkpoint declares, read without building or loading any network.

    Attributes
    ----------
    path : Path
    n_styles, resolution, input_size : int
        Encoder W+ rows, the resolution of the generator it belongs to, its input side.
    style_dim : int
        Width of each W+ row (512 for e4e), read from the weights.
    latent_avg_shape : tuple of int or None
        None when the file has no ``latent_avg``.
    decoder : dict or None
        ``{"resolution", "w_dim", "num_ws"}`` of the bundled decoder; None without one.
    opts : dict
    """

    path: Path
    n_styles: int
    resolution: int
    input_size: int
    latent_avg_shape: tuple[int, ...] | None
    decoder: dict[str, int] | None
    opts: dict[str, Any] = field(default_factory=dict)
    style_dim: int = STYLE_DIM

    @property
    def has_latent_avg(self) -> bool:
        return self.latent_avg_shape is not None


_HEADER_CACHE: dict[tuple, E4EHeader] = {}


def read_e4e_header(path: str | os.PathLike) -> E4EHeader:
    """Encoder shape, ``latent_avg`` presence and bundled-decoder shape of an e4e checkpoint.

    The file is memory-mapped and the encoder keys are checked strictly on the ``meta``
    device, so this is cheap even for the 1.2 GB official file and needs no memory for the
    weights; cached per process (path, size, mtime).

    Raises
    ------
    ModelError
        Everything :func:`load_e4e` raises for the file except a missing ``latent_avg``
        (reported as ``latent_avg_shape=None``), plus a decoder that is not a StyleGAN2
        generator or disagrees with the encoder's style count.
    """
    path = Path(path)
    if path.is_file():
        st = path.stat()
        key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
        if key in _HEADER_CACHE:
            return _HEADER_CACHE[key]
    else:
        key = None
    ckpt = read_checkpoint(path, mmap=True)
    la = ckpt.get("latent_avg")
    placeholder = torch.zeros(STYLE_DIM, device="meta") if la is None else None
    ck = e4e_from_checkpoint(ckpt, source=str(path), path=path, device="meta", latent_avg=placeholder)
    decoder = None
    if ck.decoder_state_dict:
        from facefeat.models.stylegan2 import infer_generator_config

        cfg = infer_generator_config(ck.decoder_state_dict, "rosinality", source=f"{path} [decoder]")
        decoder = {"resolution": cfg.img_resolution, "w_dim": cfg.w_dim, "num_ws": cfg.num_ws}
        check_num_ws(ck.n_styles, cfg.num_ws, source=f"e4e encoder {path} (its own decoder)")
    header = E4EHeader(path=path, n_styles=ck.n_styles, resolution=ck.resolution, input_size=ck.encoder.input_size,
                       latent_avg_shape=None if la is None else tuple(la.shape), decoder=decoder, opts=ck.opts,
                       style_dim=int(ck.encoder.styles[0].linear.weight.shape[0]))
    if key is not None:
        _HEADER_CACHE[key] = header
    return header


def check_generator_compat(header: E4EHeader, *, num_ws: int, w_dim: int, generator: str) -> None:
    """Raise :class:`ModelError` unless the encoder of ``header`` can drive the generator.

    The message names both files and the fix. Checks the W+ row count (``n_styles`` against
    ``num_ws``) and the latent width (``style_dim``, 512 for e4e, against ``w_dim``).
    """
    fix = ("Use an encoder trained for this generator (facefeat train encoder --generator ...), or the "
           "generator the encoder was trained with.")
    if header.n_styles != num_ws:
        raise ModelError(
            f"e4e encoder {header.path} produces {header.n_styles} W+ rows (a {header.resolution} px generator) but "
            f"the generator {generator} takes num_ws={num_ws}. {fix}"
        )
    if w_dim != header.style_dim:
        raise ModelError(
            f"e4e encoder {header.path} produces {header.style_dim}-wide latents but the generator {generator} has "
            f"w_dim={w_dim}. {fix}"
        )


def missing_latent_avg_error(path: str | os.PathLike, *, where: str) -> ModelError:
    """The error for an encoder file without ``latent_avg`` (``where`` names the config key)."""
    return ModelError(
        f"{where}: e4e checkpoint {path} has no 'latent_avg'. e4e codes are offsets from the average latent of "
        f"the generator the encoder was trained with, so they cannot be used without it. Fix: load it with "
        f"facefeat.models.e4e.load_e4e(path, latent_avg=G.mean_w()) using that generator G and write it back with "
        f"save_e4e_checkpoint(path, ck.encoder, latent_avg=ck.latent_avg, decoder_state_dict=ck.decoder_state_dict) "
        f"(latent_avg=torch.zeros(512) if it was trained without start_from_latent_avg)."
    )
