"""Fixtures for the training tests: tiny networks, the NVIDIA fixture pickle, 32 px aligned faces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import DATA

NVIDIA_TINY = DATA / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"
ALIGNED = sorted((DATA / "ffhq_align").glob("*_f0[0-2]_256.png"))


@pytest.fixture(autouse=True)
def _one_thread():
    # The machine's 2 cores are shared: with 2 intra-op threads and a busy neighbour, torch's
    # small ops spin-wait and run 100x slower. One thread keeps the timings stable.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_generator(resolution: int = 16, *, seed: int = 0):
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    cfg = GeneratorConfig(z_dim=16, w_dim=16, img_resolution=resolution, mapping_layers=2,
                          channels={r: 16 for r in (4, 8, 16, 32, 64) if r <= resolution})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator(cfg)
        for name, p in G.named_parameters():  # give the noise strengths a value so noise matters
            if name.endswith("noise_strength"):
                p.data.fill_(0.1)
    return G


def tiny_discriminator(resolution: int = 16, *, seed: int = 1, mbstd_group_size: int = 2):
    from facefeat.models.stylegan2 import Discriminator, DiscriminatorConfig

    cfg = DiscriminatorConfig(img_resolution=resolution, mbstd_group_size=mbstd_group_size,
                              channels={r: 16 for r in (4, 8, 16, 32, 64) if r <= resolution})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Discriminator(cfg)


@pytest.fixture(scope="session")
def nvidia_tiny() -> Path:
    if not NVIDIA_TINY.is_file():
        pytest.skip(f"{NVIDIA_TINY} is missing (copied from ../shared/fixtures/stylegan2 by the stylegan2 tests)")
    return NVIDIA_TINY


@pytest.fixture(scope="session")
def faces32() -> np.ndarray:
    """Real FFHQ-aligned faces (from the alignment fixture) resized to 32 px, uint8 (N, 32, 32, 3)."""
    import PIL.Image

    assert len(ALIGNED) >= 12, "tests/data/ffhq_align is incomplete"
    return np.stack([np.asarray(PIL.Image.open(p).convert("RGB").resize((32, 32), PIL.Image.LANCZOS))
                     for p in ALIGNED])
