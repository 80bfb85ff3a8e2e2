"""Network configurations of the StyleGAN2 generator and discriminator (config-e/f, skip G,
residual D), with the channel tables of both official code bases.

A config holds everything that shapes the network or changes its output; it is stored as JSON
next to facefeat's safetensors weights and inferred from tensor shapes when an official file
does not state it. Channel widths are an explicit ``{resolution: channels}`` table because
real checkpoints do not always follow the usual formulas.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

#: The 1-D taps of the StyleGAN2 resampling filter (``[1, 3, 3, 1]``, normalized at use).
DEFAULT_FILTER: tuple[float, ...] = (1.0, 3.0, 3.0, 1.0)


def log2_resolution(resolution: int) -> int:
    """``log2(resolution)``; raises ValueError unless it is a power of two >= 4."""
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
    return int(math.log2(resolution))


def num_ws_for_resolution(resolution: int) -> int:
    """W+ rows of a StyleGAN2 generator: ``2 * log2(resolution) - 2`` (18 at 1024 px)."""
    return 2 * log2_resolution(resolution) - 2


def nvidia_channels(resolution: int, *, channel_base: int = 32768, channel_max: int = 512) -> dict[int, int]:
    """NVIDIA's table ``min(channel_base // res, channel_max)`` for res = 4 .. resolution.

    ``channel_base=32768`` is config-f / ``--cfg=stylegan2``, ``16384`` is ``paper256``.
    """
    log2_resolution(resolution)
    res = [2 ** i for i in range(2, log2_resolution(resolution) + 1)]
    return {r: min(channel_base // r, channel_max) for r in res}


def rosinality_channels(resolution: int, *, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's hard-coded table (``channel_multiplier=2`` is config-f)."""
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}
    out = {}
    for r in (2 ** i for i in range(2, log2_resolution(resolution) + 1)):
        if r not in table:
            raise ValueError(f"rosinality's channel table stops at 1024 px; got resolution {resolution}")
        out[r] = table[r] * (channel_multiplier if r >= 64 else 1)
    return out


def _int_keys(channels: Mapping[Any, Any]) -> dict[int, int]:
    return {int(k): int(v) for k, v in sorted(channels.items(), key=lambda kv: int(kv[0]))}


