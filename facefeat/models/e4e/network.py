"""The e4e encoder network (Encoder4Editing, Tov et al. 2021) in plain PyTorch.

The module tree mirrors the official implementation (``omertov/encoder4editing``,
``models/encoders/psp_encoders.py`` and ``model_irse.py``) name for name, so that
``encoder.state_dict()`` has exactly the keys of ``ckpt["state_dict"]["encoder.*"]`` in the
official checkpoints and they load with ``strict=True``. Example keys:
``input_layer.0.weight``, ``body.3.shortcut_layer.1.running_var``,
``body.3.res_layer.5.fc1.weight`` (SE block), ``styles.17.convs.10.weight``, ``latlayer1.bias``.

Structure (IR-SE-50 backbone with a feature pyramid):

- ``input_layer``: Conv3x3(3->64, no bias), BatchNorm, PReLU.
- ``body``: 24 ``BottleneckIRSE`` units, 3x64, 4x128, 14x256, 3x512 channels; the first unit
  of every stage has stride 2 (so a 256 input gives 128, 64, 32, 16 pixels).
- Feature taps after body units 6, 20 and 23 (0-based): c1 (128 ch, 64 px), c2 (256, 32),
  c3 (512, 16).
- ``styles``: one ``GradualStyleBlock`` per W+ layer: rows 0-2 read c3 (coarse), rows 3-6 read
  ``p2 = up(c3) + latlayer1(c2)`` (middle), rows 7+ read ``p1 = up(p2) + latlayer2(c1)``
  (fine); upsampling is bilinear with ``align_corners=True``.
- Output: ``w0 = styles[0](c3)`` in every row, plus ``styles[i](features)`` added to row i
  (e4e's "progressive deltas"). The caller adds ``latent_avg`` (see
  :func:`facefeat.models.e4e.add_latent_avg`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

#: (in_channels, depth, units) of the four IR-SE-50 stages; the first unit of each has stride 2.
IR_SE_50_STAGES: tuple[tuple[int, int, int], ...] = ((64, 64, 3), (64, 128, 4), (128, 256, 14), (256, 512, 3))

#: Body units (0-based) whose outputs feed the pyramid: c1, c2, c3.
TAP_C1, TAP_C2, TAP_C3 = 6, 20, 23

#: First style row that reads the middle (p2) and the fine (p1) pyramid level.
COARSE_END, MIDDLE_END = 3, 7

#: Input side length the official encoders use (aligned faces are resized to this).
INPUT_SIZE = 256

STYLE_DIM = 512


def n_styles_for_resolution(resolution: int) -> int:
    """Number of W+ rows of a StyleGAN2 generator at ``resolution``: ``2*log2(res) - 2``.

    Raises
    ------
    ValueError
        If ``resolution`` is not a power of two >= 4.
    """
    if not isinstance(resolution, int) or resolution < 4 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 4, got {resolution!r}")
    return 2 * int(math.log2(resolution)) - 2


def style_spatial_sizes(input_size: int) -> tuple[int, int, int]:
    """Side lengths of the coarse (c3), middle (p2) and fine (p1) feature maps for ``input_size``.

    The body halves the input four times, so c3 is ``input_size/16``, p2 ``/8`` and p1 ``/4``
    (16, 32 and 64 for the official 256 input).
    """
    if not isinstance(input_size, int) or input_size < 32 or input_size & (input_size - 1):
        raise ValueError(f"input_size must be a power of two >= 32, got {input_size!r}")
    return input_size // 16, input_size // 8, input_size // 4


def resolution_for_n_styles(n_styles: int) -> int:
    """Inverse of :func:`n_styles_for_resolution`: 18 -> 1024, 10 -> 64.

    Raises
    ------
    ValueError
        If no power-of-two resolution has ``n_styles`` W+ rows (odd counts, fewer than 2).
    """
    if not isinstance(n_styles, int) or n_styles < 2 or n_styles % 2:
        raise ValueError(f"n_styles must be an even integer >= 2 (2*log2(res)-2), got {n_styles!r}")
    return 2 ** ((n_styles + 2) // 2)


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: ``x * sigmoid(fc2(relu(fc1(avgpool(x)))))``."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * s


class BottleneckIRSE(nn.Module):
    """Improved-residual unit with SE (``bottleneck_IR_SE`` in the official code).

    ``res_layer`` = BN, Conv3x3 (stride 1), PReLU, Conv3x3 (stride ``stride``), BN, SE.
    The shortcut subsamples (``MaxPool2d(1, stride)``) when the channel count is kept, else it
    is Conv1x1 (stride ``stride``) + BN. No activation after the sum.
    """

    def __init__(self, in_channels: int, depth: int, stride: int) -> None:
        super().__init__()
        if in_channels == depth:
            self.shortcut_layer: nn.Module = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
            SEModule(depth, 16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class EqualLinear(nn.Module):
    """StyleGAN2's equalised-learning-rate linear layer without activation.

    The weight is stored as plain ``randn`` and multiplied by ``lr_mul / sqrt(in_dim)`` at run
    time (the official checkpoints store it that way). Only ``weight`` and ``bias`` are in the
    state_dict.
    """

    def __init__(self, in_dim: int, out_dim: int, *, lr_mul: float = 1.0, bias_init: float = 0.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)

    def extra_repr(self) -> str:
        return f"in_dim={self.weight.shape[1]}, out_dim={self.weight.shape[0]}, lr_mul={self.lr_mul}"


class GradualStyleBlock(nn.Module):
    """Maps a ``spatial``x``spatial`` feature map to one 512-d style.

    ``log2(spatial)`` Conv3x3 stride-2 layers (with bias), each followed by ``LeakyReLU`` with
    PyTorch's default slope 0.01 (not StyleGAN's 0.2), down to 1x1, then an
    :class:`EqualLinear`. Conv layers sit at the even indices of ``convs`` (``convs.0``,
    ``convs.2``, ...) as in the official state_dict.
    """

    def __init__(self, in_channels: int, out_channels: int, spatial: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.spatial = spatial
        num_pools = int(math.log2(spatial))
        layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            layers += [nn.Conv2d(out_channels, out_channels, 3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_channels, out_channels, lr_mul=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        return self.linear(x.reshape(-1, self.out_channels))


def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN merge: bilinear upsampling of ``x`` to ``y``'s size (align_corners=True), plus ``y``."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


class Encoder4Editing(nn.Module):
    """e4e encoder: an aligned face ``[B, 3, 256, 256]`` in [-1, 1] -> W+ offsets ``[B, n_styles, 512]``.

    The output does not include the average latent: add ``latent_avg`` (as e4e does with
    ``start_from_latent_avg``) before feeding the codes to the generator, or use
    :func:`facefeat.models.e4e.encode`, which does input handling, batching and the addition.

    Parameters
    ----------
    resolution : int, default 1024
        Output resolution of the StyleGAN2 generator the encoder belongs to; sets
        ``n_styles = 2*log2(resolution) - 2`` (18 for 1024, 10 for 64).
    input_size : int, default 256
        Side length of the network input (a power of two >= 32). The official encoders use
        256; a smaller input (e.g. 64 for a 32-128 px generator) keeps the IR-SE-50 layout and
        its key names and only shrinks the style blocks (fewer stride-2 convolutions), which
        makes CPU training of an encoder for a small generator practical.
    progressive_stage : int or None, default None
        How many style rows after row 0 receive their delta (e4e's progressive training);
        ``None`` applies all of them (inference). Only training code changes it.

    Attributes
    ----------
    n_styles : int
        Number of W+ rows produced.
    resolution : int
        The generator resolution given at construction.
    input_size : int
        The network's input side length.

    Examples
    --------
    >>> enc = Encoder4Editing(1024).eval()                     # doctest: +SKIP
    >>> codes = enc(torch.zeros(1, 3, 256, 256))               # doctest: +SKIP
    >>> codes.shape                                            # doctest: +SKIP
    torch.Size([1, 18, 512])
    """

    def __init__(self, resolution: int = 1024, *, input_size: int = INPUT_SIZE,
                 progressive_stage: int | None = None) -> None:
        super().__init__()
        self.resolution = resolution
        self.n_styles = n_styles_for_resolution(resolution)
        self.input_size = input_size
        coarse, middle, fine = style_spatial_sizes(input_size)
        self.progressive_stage = progressive_stage

        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, (3, 3), 1, 1, bias=False),
            nn.BatchNorm2d(64),
            nn.PReLU(64),
        )
        units: list[nn.Module] = []
        for in_ch, depth, n_units in IR_SE_50_STAGES:
            units.append(BottleneckIRSE(in_ch, depth, 2))
            units.extend(BottleneckIRSE(depth, depth, 1) for _ in range(n_units - 1))
        self.body = nn.Sequential(*units)

        styles = []
        for i in range(self.n_styles):
            spatial = coarse if i < COARSE_END else middle if i < MIDDLE_END else fine
            styles.append(GradualStyleBlock(512, STYLE_DIM, spatial))
        self.styles = nn.ModuleList(styles)
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1, stride=1, padding=0)

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Backbone pyramid taps ``(c1, c2, c3)`` after body units 6, 20 and 23."""
        x = self.input_layer(x)
        c1 = c2 = None
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == TAP_C1:
                c1 = x
            elif i == TAP_C2:
                c2 = x
        assert c1 is not None and c2 is not None
        return c1, c2, x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """W+ offsets ``[B, n_styles, 512]`` for normalised images ``[B, 3, input_size, input_size]``."""
        c1, c2, c3 = self.features(x)
        w0 = self.styles[0](c3)
        n_deltas = self.n_styles - 1 if self.progressive_stage is None else min(self.progressive_stage, self.n_styles - 1)
        rows = [w0]
        features = c3
        p2 = None
        for i in range(1, 1 + n_deltas):
            # The pyramid levels are built only when a row first needs them, as in e4e.
            if i == COARSE_END:
                p2 = _upsample_add(c3, self.latlayer1(c2))
                features = p2
            elif i == MIDDLE_END:
                assert p2 is not None
                features = _upsample_add(p2, self.latlayer2(c1))
            rows.append(w0 + self.styles[i](features))
        rows.extend(w0 for _ in range(self.n_styles - 1 - n_deltas))
        return torch.stack(rows, dim=1)

    def extra_repr(self) -> str:
        return (f"resolution={self.resolution}, n_styles={self.n_styles}, input_size={self.input_size}, "
                f"progressive_stage={self.progressive_stage}")
