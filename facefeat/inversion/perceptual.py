"""LPIPS-VGG (Zhang et al., CVPR 2018, version 0.1) in pure PyTorch, from weight files on disk.

Standard LPIPS needs two files that facefeat cannot download for you (no network at run time):

* the ImageNet **VGG16** backbone in torchvision's format (``vgg16-397923af.pth``; keys
  ``features.{0,2,5,...,28}.{weight,bias}``, the ``classifier.*`` keys are ignored);
* the LPIPS **linear heads** of the ``lpips`` package (``lpips/weights/v0.1/vgg.pth``; keys
  ``lin0.model.1.weight`` ... ``lin4.model.1.weight``).

Both are read with ``torch.load(weights_only=True)`` and mapped strictly (every needed key
present with its shape; any key other than the ignored classifier raises). No torchvision
import: the VGG16 feature stack is rebuilt here.

The distance: inputs in [-1, 1] are shifted/scaled by LPIPS's ScalingLayer, VGG16 activations
``relu1_2, relu2_2, relu3_3, relu4_3, relu5_3`` are unit-normalized over channels, their squared
difference is weighted per channel by the linear heads, averaged over space and summed over the
five layers. Images larger than ``max_size`` are area-downsampled first, as NVIDIA's projector
does (VGG was trained at 224 px).

Not supported here: ``stlpips-pytorch`` (shift-tolerant LPIPS). Its wheel ships complete VGG
weights but its modules import torchvision (and IPython, torchsummary) at import time, which
this project does not install.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from facefeat.errors import ModelError

#: torchvision VGG16 ``features`` layout: channel counts, "M" = 2x2 max-pool.
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
                                     512, 512, 512)
#: Channels of the five LPIPS taps (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3).
LPIPS_CHANNELS = (64, 128, 256, 512, 512)
#: LPIPS ScalingLayer constants (inputs in [-1, 1]).
LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)


def _vgg16_conv_indices() -> list[tuple[int, int, int]]:
    """(torchvision ``features`` index, in, out) of every conv up to relu5_3."""
    out, idx, cin = [], 0, 3
    for v in VGG16_CFG:
        if v == "M":
            idx += 1
        else:
            out.append((idx, cin, int(v)))
            cin = int(v)
            idx += 2  # conv + relu
    return out


class VGG16Features(nn.Module):
    """VGG16 convolutions up to relu5_3, returning the five LPIPS taps."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.convs = nn.ModuleDict()
        for idx, cin, cout in _vgg16_conv_indices():
            self.convs[str(idx)] = nn.Conv2d(cin, cout, 3, padding=1, device=device)
        # relu outputs tapped by LPIPS, by torchvision index of the relu
        self.taps = (3, 8, 15, 22, 29)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        idx = 0
        for v in VGG16_CFG:
            if v == "M":
                x = F.max_pool2d(x, 2, 2)
                idx += 1
            else:
                x = F.relu(self.convs[str(idx)](x))
                if idx + 1 in self.taps:
                    feats.append(x)
                idx += 2
        return feats


