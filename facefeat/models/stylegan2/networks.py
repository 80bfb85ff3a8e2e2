"""StyleGAN2 generator and discriminator (config-e/f) in pure PyTorch.

One implementation serves both official weight layouts (rosinality/stylegan2-pytorch and
NVlabs/stylegan2-ada-pytorch); :mod:`facefeat.models.stylegan2.layouts` maps their keys onto
this module tree. The tree follows NVIDIA's naming (``mapping.fc0``, ``synthesis.b8.conv0``,
``b4.fc``) with NVIDIA's tensor shapes; the FIR filters are derived from the config and are not
part of the state_dict (the loaders check the stored copies instead).

Numerics that both layouts share and that this code reproduces:

* equalized learning rate: runtime scales ``weight * lr_mul / sqrt(fan_in)``, ``bias * lr_mul``;
* modulation ``affine(w)`` with bias init 1, demodulation ``rsqrt(sum w'^2 + 1e-8)``;
* noise (one map, times a per-layer strength) after the modulated conv, before bias and
  ``leaky_relu(0.2) * sqrt(2)``; optional clamp (NVIDIA ``conv_clamp``);
* x2 upsampling conv = stride-2 transposed conv, then the [1,3,3,1] FIR with gain 4 and
  padding (1, 1); ToRGB skip upsampled with ``upfirdn2d(up=2, pad=(2, 1), gain=4)``;
* ToRGB: no demodulation, ``1/sqrt(in_channels)`` on the styles, bias, no activation;
* residual discriminator blocks ``(skip + main) / sqrt(2)``, strided minibatch-stddev groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from facefeat.models.stylegan2.config import DiscriminatorConfig, GeneratorConfig
from facefeat.models.stylegan2.ops import (
    LRELU_GAIN,
    bias_act,
    fir_filter,
    make_filter,
    minibatch_stddev,
    modulated_conv2d,
    normalize_2nd_moment,
    prepare_weight,
    upsample2d,
)

NOISE_MODES = ("random", "const", "none")
IMPLS = ("fast", "reference")


def _factory(device: torch.device | str | None) -> dict:
    return {"device": device, "dtype": torch.float32}


def _randn(*shape: int, device: torch.device | str | None, scale: float = 1.0) -> torch.Tensor:
    """N(0, scale^2) init; on the meta device only the shape (arithmetic on meta tensors
    goes through Python reference kernels that import torch._dynamo, seconds of start-up)."""
    t = torch.randn(*shape, **_factory(device)) if torch.device(device or "cpu").type != "meta" else \
        torch.empty(*shape, **_factory(device))
    return t.mul_(scale) if scale != 1.0 and t.device.type != "meta" else t


class FullyConnectedLayer(nn.Module):
    """Equalized-lr linear layer: ``act(x @ (weight * lr_mul / sqrt(in)).T + bias * lr_mul)``."""

    def __init__(self, in_features: int, out_features: int, *, bias_init: float = 0.0,
                 lr_multiplier: float = 1.0, activation: str = "linear", bias: bool = True,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.activation = activation
        self.weight = nn.Parameter(_randn(out_features, in_features, device=device, scale=1.0 / lr_multiplier))
        self.bias = nn.Parameter(torch.full((out_features,), float(bias_init), **_factory(device))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = None if self.bias is None else self.bias.to(x.dtype) * self.bias_gain
        if self.activation == "linear":
            return F.linear(x, w, b)
        return bias_act(F.linear(x, w), b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, act={self.activation}, lr_mul={self.bias_gain}"


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------

class MappingNetwork(nn.Module):
    """z -> w: 2nd-moment normalization, ``num_layers`` lrelu FC layers (lr multiplier 0.01),
    broadcast to ``num_ws`` rows, optional truncation towards ``w_avg``."""

    def __init__(self, z_dim: int, w_dim: int, num_ws: int, num_layers: int = 8,
                 layer_features: int | None = None, lr_multiplier: float = 0.01,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.z_dim, self.w_dim, self.num_ws, self.num_layers = z_dim, w_dim, num_ws, num_layers
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for i in range(num_layers):
            setattr(self, f"fc{i}", FullyConnectedLayer(features[i], features[i + 1], activation="lrelu",
                                                        lr_multiplier=lr_multiplier, device=device))
        self.register_buffer("w_avg", torch.zeros(w_dim, **_factory(device)))

    def embed(self, z: torch.Tensor) -> torch.Tensor:
        """One w per z, ``[B, w_dim]`` (no broadcast, no truncation)."""
        x = normalize_2nd_moment(z.to(torch.float32))
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        return x

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                truncation_latent: torch.Tensor | None = None) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"mapping: z must be [batch, {self.z_dim}], got {list(z.shape)}")
        x = self.embed(z).unsqueeze(1).repeat(1, self.num_ws, 1)
        return truncate(x, truncation_psi, truncation_cutoff,
                        self.w_avg if truncation_latent is None else truncation_latent)


def truncate(ws: torch.Tensor, psi: float = 1.0, cutoff: int | None = None,
             w_avg: torch.Tensor | None = None) -> torch.Tensor:
    """Truncation trick ``w_avg + psi * (w - w_avg)`` on the first ``cutoff`` rows (all if None).

    ``w_avg`` is ``[w_dim]``, ``[1, w_dim]`` (rosinality's ``mean_latent``) or per row
    ``[num_ws, w_dim]``. ``psi == 1`` returns ``ws`` itself.
    """
    if psi == 1:
        return ws
    avg = w_avg.to(ws.dtype)
    if avg.ndim == 2 and avg.shape[0] == 1:
        avg = avg[0]
    if cutoff is None or cutoff >= ws.shape[1]:
        return avg.lerp(ws, psi)
    head_avg = avg if avg.ndim == 1 else avg[:cutoff]
    return torch.cat([head_avg.lerp(ws[:, :cutoff], psi), ws[:, cutoff:]], dim=1)


def style_mix(ws_a: torch.Tensor, ws_b: torch.Tensor, inject_index: int) -> torch.Tensor:
    """Rows ``[0, inject_index)`` from ``ws_a``, the rest from ``ws_b`` (rosinality's
    ``inject_index``, NVIDIA's style mixing ``cutoff``)."""
    return torch.cat([ws_a[:, :inject_index], ws_b[:, inject_index:]], dim=1)


class _PreparedWeightCache:
    """Weight-derived tensors of the fast modulated conv, reused while the weight is frozen.

    Valid as long as the weight's storage, version counter (bumped by every in-place update:
    optimiser steps, ``load_state_dict``), dtype and memory format are unchanged. Bypassed when
    the weight needs gradients, under ``torch.compile`` (there it is recomputed in-graph) and
    for weights created inside ``torch.inference_mode()`` (no version counter).
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.value: tuple[torch.Tensor, torch.Tensor] | None = None

    def get(self, weight: torch.Tensor, *, up: int, dtype: torch.dtype, x: torch.Tensor, demodulate: bool = True,
            ) -> tuple[torch.Tensor, torch.Tensor]:
        cl = x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        fmt = torch.channels_last if cl else torch.contiguous_format
        if (torch.compiler.is_compiling() or (weight.requires_grad and torch.is_grad_enabled())
                or weight.is_inference()):  # inference tensors have no version counter to watch
            return prepare_weight(weight, up=up, dtype=dtype, memory_format=fmt, demodulate=demodulate)
        key = (weight.data_ptr(), weight._version, weight.device, dtype, fmt)
        if key != self.key:
            with torch.no_grad():
                self.value = prepare_weight(weight.detach(), up=up, dtype=dtype, memory_format=fmt,
                                            demodulate=demodulate)
            self.key = key
        return self.value

    def clear(self) -> None:
        self.key = self.value = None

    def __deepcopy__(self, memo: dict) -> _PreparedWeightCache:
        return _PreparedWeightCache()  # a copied module gets fresh weights


class _CachedWeightModule(nn.Module):
    """Drops the prepared-weight cache when ``.to()``, ``.half()``, ... replace the weight."""

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 (nn.Module signature)
        self._prepared.clear()
        return super()._apply(fn, recurse)


class SynthesisLayer(_CachedWeightModule):
    """Modulated 3x3 conv (optionally x2 upsampling) + noise + bias + lrelu*sqrt(2) (+ clamp)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, *, up: int = 1,
                 kernel_size: int = 3, conv_clamp: float | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution, self.up = in_channels, out_channels, resolution, up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0, device=device)
        self.weight = nn.Parameter(_randn(out_channels, in_channels, kernel_size, kernel_size, device=device))
        self.noise_strength = nn.Parameter(torch.zeros((), **_factory(device)))
        self.bias = nn.Parameter(torch.zeros(out_channels, **_factory(device)))
        self.register_buffer("noise_const", _randn(resolution, resolution, device=device))
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self._prepared = _PreparedWeightCache()

    def forward(self, x: torch.Tensor, w: torch.Tensor, resample_filter: torch.Tensor, *,
                noise_mode: str = "const", noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None, impl: str = "fast") -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain  # scale is irrelevant under demodulation
        if noise is not None:
            n = noise.to(torch.float32) * self.noise_strength
        elif noise_mode == "random":
            n = torch.randn((x.shape[0], 1, self.resolution, self.resolution), generator=generator,
                            device=x.device, dtype=torch.float32) * self.noise_strength
        elif noise_mode == "const":
            n = self.noise_const * self.noise_strength
        else:
            n = None
        if impl == "reference":  # textbook order: conv, noise, bias, lrelu, gain, clamp
            x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up,
                                 resample_filter=resample_filter, noise=n, impl=impl)
            return bias_act(x, self.bias, act="lrelu", clamp=self.conv_clamp)
        # lrelu(v + b) * g == lrelu(g * v + g * b) for g > 0: the gain rides on the
        # demodulation coefficients, the noise map and the bias instead of a pass of its own.
        prepared = self._prepared.get(self.weight, up=self.up, dtype=x.dtype, x=x)
        x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=self.up, resample_filter=resample_filter,
                             noise=n, bias=self.bias * LRELU_GAIN, gain=LRELU_GAIN, impl=impl, prepared=prepared)
        return bias_act(x, None, act="lrelu", gain=1.0, clamp=self.conv_clamp, inplace=not torch.is_grad_enabled())

    def extra_repr(self) -> str:
        return f"in={self.in_channels}, out={self.out_channels}, res={self.resolution}, up={self.up}"


