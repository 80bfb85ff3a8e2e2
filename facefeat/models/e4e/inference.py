"""Encoder inference: e4e's input handling, batching and the ``latent_avg`` addition.

Input handling follows e4e's inference transform (``Resize((256, 256))`` on a PIL image,
``ToTensor()``, ``Normalize([0.5]*3, [0.5]*3)``): an FFHQ-aligned RGB face is resized to
256x256 with bilinear filtering if needed, scaled to [0, 1], then mapped to [-1, 1].
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F

from facefeat.errors import ConfigError, InputError, ModelError
from facefeat.models.e4e.network import STYLE_DIM, Encoder4Editing

ImageBatch = Union[np.ndarray, torch.Tensor, Sequence[Union[np.ndarray, torch.Tensor]]]

_RANGE_TOL = 1e-4


def add_latent_avg(codes: torch.Tensor, latent_avg: torch.Tensor) -> torch.Tensor:
    """``codes + latent_avg`` as e4e does it (``latent_avg.repeat(B, 1, 1)``).

    A ``(n_styles, 512)`` average is added row by row, a ``(512,)`` one to every row.

    Raises
    ------
    ModelError
        If ``latent_avg`` has neither shape.
    """
    n_styles = codes.shape[1]
    if tuple(latent_avg.shape) not in ((n_styles, STYLE_DIM), (STYLE_DIM,)):
        raise ModelError(
            f"latent_avg has shape {tuple(latent_avg.shape)}; expected ({n_styles}, {STYLE_DIM}) or ({STYLE_DIM},) "
            f"for codes with {n_styles} styles."
        )
    la = latent_avg.to(device=codes.device, dtype=codes.dtype)
    return codes + (la.unsqueeze(0) if la.dim() == 2 else la)


def _to_chw(img: np.ndarray | torch.Tensor, *, what: str) -> torch.Tensor:
    """One image, HWC or CHW, -> CHW tensor (dtype kept). Raises InputError on other shapes."""
    t = torch.from_numpy(np.ascontiguousarray(img)) if isinstance(img, np.ndarray) else img
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{what}: expected a numpy array or torch tensor, got {type(img).__name__}")
    shape = tuple(t.shape)
    if t.dim() != 3:
        raise InputError(
            f"{what}: expected one RGB image of shape (H, W, 3) or (3, H, W), got shape {shape}"
            + (" (grayscale: convert it to RGB first)" if t.dim() == 2 else "")
        )
    last, first = shape[-1] == 3, shape[0] == 3
    if last and first:
        raise InputError(f"{what}: shape {shape} is ambiguous (3x3 pixels?); expected an aligned face image")
    if last:
        t = t.permute(2, 0, 1)
    elif not first:
        raise InputError(
            f"{what}: expected 3 colour channels (RGB) first or last, got shape {shape}; "
            f"convert RGBA / grayscale images to RGB first"
        )
    h, w = t.shape[-2:]
    if h != w:
        raise InputError(
            f"{what}: image is {h}x{w}; e4e takes square FFHQ-aligned faces. Align the photo first "
            f"(facefeat.face alignment) instead of feeding the raw photo."
        )
    return t


def _iter_images(images: ImageBatch) -> tuple[int, Iterator[tuple[int, torch.Tensor]]]:
    if isinstance(images, (np.ndarray, torch.Tensor)):
        if images.ndim != 4:
            raise InputError(
                f"images: expected a batch of shape (B, H, W, 3) or (B, 3, H, W), got shape {tuple(images.shape)}"
                + (" (a single image: add a batch axis or pass a list)" if images.ndim == 3 else "")
            )
        n = images.shape[0]
        return n, ((i, _to_chw(images[i], what=f"images[{i}]")) for i in range(n))
    if isinstance(images, Sequence) and not isinstance(images, (str, bytes)):
        return len(images), ((i, _to_chw(img, what=f"images[{i}]")) for i, img in enumerate(images))
    raise InputError(f"images: expected an array, a tensor or a list of images, got {type(images).__name__}")


def _prepare_one(t: torch.Tensor, *, normalized: bool, what: str, input_size: int = 256) -> torch.Tensor:
    """CHW image -> float32 CHW ``input_size`` square in [-1, 1], as e4e's transform does it."""
    size = t.shape[-1]
    if t.dtype == torch.uint8:
        if normalized:
            raise InputError(f"{what}: normalized=True expects float images in [-1, 1], got uint8")
        if size != input_size:
            # PIL bilinear on the uint8 image, exactly torchvision's Resize on a PIL image.
            from PIL import Image

            hwc = t.permute(1, 2, 0).cpu().numpy()
            hwc = np.asarray(Image.fromarray(hwc, "RGB").resize((input_size, input_size), Image.Resampling.BILINEAR))
            t = torch.from_numpy(hwc.copy()).permute(2, 0, 1)
        x = t.float().div(255)
    elif t.is_floating_point():
        x = t.float()
        if not torch.isfinite(x).all():
            raise InputError(f"{what}: image has NaN or infinite values")
        lo, hi = (-1.0, 1.0) if normalized else (0.0, 1.0)
        mn, mx = float(x.min()), float(x.max())
        if mn < lo - _RANGE_TOL or mx > hi + _RANGE_TOL:
            raise InputError(
                f"{what}: float values span [{mn:.4g}, {mx:.4g}] but must lie in [{lo:g}, {hi:g}]"
                + (" (pass uint8 images, or floats divided by 255)" if not normalized else "")
                + ("; pass normalized=True for images already mapped to [-1, 1]" if not normalized and mn < 0 else "")
            )
        x = x.clamp(lo, hi)
        if size != input_size:
            # Float input: torch's antialiased bilinear, the closest match of PIL's filter.
            x = F.interpolate(x[None], size=(input_size, input_size), mode="bilinear",
                              align_corners=False, antialias=size > input_size)[0]
            x = x.clamp(lo, hi)
        if normalized:
            return x
    else:
        raise InputError(f"{what}: images must be uint8 (0-255) or float (0-1), got dtype {t.dtype}")
    return (x - 0.5) / 0.5


