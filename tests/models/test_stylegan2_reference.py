"""facefeat's StyleGAN2 reproduces the official implementations' outputs (tiny fixture models).

Reference arrays: ``tests/data/stylegan2/*_reference.npz``, computed by rosinality/stylegan2-pytorch
and NVlabs/stylegan2-ada-pytorch on CPU in float32 (see that folder's README). Tolerances:
``atol = rtol = 1e-4`` for images and discriminator logits, ``1e-5`` for mapping outputs (the
fixture README measured up to 1.1e-5 between the official fused and non-fused paths; mistakes
give O(1) errors).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from facefeat.models.checkpoints import load_discriminator, load_generator
from facefeat.models.stylegan2 import style_mix, truncate

DIR = Path(__file__).resolve().parents[1] / "data" / "stylegan2"
IMG_TOL = dict(atol=1e-4, rtol=1e-4)
MAP_TOL = dict(atol=1e-5, rtol=1e-5)
IMPLS = ["fast", "reference"]


def _ref(name: str) -> dict[str, torch.Tensor]:
    with np.load(DIR / name) as z:
        return {k: torch.from_numpy(z[k]) for k in z.files}


def _check(out: torch.Tensor, ref: torch.Tensor, tol: dict, what: str) -> None:
    assert tuple(out.shape) == tuple(ref.shape), what
    err = (out - ref).abs().max().item()
    assert torch.allclose(out, ref, **tol), f"{what}: max abs error {err:.3g}"


# --------------------------------------------------------------------------------------------
# rosinality
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ros():
    return _ref("rosinality_tiny_reference.npz")


@pytest.fixture(scope="module")
def ros_G():
    # the training checkpoint: g_ema, with w_avg = mean_w(4096, seed=3) = rosinality's
    # torch.manual_seed(3); g_ema.mean_latent(4096)
    return load_generator(DIR / "rosinality_tiny_train_ckpt.pt", which="g_ema", w_avg_samples=4096, w_avg_seed=3)


@pytest.fixture(scope="module")
def ros_D():
    return load_discriminator(DIR / "rosinality_tiny_train_ckpt.pt", which="d")


def test_rosinality_config_inferred_from_shapes(ros_G, ros_D):
    assert ros_G.config.channels == {4: 64, 8: 64, 16: 32, 32: 32}  # not the upstream table
    assert (ros_G.num_ws, ros_G.z_dim, ros_G.w_dim, ros_G.img_resolution) == (8, 64, 64, 32)
    assert sum(p.numel() for p in ros_G.parameters()) == 202_291
    assert sum(p.numel() for p in ros_D.parameters()) == 230_561
    assert ros_D.config.mbstd_group_size == 4


@torch.no_grad()
def test_rosinality_mapping(ros_G, ros):
    _check(ros_G.mapping.embed(ros["in_z"]), ros["out_w"], MAP_TOL, "out_w")
    _check(ros_G.mapping(ros["in_z"]), ros["out_latent_z"], MAP_TOL, "out_latent_z")
    _check(ros_G.mean_w(4096, seed=3)[None], ros["out_mean_latent"], MAP_TOL, "out_mean_latent")
    _check(ros_G.w_avg[None], ros["out_mean_latent"], MAP_TOL, "w_avg from mean_w(4096, 3)")
    ws = ros_G.mapping(ros["in_z"], truncation_psi=0.7, truncation_latent=ros["out_mean_latent"])
    _check(ws, ros["out_latent_z_trunc07"], MAP_TOL, "out_latent_z_trunc07")
    mix = style_mix(ros_G.mapping(ros["in_z"]), ros_G.mapping(ros["in_z2"]), 3)
    _check(mix, ros["out_latent_mix_z_z2_inject3"], MAP_TOL, "out_latent_mix_z_z2_inject3")


@pytest.mark.parametrize("impl", IMPLS)
@torch.no_grad()
def test_rosinality_synthesis(ros_G, ros, impl):
    syn = lambda ws, **kw: ros_G.synthesis(ws, noise_mode="const", impl=impl, **kw)  # noqa: E731
    _check(syn(ros_G.mapping(ros["in_z"])), ros["out_img_z"], IMG_TOL, "out_img_z")
    ws = ros_G.mapping(ros["in_z"], truncation_psi=0.7, truncation_latent=ros["out_mean_latent"])
    _check(syn(ws), ros["out_img_z_trunc07"], IMG_TOL, "out_img_z_trunc07")
    _check(syn(ros["in_wplus"]), ros["out_img_wplus"], IMG_TOL, "out_img_wplus")
    wt = truncate(ros["in_wplus"], 0.7, None, ros["out_mean_latent"])
    _check(syn(wt), ros["out_img_wplus_trunc07"], IMG_TOL, "out_img_wplus_trunc07")
    noise = [ros[f"in_noise_{i}"] for i in range(7)]
    _check(syn(ros["in_wplus"], noise=noise), ros["out_img_wplus_explicit_noise"], IMG_TOL,
           "out_img_wplus_explicit_noise")
    mix = style_mix(ros_G.mapping(ros["in_z"]), ros_G.mapping(ros["in_z2"]), 3)
    _check(syn(mix), ros["out_img_mix_z_z2_inject3"], IMG_TOL, "out_img_mix_z_z2_inject3")
    # batch 1 takes the weight-folding path of the fast implementation
    _check(syn(ros["in_wplus"][2:3]), ros["out_img_wplus"][2:3], IMG_TOL, "out_img_wplus[2] alone")


def test_rosinality_noise_buffers_are_g_emas(ros_G, ros):
    got = [ros_G.synthesis.b4.conv1.noise_const] + [
        getattr(getattr(ros_G.synthesis, f"b{r}"), c).noise_const for r in (8, 16, 32) for c in ("conv0", "conv1")]
    for i, t in enumerate(got):
        assert torch.equal(t, ros[f"buf_noise_{i}"][0, 0]), f"noises.noise_{i}"


@torch.no_grad()
def test_rosinality_discriminator(ros_D, ros):
    _check(ros_D(ros["in_d_images"]), ros["out_d_images"], IMG_TOL, "out_d_images")
    _check(ros_D(ros["in_d_images8"]), ros["out_d_images8"], IMG_TOL, "out_d_images8 (two strided groups)")
    _check(ros_D(ros["out_img_wplus"]), ros["out_d_img_wplus"], IMG_TOL, "out_d_img_wplus")


@torch.no_grad()
def test_rosinality_converted_checkpoint_uses_latent_avg(ros):
    G = load_generator(DIR / "rosinality_tiny_converted_ckpt.pt")
    assert G.w_avg_source == "latent_avg"
    _check(G.w_avg[None], ros["out_mean_latent"], MAP_TOL, "latent_avg")
    _check(G(ros["in_z"], truncation_psi=0.7), ros["out_img_z_trunc07"], IMG_TOL, "G(z, psi=0.7) via latent_avg")


@torch.no_grad()
def test_rosinality_g_is_not_g_ema(ros):
    g = load_generator(DIR / "rosinality_tiny_train_ckpt.pt", which="g")
    assert (g.synthesis(ros["in_wplus"]) - ros["out_img_wplus"]).abs().max() > 0.1


# --------------------------------------------------------------------------------------------
# NVIDIA
# --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nv():
    return _ref("nvidia_tiny_reference.npz")


@pytest.fixture(scope="module")
def nv_G():
    return load_generator(DIR / "nvidia_tiny_network-snapshot.pkl")


@pytest.fixture(scope="module")
def nv_D():
    return load_discriminator(DIR / "nvidia_tiny_network-snapshot.pkl")


def test_nvidia_config(nv_G, nv_D):
    assert nv_G.config.channels == {4: 64, 8: 64, 16: 64, 32: 32}
    assert sum(p.numel() for p in nv_G.parameters()) == 263_987
    assert sum(p.numel() for p in nv_D.parameters()) == 288_993
    assert nv_G.num_ws == 8


@torch.no_grad()
def test_nvidia_mapping_and_truncation(nv_G, nv):
    _check(nv_G.w_avg, nv["buf_w_avg"], MAP_TOL, "buf_w_avg")
    _check(nv_G.mean_w(4096, seed=3), nv["chk_w_avg_recomputed"], MAP_TOL, "chk_w_avg_recomputed")
    _check(nv_G.mapping(nv["in_z"]), nv["out_ws"], MAP_TOL, "out_ws")
    _check(nv_G.mapping(nv["in_z"], truncation_psi=0.7), nv["out_ws_trunc07"], MAP_TOL, "out_ws_trunc07")
    _check(nv_G.mapping(nv["in_z"], truncation_psi=0.7, truncation_cutoff=4), nv["out_ws_trunc07_cutoff4"],
           MAP_TOL, "out_ws_trunc07_cutoff4")


@pytest.mark.parametrize("impl", IMPLS)
@torch.no_grad()
def test_nvidia_synthesis(nv_G, nv, impl):
    syn = lambda ws, mode="const": nv_G.synthesis(ws, noise_mode=mode, impl=impl)  # noqa: E731
    _check(syn(nv["out_ws"]), nv["out_img_ws"], IMG_TOL, "out_img_ws")
    _check(syn(nv["out_ws_trunc07"]), nv["out_img_ws_trunc07"], IMG_TOL, "out_img_ws_trunc07")
    _check(syn(nv["in_ws"]), nv["out_img_in_ws"], IMG_TOL, "out_img_in_ws")
    _check(syn(nv["in_ws"], "none"), nv["out_img_in_ws_nonoise"], IMG_TOL, "out_img_in_ws_nonoise")
    _check(syn(nv["in_ws"][1:2]), nv["out_img_in_ws"][1:2], IMG_TOL, "out_img_in_ws[1] alone")
    nv_G.synthesis.impl = impl
    try:
        _check(nv_G(nv["in_z"], truncation_psi=0.7, noise_mode="const"), nv["out_img_G_z_trunc07"], IMG_TOL,
               "out_img_G_z_trunc07")
    finally:
        nv_G.synthesis.impl = "fast"


@torch.no_grad()
def test_nvidia_discriminator(nv_D, nv):
    _check(nv_D(nv["in_d_images"]), nv["out_d_images"], IMG_TOL, "out_d_images")
    _check(nv_D(nv["in_d_images8"]), nv["out_d_images8"], IMG_TOL, "out_d_images8 (two strided groups)")
    _check(nv_D(nv["out_img_in_ws"]), nv["out_d_img_in_ws"], IMG_TOL, "out_d_img_in_ws")


@torch.no_grad()
def test_nvidia_G_is_not_G_ema(nv):
    G = load_generator(DIR / "nvidia_tiny_network-snapshot.pkl", which="G")
    assert (G.synthesis(nv["in_ws"]) - nv["out_img_in_ws"]).abs().max() > 0.1


@torch.no_grad()
def test_random_noise_mode_differs_and_is_seedable(nv_G, nv):
    ws = nv["in_ws"]
    a = nv_G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
    b = nv_G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert (a - nv["out_img_in_ws"]).abs().max() > 0.1
