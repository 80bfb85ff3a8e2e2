"""The simulate demo's generator is package data, and it is the test checkpoint it was made from."""

from __future__ import annotations

from pathlib import Path

import torch

import facefeat
from facefeat.models.checkpoints import load_generator
from facefeat.simulate import design

SOURCE = Path(__file__).resolve().parents[1] / "data" / "stylegan2" / "rosinality_tiny_train_ckpt.pt"


def test_default_generator_is_package_data():
    path = design.resolve_generator(None)
    assert path == design.resolve_generator("tiny") == design.tiny_generator_path()
    assert Path(facefeat.__file__).resolve().parent in path.resolve().parents  # inside the package, not tests/
    assert path.suffix == ".safetensors" and path.with_suffix(".json").is_file()


def test_package_generator_renders_like_its_source_checkpoint():
    G_pkg, G_src = load_generator(design.tiny_generator_path()), load_generator(SOURCE)
    assert (G_pkg.img_resolution, G_pkg.num_ws, G_pkg.w_dim) == (32, 8, 64)
    assert torch.equal(G_pkg.w_avg, G_src.w_avg)
    z = torch.randn(4, G_src.z_dim, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = G_pkg.synthesis(G_pkg.mapping(z), noise_mode="const")
        b = G_src.synthesis(G_src.mapping(z), noise_mode="const")
    assert torch.equal(a, b)
