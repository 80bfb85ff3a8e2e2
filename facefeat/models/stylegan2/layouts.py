"""Key mappings between the official StyleGAN2 weight layouts and facefeat's network.

Two layouts are supported, each as one table of entries built from a config:

* ``"rosinality"`` (rosinality/stylegan2-pytorch ``model.py``): ``style.1..n``, ``input.input``,
  ``conv1``, ``to_rgb1``, ``convs.i``, ``to_rgbs.i``, ``noises.noise_i``; D ``convs.0`` (fromrgb),
  ``convs.i`` (ResBlock), ``final_conv``, ``final_linear``.
* ``"nvidia"`` (NVlabs/stylegan2-ada-pytorch ``training/networks.py``): ``mapping.fc*``,
  ``mapping.w_avg``, ``synthesis.bR.{const,conv0,conv1,torgb}``; D ``bR.{fromrgb,conv0,conv1,skip}``,
  ``b4.{conv,fc,out}``.

Every source key must be named by an entry and every entry must find its key: otherwise a
:class:`~facefeat.errors.ModelError` lists the missing and unexpected keys. Entries either
copy a tensor (reshaped where the layouts differ: ``[1,O,I,k,k]`` vs ``[O,I,k,k]``, ToRGB bias
``[1,3,1,1]`` vs ``[3]``, noise strength ``[1]`` vs ``[]``, noise maps ``[1,1,r,r]`` vs
``[r,r]``) or *check* a stored FIR filter against the config (rosinality stores the upsampling
filters times 4, NVIDIA stores every filter normalized; the network derives the filter from its
config, so the factor is never applied twice).

The config (channel widths included) is inferred from tensor shapes
(:func:`infer_generator_config`, :func:`infer_discriminator_config`); values that shapes cannot
show (``conv_clamp``, ``mbstd_group_size``, ...) come from the file where it states them
(NVIDIA ``init_kwargs``) or from the layout's fixed defaults.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from facefeat.errors import ModelError
from facefeat.models.stylegan2.config import DEFAULT_FILTER, DiscriminatorConfig, GeneratorConfig
from facefeat.models.stylegan2.networks import Discriminator, Generator
from facefeat.models.stylegan2.ops import make_filter

LAYOUTS = ("rosinality", "nvidia", "facefeat")
_MAX_LISTED = 25


@dataclass(frozen=True)
class Entry:
    """One source key: copied to ``dst`` (reshaped to the target shape), or, with
    ``dst=None``, a stored FIR filter checked against ``make_filter(taps) * gain``."""

    src: str
    dst: str | None
    gain: float = 1.0


# --------------------------------------------------------------------------------------------
# Entry tables
# --------------------------------------------------------------------------------------------

def _layer_pairs(cfg: GeneratorConfig) -> list[tuple[int, str]]:
    """(resolution, facefeat layer prefix) of every synthesis conv in noise order."""
    out = [(4, "synthesis.b4.conv1")]
    for res in cfg.block_resolutions[1:]:
        out += [(res, f"synthesis.b{res}.conv0"), (res, f"synthesis.b{res}.conv1")]
    return out


def generator_entries(cfg: GeneratorConfig, layout: str) -> list[Entry]:
    """Every key a ``layout`` generator state_dict of this config holds, with its target."""
    e: list[Entry] = []
    if layout == "facefeat":
        return [Entry(k, k) for k in Generator(cfg, device="meta").state_dict()]
    if layout == "nvidia":
        for res in cfg.block_resolutions:
            b = f"synthesis.b{res}"
            if res == 4:
                e.append(Entry(f"{b}.const", f"{b}.const"))
            e.append(Entry(f"{b}.resample_filter", None))
            for conv in (["conv1"] if res == 4 else ["conv0", "conv1"]):
                p = f"{b}.{conv}"
                for name in ("weight", "noise_strength", "bias", "noise_const", "affine.weight", "affine.bias"):
                    e.append(Entry(f"{p}.{name}", f"{p}.{name}"))
                e.append(Entry(f"{p}.resample_filter", None))
            for name in ("weight", "bias", "affine.weight", "affine.bias"):
                e.append(Entry(f"{b}.torgb.{name}", f"{b}.torgb.{name}"))
        e.append(Entry("mapping.w_avg", "mapping.w_avg"))
        for i in range(cfg.mapping_layers):
            e += [Entry(f"mapping.fc{i}.weight", f"mapping.fc{i}.weight"),
                  Entry(f"mapping.fc{i}.bias", f"mapping.fc{i}.bias")]
        return e
    if layout == "rosinality":
        for i in range(cfg.mapping_layers):
            e += [Entry(f"style.{i + 1}.weight", f"mapping.fc{i}.weight"),
                  Entry(f"style.{i + 1}.bias", f"mapping.fc{i}.bias")]
        e.append(Entry("input.input", "synthesis.b4.const"))
        layers = _layer_pairs(cfg)
        for idx, (res, dst) in enumerate(layers):
            src = "conv1" if idx == 0 else f"convs.{idx - 1}"
            e += [Entry(f"{src}.conv.weight", f"{dst}.weight"),
                  Entry(f"{src}.conv.modulation.weight", f"{dst}.affine.weight"),
                  Entry(f"{src}.conv.modulation.bias", f"{dst}.affine.bias"),
                  Entry(f"{src}.noise.weight", f"{dst}.noise_strength"),
                  Entry(f"{src}.activate.bias", f"{dst}.bias"),
                  Entry(f"noises.noise_{idx}", f"{dst}.noise_const")]
            if dst.endswith("conv0"):
                e.append(Entry(f"{src}.conv.blur.kernel", None, gain=4.0))
        for k, res in enumerate(cfg.block_resolutions):
            src = "to_rgb1" if res == 4 else f"to_rgbs.{k - 1}"
            dst = f"synthesis.b{res}.torgb"
            e += [Entry(f"{src}.bias", f"{dst}.bias"),
                  Entry(f"{src}.conv.weight", f"{dst}.weight"),
                  Entry(f"{src}.conv.modulation.weight", f"{dst}.affine.weight"),
                  Entry(f"{src}.conv.modulation.bias", f"{dst}.affine.bias")]
            if res > 4:
                e.append(Entry(f"{src}.upsample.kernel", None, gain=4.0))
        return e
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


def discriminator_entries(cfg: DiscriminatorConfig, layout: str) -> list[Entry]:
    """Every key a ``layout`` discriminator state_dict of this config holds, with its target."""
    e: list[Entry] = []
    if layout == "facefeat":
        return [Entry(k, k) for k in Discriminator(cfg, device="meta").state_dict()]
    top = cfg.img_resolution
    if layout == "nvidia":
        for res in cfg.block_resolutions:
            b = f"b{res}"
            e.append(Entry(f"{b}.resample_filter", None))
            convs = (["fromrgb"] if res == top else []) + ["conv0", "conv1"]
            for c in convs:
                e += [Entry(f"{b}.{c}.weight", f"{b}.{c}.weight"), Entry(f"{b}.{c}.bias", f"{b}.{c}.bias"),
                      Entry(f"{b}.{c}.resample_filter", None)]
            e += [Entry(f"{b}.skip.weight", f"{b}.skip.weight"), Entry(f"{b}.skip.resample_filter", None)]
        e += [Entry("b4.conv.weight", "b4.conv.weight"), Entry("b4.conv.bias", "b4.conv.bias"),
              Entry("b4.conv.resample_filter", None)]
        for n in ("fc", "out"):
            e += [Entry(f"b4.{n}.weight", f"b4.{n}.weight"), Entry(f"b4.{n}.bias", f"b4.{n}.bias")]
        return e
    if layout == "rosinality":
        e += [Entry("convs.0.0.weight", f"b{top}.fromrgb.weight"), Entry("convs.0.1.bias", f"b{top}.fromrgb.bias")]
        for j, res in enumerate(cfg.block_resolutions, start=1):
            b = f"b{res}"
            e += [Entry(f"convs.{j}.conv1.0.weight", f"{b}.conv0.weight"),
                  Entry(f"convs.{j}.conv1.1.bias", f"{b}.conv0.bias"),
                  Entry(f"convs.{j}.conv2.0.kernel", None),
                  Entry(f"convs.{j}.conv2.1.weight", f"{b}.conv1.weight"),
                  Entry(f"convs.{j}.conv2.2.bias", f"{b}.conv1.bias"),
                  Entry(f"convs.{j}.skip.0.kernel", None),
                  Entry(f"convs.{j}.skip.1.weight", f"{b}.skip.weight")]
        e += [Entry("final_conv.0.weight", "b4.conv.weight"), Entry("final_conv.1.bias", "b4.conv.bias"),
              Entry("final_linear.0.weight", "b4.fc.weight"), Entry("final_linear.0.bias", "b4.fc.bias"),
              Entry("final_linear.1.weight", "b4.out.weight"), Entry("final_linear.1.bias", "b4.out.bias")]
        return e
    raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")


# --------------------------------------------------------------------------------------------
# Layout detection and config inference
# --------------------------------------------------------------------------------------------

def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    if len(keys) > _MAX_LISTED:
        return ", ".join(keys[:_MAX_LISTED]) + f", ... ({len(keys) - _MAX_LISTED} more)"
    return ", ".join(keys)


def detect_layout(keys: Iterable[str], *, kind: str) -> str | None:
    """The layout of a ``kind`` ("generator" or "discriminator") state_dict judged from its
    keys: ``"rosinality"``, ``"nvidia"`` or None (neither)."""
    keys = set(keys)
    if kind == "generator":
        if "style.1.weight" in keys or "input.input" in keys:
            return "rosinality"
        if "mapping.fc0.weight" in keys and "synthesis.b4.torgb.affine.bias" in keys:
            return "nvidia"
    else:
        if "final_conv.0.weight" in keys or "convs.0.0.weight" in keys:
            return "rosinality"
        if "b4.conv.weight" in keys and "b4.out.weight" in keys:
            return "nvidia"
    return None


def _shape(sd: Mapping[str, Any], key: str, source: str, what: str) -> tuple[int, ...]:
    if key not in sd:
        raise ModelError(f"{source}: not a StyleGAN2 {what}: key {key!r} is missing")
    return tuple(sd[key].shape)


def _indices(keys: Iterable[str], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.fullmatch(k))})


def taps_from_filter(f2d: torch.Tensor, *, source: str, key: str) -> tuple[float, ...]:
    """1-D taps of a stored separable 2-D FIR filter (any scale); integers where they are."""
    f = f2d.detach().to("cpu", torch.float64)
    if f.ndim != 2 or f.shape[0] != f.shape[1] or float(f.sum()) == 0:
        raise ModelError(f"{source}: {key} is not a square FIR filter (shape {list(f.shape)})")
    f = f / f.sum()
    taps = f.sum(dim=1)
    if not torch.allclose(torch.outer(taps, taps), f, atol=1e-6):
        raise ModelError(f"{source}: {key} is not a separable filter; only separable FIR filters are supported")
    if float(taps[0]) > 0:
        taps = taps / taps[0]
    rounded = taps.round()
    if torch.allclose(taps, rounded, atol=1e-5):
        taps = rounded
    return tuple(float(t) for t in taps)


def _filter_taps(sd: Mapping[str, Any], entries_keys: list[tuple[str, float]], source: str) -> tuple[float, ...]:
    for key, _gain in entries_keys:
        t = sd.get(key)
        if isinstance(t, torch.Tensor) and t.device.type != "meta":
            return taps_from_filter(t, source=source, key=key)
    return DEFAULT_FILTER


def infer_generator_config(sd: Mapping[str, Any], layout: str, *, source: str = "state_dict",
                           init_kwargs: Mapping[str, Any] | None = None) -> GeneratorConfig:
    """Build the :class:`GeneratorConfig` a ``layout`` state_dict was made with, from its shapes.

    ``init_kwargs`` (NVIDIA pickles) supply ``conv_clamp``, ``num_fp16_res`` and the mapping
    ``lr_multiplier``, and are checked against the shapes.
    """
    what = f"{layout} generator"
    keys = list(sd)
    if layout == "rosinality":
        mlp = _indices(keys, r"style\.(\d+)\.weight")
        if not mlp or mlp != list(range(1, len(mlp) + 1)):
            raise ModelError(f"{source}: not a StyleGAN2 {what}: expected style.1..n.weight, found indices {mlp}")
        w_dim, z_dim = _shape(sd, "style.1.weight", source, what)[0], _shape(sd, "style.1.weight", source, what)[1]
        n_up = len(_indices(keys, r"to_rgbs\.(\d+)\.conv\.weight"))
        res = 4 * 2 ** n_up
        channels = {4: _shape(sd, "input.input", source, what)[1]}
        for k in range(n_up):
            channels[8 * 2 ** k] = _shape(sd, f"convs.{2 * k}.conv.weight", source, what)[1]
        img_channels = _shape(sd, "to_rgb1.conv.weight", source, what)[1]
        fkeys = [(f"convs.{2 * k}.conv.blur.kernel", 4.0) for k in range(n_up)]
        return GeneratorConfig(z_dim=z_dim, w_dim=w_dim, img_resolution=res, channels=channels,
                               img_channels=img_channels, mapping_layers=len(mlp),
                               resample_filter=_filter_taps(sd, fkeys, source))
    if layout == "nvidia":
        if any(k.startswith("mapping.embed.") for k in keys):
            raise ModelError(f"{source}: conditional StyleGAN2 generators (c_dim > 0, mapping.embed) are not "
                             f"supported; use an unconditional network")
        fcs = _indices(keys, r"mapping\.fc(\d+)\.weight")
        if not fcs or fcs != list(range(len(fcs))):
            raise ModelError(f"{source}: not a StyleGAN2 {what}: expected mapping.fc0..n.weight, found {fcs}")
        z_dim = _shape(sd, "mapping.fc0.weight", source, what)[1]
        w_dim = _shape(sd, f"mapping.fc{fcs[-1]}.weight", source, what)[0]
        hidden = _shape(sd, "mapping.fc0.weight", source, what)[0] if len(fcs) > 1 else w_dim
        resolutions = _indices(keys, r"synthesis\.b(\d+)\.torgb\.weight")
        if not resolutions:
            raise ModelError(f"{source}: not a StyleGAN2 {what}: no synthesis.bR.torgb.weight keys")
        res = resolutions[-1]
        channels = {r: _shape(sd, f"synthesis.b{r}.conv1.weight", source, what)[0] for r in resolutions}
        img_channels = _shape(sd, f"synthesis.b{res}.torgb.weight", source, what)[0]
        kw = dict(init_kwargs or {})
        syn = dict(kw.get("synthesis_kwargs") or {})
        mkw = dict(kw.get("mapping_kwargs") or {})
        _check_stated(source, "G", kw, {"z_dim": z_dim, "w_dim": w_dim, "img_resolution": res,
                                        "img_channels": img_channels, "c_dim": 0})
        arch = syn.get("architecture", "skip")
        if arch != "skip":
            raise ModelError(f"{source}: synthesis architecture {arch!r} is not supported (only 'skip', "
                             f"the StyleGAN2 config-e/f generator)")
        fkeys = [("synthesis.b4.resample_filter", 1.0)]
        try:
            return GeneratorConfig(
                z_dim=z_dim, w_dim=w_dim, img_resolution=res, channels=channels, img_channels=img_channels,
                mapping_layers=len(fcs), mapping_features=None if hidden == w_dim else hidden,
                mapping_lr_multiplier=float(mkw.get("lr_multiplier", 0.01)),
                resample_filter=_filter_taps(sd, fkeys, source),
                conv_clamp=None if syn.get("conv_clamp") is None else float(syn["conv_clamp"]),
                num_fp16_res=int(syn.get("num_fp16_res", 0)))
        except ValueError as exc:
            raise ModelError(f"{source}: not a StyleGAN2 {what}: {exc}") from exc
    raise ValueError(f"layout must be 'rosinality' or 'nvidia', got {layout!r}")


def infer_discriminator_config(sd: Mapping[str, Any], layout: str, *, source: str = "state_dict",
                               init_kwargs: Mapping[str, Any] | None = None) -> DiscriminatorConfig:
    """Build the :class:`DiscriminatorConfig` of a ``layout`` state_dict from its shapes."""
    what = f"{layout} discriminator"
    keys = list(sd)
    if layout == "rosinality":
        blocks = _indices(keys, r"convs\.(\d+)\.conv2\.1\.weight")
        if not blocks or blocks != list(range(1, len(blocks) + 1)):
            raise ModelError(f"{source}: not a StyleGAN2 {what}: expected convs.1..n ResBlocks, found {blocks}")
        res = 4 * 2 ** len(blocks)
        top = _shape(sd, "convs.0.0.weight", source, what)
        channels = {res: top[0]}
        for j in blocks:
            channels[res // 2 ** j] = _shape(sd, f"convs.{j}.conv2.1.weight", source, what)[0]
        fc = _shape(sd, "final_conv.0.weight", source, what)
        return DiscriminatorConfig(img_resolution=res, channels=channels, img_channels=top[1],
                                   mbstd_group_size=4, mbstd_num_channels=fc[1] - fc[0],
                                   resample_filter=_filter_taps(sd, [("convs.1.conv2.0.kernel", 1.0)], source))
    if layout == "nvidia":
        if any(k.startswith("mapping.") for k in keys):
            raise ModelError(f"{source}: conditional StyleGAN2 discriminators (c_dim > 0) are not supported")
        resolutions = _indices(keys, r"b(\d+)\.conv1\.weight")
        if not resolutions:
            raise ModelError(f"{source}: not a StyleGAN2 {what}: no bR.conv1.weight keys")
        res = resolutions[-1]
        top = _shape(sd, f"b{res}.fromrgb.weight", source, what)
        channels = {r: _shape(sd, f"b{r}.conv1.weight", source, what)[1] for r in resolutions}
        conv = _shape(sd, "b4.conv.weight", source, what)
        channels[4] = conv[0]
        kw = dict(init_kwargs or {})
        ep = dict(kw.get("epilogue_kwargs") or {})
        _check_stated(source, "D", kw, {"img_resolution": res, "img_channels": top[1], "c_dim": 0})
        arch = kw.get("architecture", "resnet")
        if arch != "resnet":
            raise ModelError(f"{source}: discriminator architecture {arch!r} is not supported (only 'resnet')")
        mbstd_nc = int(ep.get("mbstd_num_channels", conv[1] - conv[0]))
        if mbstd_nc != conv[1] - conv[0]:
            raise ModelError(f"{source}: mbstd_num_channels={mbstd_nc} disagrees with b4.conv.weight {list(conv)}")
        gs = ep.get("mbstd_group_size", 4)
        return DiscriminatorConfig(img_resolution=res, channels=channels, img_channels=top[1],
                                   mbstd_group_size=None if gs is None else int(gs), mbstd_num_channels=mbstd_nc,
                                   resample_filter=_filter_taps(sd, [(f"b{res}.resample_filter", 1.0)], source),
                                   conv_clamp=None if kw.get("conv_clamp") is None else float(kw["conv_clamp"]),
                                   num_fp16_res=int(kw.get("num_fp16_res", 0)))
    raise ValueError(f"layout must be 'rosinality' or 'nvidia', got {layout!r}")


def _check_stated(source: str, name: str, kw: Mapping[str, Any], inferred: Mapping[str, Any]) -> None:
    """Values a pickle states in ``init_kwargs`` must agree with the tensor shapes."""
    for key, value in inferred.items():
        if key in kw and kw[key] is not None and kw[key] != value:
            if key == "c_dim":
                raise ModelError(f"{source}: {name} is conditional (c_dim={kw[key]}); only unconditional "
                                 f"StyleGAN2 networks are supported")
            raise ModelError(f"{source}: {name} init_kwargs say {key}={kw[key]!r} but the weights give {value!r}")


# --------------------------------------------------------------------------------------------
# Strict mapping
# --------------------------------------------------------------------------------------------

def map_state_dict(sd: Mapping[str, torch.Tensor], entries: list[Entry], target: Mapping[str, torch.Tensor], *,
                   taps: tuple[float, ...], source: str, what: str,
                   optional_targets: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Apply ``entries`` to ``sd`` strictly; return a state_dict keyed like ``target``.

    Raises ModelError listing missing and unexpected keys, shape mismatches and stored filters
    that disagree with ``taps``. Targets in ``optional_targets`` may stay unfilled.
    """
    expected = {e.src for e in entries}
    missing = sorted(expected - set(sd))
    unexpected = sorted(set(sd) - expected)
    if missing or unexpected:
        parts = [f"{source}: the {what} keys do not map onto the network (strict loading)."]
        if missing:
            parts.append(f"Missing ({len(missing)}): {_listing(missing)}.")
        if unexpected:
            parts.append(f"Unexpected ({len(unexpected)}): {_listing(unexpected)}.")
        parts.append("The file is not a StyleGAN2 network of this layout, or a different architecture/config; "
                     "check that it is the right file and the right network name.")
        raise ModelError(" ".join(parts))
    out: dict[str, torch.Tensor] = {}
    bad: list[str] = []
    filt = make_filter(taps)
    for e in entries:
        t = sd[e.src]
        if not isinstance(t, torch.Tensor):
            raise ModelError(f"{source}: {e.src} is a {type(t).__name__}, not a tensor")
        if e.dst is None:
            if t.device.type == "meta":
                continue
            ref = filt * e.gain
            if tuple(t.shape) != tuple(ref.shape) or not torch.allclose(t.detach().float().cpu(), ref, atol=1e-6,
                                                                        rtol=1e-5):
                raise ModelError(f"{source}: stored filter {e.src} ({t.detach().float().cpu().flatten().tolist()}) "
                                 f"is not the config's filter {list(taps)} x {e.gain:g}")
            continue
        want = tuple(target[e.dst].shape)
        if t.numel() != math.prod(want) or [d for d in t.shape if d != 1] != [d for d in want if d != 1]:
            bad.append(f"{e.src} {list(t.shape)} -> {e.dst} {list(want)}")
            continue
        out[e.dst] = t.detach().reshape(want)
    if bad:
        raise ModelError(f"{source}: shape mismatch while mapping the {what}: {_listing(bad)}")
    unfilled = sorted(set(target) - set(out) - set(optional_targets))
    if unfilled:
        raise ModelError(f"{source}: the {what} leaves network keys unfilled: {_listing(unfilled)}")
    return out


