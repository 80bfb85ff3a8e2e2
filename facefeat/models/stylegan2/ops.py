"""Low-level StyleGAN2 operations in pure PyTorch (no CUDA extension, no compilation).

Everything here is a plain function of tensors with shapes fixed by its arguments, so it traces
and compiles (``torch.compile``) without graph breaks: there is no Python branch on tensor
*values*, only on shapes, dtypes and static arguments.

Two families of implementations live side by side:

* ``upfirdn2d`` / ``modulated_conv2d(..., impl="reference")``: the textbook form (zero
  insertion, padding, a depthwise FIR, per-sample weights in a grouped convolution), as both
  official code bases compute it on CPU. Used by tests and by the benchmark as the baseline.
* the fast path used by the networks: the x2 FIR upsampling as a strided depthwise transposed
  convolution (no zero-filled temporaries), the modulation folded into whichever of weight or
  activation is smaller, and in-place epilogues. It equals the reference up to float rounding
  (checked by the tests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

#: Gain that keeps the variance of a leaky ReLU(0.2) activation at 1 (both official codes).
LRELU_GAIN = math.sqrt(2.0)
LRELU_SLOPE = 0.2


# --------------------------------------------------------------------------------------------
# FIR filters
# --------------------------------------------------------------------------------------------

def make_filter(
    taps: Sequence[float] | torch.Tensor,
    *,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Separable 2-D FIR filter from 1-D taps, normalized to sum 1 (float32 ``[k, k]``).

    ``make_filter([1, 3, 3, 1])`` is the StyleGAN2 resampling filter. NVIDIA stores it in
    this form (``resample_filter``); rosinality stores the upsampling copies times 4.
    """
    # Built on the CPU and moved: arithmetic on "meta" tensors would import torch._dynamo.
    k = torch.as_tensor(taps, dtype=torch.float32).cpu()
    if k.ndim != 1 or k.numel() < 1:
        raise ValueError(f"filter taps must be a non-empty 1-D sequence, got shape {tuple(k.shape)}")
    f = torch.outer(k, k)
    return (f / f.sum()).to(device)


