"""Fixtures of the inversion tests: the tiny NVIDIA fixture generator (32 px, 8 x 64 W+).

The fixture's weights come from a "simulated training" (see tests/data/stylegan2/README.md):
its images have a pixel std of about 2 (55 % of the pixels outside [-1, 1]) and large noise
strengths (up to 0.71). ``G_display`` is the same generator with every ToRGB weight and bias
times 0.25 -- the output is a sum of ToRGB outputs, so this scales the image by exactly 0.25
(std ~0.6, 4 % of pixels clipped) -- so that rendered targets are displayable images that a
[0, 255] target can hold.
"""

from __future__ import annotations

import pytest
import torch

from tests.conftest import DATA

TINY_NVIDIA = DATA / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"
TINY_ROSINALITY = DATA / "stylegan2" / "rosinality_tiny_converted_ckpt.pt"


@pytest.fixture(scope="session")
def G_tiny():
    from facefeat.models.checkpoints import load_generator

    return load_generator(TINY_NVIDIA)


@pytest.fixture(scope="session")
def G_display():
    from facefeat.models.checkpoints import load_generator

    G = load_generator(TINY_NVIDIA)
    with torch.no_grad():
        for res in G.synthesis.block_resolutions:
            torgb = getattr(G.synthesis, f"b{res}").torgb
            torgb.weight.mul_(0.25)
            torgb.bias.mul_(0.25)
    return G


@pytest.fixture(scope="session")
def display_stats(G_display):
    from facefeat.inversion import w_stats

    return w_stats(G_display)


def render_targets(G, n: int, *, seed: int = 1, mix_at: int | None = None):
    """``(ws_true [n, num_ws, w_dim], target [n, 3, R, R] in [0, 255])`` from random z;
    with ``mix_at`` the rows from ``mix_at`` on come from a second z (a W+ latent)."""
    from facefeat.models.stylegan2 import style_mix

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        ws = G.mapping(torch.randn(n, G.z_dim, generator=g))
        if mix_at is not None:
            ws = style_mix(ws, G.mapping(torch.randn(n, G.z_dim, generator=g)), mix_at)
        img = G.synthesis(ws, noise_mode="const")
    return ws, (img.clamp(-1, 1) + 1) * 127.5
