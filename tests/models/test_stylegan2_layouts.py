"""Key layouts: every key of the official full-size networks maps, on the meta device.

The listings (``tests/data/stylegan2/*_fullsize_state_dict_shapes.json``) were produced by the
upstream code: rosinality 1024 config-f and 256 config-f, NVIDIA ``stylegan2`` @1024 and
``paper256``. No weights are needed: meta tensors with the listed shapes go through the same
config inference and strict mapping as real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from facefeat.errors import ModelError
from facefeat.models.stylegan2 import (
    DiscriminatorConfig,
    GeneratorConfig,
    discriminator_entries,
    discriminator_from_state_dict,
    generator_entries,
    generator_from_state_dict,
)

DIR = Path(__file__).resolve().parents[1] / "data" / "stylegan2"


def _meta(entries: list) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape, _dtype, _kind in entries}


def _nparams(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


ROS = json.loads((DIR / "rosinality_fullsize_state_dict_shapes.json").read_text())["configs"]
NV = json.loads((DIR / "nvidia_fullsize_state_dict_shapes.json").read_text())["configs"]


@pytest.mark.parametrize("name", sorted(ROS))
def test_rosinality_fullsize_maps_completely(name):
    spec = ROS[name]
    G = generator_from_state_dict(_meta(spec["g_ema"]), layout="rosinality", device="meta", source=name)
    D = discriminator_from_state_dict(_meta(spec["d"]), layout="rosinality", device="meta", source=name)
    res = 1024 if "1024" in name else 256
    assert G.img_resolution == D.img_resolution == res
    assert G.num_ws == spec["n_latent"]
    assert G.config.channels == {int(k): v for k, v in spec["channels"].items() if int(k) <= res}
    assert len(generator_entries(G.config, "rosinality")) == len(spec["g_ema"])
    assert len(discriminator_entries(D.config, "rosinality")) == len(spec["d"])
    assert _nparams(G) == spec["generator_num_params"]
    assert _nparams(D) == spec["discriminator_num_params"]
    assert G.config == GeneratorConfig.rosinality(res)
    assert D.config == DiscriminatorConfig.rosinality(res)


@pytest.mark.parametrize("name", sorted(NV))
def test_nvidia_fullsize_maps_completely(name):
    spec = NV[name]
    for net in ("G", "D"):
        assert net in spec
    G = generator_from_state_dict(_meta(spec["G"]), layout="nvidia", device="meta", source=name,
                                  init_kwargs=spec["G_init_kwargs"])
    D = discriminator_from_state_dict(_meta(spec["D"]), layout="nvidia", device="meta", source=name,
                                      init_kwargs=spec["D_init_kwargs"])
    gk = spec["G_init_kwargs"]
    assert G.img_resolution == gk["img_resolution"] and G.num_ws == spec["num_ws"]
    assert G.config.channels == {int(k): v for k, v in spec["synthesis_channels"].items()}
    assert G.config.conv_clamp == 256 and G.config.num_fp16_res == 4
    assert D.config.mbstd_group_size == spec["D_init_kwargs"]["epilogue_kwargs"]["mbstd_group_size"]
    assert len(generator_entries(G.config, "nvidia")) == len(spec["G"])
    assert len(discriminator_entries(D.config, "nvidia")) == len(spec["D"])
    assert _nparams(G) == spec["G_num_params"]
    assert _nparams(D) == spec["D_num_params"]
    syn = gk["synthesis_kwargs"]
    assert G.config == GeneratorConfig.nvidia(gk["img_resolution"], channel_base=syn["channel_base"],
                                              channel_max=syn["channel_max"], conv_clamp=256.0, num_fp16_res=4)


def test_rosinality_and_nvidia_1024_have_the_same_network():
    """Both official 1024 config-f layouts describe the same network (same facefeat keys/shapes)."""
    a = generator_from_state_dict(_meta(ROS["ffhq-1024-config-f"]["g_ema"]), layout="rosinality", device="meta")
    spec = NV["stylegan2 @1024 (train.py --cfg=stylegan2; FFHQ 1024)"]
    b = generator_from_state_dict(_meta(spec["G"]), layout="nvidia", device="meta")
    sa = {k: tuple(v.shape) for k, v in a.state_dict().items()}
    sb = {k: tuple(v.shape) for k, v in b.state_dict().items()}
    assert sa == sb


def test_tiny_listings_map():
    ros = json.loads((DIR / "rosinality_tiny_state_dict_shapes.json").read_text())
    G = generator_from_state_dict(_meta(ros["g_and_g_ema"]), device="meta")
    assert G.config.channels == {int(k): v for k, v in ros["channels"].items()}
    D = discriminator_from_state_dict(_meta(ros["d"]), device="meta")
    assert D.config.channels == {int(k): v for k, v in ros["channels"].items()}
    nv = json.loads((DIR / "nvidia_tiny_state_dict_shapes.json").read_text())
    for net in ("G", "G_ema"):
        G = generator_from_state_dict(_meta(nv[net]), device="meta", init_kwargs=nv[f"{net}_init_kwargs"])
        assert G.num_ws == nv["G_ema_num_ws"]
    discriminator_from_state_dict(_meta(nv["D"]), device="meta", init_kwargs=nv["D_init_kwargs"])


# --------------------------------------------------------------------------------------------
# strictness
# --------------------------------------------------------------------------------------------

@pytest.fixture()
def nv256():
    return _meta(NV["paper256 @256 (train.py --cfg=paper256)"]["G"])


def test_unexpected_key_is_listed(nv256):
    nv256["synthesis.b256.extra.weight"] = torch.empty(3, device="meta")
    with pytest.raises(ModelError, match=r"Unexpected \(1\): synthesis\.b256\.extra\.weight"):
        generator_from_state_dict(nv256, layout="nvidia", device="meta", source="x.pkl")


def test_missing_key_is_listed(nv256):
    del nv256["synthesis.b64.conv0.noise_strength"]
    with pytest.raises(ModelError, match=r"x\.pkl.*Missing \(1\): synthesis\.b64\.conv0\.noise_strength"):
        generator_from_state_dict(nv256, layout="nvidia", device="meta", source="x.pkl")


def test_shape_mismatch_is_reported(nv256):
    nv256["synthesis.b64.conv1.bias"] = torch.empty(7, device="meta")
    with pytest.raises(ModelError, match="shape mismatch.*synthesis.b64.conv1.bias"):
        generator_from_state_dict(nv256, layout="nvidia", device="meta")


def test_not_a_stylegan2_state_dict():
    with pytest.raises(ModelError, match="not a StyleGAN2 generator"):
        generator_from_state_dict({"fc.weight": torch.zeros(2, 2)}, source="resnet.pt")


def test_conditional_nvidia_generator_is_refused(nv256):
    nv256["mapping.embed.weight"] = torch.empty(512, 10, device="meta")
    with pytest.raises(ModelError, match="conditional"):
        generator_from_state_dict(nv256, layout="nvidia", device="meta")


def test_rosinality_filter_checked_with_its_factor_4():
    """rosinality stores the upsampling filters x4; a x1 copy means a different network."""
    import argparse

    with torch.serialization.safe_globals([argparse.Namespace]):
        ck = torch.load(DIR / "rosinality_tiny_converted_ckpt.pt", weights_only=True)
    sd = dict(ck["g_ema"])
    assert float(sd["convs.0.conv.blur.kernel"].sum()) == pytest.approx(4.0)
    generator_from_state_dict(sd, w_avg=ck["latent_avg"])
    sd["convs.2.conv.blur.kernel"] = sd["convs.2.conv.blur.kernel"] / 4
    with pytest.raises(ModelError, match="convs.2.conv.blur.kernel"):
        generator_from_state_dict(sd, w_avg=ck["latent_avg"])
