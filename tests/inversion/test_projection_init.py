"""Projection from given per-image latents (hybrid inversion: an encoder's codes as the start)."""

from __future__ import annotations

import pytest
import torch

from facefeat.errors import ConfigError
from facefeat.inversion import project
from tests.inversion.conftest import render_targets

torch.set_num_threads(1)


def test_per_image_wplus_init_is_batch_invariant(G_display, display_stats):
    """Each image starts from its own W+ code; batched (3 images, batch_size 2: a remainder
    batch) equals one by one, bit for bit, in batch-invariant mode."""
    ws, target = render_targets(G_display, 3, seed=4, mix_at=3)
    init = ws + 0.2 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(0))
    kw = dict(space="wplus", num_steps=6, w_stats_cache=display_stats, batch_invariant=True)
    rb = project(G_display, target, init=init, seed=[1, 2, 3], batch_size=2, **kw)
    singles = [project(G_display, target[i:i + 1], init=init[i:i + 1], seed=[i + 1], **kw) for i in range(3)]
    assert torch.equal(rb.latents, torch.cat([r.latents for r in singles]))
    assert torch.equal(rb.psnr, torch.cat([r.psnr for r in singles]))
    zero = project(G_display, target, init=init, num_steps=0, w_stats_cache=display_stats)
    assert torch.equal(zero.latents, init)  # zero steps: exactly the given start
    assert rb.params["init"] == "given"


def test_a_good_start_beats_w_avg_at_few_steps(G_display, display_stats):
    """What hybrid inversion relies on: started near the true latent (as a trained encoder would
    place it), a short projection reconstructs better than the same budget from the mean w --
    with the hybrid schedule (the stylegan2 extractor's encoder_* defaults: learning rate 0.03, no
    latent exploration noise). NVIDIA's schedule (0.1, noise 0.05 w_std) throws such a start away
    within 10 steps (measured: from 30 dB at the start down to ~22 dB)."""
    ws, target = render_targets(G_display, 4, seed=5, mix_at=4)
    near = ws + 0.1 * display_stats[1] / ws.shape[-1] ** 0.5 * torch.randn(
        ws.shape, generator=torch.Generator().manual_seed(1))
    kw = dict(space="wplus", num_steps=10, w_stats_cache=display_stats, seed=0, optimize_noise=False)
    from_avg = project(G_display, target, **kw)
    from_near = project(G_display, target, init=near, initial_learning_rate=0.03, initial_noise_factor=0.0, **kw)
    start = project(G_display, target, init=near, **{**kw, "num_steps": 0})
    assert from_near.psnr.median() > from_avg.psnr.median() + 5
    assert from_near.psnr.median() >= start.psnr.median() - 0.5  # the start is not thrown away


def test_space_w_needs_one_w_per_image(G_display, display_stats):
    ws, target = render_targets(G_display, 2, seed=6, mix_at=4)
    with pytest.raises(ConfigError, match="one w per image"):
        project(G_display, target, init=ws, space="w", num_steps=0, w_stats_cache=display_stats)
    r = project(G_display, target, init=ws.mean(1, keepdim=True), space="w", num_steps=0,
                w_stats_cache=display_stats)
    assert torch.equal(r.latents, ws.mean(1, keepdim=True))


def test_const_noise_init_starts_at_the_const_rendering(G_display, display_stats):
    """noise_init='const': optimised noise maps start at the generator's stored noise, so zero
    steps reproduce the noise_mode='const' rendering of the start (an encoder's reconstruction)."""
    from facefeat.inversion.metrics import image_mse

    ws, target = render_targets(G_display, 2, seed=7, mix_at=4)
    init = ws + 0.3 * torch.randn(ws.shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = image_mse(G_display.synthesis(init, noise_mode="const"), target)
    r = project(G_display, target, init=init, num_steps=0, noise_init="const", w_stats_cache=display_stats)
    assert torch.equal(r.mse, ref) and r.noises is not None
    rand = project(G_display, target, init=init, num_steps=0, w_stats_cache=display_stats)
    assert not torch.equal(rand.mse, ref)  # random maps: another image (the fixture has strong noise)
    with pytest.raises(ConfigError, match="noise_init"):
        project(G_display, target, noise_init="zeros", num_steps=0, w_stats_cache=display_stats)
