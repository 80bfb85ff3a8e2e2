"""Adaptive discriminator augmentation (ADA, Karras et al. 2020) in pure PyTorch.

:class:`AugmentPipe` follows stylegan2-ada-pytorch's ``AugmentPipe`` for the "bgc" pipeline:

* geometric (one 3x3 inverse transform per image, executed once): x-flip, 90-degree rotations,
  integer translation (up to 1/8 of the size), isotropic scaling (lognormal, std 0.2 octaves),
  arbitrary rotation (split in two halves around the anisotropic scaling, so that the
  probability of "any rotation" is p), anisotropic scaling, fractional translation (std 1/8);
  executed as reflect padding, x2 upsampling with the ``sym6`` wavelet low-pass, bilinear
  ``grid_sample`` and x2 downsampling, as NVIDIA does to keep aliasing low;
* color (one 4x4 transform per image): brightness (std 0.2), contrast (lognormal, std 0.5
  octaves), luma flip, hue rotation (any angle), saturation (lognormal, std 1 octave).

Every augmentation is applied to an image with probability ``p * strength``, independently per
image and per augmentation. The whole pipeline is differentiable (R1 and the generator's loss
flow through it; PyTorch's ``grid_sample`` has the double backward R1 needs). Deviations from
NVIDIA, all about exactness:

* the random parameters come from an explicit ``torch.Generator`` (exact resume) and are drawn
  the same way whatever p is;
* images that draw no geometric (color) change skip that stage, so ``p = 0`` returns the batch
  unchanged (NVIDIA resamples every image, which blurs slightly even at p = 0);
* p is kept in [0, 1] (NVIDIA only clamps at 0; above 1 nothing changes but p keeps growing).

:class:`AdaController` is the adaptive heuristic: ``r_t = E[sign(D(real))]`` over the last
``interval`` minibatches moves p by ``sign(r_t - target) * batch * interval / (ada_kimg * 1000)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: Daubechies symlet-6 low-pass decomposition filter (sums to sqrt(2), unit energy), the
#: filter stylegan2-ada-pytorch uses around the geometric resampling.
SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057, -0.048311742585633,
        0.4910559419267466, 0.787641141030194, 0.3379294217276218, -0.07263752278646252,
        -0.021060292512300564, 0.04472490177066578, 0.0017677118642428036, -0.007800708325034148)

#: Standard deviations and ranges of NVIDIA's "bgc" pipeline.
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


# -- 2-D and 3-D homogeneous matrices, one per image -------------------------------------------

def _matrix(rows: list[list], ref: torch.Tensor) -> torch.Tensor:
    """Stack rows of scalars / ``[B]`` tensors into ``[B, n, m]``."""
    elems = [x if isinstance(x, torch.Tensor) else torch.full_like(ref, float(x)) for row in rows for x in row]
    return torch.stack(elems, dim=-1).reshape(ref.shape + (len(rows), -1))


def translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], tx)


def scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], sx)


def rotate2d(theta: torch.Tensor) -> torch.Tensor:
    return _matrix([[torch.cos(theta), torch.sin(-theta), 0], [torch.sin(theta), torch.cos(theta), 0],
                    [0, 0, 1]], theta)


def translate3d(tx: torch.Tensor, ty: torch.Tensor, tz: torch.Tensor) -> torch.Tensor:
    return _matrix([[1, 0, 0, tx], [0, 1, 0, ty], [0, 0, 1, tz], [0, 0, 0, 1]], tx)


def scale3d(sx: torch.Tensor, sy: torch.Tensor, sz: torch.Tensor) -> torch.Tensor:
    return _matrix([[sx, 0, 0, 0], [0, sy, 0, 0], [0, 0, sz, 0], [0, 0, 0, 1]], sx)


def rotate3d(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` ``[B]`` about the unit axis ``v`` ``[3]`` (Rodrigues)."""
    vx, vy, vz = (float(c) for c in v[:3])
    s, c = torch.sin(theta), torch.cos(theta)
    cc = 1 - c
    return _matrix([[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, 0],
                    [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, 0],
                    [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, 0],
                    [0, 0, 0, 1]], theta)


