"""Exponential moving average of the generator weights (``G_ema``), stylegan2-ada-pytorch's rule.

After every minibatch of ``batch_size`` images, with ``cur_nimg`` images shown before it::

    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    beta = 0.5 ** (batch_size / max(ema_nimg, 1e-8))
    p_ema = p + beta * (p_ema - p)             # for every parameter
    b_ema = b                                  # for every buffer (w_avg, noise maps)

so ``ema_kimg`` is the half-life in thousands of images, and with a ramp-up the half-life is
at most ``ema_rampup`` times the images shown so far (``beta = 0``, a plain copy, at the start).
"""

from __future__ import annotations

import torch
from torch import nn


def ema_beta(batch_size: int, ema_kimg: float, ema_rampup: float | None, cur_nimg: int) -> float:
    """Decay of one EMA step (see the module notes)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, beta: float) -> None:
    """``p_ema <- lerp(p, p_ema, beta)`` for parameters, copy for buffers (in place)."""
    for p_ema, p in zip(G_ema.parameters(), G.parameters(), strict=True):
        p_ema.copy_(p.detach().lerp(p_ema, beta))
    for b_ema, b in zip(G_ema.buffers(), G.buffers(), strict=True):
        b_ema.copy_(b)
