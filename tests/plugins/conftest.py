"""Fixtures of the encoder tests (``e4e`` extractor, hybrid inversion in ``stylegan2``).

e4e codes are 512 wide, the tiny fixture generators in tests/data/stylegan2 have w_dim 64, so
these tests build their own small generator: 32 px (8 W+ rows), w_dim 512, 2 mapping layers,
8-32 channels, seeded random weights. The encoder is an ``Encoder4Editing(32, input_size=64)``
with seeded random weights (its codes are deterministic functions of the crop, which is all the
plumbing tests need), saved in the official e4e layout with ``latent_avg`` = the generator's
mean w and the generator as its rosinality-layout ``decoder.*``. Files that only need to fail
at the header are written with ``meta`` tensors (a few kB).
"""

from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def make_generator(seed: int = 0):
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    cfg = GeneratorConfig.nvidia(32, z_dim=512, w_dim=512, mapping_layers=2, channel_base=256, channel_max=32)
    torch.manual_seed(seed)
    return Generator(cfg).eval().requires_grad_(False)


@pytest.fixture(scope="session")
def e4e_files(tmp_path_factory):
    """Paths: ``generator`` (facefeat format), ``encoder`` (bundled decoder), ``plain`` (same
    encoder, no decoder), ``no_avg`` and ``styles10`` (meta tensors: header-only failures)."""
    from facefeat.models.checkpoints import save_checkpoint
    from facefeat.models.e4e import Encoder4Editing, rosinality_decoder_state_dict, save_e4e_checkpoint

    root = tmp_path_factory.mktemp("e4e")
    G = make_generator()
    gen_weights, _ = save_checkpoint(root / "g512", {"G_ema": G})
    torch.manual_seed(1)
    enc = Encoder4Editing(32, input_size=64).eval()
    w_avg = G.mean_w(2000, seed=0)
    files = {"generator": gen_weights}
    files["encoder"] = save_e4e_checkpoint(root / "enc_bundled.pt", enc, latent_avg=w_avg,
                                           decoder_state_dict=rosinality_decoder_state_dict(G))
    files["plain"] = save_e4e_checkpoint(root / "enc_plain.pt", enc, latent_avg=w_avg)
    with torch.device("meta"):
        meta8 = Encoder4Editing(32, input_size=64)
        meta10 = Encoder4Editing(64, input_size=64)
    files["no_avg"] = save_e4e_checkpoint(root / "enc_no_avg.pt", meta8, latent_avg=None)
    files["styles10"] = save_e4e_checkpoint(root / "enc_styles10.pt", meta10, latent_avg=torch.zeros(10, 512))
    return files
