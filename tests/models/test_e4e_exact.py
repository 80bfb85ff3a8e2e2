"""The e4e encoder against reference outputs of the official implementation (tiny exact fixture).

The fixture encoder has the full IR-SE-50 body (151,789,044 floats, ~600 MB) with every tensor
filled by a deterministic procedure seeded with the CRC-32 of its state_dict key (see
tests/data/e4e/README.md); the reference codes come from e4e's own modules.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from facefeat.models.e4e import add_latent_avg, encode, encoder_from_state_dict

DATA = Path(__file__).resolve().parents[1] / "data" / "e4e"
TOL = dict(atol=1e-4, rtol=1e-4)


def fixture_state_dict(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Rebuild the fixture encoder's weights: one CPU generator per key, seeded with crc32(key)."""
    bn_prefixes = {r["key"].rsplit(".", 1)[0] for r in rows if r["key"].endswith(".running_mean")}
    sd = {}
    for r in sorted(rows, key=lambda r: r["key"]):
        key, shape = r["key"], tuple(r["shape"])
        prefix, leaf = key.rsplit(".", 1)
        g = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))

        def randn() -> torch.Tensor:
            return torch.randn(shape, generator=g)

        if prefix in bn_prefixes:  # BatchNorm2d
            if leaf == "num_batches_tracked":
                t = torch.zeros(shape, dtype=torch.int64)
            elif leaf == "running_var":
                t = torch.rand(shape, generator=g) + 0.5
            elif leaf == "running_mean":
                t = 0.1 * randn()
            elif leaf == "weight":
                t = 1.0 + 0.1 * randn()
            else:  # bias
                t = 0.1 * randn()
        elif leaf == "weight" and len(shape) == 4:  # Conv2d (3x3, 1x1, SE fc1/fc2)
            t = randn() / math.sqrt(shape[1] * shape[2] * shape[3])
        elif leaf == "weight" and len(shape) == 2:  # EqualLinear: stored as randn, scaled at run time
            t = randn()
        elif leaf == "weight" and len(shape) == 1:  # PReLU
            t = 0.25 + 0.05 * randn()
        else:  # conv / EqualLinear bias
            t = 0.1 * randn()
        sd[key] = t
    return sd


def fixture_input() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    return torch.rand(2, 3, 256, 256, generator=g) * 2 - 1


@pytest.fixture(scope="module")
def tiny_keys() -> dict:
    return json.loads((DATA / "tiny_encoder_keys.json").read_text())


@pytest.fixture(scope="module")
def tiny_sd(tiny_keys) -> dict[str, torch.Tensor]:
    return fixture_state_dict(tiny_keys["keys"])


def test_fill_matches_recorded_checksums(tiny_keys, tiny_sd):
    rows = tiny_keys["keys"]
    assert len(tiny_sd) == tiny_keys["n_keys"] == 509
    assert sum(t.numel() for t in tiny_sd.values()) == tiny_keys["numel"] == 151_789_044
    for r in rows:
        t = tiny_sd[r["key"]]
        assert list(t.shape) == r["shape"], r["key"]
        assert str(t.dtype).removeprefix("torch.") == r["dtype"], r["key"]
        flat = t.reshape(-1)
        np.testing.assert_array_equal(flat[:4].double().numpy(), np.asarray(r["first4"], dtype=np.float64), err_msg=r["key"])
        d = t.double()
        # float64 sums of the same float32 values: only the summation order differs
        assert math.isclose(float(d.sum()), r["sum"], rel_tol=1e-9, abs_tol=1e-6), r["key"]
        assert math.isclose(float(d.abs().sum()), r["abs_sum"], rel_tol=1e-9, abs_tol=1e-6), r["key"]


def test_fixture_input_and_latent_avg_recipes():
    x = fixture_input()
    assert math.isclose(float(x.double().sum()), 51.37412714958191, rel_tol=1e-12)
    assert x.reshape(-1)[:4].tolist() == [0.5152631998062134, -0.44137823581695557, -0.1938614845275879, 0.46936893463134766]
    g = torch.Generator().manual_seed(zlib.crc32(b"latent_avg"))
    np.testing.assert_array_equal((0.5 * torch.randn(10, 512, generator=g)).numpy(), np.load(DATA / "latent_avg.npy"))


def test_latent_avg_is_added_row_wise_as_e4e_does():
    codes = torch.from_numpy(np.load(DATA / "codes.npy"))
    la = torch.from_numpy(np.load(DATA / "latent_avg.npy"))
    np.testing.assert_array_equal(add_latent_avg(codes, la).numpy(), np.load(DATA / "codes_plus_latent_avg.npy"))
    # a (512,) average is broadcast to every row, like latent_avg.repeat(B, 1, 1) in e4e
    np.testing.assert_array_equal(add_latent_avg(codes, la[0]).numpy(), (codes + la[0].repeat(2, 1, 1)).numpy())


# ~2 s on 2 CPU threads (plus the ~1-2 s weight fill shared with the checksum test), so it
# stays in the default run; the test process peaks at ~1.6 GB resident.
def test_tiny_encoder_reproduces_official_codes(tiny_keys, tiny_sd):
    enc = encoder_from_state_dict(tiny_sd, source="tiny fixture")
    assert enc.n_styles == 10 and enc.resolution == 64
    x = fixture_input()
    codes = encode(enc, x, latent_avg=None, normalized=True, batch_size=2)
    ref = np.load(DATA / "codes.npy")
    err = float(np.abs(codes.numpy() - ref).max())
    print(f"max |codes - codes.npy| = {err:.3g}")
    np.testing.assert_allclose(codes.numpy(), ref, **TOL)

    la = torch.from_numpy(np.load(DATA / "latent_avg.npy"))
    plus = encode(enc, x, latent_avg=la, normalized=True, batch_size=1)  # also: batches of one
    ref_plus = np.load(DATA / "codes_plus_latent_avg.npy")
    err_plus = float(np.abs(plus.numpy() - ref_plus).max())
    print(f"max |codes + latent_avg - codes_plus_latent_avg.npy| = {err_plus:.3g}")
    np.testing.assert_allclose(plus.numpy(), ref_plus, **TOL)

    stats = tiny_keys["stats"]
    assert math.isclose(float(codes.mean()), stats["codes_mean"], abs_tol=1e-4)
    assert math.isclose(float(codes.std()), stats["codes_std"], rel_tol=1e-4)


@pytest.mark.slow
def test_checkpoint_file_to_codes_end_to_end(tmp_path, tiny_sd):
    """Official layout on disk (~600 MB) -> load_e4e (weights_only, strict) -> encode(+latent_avg)."""
    from facefeat.models.e4e import load_e4e

    ckpt = {
        "state_dict": {f"encoder.{k}": v for k, v in tiny_sd.items()},
        "opts": {"stylegan_size": 64, "encoder_type": "Encoder4Editing", "start_from_latent_avg": True},
        "latent_avg": torch.from_numpy(np.load(DATA / "latent_avg.npy")),
    }
    path = tmp_path / "tiny_e4e.pt"
    torch.save(ckpt, path)
    del ckpt
    try:
        ck = load_e4e(path, num_ws=10)
    finally:
        path.unlink()  # pytest keeps tmp dirs of recent runs; do not leave 600 MB behind
    assert ck.decoder_state_dict == {}
    codes = encode(ck.encoder, fixture_input(), latent_avg=ck.latent_avg, normalized=True, batch_size=2)
    np.testing.assert_allclose(codes.numpy(), np.load(DATA / "codes_plus_latent_avg.npy"), **TOL)