def _materialize(module: nn.Module, sd: Mapping[str, torch.Tensor], device: torch.device | str) -> nn.Module:
    """Load ``sd`` into a module built on the meta device (no random init), then rebuild the
    non-persistent filter buffers on ``device``."""
    sd = {k: (v.to(device=device, dtype=torch.float32) if v.device.type != "meta" else v) for k, v in sd.items()}
    missing, unexpected = module.load_state_dict(sd, strict=False, assign=True)
    still_meta = [n for n, p in module.named_parameters() if p.device.type == "meta"]
    still_meta += [n for n, b in module.named_buffers()
                   if b.device.type == "meta" and not n.endswith("resample_filter")]
    if unexpected or (still_meta and torch.device(device).type != "meta"):
        raise ModelError(f"internal: unexpected {unexpected}, unfilled {still_meta}")
    for mod in module.modules():
        if "resample_filter" in mod._buffers and mod._buffers["resample_filter"].device.type == "meta":
            cfg = module.config
            mod._buffers["resample_filter"] = make_filter(cfg.resample_filter, device=device)
    return module


def generator_from_state_dict(sd: Mapping[str, torch.Tensor], *, layout: str | None = None,
                              config: GeneratorConfig | None = None, device: torch.device | str = "cpu",
                              w_avg: torch.Tensor | None = None, init_kwargs: Mapping[str, Any] | None = None,
                              source: str = "state_dict", resolution: int | None = None,
                              w_avg_samples: int = 10000, w_avg_seed: int = 0) -> Generator:
    """Build a :class:`Generator` from an official (or facefeat) state_dict, strictly.

    Parameters
    ----------
    sd : mapping of str to Tensor
    layout : {"rosinality", "nvidia", "facefeat"}, optional
        Detected from the keys when omitted.
    config : GeneratorConfig, optional
        Inferred from the shapes when omitted.
    w_avg : Tensor, optional
        The average w for truncation when the state_dict has none (rosinality ``latent_avg``).
        Without it a rosinality generator gets ``G.mean_w(w_avg_samples, w_avg_seed)``.
    resolution : int, optional
        Expected ``img_resolution``; a different one raises ModelError.

    Also usable as e4e's ``decoder_loader(state_dict, resolution=..., device=...)``.
    """
    if layout is None:
        layout = detect_layout(sd.keys(), kind="generator")
        if layout is None:
            raise ModelError(f"{source}: not a StyleGAN2 generator state_dict (neither rosinality keys such as "
                             f"'style.1.weight' nor NVIDIA keys such as 'mapping.fc0.weight'; first keys: "
                             f"{_listing(list(sd)[:8])})")
    if config is None:
        if layout == "facefeat":
            raise ValueError("a facefeat-layout state_dict needs its config")
        config = infer_generator_config(sd, layout, source=source, init_kwargs=init_kwargs)
    if resolution is not None:
        check_resolution(config.img_resolution, resolution, source=source)
    G = Generator(config, device="meta")
    target = G.state_dict()
    optional = {"mapping.w_avg"} if layout == "rosinality" else set()
    mapped = map_state_dict(sd, generator_entries(config, layout), target, taps=config.resample_filter,
                            source=source, what=f"{layout} generator", optional_targets=optional)
    if "mapping.w_avg" not in mapped:
        mapped["mapping.w_avg"] = (torch.zeros(config.w_dim) if w_avg is None
                                   else torch.as_tensor(w_avg, dtype=torch.float32).reshape(-1))
        if mapped["mapping.w_avg"].numel() != config.w_dim:
            raise ModelError(f"{source}: latent_avg has {mapped['mapping.w_avg'].numel()} values, expected "
                             f"w_dim={config.w_dim}")
    G = _materialize(G, mapped, device)
    if layout == "rosinality":
        if w_avg is not None:
            G.w_avg_source = "latent_avg"
        elif torch.device(device).type != "meta":
            G.mapping.w_avg.copy_(G.mean_w(w_avg_samples, seed=w_avg_seed))
            G.w_avg_source = f"mean_w(n={w_avg_samples}, seed={w_avg_seed})"
    else:
        G.w_avg_source = "mapping.w_avg"
    return G.eval().requires_grad_(False)