def _fir_axis(x: torch.Tensor, f: torch.Tensor, dim: int, *, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0),
              gain: float = 1.0, flip: bool = True) -> torch.Tensor:
    """``upfirdn`` along one axis (``dim`` 2 = rows, 3 = columns) with a 1-D filter ``f``.

    Two of these equal :func:`~facefeat.models.stylegan2.ops.upfirdn2d` with the separable
    filter ``outer(f, f)``, at ``2k`` instead of ``k**2`` multiplies per pixel (``k = 12`` here).
    ``flip=True`` is a true convolution (upfirdn2d's default), False a correlation.
    """
    n, c, h, w = x.shape
    if up > 1:
        if dim == 3:
            x = F.pad(x.reshape(n, c, h, w, 1), [0, up - 1]).reshape(n, c, h, w * up)
        else:
            x = F.pad(x.reshape(n, c, h, 1, w), [0, 0, 0, up - 1]).reshape(n, c, h * up, w)
    p0, p1 = pad
    spec = [max(p0, 0), max(p1, 0), 0, 0] if dim == 3 else [0, 0, max(p0, 0), max(p1, 0)]
    x = F.pad(x, spec)
    if min(p0, p1) < 0:
        size = x.shape[dim]
        x = x.narrow(dim, max(-p0, 0), size - max(-p0, 0) - max(-p1, 0))
    k = f.shape[0]
    taps = (f.flip(0) if flip else f) * gain
    weight = taps.to(x.dtype).reshape(1, 1, 1, k) if dim == 3 else taps.to(x.dtype).reshape(1, 1, k, 1)
    stride = (1, down) if dim == 3 else (down, 1)
    return F.conv2d(x, weight.expand(c, 1, *weight.shape[2:]).contiguous(), stride=stride, groups=c)


def _pick(mask: torch.Tensor, value: torch.Tensor, default: float) -> torch.Tensor:
    return torch.where(mask, value, torch.full_like(value, default))