def _check_channels(channels: dict[int, int], resolution: int, what: str) -> None:
    expected = [2 ** i for i in range(2, log2_resolution(resolution) + 1)]
    if sorted(channels) != expected:
        raise ValueError(f"{what}: channels must list resolutions {expected}, got {sorted(channels)}")
    bad = {r: c for r, c in channels.items() if c < 1}
    if bad:
        raise ValueError(f"{what}: channel counts must be positive, got {bad}")


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape and behaviour of a StyleGAN2 generator (skip architecture).

    Attributes
    ----------
    z_dim, w_dim : int
        Latent sizes (512 in the official configs).
    img_resolution : int
        Output side length, a power of two.
    channels : dict[int, int]
        Feature maps per resolution, 4 .. ``img_resolution``.
    img_channels : int
        Output channels (3).
    mapping_layers : int
        Fully connected layers of the mapping network (8 official; rosinality ``n_mlp``).
    mapping_features : int or None
        Width of the hidden mapping layers; None means ``w_dim``.
    mapping_lr_multiplier : float
        Equalized-lr multiplier of the mapping (0.01 in both code bases).
    resample_filter : tuple of float
        1-D taps of the FIR resampling filter.
    conv_clamp : float or None
        Clamp of layer outputs (NVIDIA's official configs: 256; rosinality: None).
    num_fp16_res : int
        NVIDIA's ``num_fp16_res``: with a low-precision compute dtype only the top this-many
        resolutions use it (0 = all blocks). Does not change the weights.
    """

    z_dim: int
    w_dim: int
    img_resolution: int
    channels: dict[int, int]
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_features: int | None = None
    mapping_lr_multiplier: float = 0.01
    resample_filter: tuple[float, ...] = DEFAULT_FILTER
    conv_clamp: float | None = None
    num_fp16_res: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _int_keys(self.channels))
        object.__setattr__(self, "resample_filter", tuple(float(t) for t in self.resample_filter))
        _check_channels(self.channels, self.img_resolution, "GeneratorConfig")
        for name in ("z_dim", "w_dim", "img_channels", "mapping_layers"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"GeneratorConfig.{name} must be >= 1, got {getattr(self, name)!r}")

    @property
    def num_ws(self) -> int:
        return num_ws_for_resolution(self.img_resolution)

    @property
    def num_noise_layers(self) -> int:
        """Synthesis layers that take a noise input (every conv layer): ``num_ws - 1``."""
        return self.num_ws - 1

    @property
    def block_resolutions(self) -> list[int]:
        return [2 ** i for i in range(2, log2_resolution(self.img_resolution) + 1)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> GeneratorConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"GeneratorConfig: unknown fields {unknown}")
        return cls(**dict(d))

    @classmethod
    def nvidia(cls, img_resolution: int, *, z_dim: int = 512, w_dim: int = 512, mapping_layers: int = 8,
               channel_base: int = 32768, channel_max: int = 512, **kw: Any) -> GeneratorConfig:
        """An stylegan2-ada-pytorch config, e.g. ``GeneratorConfig.nvidia(256, channel_base=16384)``
        (``paper256``) or ``GeneratorConfig.nvidia(1024)`` (``stylegan2``/config-f)."""
        return cls(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, mapping_layers=mapping_layers,
                   channels=nvidia_channels(img_resolution, channel_base=channel_base, channel_max=channel_max), **kw)

    @classmethod
    def rosinality(cls, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                   **kw: Any) -> GeneratorConfig:
        """rosinality's ``Generator(size, style_dim, n_mlp, channel_multiplier)``."""
        return cls(z_dim=style_dim, w_dim=style_dim, img_resolution=size, mapping_layers=n_mlp,
                   channels=rosinality_channels(size, channel_multiplier=channel_multiplier), **kw)


@dataclass(frozen=True)
class DiscriminatorConfig:
    """Shape and behaviour of a StyleGAN2 residual discriminator.

    Attributes
    ----------
    img_resolution : int
    channels : dict[int, int]
        Feature maps per resolution, 4 .. ``img_resolution`` (the block at resolution r works
        with ``channels[r]`` and hands ``channels[r // 2]`` to the next one).
    img_channels : int
    mbstd_group_size : int or None
        Minibatch-stddev group (4 rosinality and NVIDIA default; 8 in ``paper256``).
    mbstd_num_channels : int
    resample_filter : tuple of float
    conv_clamp : float or None
    """

    img_resolution: int
    channels: dict[int, int]
    img_channels: int = 3
    mbstd_group_size: int | None = 4
    mbstd_num_channels: int = 1
    resample_filter: tuple[float, ...] = DEFAULT_FILTER
    conv_clamp: float | None = None
    num_fp16_res: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", _int_keys(self.channels))
        object.__setattr__(self, "resample_filter", tuple(float(t) for t in self.resample_filter))
        _check_channels(self.channels, self.img_resolution, "DiscriminatorConfig")

    @property
    def block_resolutions(self) -> list[int]:
        return [2 ** i for i in range(log2_resolution(self.img_resolution), 2, -1)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["channels"] = {str(k): v for k, v in self.channels.items()}
        d["resample_filter"] = list(self.resample_filter)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DiscriminatorConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"DiscriminatorConfig: unknown fields {unknown}")
        return cls(**dict(d))

    @classmethod
    def nvidia(cls, img_resolution: int, *, channel_base: int = 32768, channel_max: int = 512,
               mbstd_group_size: int | None = 4, **kw: Any) -> DiscriminatorConfig:
        return cls(img_resolution=img_resolution, mbstd_group_size=mbstd_group_size,
                   channels=nvidia_channels(img_resolution, channel_base=channel_base, channel_max=channel_max), **kw)

    @classmethod
    def rosinality(cls, size: int, channel_multiplier: int = 2, **kw: Any) -> DiscriminatorConfig:
        return cls(img_resolution=size, channels=rosinality_channels(size, channel_multiplier=channel_multiplier), **kw)