def _normalize(feat: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    return feat / (feat.square().sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    """LPIPS-VGG distance ``[B]`` between image batches in [-1, 1].

    Build it with :func:`load_lpips_vgg`. Use :meth:`features` once for a fixed target and
    :meth:`distance_from_features` in a loop (what projection does).

    Parameters
    ----------
    max_size : int or None
        Area-downsample inputs larger than this (NVIDIA's projector: 256); None: never.
    """

    def __init__(self, *, max_size: int | None = 256, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.net = VGG16Features(device=device)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False, device=device) for c in LPIPS_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT, device=device).reshape(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE, device=device).reshape(1, 3, 1, 1))
        self.max_size = max_size
        self.provenance: dict[str, Any] = {}

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalized VGG taps of images ``[B, 3, H, W]`` in [-1, 1]."""
        x = x.to(torch.float32)
        if self.max_size is not None and max(x.shape[2:]) > self.max_size:
            x = F.interpolate(x, size=(self.max_size, self.max_size), mode="area")
        x = (x - self.shift) / self.scale
        return [_normalize(f) for f in self.net(x)]

    def distance_from_features(self, fx: list[torch.Tensor], fy: list[torch.Tensor]) -> torch.Tensor:
        """Per-image distance ``[B]`` from two :meth:`features` results (``fy`` may have batch 1)."""
        total = None
        for lin, a, b in zip(self.lins, fx, fy):
            d = lin((a - b).square()).mean(dim=(1, 2, 3))
            total = d if total is None else total + d
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.distance_from_features(self.features(x), self.features(y))


def _load_state(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"{p}: {what} weight file not found")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"{p}: cannot read the {what} weights with torch.load(weights_only=True) "
                         f"({type(exc).__name__}: {str(exc).splitlines()[0]}); the file is truncated, corrupt or "
                         f"not a state_dict") from exc
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ModelError(f"{p}: expected a state_dict of tensors for the {what} weights, got {type(sd).__name__}")
    return sd


def _strict_copy(module_params: dict[str, torch.Tensor], sd: dict[str, torch.Tensor], mapping: dict[str, str],
                 *, path: str | os.PathLike, what: str, ignore_prefixes: tuple[str, ...] = ()) -> None:
    missing = [src for src in mapping if src not in sd]
    unexpected = [k for k in sd if k not in mapping and not k.startswith(ignore_prefixes)]
    if missing or unexpected:
        raise ModelError(f"{path}: not {what} weights: missing keys {missing[:8]}"
                         f"{' ...' if len(missing) > 8 else ''}, unexpected keys {unexpected[:8]}"
                         f"{' ...' if len(unexpected) > 8 else ''}")
    for src, dst in mapping.items():
        want = module_params[dst]
        got = sd[src]
        if tuple(got.shape) != tuple(want.shape):
            raise ModelError(f"{path}: {src} has shape {list(got.shape)}, {what} needs {list(want.shape)}")
        with torch.no_grad():
            want.copy_(got.to(torch.float32))


def load_lpips_vgg(vgg16_path: str | os.PathLike, lin_path: str | os.PathLike, *,
                   device: torch.device | str = "cpu", max_size: int | None = 256) -> LPIPS:
    """Build LPIPS-VGG from torchvision's VGG16 weights and the lpips package's ``vgg.pth``.

    Parameters
    ----------
    vgg16_path : path-like
        torchvision ``vgg16-397923af.pth`` (ImageNet VGG16 state_dict).
    lin_path : path-like
        lpips ``weights/v0.1/vgg.pth`` (the five linear heads).
    device : torch.device or str
    max_size : int or None
        See :class:`LPIPS`.

    Returns
    -------
    LPIPS
        In eval mode with ``requires_grad_(False)``; ``.provenance`` names both files and their
        sha256.

    Raises
    ------
    ModelError
        Missing or unreadable file, wrong or missing keys, wrong shapes.
    """
    from facefeat.io.hashing import sha256_file

    model = LPIPS(max_size=max_size, device="cpu")
    params = dict(model.named_parameters())
    vgg_map = {}
    for idx, _, _ in _vgg16_conv_indices():
        vgg_map[f"features.{idx}.weight"] = f"net.convs.{idx}.weight"
        vgg_map[f"features.{idx}.bias"] = f"net.convs.{idx}.bias"
    _strict_copy(params, _load_state(vgg16_path, "torchvision VGG16"), vgg_map, path=vgg16_path,
                 what="torchvision VGG16", ignore_prefixes=("classifier.",))
    lin_map = {f"lin{i}.model.1.weight": f"lins.{i}.weight" for i in range(len(LPIPS_CHANNELS))}
    _strict_copy(params, _load_state(lin_path, "LPIPS linear-head"), lin_map, path=lin_path,
                 what="LPIPS v0.1 VGG linear-head")
    model.provenance = {"kind": "lpips-vgg-v0.1", "vgg16": str(vgg16_path), "vgg16_sha256": sha256_file(vgg16_path),
                        "lin": str(lin_path), "lin_sha256": sha256_file(lin_path), "max_size": max_size}
    return model.to(device).eval().requires_grad_(False)