class ToRGBLayer(_CachedWeightModule):
    """Modulated 1x1 conv without demodulation (styles scaled by ``1/sqrt(in)``) + bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, *, conv_clamp: float | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0, device=device)
        self.weight = nn.Parameter(_randn(out_channels, in_channels, 1, 1, device=device))
        self.bias = nn.Parameter(torch.zeros(out_channels, **_factory(device)))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self._prepared = _PreparedWeightCache()

    def forward(self, x: torch.Tensor, w: torch.Tensor, *, impl: str = "fast") -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        prepared = (self._prepared.get(self.weight, up=1, dtype=x.dtype, x=x, demodulate=False)
                    if impl == "fast" else None)
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, bias=self.bias, impl=impl, prepared=prepared)
        if self.conv_clamp is not None:
            x = x.clamp_(-self.conv_clamp, self.conv_clamp) if not torch.is_grad_enabled() else \
                x.clamp(-self.conv_clamp, self.conv_clamp)
        return x


class SynthesisBlock(nn.Module):
    """One resolution: (const | upsampling conv0), conv1, ToRGB added to the upsampled skip image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int, *,
                 conv_clamp: float | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.resolution = in_channels, out_channels, resolution
        if in_channels == 0:
            self.const = nn.Parameter(_randn(out_channels, resolution, resolution, device=device))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        conv_clamp=conv_clamp, device=device)
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    device=device)
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp, device=device)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1

    def forward(self, x: torch.Tensor | None, img: torch.Tensor | None, ws: torch.Tensor,
                resample_filter: torch.Tensor, *, dtype: torch.dtype = torch.float32,
                noise_mode: str = "const", noises: Sequence[torch.Tensor | None] = (None, None),
                generator: torch.Generator | None = None, impl: str = "fast",
                memory_format: torch.memory_format = torch.contiguous_format,
                ) -> tuple[torch.Tensor, torch.Tensor]:
        kw = dict(noise_mode=noise_mode, generator=generator, impl=impl)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = x.contiguous(memory_format=memory_format)
            x = self.conv1(x, ws[:, 0], resample_filter, noise=noises[0], **kw)
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, ws[:, 0], resample_filter, noise=noises[0], **kw)
            x = self.conv1(x, ws[:, 1], resample_filter, noise=noises[1], **kw)
        y = self.torgb(x, ws[:, self.num_conv], impl=impl).to(torch.float32)
        if img is not None:
            img = upsample2d(img, resample_filter, impl=impl)
            img = img.add_(y) if not torch.is_grad_enabled() else img + y
        else:
            img = y
        return x, img