def encode(
    encoder: Encoder4Editing,
    images: ImageBatch,
    *,
    latent_avg: torch.Tensor | None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    normalized: bool = False,
) -> torch.Tensor:
    """W+ codes of aligned face images, one per input, in input order.

    Parameters
    ----------
    encoder : Encoder4Editing
        On ``device`` already (``encoder.to(device)``). Run in eval mode (its mode is restored).
    images : array, tensor or sequence of images
        RGB, FFHQ-aligned faces (square). A batch ``(B, H, W, 3)`` or ``(B, 3, H, W)``, or a list
        of ``(H, W, 3)`` / ``(3, H, W)`` images of possibly different sizes. uint8 in 0-255, or
        float in [0, 1] (``normalized=False``) or [-1, 1] (``normalized=True``, i.e. already the
        network input). Images that are not ``encoder.input_size`` square (256 for the official
        encoders) are resized: uint8 with PIL bilinear
        (e4e's own transform), float with torch's antialiased bilinear.
    latent_avg : torch.Tensor or None
        The checkpoint's average latent, ``(n_styles, 512)`` or ``(512,)``, added to the encoder
        output as e4e does. ``None`` returns the raw encoder offsets (required keyword so it is
        never forgotten by accident).
    batch_size : int, default 8
        Images per forward pass; the last batch may be smaller (every image gets a code).
    device : str or torch.device, default "cpu"
        Where the forward pass runs; must be the encoder's device.
    normalized : bool, default False
        Float images are already in [-1, 1].

    Returns
    -------
    torch.Tensor
        float32 ``[B, n_styles, 512]`` on the CPU (``[0, n_styles, 512]`` for no images).

    Raises
    ------
    InputError
        Wrong shapes (not 3 channels, not square, not a batch), dtypes or value ranges; the
        message names the image index.
    ConfigError
        ``batch_size`` < 1 or the encoder is on another device.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = torch.device(device)
    param = next(encoder.parameters())
    if param.device.type != device.type or (device.index is not None and param.device != device):
        raise ConfigError(
            f"encoder is on {param.device} but device={str(device)!r}; move it first (encoder.to(device))"
        )
    if latent_avg is not None and tuple(latent_avg.shape) not in ((encoder.n_styles, STYLE_DIM), (STYLE_DIM,)):
        raise ModelError(
            f"latent_avg has shape {tuple(latent_avg.shape)}; expected ({encoder.n_styles}, {STYLE_DIM}) "
            f"or ({STYLE_DIM},) for this encoder"
        )
    n, items = _iter_images(images)
    out = torch.empty(n, encoder.n_styles, STYLE_DIM, dtype=torch.float32)
    was_training = encoder.training
    encoder.eval()
    try:
        with torch.inference_mode():
            batch: list[torch.Tensor] = []
            start = 0
            for i, img in items:
                batch.append(_prepare_one(img, normalized=normalized, what=f"images[{i}]",
                                           input_size=encoder.input_size))
                if len(batch) == batch_size or i == n - 1:
                    x = torch.stack(batch).to(device)
                    codes = encoder(x)
                    if latent_avg is not None:
                        codes = add_latent_avg(codes, latent_avg)
                    out[start:start + len(batch)] = codes.float().cpu()
                    start += len(batch)
                    batch = []
    finally:
        encoder.train(was_training)
    return out
