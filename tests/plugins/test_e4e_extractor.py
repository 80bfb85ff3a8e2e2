"""The ``e4e`` extractor: registration, header-only declarations, errors before any image,
codes equal to ``encode()``, diagnostics equal to a re-render, and an engine run on the example
photos (fixtures: tests/plugins/conftest.py)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from facefeat.engine import Face, FaceBatch
from facefeat.engine.registry import Registry, load_registry
from facefeat.engine.run import plan_run, run_extraction
from facefeat.errors import ConfigError, ModelError
from facefeat.io.hashing import sha256_file
from facefeat.io.tables import read_provenance
from facefeat_builtins.e4e import E4EExtractor, render
from tests.conftest import DATA

TINY_W64 = DATA / "stylegan2" / "nvidia_tiny_network-snapshot.pkl"


def _create(config):
    registry = Registry()
    registry.add_extractor(E4EExtractor)
    return registry.create("e4e", config)


def _faces(n, seed=0, sizes=(32, 64)):
    rng = np.random.default_rng(seed)
    return FaceBatch([Face(f"img{i}", f"s{i}", np.zeros((68, 2)), (0, 0, 1, 1),
                           aligned={s: rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in sizes})
                      for i in range(n)])


def test_registered_through_entry_points():
    info = load_registry().info("e4e")
    assert info.cls is E4EExtractor and info.distribution == "facefeat" and info.version == "1.0.0"


def test_declarations_from_the_header(e4e_files):
    ext = _create({"encoder": str(e4e_files["encoder"])})
    assert ext.requires().aligned_sizes == (32, 64)  # generator resolution and encoder input
    schema = ext.output_schema()
    assert schema.names == ["e4e__latent", "diag__e4e__mse", "diag__e4e__psnr", "diag__e4e__lpips"]
    field = schema.field("e4e__latent")
    assert json.loads(field.metadata[b"shape"]) == [8, 512] and field.type.list_size == 8 * 512
    assert json.loads(schema.field("diag__e4e__psnr").metadata[b"range"]) == [0.0, None]
    assert ext.model_files() == {"encoder": str(e4e_files["encoder"])}
    assert ext.generator_header["source"] == "bundled" and ext._ck is None  # nothing loaded
    none = _create({"encoder": str(e4e_files["encoder"]), "generator": "none"})
    assert none.requires().aligned_sizes == (64,) and none.generator_header is None
    plain = _create({"encoder": str(e4e_files["plain"])})
    assert plain.generator_header is None and plain.requires().aligned_sizes == (64,)
    sep = _create({"encoder": str(e4e_files["plain"]), "generator": str(e4e_files["generator"])})
    assert sep.requires().aligned_sizes == (32, 64)
    assert sep.model_files()["generator"] == str(e4e_files["generator"])


def _plan(tmp_path, examples_dir, **cfg):
    return plan_run({"input": str(examples_dir), "out": str(tmp_path / "out"), "extractors": ["e4e"], "e4e": cfg})


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_errors_before_any_image(tmp_path, examples_dir, e4e_files):
    with pytest.raises(ModelError, match=r"enc_styles10\.pt produces 10 W\+ rows.*g512.*num_ws=8.*train encoder"):
        _plan(tmp_path, examples_dir, encoder=str(e4e_files["styles10"]), generator=str(e4e_files["generator"]))
    with pytest.raises(ModelError, match=r"enc_plain\.pt produces 512-wide.*nvidia_tiny.*w_dim=64"):
        _plan(tmp_path, examples_dir, encoder=str(e4e_files["plain"]), generator=str(TINY_W64))
    with pytest.raises(ModelError, match=r"e4e\.encoder: e4e checkpoint .*enc_no_avg\.pt has no 'latent_avg'.*Fix"):
        _plan(tmp_path, examples_dir, encoder=str(e4e_files["no_avg"]))
    with pytest.raises(ModelError, match="not found"):
        _plan(tmp_path, examples_dir, encoder=str(tmp_path / "missing.pt"))
    with pytest.raises(ModelError, match="not an e4e checkpoint|cannot read e4e checkpoint"):
        _plan(tmp_path, examples_dir, encoder=str(TINY_W64))
    with pytest.raises(ConfigError, match="reconstructions_dir"):
        _plan(tmp_path, examples_dir, encoder=str(e4e_files["encoder"]), save_reconstructions=True)
    with pytest.raises(ConfigError, match="needs a generator"):
        _plan(tmp_path, examples_dir, encoder=str(e4e_files["plain"]), save_reconstructions=True,
              reconstructions_dir=str(tmp_path / "r"))
    with pytest.raises(ConfigError, match="lpips_lin"):
        _plan(tmp_path, examples_dir, encoder=str(e4e_files["encoder"]), lpips_vgg16="x.pth")
    with pytest.raises(ConfigError, match="encoder"):
        _plan(tmp_path, examples_dir)


def test_registry_names(tmp_path, examples_dir, monkeypatch):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match="facefeat models pull e4e-ffhq-encode"):
        _plan(tmp_path, examples_dir, encoder="e4e-ffhq-encode")
    with pytest.raises(ModelError, match="not an e4e encoder"):
        _plan(tmp_path, examples_dir, encoder="nvidia-ffhq-256")


@pytest.mark.slow
def test_codes_equal_encode_and_diagnostics_equal_a_rerender(e4e_files):
    """Thin layer: the latent is ``encode()`` of the 64 px crop plus nothing else, the diagnostics
    are the MSE/PSNR of the generator's rendering of that code; 5 faces in batches of 2 (a last
    partial batch) give the same rows as one batch."""
    from facefeat.inversion.metrics import image_mse, to_target
    from facefeat.models.e4e import encode, load_e4e

    batch = _faces(5)
    ext = _create({"encoder": str(e4e_files["encoder"]), "batch_size": 2})
    rb = ext.extract(batch)
    assert rb.num_rows == 5 and rb.schema == ext.output_schema()
    got = np.stack([np.asarray(v, dtype=np.float32) for v in rb.column("e4e__latent").to_pylist()])
    ck = load_e4e(e4e_files["encoder"], decoder_loader="default")
    ref = encode(ck.encoder, batch.aligned(64), latent_avg=ck.latent_avg, batch_size=2)
    assert np.array_equal(got.reshape(5, 8, 512), ref.numpy())
    with torch.no_grad():
        mse = image_mse(ck.decoder.synthesis(ref, noise_mode="const"), to_target(batch.aligned(32)))
    np.testing.assert_allclose(rb.column("diag__e4e__mse").to_numpy(), mse.double().numpy(), rtol=1e-6)
    np.testing.assert_allclose(rb.column("diag__e4e__psnr").to_numpy(), -10 * np.log10(mse.double().numpy()),
                               rtol=1e-6)
    assert rb.column("diag__e4e__lpips").null_count == 5
    whole = _create({"encoder": str(e4e_files["encoder"]), "batch_size": 16}).extract(batch)
    np.testing.assert_allclose(np.stack(whole.column("e4e__latent").to_numpy(zero_copy_only=False)),
                               got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(whole.column("diag__e4e__mse").to_numpy(), rb.column("diag__e4e__mse").to_numpy(),
                               rtol=1e-4)
    # a separate generator file with the same weights gives the same diagnostics
    sep = _create({"encoder": str(e4e_files["plain"]), "generator": str(e4e_files["generator"]), "batch_size": 2})
    rs = sep.extract(batch)
    assert np.array_equal(np.stack(rs.column("e4e__latent").to_numpy(zero_copy_only=False)), got)
    np.testing.assert_allclose(rs.column("diag__e4e__mse").to_numpy(), rb.column("diag__e4e__mse").to_numpy(),
                               rtol=1e-6)
    # no generator: codes only, diagnostics null
    rn = _create({"encoder": str(e4e_files["encoder"]), "generator": "none"}).extract(_faces(3, sizes=(64,)))
    assert rn.num_rows == 3 and rn.column("diag__e4e__mse").null_count == 3
    assert _create({"encoder": str(e4e_files["encoder"])}).extract(FaceBatch([])).num_rows == 0


def test_render_is_the_bundled_decoder(e4e_files):
    """The bundled decoder (rosinality layout in the file) renders like the generator it was written from."""
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.e4e import load_e4e

    G = load_generator(e4e_files["generator"])
    dec = load_e4e(e4e_files["encoder"], decoder_loader="default").decoder
    ws = G.mapping(torch.randn(2, 512, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        assert torch.equal(render(G, ws), render(dec, ws))


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, examples_dir, e4e_files):
    out = tmp_path_factory.mktemp("e4e_run")
    config = {"input": str(examples_dir), "out": str(out), "extractors": ["e4e"], "batch_size": 3,
              "e4e": {"encoder": str(e4e_files["encoder"]), "batch_size": 2, "save_reconstructions": True,
                      "reconstructions_dir": str(out / "reconstructions")}}
    summary = run_extraction(config, progress=False)
    return out, summary, config


@pytest.mark.slow
def test_engine_end_to_end(engine_run, e4e_files):
    from PIL import Image

    from facefeat.engine.run import plan_run as _plan_run
    from facefeat.models.e4e import encode, load_e4e

    out, summary, config = engine_run
    table = pq.read_table(out / "e4e.parquet")
    df = table.to_pandas()
    assert len(df) == 5 and df.image_id.is_unique
    assert summary.status_counts["ok"] == 4 and summary.status_counts["no_face"] == 1
    assert json.loads(table.schema.field("e4e__latent").metadata[b"shape"]) == [8, 512]
    ok = df[df.status == "ok"].set_index("image_id")
    lat = np.stack(ok["e4e__latent"].to_numpy())
    assert lat.shape == (4, 8 * 512) and lat.dtype == np.float32 and np.isfinite(lat).all()
    psnr = ok["diag__e4e__psnr"].to_numpy()
    assert np.allclose(psnr, -10 * np.log10(ok["diag__e4e__mse"].to_numpy())) and (psnr > 0).all()
    assert ok["diag__e4e__lpips"].isna().all()
    bad = df[df.status != "ok"]
    assert bad["e4e__latent"].isna().all() and bad["diag__e4e__mse"].isna().all()
    for image_id, path in ok["diag__e4e__reconstruction"].items():
        assert path.endswith(f"{image_id}.png") and Image.open(path).size == (32, 32)
    # every row's code is encode() of that image's 64 px aligned crop
    plan = _plan_run(config)
    pre = plan.preprocessor()
    ck = load_e4e(e4e_files["encoder"])
    for record in plan.inputs.records:
        p = pre.process(record)
        if p.status != "ok":
            continue
        ref = encode(ck.encoder, p.face.aligned[64][None], latent_avg=ck.latent_avg)
        np.testing.assert_allclose(ok.loc[record.image_id, "e4e__latent"], ref.reshape(-1).numpy(), rtol=1e-5,
                                   atol=1e-5)
    prov = read_provenance(out / "e4e.parquet")
    assert prov["models_sha256"]["encoder"] == sha256_file(e4e_files["encoder"])
    assert {"encoder", "generator", "batch_size", "network"} <= set(prov["extractor"]["config"])
    assert prov["preprocessing"]["aligned_sizes"] == [32, 64]


def test_rosinality_export_refuses_what_the_layout_cannot_hold():
    from facefeat.models.e4e import rosinality_decoder_state_dict
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    G = Generator(GeneratorConfig.nvidia(32, z_dim=64, w_dim=512, mapping_layers=2, channel_base=64,
                                         channel_max=8))
    with pytest.raises(ModelError, match="z_dim == w_dim"):
        rosinality_decoder_state_dict(G)


def test_rosinality_export_has_the_official_keys_shapes_and_values():
    """The export is the inverse of the rosinality loader: the fixture's official g_ema comes back
    key for key, shape for shape, bit for bit (so rosinality / e4e code can load the decoder)."""
    from facefeat.models.checkpoints import load_generator
    from facefeat.models.e4e import rosinality_decoder_state_dict

    path = DATA / "stylegan2" / "rosinality_tiny_converted_ckpt.pt"
    original = torch.load(path, map_location="cpu", weights_only=True)["g_ema"]
    sd = rosinality_decoder_state_dict(load_generator(path))
    assert set(sd) == set(original)
    for k, v in original.items():
        assert sd[k].shape == v.shape and torch.equal(sd[k], v.float()), k