class SynthesisNetwork(nn.Module):
    """ws ``[B, num_ws, w_dim]`` -> image ``[B, img_channels, R, R]`` (skip architecture)."""

    def __init__(self, config: GeneratorConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.w_dim, self.img_resolution, self.img_channels = config.w_dim, config.img_resolution, config.img_channels
        self.num_ws = config.num_ws
        self.block_resolutions = config.block_resolutions
        for res in self.block_resolutions:
            in_ch = config.channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, config.channels[res], config.w_dim, res, config.img_channels,
                                   conv_clamp=config.conv_clamp, device=device)
            setattr(self, f"b{res}", block)
        self.register_buffer("resample_filter", make_filter(config.resample_filter, device=device), persistent=False)
        #: Default implementation of the modulated convolutions ("fast" or "reference").
        self.impl = "fast"
        #: Blocks at or above this resolution run in channels_last memory format (faster for
        #: wide images on CPU and GPU); below it, contiguous NCHW (faster for the small,
        #: channel-heavy maps on CPU). ``None``: never.
        self.channels_last_min_res: int | None = 64
        #: CPU only: largest activation (elements) the fast path processes for a whole batch at
        #: once; larger blocks run in chunks of samples, which keeps working sets cache-sized
        #: and avoids page-faulting fresh memory for every huge temporary. ``None``: never.
        self.max_batch_elements: int | None = 1 << 21
        # First W row (= first noise input) of each block: b4 -> 0, b8 -> 1, b16 -> 3, ...
        self._w_index = {r: max(0, 2 * i - 1) for i, r in enumerate(self.block_resolutions)}
        if config.num_fp16_res > 0:
            self.lowp_min_resolution = max(2 ** (len(self.block_resolutions) + 2 - config.num_fp16_res), 8)
        else:
            self.lowp_min_resolution = 4

    def noise_shapes(self) -> list[tuple[int, int]]:
        """``(resolution, resolution)`` of every noise input, in the order ``noise=`` expects
        (b4.conv1, b8.conv0, b8.conv1, ...; rosinality's ``noises.noise_i`` order)."""
        out = []
        for res in self.block_resolutions:
            out += [(res, res)] * (1 if res == 4 else 2)
        return out

    def const_noises(self) -> list[torch.Tensor]:
        """The stored noise maps ``[1, 1, r, r]`` (what ``noise_mode="const"`` uses, before each
        layer's ``noise_strength``), detached, in :meth:`noise_shapes` order."""
        out = []
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            for conv in (["conv1"] if res == 4 else ["conv0", "conv1"]):
                out.append(getattr(block, conv).noise_const.detach().reshape(1, 1, res, res))
        return out

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", *,
                noise: Sequence[torch.Tensor] | None = None, generator: torch.Generator | None = None,
                compute_dtype: torch.dtype | None = None, impl: str | None = None,
                resolution: int | None = None) -> torch.Tensor:
        """Render images.

        Parameters
        ----------
        ws : Tensor ``[B, num_ws, w_dim]``
        noise_mode : {"const", "random", "none"}
            ``"const"``: the stored per-layer noise maps (NVIDIA ``noise_const``, rosinality
            ``noises.noise_i``); ``"random"``: fresh N(0, 1) maps per sample (from
            ``generator`` if given); ``"none"``: no noise.
        noise : sequence of Tensor, optional
            Explicit noise maps, one per layer (see :meth:`noise_shapes`), each ``[B, 1, r, r]``,
            ``[1, 1, r, r]`` or ``[r, r]``; overrides ``noise_mode``.
        compute_dtype : torch.dtype, optional
            float16 / bfloat16 for the convolutions (GPU); the skip image accumulates in float32.
            With ``config.num_fp16_res > 0`` only the top that-many resolutions use it.
        impl : {"fast", "reference"}, optional
            Override :attr:`impl`.
        resolution : int, optional
            Stop after the block of this resolution (one of :attr:`block_resolutions`) and return
            the skip image there: the same picture without the finer blocks' detail, at a fraction
            of the cost (coarse-to-fine projection). The ``ws`` rows and noise maps of the finer
            blocks are not used. Default: the full ``img_resolution``.

        Returns
        -------
        Tensor ``[B, img_channels, R, R]`` (``R = resolution``), float32. Trained generators give
        values near [-1, 1]; nothing is clamped.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        impl = self.impl if impl is None else impl
        if impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"synthesis: ws must be [batch, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        n_noise = len(self.noise_shapes())
        if noise is not None and len(noise) != n_noise:
            raise ValueError(f"synthesis: noise must hold {n_noise} maps (one per layer), got {len(noise)}")
        ws = ws.to(torch.float32)
        kw = dict(noise_mode=noise_mode, generator=generator, impl=impl, compute_dtype=compute_dtype)
        # CPU: blocks whose activations for the current (sub-)batch exceed max_batch_elements
        # run on smaller sub-batches (shape-only decisions), so working sets stay cache-sized
        # and a batch is at least as fast per image as one sample.
        chunked = (impl == "fast" and self.max_batch_elements is not None and ws.device.type == "cpu")
        blocks = self.block_resolutions
        if resolution is not None:
            if resolution not in blocks:
                raise ValueError(f"synthesis: resolution must be one of {list(blocks)}, got {resolution}")
            blocks = [r for r in blocks if r <= resolution]
        _, img = self._run_blocks(blocks, None, None, ws, noise, chunked=chunked, **kw)
        return img.contiguous()

    def _run_blocks(self, resolutions: Sequence[int], x: torch.Tensor | None, img: torch.Tensor | None,
                    ws: torch.Tensor, noise: Sequence[torch.Tensor] | None, *, noise_mode: str,
                    generator: torch.Generator | None, impl: str, compute_dtype: torch.dtype | None,
                    chunked: bool = False) -> tuple[torch.Tensor | None, torch.Tensor]:
        batch = ws.shape[0]
        for i, res in enumerate(resolutions):
            per_sample = self.config.channels[res] * res * res
            if chunked and batch > 1 and batch * per_sample > self.max_batch_elements:
                chunk = max(1, self.max_batch_elements // per_sample)
                outs = []
                for c0 in range(0, batch, chunk):
                    sl = slice(c0, c0 + chunk)
                    nz = None if noise is None else [n[sl] if n.ndim == 4 and n.shape[0] == batch else n
                                                     for n in noise]
                    outs.append(self._run_blocks(
                        resolutions[i:], None if x is None else x[sl], None if img is None else img[sl], ws[sl], nz,
                        noise_mode=noise_mode, generator=generator, impl=impl, compute_dtype=compute_dtype,
                        chunked=True)[1])
                return None, torch.cat(outs)
            block = getattr(self, f"b{res}")
            w_idx = self._w_index[res]
            dtype = compute_dtype if (compute_dtype is not None and res >= self.lowp_min_resolution) else torch.float32
            noises = (None, None) if noise is None else tuple(noise[w_idx:w_idx + block.num_conv]) + (None,)
            cl = impl == "fast" and self.channels_last_min_res is not None and res >= self.channels_last_min_res
            x, img = block(x, img, ws[:, w_idx:w_idx + block.num_conv + 1], self.resample_filter, dtype=dtype,
                           noise_mode=noise_mode, noises=noises, generator=generator, impl=impl,
                           memory_format=torch.channels_last if cl else torch.contiguous_format)
        return x, img


class Generator(nn.Module):
    """StyleGAN2 generator: ``G.mapping(z) -> ws``, ``G.synthesis(ws) -> img``, ``G(z) -> img``.

    Parameters
    ----------
    config : GeneratorConfig
    device : torch.device or str, optional
        Where to allocate the weights (``"meta"`` builds the structure without memory).

    Attributes
    ----------
    z_dim, w_dim, num_ws, img_resolution, img_channels : int
    w_avg : Tensor ``[w_dim]``
        The average w used for truncation (NVIDIA's ``mapping.w_avg``, rosinality's
        ``latent_avg`` or a :meth:`mean_w` estimate, see ``w_avg_source``).
    w_avg_source : str
        Where ``w_avg`` came from (provenance; set by the loaders).

    Examples
    --------
    >>> G = Generator(GeneratorConfig.nvidia(256, channel_base=16384))          # doctest: +SKIP
    >>> ws = G.mapping(torch.randn(4, G.z_dim), truncation_psi=0.7)            # doctest: +SKIP
    >>> img = G.synthesis(ws, noise_mode="const")                                # doctest: +SKIP
    """

    def __init__(self, config: GeneratorConfig, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.z_dim, self.w_dim = config.z_dim, config.w_dim
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.num_ws = config.num_ws
        self.synthesis = SynthesisNetwork(config, device=device)
        self.mapping = MappingNetwork(config.z_dim, config.w_dim, config.num_ws, config.mapping_layers,
                                      config.mapping_features, config.mapping_lr_multiplier, device=device)
        self.w_avg_source = "unset (zeros)"

    @property
    def w_avg(self) -> torch.Tensor:
        return self.mapping.w_avg

    @torch.no_grad()
    def mean_w(self, n: int = 10000, seed: int = 0, batch_size: int = 4096) -> torch.Tensor:
        """Mean of ``mapping(z)`` over ``n`` z drawn from N(0, I) with ``seed`` (``[w_dim]``).

        The z are drawn on the CPU with ``torch.Generator().manual_seed(seed)`` in one call, so
        ``mean_w(4096, seed=3)`` is rosinality's ``torch.manual_seed(3); g.mean_latent(4096)``.
        Accumulates in float64.
        """
        gen = torch.Generator().manual_seed(int(seed))
        z = torch.randn(n, self.z_dim, generator=gen)
        device = self.w_avg.device
        total = torch.zeros(self.w_dim, dtype=torch.float64, device=device)
        for start in range(0, n, batch_size):
            total += self.mapping.embed(z[start:start + batch_size].to(device)).double().sum(0)
        return (total / n).to(torch.float32)

    def forward(self, z: torch.Tensor, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
                noise_mode: str = "const", **synthesis_kwargs) -> torch.Tensor:
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, **synthesis_kwargs)


# --------------------------------------------------------------------------------------------
# Discriminator
# --------------------------------------------------------------------------------------------

class Conv2dLayer(nn.Module):
    """Equalized-lr conv with optional FIR x2 downsampling, bias, activation, gain and clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, bias: bool = True,
                 activation: str = "linear", down: int = 1, conv_clamp: float | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.activation, self.down, self.conv_clamp = activation, down, conv_clamp
        self.weight = nn.Parameter(_randn(out_channels, in_channels, kernel_size, kernel_size, device=device))
        self.bias = nn.Parameter(torch.zeros(out_channels, **_factory(device))) if bias else None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: torch.Tensor, resample_filter: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        w = (self.weight * self.weight_gain).to(x.dtype)
        k = self.weight.shape[-1]
        if self.down == 1:
            x = F.conv2d(x, w, padding=self.padding)
        else:
            fw = resample_filter.shape[-1]
            p0 = self.padding + (fw - self.down + 1) // 2
            p1 = self.padding + (fw - self.down) // 2
            if k == 1:  # filter and decimate first, then the 1x1 conv on 4x fewer pixels
                x = F.conv2d(fir_filter(x, resample_filter, pad=(p0, p1), down=self.down), w)
            else:
                x = F.conv2d(fir_filter(x, resample_filter, pad=(p0, p1)), w, stride=self.down)
        act_gain = (math.sqrt(2.0) if self.activation == "lrelu" else 1.0) * gain
        clamp = None if self.conv_clamp is None else self.conv_clamp * gain
        return bias_act(x, self.bias, act=self.activation, gain=act_gain, clamp=clamp,
                        inplace=not torch.is_grad_enabled())


