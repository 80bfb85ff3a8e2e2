"""e4e encoder: architecture keys, official checkpoint loading and errors, input handling.

Checkpoint tests write official-layout files of ``meta`` tensors (no weights), so the full
1024 px key listing is loaded end to end through ``torch.load(weights_only=True)`` in
milliseconds. Numerical agreement with the official code is in ``test_e4e_exact.py``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from facefeat.errors import ConfigError, InputError, ModelError
from facefeat.models.e4e import (
    E4E_FFHQ_ENCODE,
    Encoder4Editing,
    add_latent_avg,
    check_num_ws,
    encode,
    load_e4e,
    n_styles_for_resolution,
    resolution_for_n_styles,
    save_e4e_checkpoint,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "e4e"
DTYPES = {"float32": torch.float32, "int64": torch.int64}


@pytest.fixture(scope="module")
def official_listing() -> dict:
    return json.loads((DATA / "e4e_ffhq_encode_state_dict_keys.json").read_text())


def _meta_sd(rows: list[dict]) -> dict[str, torch.Tensor]:
    return {r["key"]: torch.empty(r["shape"], dtype=DTYPES[r["dtype"]], device="meta") for r in rows}


@pytest.fixture
def official_ckpt(official_listing) -> dict:
    """An official-layout e4e_ffhq_encode.pt dict, with meta tensors."""
    return {
        "state_dict": _meta_sd(official_listing["keys"]),
        "opts": {"stylegan_size": 1024, "encoder_type": "Encoder4Editing", "start_from_latent_avg": True,
                 "dataset_type": "ffhq_encode", "checkpoint_path": None, "lpips_lambda": 0.8},
        "latent_avg": torch.empty(18, 512, device="meta"),
    }


def _save(tmp_path: Path, ckpt: dict, name: str = "e4e.pt") -> Path:
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


# -- architecture -------------------------------------------------------------------------------


@pytest.mark.parametrize("res,n", [(4, 2), (64, 10), (256, 14), (512, 16), (1024, 18)])
def test_n_styles_follows_resolution(res, n):
    assert n_styles_for_resolution(res) == n
    assert resolution_for_n_styles(n) == res


@pytest.mark.parametrize("bad", [0, 2, 100, 1000])
def test_n_styles_rejects_non_power_of_two(bad):
    with pytest.raises(ValueError, match="power of two"):
        n_styles_for_resolution(bad)


def test_official_1024_listing_maps_completely(official_listing):
    with torch.device("meta"):
        enc = Encoder4Editing(1024)
    ours = {f"encoder.{k}": (list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in enc.state_dict().items()}
    theirs = {r["key"]: (r["shape"], r["dtype"]) for r in official_listing["keys"] if r["key"].startswith("encoder.")}
    assert set(ours) == set(theirs)
    assert ours == theirs
    assert len(ours) == official_listing["n_encoder_keys"] == 621
    assert sum(t.numel() for t in enc.state_dict().values()) == official_listing["encoder_numel"] == 267_161_076
    assert enc.n_styles == official_listing["n_styles"] == 18


def test_tiny_listing_maps_completely():
    listing = json.loads((DATA / "tiny_encoder_keys.json").read_text())
    with torch.device("meta"):
        enc = Encoder4Editing(64)
    ours = {k: list(v.shape) for k, v in enc.state_dict().items()}
    assert ours == {r["key"]: r["shape"] for r in listing["keys"]}
    assert enc.n_styles == 10


def test_forward_shapes_and_taps_on_meta():
    with torch.device("meta"):
        enc = Encoder4Editing(64).eval()
        x = torch.empty(3, 3, 256, 256)
        c1, c2, c3 = enc.features(x)
        codes = enc(x)
    assert tuple(c1.shape) == (3, 128, 64, 64)
    assert tuple(c2.shape) == (3, 256, 32, 32)
    assert tuple(c3.shape) == (3, 512, 16, 16)
    assert tuple(codes.shape) == (3, 10, 512)


def test_style_blocks_and_leaky_relu_slope():
    with torch.device("meta"):
        enc = Encoder4Editing(1024)
    n_convs = [sum(isinstance(m, nn.Conv2d) for m in s.convs) for s in enc.styles]
    assert n_convs == [4] * 3 + [5] * 4 + [6] * 11
    slopes = {m.negative_slope for m in enc.styles.modules() if isinstance(m, nn.LeakyReLU)}
    assert slopes == {0.01}


# -- checkpoint loading ---------------------------------------------------------------------------


def test_official_checkpoint_loads_strictly_on_meta(tmp_path, official_ckpt):
    path = _save(tmp_path, official_ckpt)
    ck = load_e4e(path, device="meta", num_ws=18)
    assert ck.n_styles == 18 and ck.resolution == 1024
    assert ck.encoder.training is False
    assert all(p.device.type == "meta" for p in ck.encoder.parameters())
    assert tuple(ck.latent_avg.shape) == (18, 512)
    assert len(ck.decoder_state_dict) == 171
    assert "style.1.weight" in ck.decoder_state_dict and "noises.noise_0" in ck.decoder_state_dict
    assert ck.decoder is None and ck.opts["stylegan_size"] == 1024 and ck.path == path


def test_opts_as_namespace_is_allowed(tmp_path, official_ckpt):
    official_ckpt["opts"] = argparse.Namespace(**official_ckpt["opts"])
    ck = load_e4e(_save(tmp_path, official_ckpt), device="meta")
    assert ck.opts["encoder_type"] == "Encoder4Editing"


def test_decoder_hook_gets_the_rosinality_state_dict(tmp_path, official_ckpt, official_listing):
    seen = {}

    class FakeGenerator(nn.Module):
        n_latent = 18

    def loader(state_dict, *, resolution, device):
        seen.update(keys=set(state_dict), resolution=resolution, device=device)
        return FakeGenerator()

    ck = load_e4e(_save(tmp_path, official_ckpt), device="meta", decoder_loader=loader)
    assert isinstance(ck.decoder, FakeGenerator)
    expected = {r["key"][len("decoder."):] for r in official_listing["keys"] if r["key"].startswith("decoder.")}
    assert seen == {"keys": expected, "resolution": 1024, "device": "meta"}


def test_decoder_with_other_num_ws_is_rejected(tmp_path, official_ckpt):
    class G256(nn.Module):
        num_ws = 14

    with pytest.raises(ModelError, match="18 W\\+ rows.*num_ws=14"):
        load_e4e(_save(tmp_path, official_ckpt), device="meta", decoder_loader=lambda sd, **kw: G256())


def test_style_count_not_matching_generator(tmp_path, official_ckpt):
    path = _save(tmp_path, official_ckpt)
    with pytest.raises(ModelError, match=r"18 W\+ rows \(a 1024 px generator\).*num_ws=14"):
        load_e4e(path, device="meta", num_ws=14)
    with pytest.raises(ModelError, match="num_ws=16"):
        check_num_ws(18, 16)
    check_num_ws(18, 18)


def test_missing_latent_avg_names_file_and_fix(tmp_path, official_ckpt):
    del official_ckpt["latent_avg"]
    path = _save(tmp_path, official_ckpt, "no_avg.pt")
    with pytest.raises(ModelError) as exc:
        load_e4e(path, device="meta")
    msg = str(exc.value)
    assert str(path) in msg and "latent_avg=" in msg
    ck = load_e4e(path, device="meta", latent_avg=torch.zeros(512))
    assert tuple(ck.latent_avg.shape) == (512,)


def test_latent_avg_of_wrong_shape(tmp_path, official_ckpt):
    official_ckpt["latent_avg"] = torch.empty(14, 512, device="meta")
    with pytest.raises(ModelError, match=r"latent_avg has shape \(14, 512\)"):
        load_e4e(_save(tmp_path, official_ckpt), device="meta")


def test_missing_unexpected_and_misshapen_keys_are_listed(tmp_path, official_ckpt):
    sd = official_ckpt["state_dict"]
    del sd["encoder.styles.3.linear.bias"]
    del sd["encoder.body.5.res_layer.5.fc1.weight"]
    sd["encoder.latlayer3.weight"] = torch.empty(512, 64, 1, 1, device="meta")
    sd["encoder.latlayer1.weight"] = torch.empty(512, 128, 1, 1, device="meta")
    with pytest.raises(ModelError) as exc:
        load_e4e(_save(tmp_path, official_ckpt), device="meta")
    msg = str(exc.value)
    for key in ("encoder.styles.3.linear.bias", "encoder.body.5.res_layer.5.fc1.weight", "encoder.latlayer3.weight",
                "encoder.latlayer1.weight (512, 128, 1, 1) != (512, 256, 1, 1)"):
        assert key in msg
    assert "missing" in msg and "unexpected" in msg and "shape" in msg


def test_keys_outside_encoder_and_decoder_are_rejected(tmp_path, official_ckpt):
    official_ckpt["state_dict"]["discriminator.fc.weight"] = torch.empty(1, device="meta")
    with pytest.raises(ModelError, match="discriminator.fc.weight"):
        load_e4e(_save(tmp_path, official_ckpt), device="meta")


def test_opts_stylegan_size_must_agree_with_weights(tmp_path, official_ckpt):
    official_ckpt["opts"]["stylegan_size"] = 512
    with pytest.raises(ModelError, match="stylegan_size=512 means 16 styles.*18 style blocks"):
        load_e4e(_save(tmp_path, official_ckpt), device="meta")


def test_psp_encoder_type_is_rejected(tmp_path, official_ckpt):
    official_ckpt["opts"]["encoder_type"] = "GradualStyleEncoder"
    with pytest.raises(ModelError, match="Encoder4Editing"):
        load_e4e(_save(tmp_path, official_ckpt), device="meta")


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelError, match="not found.*models pull e4e-ffhq-encode"):
        load_e4e(tmp_path / "absent.pt")
    with pytest.raises(ModelError, match="not an e4e checkpoint"):
        load_e4e(_save(tmp_path, {"g_ema": {}}))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="cannot read"):
        load_e4e(tmp_path / "junk.pt")


class _Payload:
    executed = False

    def __reduce__(self):
        return (_mark_executed, ())


def _mark_executed():
    _Payload.executed = True
    return {}


def test_pickled_code_is_never_executed(tmp_path, official_ckpt):
    official_ckpt["opts"] = _Payload()
    path = _save(tmp_path, official_ckpt)
    with pytest.raises(ModelError, match="weights_only"):
        load_e4e(path, device="meta")
    assert _Payload.executed is False


def test_save_then_load_round_trip(tmp_path):
    with torch.device("meta"):
        enc = Encoder4Editing(256)
    path = save_e4e_checkpoint(tmp_path / "sub" / "mine.pt", enc, latent_avg=torch.zeros(14, 512),
                               decoder_state_dict={"style.1.weight": torch.zeros(2, 2)})
    ck = load_e4e(path, device="meta", num_ws=14)
    assert ck.n_styles == 14
    assert ck.opts == {"stylegan_size": 256, "input_size": 256, "encoder_type": "Encoder4Editing",
                       "start_from_latent_avg": True}
    assert set(ck.decoder_state_dict) == {"style.1.weight"}
    assert not list(tmp_path.joinpath("sub").glob("*.tmp"))


def test_registry_metadata():
    assert E4E_FFHQ_ENCODE["filename"] == "e4e_ffhq_encode.pt"
    assert E4E_FFHQ_ENCODE["url"].startswith("https://drive.google.com/")
    assert E4E_FFHQ_ENCODE["sha256"] is None
    assert "MIT" in E4E_FFHQ_ENCODE["code_license"]
    assert "CC BY-NC-SA 4.0" in E4E_FFHQ_ENCODE["weights_license"]
    assert E4E_FFHQ_ENCODE["config"]["n_styles"] == 18


# -- encode(): input handling, batching --------------------------------------------------------------


class StubEncoder(nn.Module):
    """Stands in for Encoder4Editing: records its inputs, returns their per-image mean in every cell."""

    n_styles = 4
    input_size = 256

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.inputs: list[torch.Tensor] = []
        self.modes: list[bool] = []

    def forward(self, x):
        self.inputs.append(x.clone())
        self.modes.append(self.training)
        return x.mean(dim=(1, 2, 3))[:, None, None].expand(-1, self.n_styles, 512) + self.anchor


def _uint8(n, size, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def test_encode_normalises_uint8_like_e4e():
    enc = StubEncoder()
    imgs = _uint8(2, 256)
    codes = encode(enc, imgs, latent_avg=None, batch_size=4)
    x = enc.inputs[0]
    expected = (torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div(255) - 0.5) / 0.5
    assert x.dtype == torch.float32 and tuple(x.shape) == (2, 3, 256, 256)
    torch.testing.assert_close(x, expected, rtol=0, atol=0)
    assert tuple(codes.shape) == (2, 4, 512) and codes.dtype == torch.float32


def test_encode_keeps_every_image_in_order_without_drop_last():
    enc = StubEncoder()
    imgs = _uint8(5, 256)
    codes = encode(enc, imgs, latent_avg=None, batch_size=2)
    assert [len(b) for b in enc.inputs] == [2, 2, 1]
    one_by_one = torch.stack([encode(StubEncoder(), imgs[i:i + 1], latent_avg=None)[0] for i in range(5)])
    torch.testing.assert_close(codes, one_by_one)
    assert encode(StubEncoder(), imgs[:0], latent_avg=None).shape == (0, 4, 512)


def test_encode_layouts_and_lists_agree():
    imgs = _uint8(3, 256)
    nhwc = encode(StubEncoder(), imgs, latent_avg=None)
    nchw = encode(StubEncoder(), torch.from_numpy(imgs).permute(0, 3, 1, 2), latent_avg=None)
    listed = encode(StubEncoder(), [imgs[0], imgs[1].transpose(2, 0, 1), torch.from_numpy(imgs[2])], latent_avg=None)
    floats = encode(StubEncoder(), imgs.astype(np.float32) / 255, latent_avg=None)
    torch.testing.assert_close(nchw, nhwc)
    torch.testing.assert_close(listed, nhwc)
    torch.testing.assert_close(floats, nhwc)


def test_encode_resizes_like_pil_bilinear():
    from PIL import Image

    big = _uint8(1, 512, seed=3)
    enc = StubEncoder()
    encode(enc, [big[0], _uint8(1, 256)[0]], latent_avg=None)
    pil = np.asarray(Image.fromarray(big[0]).resize((256, 256), Image.Resampling.BILINEAR))
    expected = (torch.from_numpy(pil.copy()).permute(2, 0, 1).float() / 255 - 0.5) / 0.5
    torch.testing.assert_close(enc.inputs[0][0], expected, rtol=0, atol=0)
    # float input of the same image goes through torch's antialiased bilinear: close to PIL
    enc_f = StubEncoder()
    encode(enc_f, big.astype(np.float32) / 255, latent_avg=None)
    assert float((enc_f.inputs[0][0] - expected).abs().mean()) < 2 / 255


def test_encode_adds_latent_avg():
    imgs = _uint8(2, 256)
    raw = encode(StubEncoder(), imgs, latent_avg=None)
    la = torch.randn(4, 512)
    torch.testing.assert_close(encode(StubEncoder(), imgs, latent_avg=la), raw + la)
    torch.testing.assert_close(encode(StubEncoder(), imgs, latent_avg=la[0]), raw + la[0])
    with pytest.raises(ModelError, match=r"latent_avg has shape \(18, 512\)"):
        encode(StubEncoder(), imgs, latent_avg=torch.zeros(18, 512))
    with pytest.raises(ModelError):
        add_latent_avg(raw, torch.zeros(3, 512))


def test_encode_runs_in_eval_mode_and_restores_it():
    enc = StubEncoder().train()
    encode(enc, _uint8(1, 256), latent_avg=None)
    assert enc.modes == [False] and enc.training is True


@pytest.mark.parametrize(
    "images,match",
    [
        (np.zeros((2, 256, 200, 3), np.uint8), "256x200.*square FFHQ-aligned"),
        (np.zeros((2, 256, 256, 4), np.uint8), "3 colour channels"),
        (np.zeros((256, 256, 3), np.uint8), "single image"),
        (np.zeros((2, 256, 256), np.uint8), "expected a batch"),
        ([np.zeros((256, 256), np.uint8)], "grayscale"),
        (np.zeros((1, 256, 256, 3), np.int32), "uint8.*or float"),
        (np.full((1, 256, 256, 3), 255.0, np.float32), r"must lie in \[0, 1\]"),
        (np.full((1, 256, 256, 3), np.nan, np.float32), "NaN"),
        ("faces/", "expected an array"),
    ],
)
def test_encode_rejects_bad_images(images, match):
    with pytest.raises(InputError, match=match):
        encode(StubEncoder(), images, latent_avg=None)


def test_encode_error_names_the_image():
    imgs = [np.zeros((256, 256, 3), np.uint8), np.zeros((300, 256, 3), np.uint8)]
    with pytest.raises(InputError, match=r"images\[1\]"):
        encode(StubEncoder(), imgs, latent_avg=None)


def test_encode_normalized_input():
    x = torch.rand(2, 3, 256, 256) * 2 - 1
    enc = StubEncoder()
    encode(enc, x, latent_avg=None, normalized=True)
    torch.testing.assert_close(enc.inputs[0], x, rtol=0, atol=0)
    with pytest.raises(InputError, match="normalized=True"):
        encode(StubEncoder(), x, latent_avg=None)
    with pytest.raises(InputError, match="expects float"):
        encode(StubEncoder(), _uint8(1, 256), latent_avg=None, normalized=True)


def test_encode_config_errors():
    with pytest.raises(ConfigError, match="batch_size"):
        encode(StubEncoder(), _uint8(1, 256), latent_avg=None, batch_size=0)
    with pytest.raises(ConfigError, match="encoder is on cpu"):
        encode(StubEncoder(), _uint8(1, 256), latent_avg=None, device="meta")


def test_small_input_encoder_round_trips_and_resizes(tmp_path):
    # A 64 px input keeps the IR-SE-50 keys; only style block depth changes, and loading
    # infers the input size from the weights.
    torch.manual_seed(0)
    enc = Encoder4Editing(32, input_size=64).eval()
    assert [len(enc.styles[i].convs) // 2 for i in (0, 3, 7)] == [2, 3, 4]
    path = save_e4e_checkpoint(tmp_path / "small.pt", enc, latent_avg=torch.zeros(8, 512))
    ck = load_e4e(path, num_ws=8)
    assert ck.encoder.input_size == 64 and ck.opts["input_size"] == 64
    images = torch.rand(2, 3, 32, 32)
    a = encode(enc, images, latent_avg=None)
    b = encode(ck.encoder, images, latent_avg=None)
    assert a.shape == (2, 8, 512)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_input_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="input_size"):
        Encoder4Editing(32, input_size=48)
