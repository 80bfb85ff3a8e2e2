"""PNG bytes for the report: the survival plots rendered to memory, images encoded as PNG."""

from __future__ import annotations

import io
from typing import Any, Callable


def plot_png(plot: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bytes, Any]:
    """Call one of :mod:`facefeat.survival.plots`' functions with an in-memory file as its
    ``path``; returns ``(png_bytes, what the function returned)``."""
    buf = io.BytesIO()
    result = plot(*args, path=buf, **kwargs)
    return buf.getvalue(), result


def figure_png(fig: Any) -> bytes:
    """A ``matplotlib.figure.Figure`` as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def array_png(image: Any) -> bytes:
    """An image (``PIL.Image``, or uint8 / float [0, 1] array ``H x W [x C]``) as PNG bytes."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        a = np.asarray(image)
        if a.dtype != np.uint8:
            a = np.clip(np.rint(np.asarray(a, float) * 255), 0, 255).astype(np.uint8)
        image = Image.fromarray(a)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