class AugmentPipe(nn.Module):
    """Differentiable ADA augmentation of images ``[B, C, H, W]`` near [-1, 1].

    Parameters
    ----------
    p : float
        Initial probability multiplier (kept in the buffer ``p``; the controller changes it).
    strengths : dict, optional
        ``{name: multiplier}`` for the names in :data:`GEOMETRIC` and :data:`COLOR`; missing
        names are 0 (off). Default: all of them at 1 (NVIDIA's "bgc").

    Examples
    --------
    >>> pipe = AugmentPipe(p=0.2)
    >>> gen = torch.Generator().manual_seed(0)
    >>> out = pipe(torch.zeros(4, 3, 32, 32), generator=gen)
    >>> tuple(out.shape)
    (4, 3, 32, 32)
    """

    def __init__(self, p: float = 0.0, strengths: dict[str, float] | None = None) -> None:
        super().__init__()
        if strengths is None:
            strengths = {name: 1.0 for name in GEOMETRIC + COLOR}
        unknown = sorted(set(strengths) - set(GEOMETRIC + COLOR))
        if unknown:
            raise ValueError(f"unknown augmentations {unknown}; known: {GEOMETRIC + COLOR}")
        self.strengths = {name: float(strengths.get(name, 0.0)) for name in GEOMETRIC + COLOR}
        self.register_buffer("p", torch.tensor(float(p)))
        self.register_buffer("sym6", torch.tensor(SYM6, dtype=torch.float32), persistent=False)

    @property
    def probability(self) -> float:
        return float(self.p)

    def extra_repr(self) -> str:
        on = [k for k, v in self.strengths.items() if v > 0]
        return f"p={self.probability:.4f}, augmentations={on}"

    # -- random parameters -----------------------------------------------------------------
    def _params(self, batch: int, height: int, width: int, generator: torch.Generator | None) -> tuple:
        """Draw every random number (on the generator's device, a fixed count per call) and
        return ``(G_inv [B,3,3], geometric_mask [B], C [B,4,4], color_mask [B])`` in float64."""
        dev = generator.device if generator is not None else torch.device("cpu")
        kw = dict(generator=generator, device=dev, dtype=torch.float64)

        def rand(*shape):
            return torch.rand(shape, **kw)

        def randn(*shape):
            return torch.randn(shape, **kw)

        p = float(self.p)
        s = self.strengths
        eye3 = torch.eye(3, dtype=torch.float64, device=dev).expand(batch, 3, 3)
        g_inv = eye3
        # x-flip, rot90, integer translation
        i = torch.floor(rand(batch) * 2)
        i = _pick(rand(batch) < p * s["xflip"], i, 0)
        g_inv = g_inv @ scale2d(1 - 2 * i, torch.ones_like(i))  # its own inverse
        i = torch.floor(rand(batch) * 4)
        i = _pick(rand(batch) < p * s["rotate90"], i, 0)
        g_inv = g_inv @ rotate2d(math.pi / 2 * i)  # inverse of a rotation by -90 * i degrees
        t = (rand(batch, 2) * 2 - 1) * XINT_MAX
        t = torch.where(rand(batch, 1) < p * s["xint"], t, torch.zeros_like(t))
        g_inv = g_inv @ translate2d(-torch.round(t[:, 0] * width), -torch.round(t[:, 1] * height))
        # isotropic scaling, rotation, anisotropic scaling, rotation, fractional translation
        sc = torch.exp2(randn(batch) * SCALE_STD)
        sc = _pick(rand(batch) < p * s["scale"], sc, 1)
        g_inv = g_inv @ scale2d(1 / sc, 1 / sc)
        p_rot = 1 - math.sqrt(min(max(1 - p * s["rotate"], 0.0), 1.0))  # two halves: P(any) = p
        theta = (rand(batch) * 2 - 1) * math.pi * ROTATE_MAX
        theta = _pick(rand(batch) < p_rot, theta, 0)
        g_inv = g_inv @ rotate2d(theta)
        sa = torch.exp2(randn(batch) * ANISO_STD)
        sa = _pick(rand(batch) < p * s["aniso"], sa, 1)
        g_inv = g_inv @ scale2d(1 / sa, sa)
        theta = (rand(batch) * 2 - 1) * math.pi * ROTATE_MAX
        theta = _pick(rand(batch) < p_rot, theta, 0)
        g_inv = g_inv @ rotate2d(theta)
        t = randn(batch, 2) * XFRAC_STD
        t = torch.where(rand(batch, 1) < p * s["xfrac"], t, torch.zeros_like(t))
        g_inv = g_inv @ translate2d(-t[:, 0] * width, -t[:, 1] * height)
        geo_mask = (g_inv - eye3).abs().amax(dim=(1, 2)) > 1e-12

        # color
        eye4 = torch.eye(4, dtype=torch.float64, device=dev).expand(batch, 4, 4)
        c = eye4
        b = randn(batch) * BRIGHTNESS_STD
        b = _pick(rand(batch) < p * s["brightness"], b, 0)
        c = translate3d(b, b, b) @ c
        k = torch.exp2(randn(batch) * CONTRAST_STD)
        k = _pick(rand(batch) < p * s["contrast"], k, 1)
        c = scale3d(k, k, k) @ c
        v = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64, device=dev) / math.sqrt(3)  # luma axis
        vv = torch.outer(v, v)
        i = torch.floor(rand(batch, 1, 1) * 2)
        i = torch.where(rand(batch, 1, 1) < p * s["lumaflip"], i, torch.zeros_like(i))
        c = (eye4 - 2 * vv * i) @ c  # Householder reflection
        theta = (rand(batch) * 2 - 1) * math.pi * HUE_MAX
        theta = _pick(rand(batch) < p * s["hue"], theta, 0)
        c = rotate3d(v, theta) @ c
        sat = torch.exp2(randn(batch, 1, 1) * SATURATION_STD)
        sat = torch.where(rand(batch, 1, 1) < p * s["saturation"], sat, torch.ones_like(sat))
        c = (vv + (eye4 - vv) * sat) @ c
        col_mask = (c - eye4).abs().amax(dim=(1, 2)) > 1e-12
        return g_inv, geo_mask, c, col_mask

    # -- execution -------------------------------------------------------------------------
    def _geometric(self, images: torch.Tensor, g_inv: torch.Tensor) -> torch.Tensor:
        """Resample ``images`` through the inverse transforms ``g_inv`` ``[b, 3, 3]`` (pixel
        units about the image centre), NVIDIA's padding / upsampling / grid_sample / downsampling."""
        batch, channels, height, width = images.shape
        dev = images.device
        f = self.sym6.to(dev)
        f = f / f.sum()
        hz_pad = f.shape[0] // 4
        cx, cy = (width - 1) / 2, (height - 1) / 2
        cp = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]], dtype=torch.float64,
                          device=g_inv.device)
        cp = g_inv @ cp.t()  # [b, xyz, corner]
        margin = cp[:, :2, :].permute(1, 0, 2).flatten(1)  # [xy, b * corner]
        margin = torch.cat([-margin, margin]).amax(dim=1)  # [x0, y0, x1, y1]
        margin = margin + torch.tensor([hz_pad * 2 - cx, hz_pad * 2 - cy] * 2, dtype=torch.float64,
                                       device=g_inv.device)
        margin = margin.clamp(min=0)
        margin = torch.minimum(margin, torch.tensor([width - 1, height - 1] * 2, dtype=torch.float64,
                                                    device=g_inv.device))
        mx0, my0, mx1, my1 = (int(v) for v in margin.ceil().tolist())

        x = F.pad(images, [mx0, mx1, my0, my1], mode="reflect")
        g = translate2d(torch.full_like(g_inv[:, 0, 0], (mx0 - mx1) / 2),
                        torch.full_like(g_inv[:, 0, 0], (my0 - my1) / 2)) @ g_inv
        # x2 upsampling with the low-pass (NVIDIA's upsample2d: padding (6, 5) for 12 taps, gain 4)
        fw = f.shape[0]
        for dim in (3, 2):
            x = _fir_axis(x, f, dim, up=2, pad=((fw + 1) // 2, (fw - 2) // 2), gain=2.0)
        one = torch.ones_like(g[:, 0, 0])
        g = scale2d(2 * one, 2 * one) @ g @ scale2d(0.5 * one, 0.5 * one)
        g = translate2d(-0.5 * one, -0.5 * one) @ g @ translate2d(0.5 * one, 0.5 * one)
        shape = [batch, channels, (height + hz_pad * 2) * 2, (width + hz_pad * 2) * 2]
        g = (scale2d(2 / x.shape[3] * one, 2 / x.shape[2] * one) @ g
             @ scale2d(shape[3] / 2 * one, shape[2] / 2 * one))
        grid = F.affine_grid(g[:, :2, :].to(x.dtype), shape, align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # x2 downsampling and crop (NVIDIA's downsample2d(pad=-2*hz_pad, flip_filter=True))
        p = -hz_pad * 2 + (fw - 2 + 1) // 2
        for dim in (3, 2):
            x = _fir_axis(x, f, dim, down=2, pad=(p, p), flip=False)
        return x

    def forward(self, images: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch; returns ``images`` itself when nothing was drawn (e.g. ``p == 0``)."""
        if images.ndim != 4:
            raise ValueError(f"AugmentPipe: images must be [B, C, H, W], got {list(images.shape)}")
        batch, channels, height, width = images.shape
        g_inv, geo_mask, c, col_mask = self._params(batch, height, width, generator)
        out = images
        if bool(geo_mask.any()):
            idx = torch.nonzero(geo_mask).flatten()
            moved = self._geometric(out[idx.to(out.device)], g_inv[idx].to(out.device))
            out = out.index_copy(0, idx.to(out.device), moved) if idx.numel() < batch else moved
        if bool(col_mask.any()):
            idx = torch.nonzero(col_mask).flatten()
            cm = c[idx].to(device=out.device, dtype=out.dtype)
            sel = out[idx.to(out.device)]
            flat = sel.reshape(sel.shape[0], channels, height * width)
            if channels == 3:
                flat = cm[:, :3, :3] @ flat + cm[:, :3, 3:]
            elif channels == 1:
                cm1 = cm[:, :3, :].mean(dim=1, keepdim=True)
                flat = flat * cm1[:, :, :3].sum(dim=2, keepdim=True) + cm1[:, :, 3:]
            else:
                raise ValueError(f"AugmentPipe: color augmentation needs 1 or 3 channels, got {channels}")
            colored = flat.reshape(sel.shape)
            out = out.index_copy(0, idx.to(out.device), colored) if idx.numel() < batch else colored
        return out


class AdaController:
    """The ADA heuristic that adapts ``pipe.p`` toward an overfitting target.

    Call :meth:`accumulate` with the real-image logits of every D step, and :meth:`update`
    every ``interval`` minibatches.

    Parameters
    ----------
    pipe : AugmentPipe
    target : float
        Target of ``r_t = E[sign(D(real))]`` (0.6 in the paper).
    batch_size, interval : int
        Minibatch and update interval (p moves by ``batch * interval / (ada_kimg * 1000)``).
    ada_kimg : float
        kimg for p to move by 1.

    Attributes
    ----------
    r_t : float or None
        The last estimate (``None`` before the first update).
    """

    def __init__(self, pipe: AugmentPipe, *, target: float = 0.6, batch_size: int, interval: int = 4,
                 ada_kimg: float = 500.0) -> None:
        self.pipe = pipe
        self.target = float(target)
        self.batch_size, self.interval, self.ada_kimg = int(batch_size), int(interval), float(ada_kimg)
        self.sign_sum = 0.0
        self.sign_count = 0
        self.r_t: float | None = None

    @property
    def step_size(self) -> float:
        return self.batch_size * self.interval / (self.ada_kimg * 1000)

    def accumulate(self, real_logits: torch.Tensor) -> None:
        signs = real_logits.detach().sign().to(torch.float64)
        self.sign_sum += float(signs.sum())
        self.sign_count += signs.numel()

    def update(self) -> float:
        """Move p by one step toward the target (no change without accumulated logits)."""
        if self.sign_count == 0:
            return self.pipe.probability
        self.r_t = self.sign_sum / self.sign_count
        adjust = float(np.sign(self.r_t - self.target)) * self.step_size
        new_p = min(max(self.pipe.probability + adjust, 0.0), 1.0)
        self.pipe.p.fill_(new_p)
        self.sign_sum, self.sign_count = 0.0, 0
        return new_p

    def state_dict(self) -> dict:
        return {"p": self.pipe.probability, "sign_sum": self.sign_sum, "sign_count": self.sign_count,
                "r_t": self.r_t}

    def load_state_dict(self, state: dict) -> None:
        self.pipe.p.fill_(float(state["p"]))
        self.sign_sum = float(state["sign_sum"])
        self.sign_count = int(state["sign_count"])
        self.r_t = None if state.get("r_t") is None else float(state["r_t"])