class DiscriminatorBlock(nn.Module):
    """Residual block: (fromrgb), conv0 3x3, conv1 3x3 down 2; skip 1x1 down 2; sum / sqrt(2)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, img_channels: int, *,
                 conv_clamp: float | None = None, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, 1, activation="lrelu", conv_clamp=conv_clamp,
                                       device=device)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, 3, activation="lrelu", conv_clamp=conv_clamp,
                                 device=device)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, 3, activation="lrelu", down=2, conv_clamp=conv_clamp,
                                 device=device)
        self.skip = Conv2dLayer(tmp_channels, out_channels, 1, bias=False, down=2, device=device)

    def forward(self, x: torch.Tensor | None, img: torch.Tensor, resample_filter: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img, resample_filter)
        y = self.skip(x, resample_filter, gain=math.sqrt(0.5))
        x = self.conv0(x, resample_filter)
        x = self.conv1(x, resample_filter, gain=math.sqrt(0.5))
        return y.add_(x) if not torch.is_grad_enabled() else y + x


class DiscriminatorEpilogue(nn.Module):
    """4x4 head: minibatch-stddev, conv 3x3, fc (lrelu), out (linear) -> ``[B, 1]``."""

    def __init__(self, in_channels: int, resolution: int, *, mbstd_group_size: int | None = 4,
                 mbstd_num_channels: int = 1, conv_clamp: float | None = None,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.mbstd_group_size, self.mbstd_num_channels = mbstd_group_size, mbstd_num_channels
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, 3, activation="lrelu",
                                conv_clamp=conv_clamp, device=device)
        self.fc = FullyConnectedLayer(in_channels * resolution * resolution, in_channels, activation="lrelu",
                                      device=device)
        self.out = FullyConnectedLayer(in_channels, 1, device=device)

    def forward(self, x: torch.Tensor, resample_filter: torch.Tensor) -> torch.Tensor:
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = self.conv(x, resample_filter)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(nn.Module):
    """StyleGAN2 residual discriminator: ``D(img) -> logits [B, 1]`` (unconditional)."""

    def __init__(self, config: DiscriminatorConfig, *, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.config = config
        self.img_resolution, self.img_channels = config.img_resolution, config.img_channels
        self.block_resolutions = config.block_resolutions
        ch = config.channels
        for res in self.block_resolutions:
            in_ch = ch[res] if res < config.img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_ch, ch[res], ch[res // 2], config.img_channels,
                                                        conv_clamp=config.conv_clamp, device=device))
        self.b4 = DiscriminatorEpilogue(ch[4], 4, mbstd_group_size=config.mbstd_group_size,
                                        mbstd_num_channels=config.mbstd_num_channels,
                                        conv_clamp=config.conv_clamp, device=device)
        self.register_buffer("resample_filter", make_filter(config.resample_filter, device=device), persistent=False)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        r = self.img_resolution
        if img.ndim != 4 or tuple(img.shape[1:]) != (self.img_channels, r, r):
            raise ValueError(f"discriminator: img must be [batch, {self.img_channels}, {r}, {r}], "
                             f"got {list(img.shape)}")
        x = None
        f = self.resample_filter
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img, f)
        return self.b4(x, f).to(torch.float32)