def _parse_pad(pad: int | Sequence[int]) -> tuple[int, int, int, int]:
    if isinstance(pad, int):
        return pad, pad, pad, pad
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return pad  # type: ignore[return-value]
    raise ValueError(f"pad must be an int, (p0, p1) or (x0, x1, y0, y1); got {pad!r}")


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    pad: int | Sequence[int] = 0,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample (zero insertion), pad, FIR-filter and downsample ``x`` ``[N, C, H, W]``.

    The reference implementation, written as both official code bases do on CPU: insert
    ``up - 1`` zeros after every pixel, pad (negative padding crops), convolve every channel
    with ``f * gain`` (a true convolution: the filter is flipped), keep every ``down``-th
    pixel. ``pad`` is ``(x0, x1, y0, y1)`` or ``(p0, p1)`` for both axes.
    """
    px0, px1, py0, py1 = _parse_pad(pad)
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    weight = (f * gain).to(x.dtype).flip([0, 1])
    weight = weight[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, weight, groups=c)
    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _depthwise(f: torch.Tensor, channels: int, dtype: torch.dtype, gain: float = 1.0) -> torch.Tensor:
    # The filters are tiny ([k, k]); expanding is a view, conv2d needs a contiguous weight.
    return (f * gain).to(dtype).flip([0, 1])[None, None].expand(channels, 1, *f.shape).contiguous()


def fir_filter(x: torch.Tensor, f: torch.Tensor, *, pad: int | Sequence[int], gain: float = 1.0,
               down: int = 1) -> torch.Tensor:
    """Fast ``upfirdn2d(x, f, pad=pad, gain=gain, down=down)`` (no upsampling).

    A depthwise convolution with the (flipped) filter, stride ``down``; symmetric padding is
    done inside the convolution.
    """
    px0, px1, py0, py1 = _parse_pad(pad)
    c = x.shape[1]
    weight = _depthwise(f, c, x.dtype, gain)
    if px0 == px1 and py0 == py1 and min(px0, py0) >= 0:
        return F.conv2d(x, weight, stride=down, padding=(py0, px0), groups=c)
    x = F.pad(x, [px0, px1, py0, py1])
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor, *, impl: str = "fast") -> torch.Tensor:
    """x2 FIR upsampling as used for the ToRGB skip: ``upfirdn2d(x, f, up=2, pad=(p0, p1), gain=4)``.

    ``(p0, p1) = ((k + 1) // 2, (k - 2) // 2)`` for a ``k``-tap filter (``(2, 1)`` for 4 taps),
    the same padding as NVIDIA's ``upsample2d`` and rosinality's ``Upsample``. The fast form is
    a depthwise transposed convolution with stride 2, which never builds the zero-filled
    image.
    """
    k = f.shape[-1]
    p0, p1 = (k + 1) // 2, (k - 2) // 2
    if impl == "reference":
        return upfirdn2d(x, f, up=2, pad=(p0, p1), gain=4.0)
    # conv_transpose2d scatters with the *unflipped* kernel, i.e. a true convolution of the
    # zero-inserted input; its implicit padding is k - 1 - padding on both sides of the 2H - 1
    # sample grid. Matching (p0, p1 + 1) needs p0 == p1 + 1, true for even k.
    c = x.shape[1]
    if k % 2 or p0 != p1 + 1:
        return upfirdn2d(x, f, up=2, pad=(p0, p1), gain=4.0)
    weight = (f * 4.0).to(x.dtype)[None, None].expand(c, 1, k, k).contiguous()
    return F.conv_transpose2d(x, weight, stride=2, padding=k - 1 - p0, groups=c)


# --------------------------------------------------------------------------------------------
# Activations and normalization
# --------------------------------------------------------------------------------------------

def bias_act(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    act: str = "lrelu",
    gain: float | None = None,
    clamp: float | None = None,
    inplace: bool = False,
) -> torch.Tensor:
    """``clamp(act(x + bias) * gain)``, the epilogue of every StyleGAN2 layer.

    Equals NVIDIA's ``bias_act`` and rosinality's ``fused_leaky_relu`` (``leaky_relu(x + b,
    0.2) * sqrt(2)``). ``gain`` defaults to ``sqrt(2)`` for ``"lrelu"`` and 1 for ``"linear"``.
    ``inplace=True`` overwrites ``x`` (it must not be needed afterwards and not need grad).
    """
    if act not in ("lrelu", "linear"):
        raise ValueError(f"act must be 'lrelu' or 'linear', got {act!r}")
    if gain is None:
        gain = LRELU_GAIN if act == "lrelu" else 1.0
    b = None if bias is None else bias.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
    if inplace:
        if b is not None:
            x = x.add_(b)
        if act == "lrelu":
            x = F.leaky_relu_(x, LRELU_SLOPE)
        if gain != 1.0:
            x = x.mul_(gain)
        if clamp is not None:
            x = x.clamp_(-clamp, clamp)
        return x
    if b is not None:
        x = x + b
    if act == "lrelu":
        x = F.leaky_relu(x, LRELU_SLOPE)
    if gain != 1.0:
        x = x * gain
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """``x * rsqrt(mean(x^2) + eps)``: rosinality's PixelNorm, NVIDIA's z normalization."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def minibatch_stddev(x: torch.Tensor, group_size: int | None, num_channels: int = 1) -> torch.Tensor:
    """Append the minibatch standard deviation as ``num_channels`` extra feature maps.

    Groups are *strided*: with N=8 and group 4 the groups are samples {0,2,4,6} and {1,3,5,7}
    (both official codes reshape ``[G, N/G, ...]``). The group is ``min(group_size, N)``; N
    must be divisible by it. Variance is biased, then ``sqrt(var + 1e-8)`` averaged over
    channels (within each of the ``num_channels`` channel groups) and pixels.
    """
    n, c, h, w = x.shape
    g = n if group_size is None else min(int(group_size), n)
    if n % g:
        raise ValueError(
            f"minibatch-stddev: batch size {n} is not divisible by the group size {g}; "
            f"use a batch size that is a multiple of {g} (or smaller than it)"
        )
    f = num_channels
    y = x.float().reshape(g, n // g, f, c // f, h, w)
    y = y - y.mean(dim=0)
    y = y.square().mean(dim=0)
    y = (y + 1e-8).sqrt()
    y = y.mean(dim=[2, 3, 4])  # [n/g, F]
    y = y.reshape(-1, f, 1, 1).to(x.dtype)
    y = y.repeat(g, 1, h, w)
    return torch.cat([x, y], dim=1)


# --------------------------------------------------------------------------------------------
# Modulated convolution
# --------------------------------------------------------------------------------------------

def _is_channels_last(x: torch.Tensor) -> bool:
    return x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def _fp16_prenormalize(weight: torch.Tensor) -> torch.Tensor:
    # Scale each output channel to max |w| = 1/sqrt(fan_in), as NVIDIA does before float16
    # math; demodulation removes any per-output-channel scale again.
    fan_in = weight.shape[1] * weight.shape[2] * weight.shape[3]
    return weight * (1.0 / math.sqrt(fan_in) / weight.float().abs().amax(dim=[1, 2, 3], keepdim=True))


def prepare_weight(weight: torch.Tensor, *, up: int = 1, dtype: torch.dtype = torch.float32,
                   memory_format: torch.memory_format = torch.contiguous_format, demodulate: bool = True,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """What the fast modulated convolution derives from a weight, independent of the input.

    Returns ``(wsq, conv_weight)``: ``wsq[o, i] = sum_k weight[o, i, k]^2`` (float32, for the
    demodulation coefficients) and the weight as the shared-weight convolution wants it (in
    ``dtype`` and ``memory_format``; transposed to ``[I, O, k, k]`` for ``up=2``; for float16
    with demodulation, pre-normalized per output channel). A layer whose weight is frozen
    computes this once and reuses it.
    """
    if dtype == torch.float16 and demodulate:
        weight = _fp16_prenormalize(weight)
    w = weight.reshape(weight.shape[0], weight.shape[1], -1).float()
    wsq = torch.einsum("oik,oik->oi", w, w)
    conv_weight = weight.to(dtype)
    if up != 1:
        conv_weight = conv_weight.transpose(0, 1)
    return wsq, conv_weight.contiguous(memory_format=memory_format)


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
    impl: str = "fast",
    prepared: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """StyleGAN2 modulated convolution, optionally x2 upsampling, plus noise and bias.

    Computes ``gain * (conv(x, weight * styles[b, None, :, None, None]) + noise) + bias``: the
    convolution demodulated per output channel by ``rsqrt(sum w'^2 + 1e-8)`` when
    ``demodulate``, ``noise`` already scaled by the noise strength (one map broadcast over
    channels), ``bias`` per output channel. With ``up=2`` the convolution is a stride-2
    transposed convolution followed by the FIR filter ``resample_filter`` (gain 4, padding
    ``(1, 1)`` for a 4-tap filter), as in both official implementations.

    ``gain`` lets a caller move the activation gain in front of a positively homogeneous
    activation (``lrelu(x + b) * g == lrelu(g * x + g * b)``): it is applied to the
    demodulation coefficients, the noise map and ``bias`` (pass ``bias`` already multiplied),
    never as a separate pass over the output.

    Parameters
    ----------
    x : Tensor ``[B, I, H, W]``
    weight : Tensor ``[O, I, k, k]``
        Raw weight; any equalized-lr scale must already be folded into ``styles``.
    styles : Tensor ``[B, I]``
    impl : {"fast", "reference"}
        ``"reference"`` forms per-sample weights and runs one grouped convolution (NVIDIA's
        ``fused_modconv``, rosinality's ``fused=True``) with the zero-insertion ``upfirdn2d``.
        ``"fast"`` picks per call, from shapes only: for one sample whose weight is smaller
        than its activations it folds styles, demodulation and gain into the weight (one plain
        convolution, bias fused into it when there is no upsampling); otherwise it scales the
        activations before and the outputs after one shared-weight convolution (NVIDIA's
        ``fused_modconv=False``), so a batch runs as one large convolution and low-resolution
        layers never touch their big weights twice. A 1x1 convolution is a batched matmul.
    prepared : tuple, optional
        ``prepare_weight(weight, up=up, dtype=x.dtype, ...)``, reused across calls while the
        weight does not change (fast path only).
    """
    b, in_ch, h, w = x.shape
    out_ch, _, kh, kw = weight.shape
    pad = kh // 2
    dtype = x.dtype

    if dtype == torch.float16 and demodulate:
        # Keep per-sample weights and activations inside the fp16 range (as NVIDIA does); the
        # demodulation removes both scales again.
        styles = styles / styles.abs().amax(dim=1, keepdim=True)

    if impl == "reference":
        if dtype == torch.float16 and demodulate:
            weight = _fp16_prenormalize(weight)
        wmod = weight.float()[None] * styles.float().reshape(b, 1, in_ch, 1, 1)
        if demodulate:
            wmod = wmod * (wmod.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(b, out_ch, 1, 1, 1)
        wmod = wmod.to(dtype)
        xg = x.reshape(1, b * in_ch, h, w)
        if up == 1:
            y = F.conv2d(xg, wmod.reshape(b * out_ch, in_ch, kh, kw), padding=pad, groups=b)
        else:
            wt = wmod.transpose(1, 2).reshape(b * in_ch, out_ch, kh, kw)
            y = F.conv_transpose2d(xg, wt, stride=2, groups=b)
            k = resample_filter.shape[-1]
            p = (k - 2) - (kh - 1)
            y = upfirdn2d(y, resample_filter, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
        y = y.reshape(b, out_ch, *y.shape[2:])
        if noise is not None:
            y = y + noise.to(dtype)
        if gain != 1.0:
            y = y * gain
        if bias is not None:
            y = y + bias.to(dtype).reshape(1, -1, 1, 1)
        return y

    if impl != "fast":
        raise ValueError(f"impl must be 'fast' or 'reference', got {impl!r}")

    # In-place epilogues only where no autograd graph is recorded (an in-place multiply would
    # overwrite a tensor that the backward pass needs).
    inplace = not torch.is_grad_enabled()
    if prepared is None:
        memory_format = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
        prepared = prepare_weight(weight, up=up, dtype=dtype, memory_format=memory_format, demodulate=demodulate)
    wsq, conv_weight = prepared
    # Per-sample, per-output-channel output scale: demodulation times gain ([B, O] float32).
    if demodulate:
        oscale = (styles.float().square() @ wsq.t() + 1e-8).rsqrt() * gain
    else:
        oscale = None if gain == 1.0 else torch.full((b, out_ch), gain, device=x.device)
    b_vec = None if bias is None else bias.to(dtype)
    bias_done = False
    if kh == 1 and kw == 1 and up == 1:
        # 1x1 (ToRGB): a batched matrix product with per-sample weights; PyTorch's conv
        # routes a 3-output 1x1 conv to a slow generic path.
        wm = conv_weight.reshape(out_ch, in_ch)[None] * styles.to(dtype)[:, None, :]  # [B, O, I]
        if oscale is not None:
            wm = wm * oscale.to(dtype)[:, :, None]
        if _is_channels_last(x):
            y = torch.matmul(x.permute(0, 2, 3, 1).reshape(b, h * w, in_ch), wm.transpose(1, 2))
            y = y.reshape(b, h, w, out_ch).permute(0, 3, 1, 2)
        else:
            y = torch.matmul(wm, x.reshape(b, in_ch, h * w)).reshape(b, out_ch, h, w)
    elif b == 1 and weight.numel() <= x.numel() and not (torch.is_grad_enabled() and styles.requires_grad):
        # One sample and a weight smaller than the activations: fold styles and the output
        # scale into the (prepared) weight -> one plain convolution, bias fused into it.
        if up == 1:
            in_shape, out_shape = (1, in_ch, 1, 1), (out_ch, 1, 1, 1)
        else:  # transposed weight [I, O, k, k]
            in_shape, out_shape = (in_ch, 1, 1, 1), (1, out_ch, 1, 1)
        wmod = conv_weight * styles.to(dtype).reshape(in_shape)
        if oscale is not None:
            wmod = wmod * oscale.to(dtype).reshape(out_shape)
        if up == 1:
            y = F.conv2d(x, wmod, b_vec, padding=pad)
            bias_done = True
        else:
            y = F.conv_transpose2d(x, wmod, stride=2)
    else:
        # Scale the activations, run one shared-weight convolution (the whole batch at once),
        # scale the outputs (NVIDIA's fused_modconv=False). Cheaper than modulating the weight
        # wherever the weight is the larger tensor, i.e. at low resolutions.
        xs = x * styles.to(dtype).reshape(b, in_ch, 1, 1)
        if up == 1:
            y = F.conv2d(xs, conv_weight, padding=pad)
        else:
            y = F.conv_transpose2d(xs, conv_weight, stride=2)
        if oscale is not None:
            d = oscale.to(dtype).reshape(b, out_ch, 1, 1)
            y = y.mul_(d) if inplace else y * d
    if up != 1:
        k = resample_filter.shape[-1]
        p = (k - 2) - (kh - 1)
        y = fir_filter(y, resample_filter, pad=((p + 1) // 2 + 1, p // 2 + 1), gain=4.0)
    if noise is not None:
        n = noise.to(dtype) * gain if gain != 1.0 else noise.to(dtype)
        y = y.add_(n) if inplace else y + n
    if b_vec is not None and not bias_done:
        bb = b_vec.reshape(1, -1, 1, 1)
        y = y.add_(bb) if inplace else y + bb
    return y