def discriminator_from_state_dict(sd: Mapping[str, torch.Tensor], *, layout: str | None = None,
                                  config: DiscriminatorConfig | None = None, device: torch.device | str = "cpu",
                                  init_kwargs: Mapping[str, Any] | None = None,
                                  source: str = "state_dict") -> Discriminator:
    """Build a :class:`Discriminator` from an official (or facefeat) state_dict, strictly."""
    if layout is None:
        layout = detect_layout(sd.keys(), kind="discriminator")
        if layout is None:
            raise ModelError(f"{source}: not a StyleGAN2 discriminator state_dict (neither rosinality keys such "
                             f"as 'final_conv.0.weight' nor NVIDIA keys such as 'b4.out.weight'; first keys: "
                             f"{_listing(list(sd)[:8])})")
    if config is None:
        if layout == "facefeat":
            raise ValueError("a facefeat-layout state_dict needs its config")
        config = infer_discriminator_config(sd, layout, source=source, init_kwargs=init_kwargs)
    D = Discriminator(config, device="meta")
    mapped = map_state_dict(sd, discriminator_entries(config, layout), D.state_dict(), taps=config.resample_filter,
                            source=source, what=f"{layout} discriminator")
    return _materialize(D, mapped, device).eval().requires_grad_(False)


def check_resolution(actual: int | nn.Module, expected: int, *, source: str = "generator",
                     what: str = "the aligned crop size") -> None:
    """Raise ModelError unless a generator (or a resolution) matches ``expected`` pixels.

    Use it where an aligned face crop meets a generator: projecting a 256 px crop into a
    1024 px generator is a configuration error, not something to resize silently.
    """
    res = int(getattr(actual, "img_resolution", actual))
    if res != int(expected):
        raise ModelError(f"{source}: generator resolution is {res} px but {what} is {expected} px; align faces at "
                         f"{res} px (or use a {expected} px generator)")
