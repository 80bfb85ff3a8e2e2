"""The ``stylegan2`` extractor: registration, header-only declarations, early errors, and an
end-to-end engine run on the example photos with the tiny 32 px fixture generator."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from facefeat.engine.registry import Registry, load_registry
from facefeat.engine.run import plan_run, run_extraction
from facefeat.errors import ConfigError, ModelError
from facefeat.io.hashing import sha256_file
from facefeat.io.tables import read_provenance
from facefeat_builtins.stylegan2 import (
    PRESETS,
    StyleGAN2Extractor,
    checkpoint_header,
    image_seed,
    projection_kwargs,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "stylegan2"
NVIDIA = DATA / "nvidia_tiny_network-snapshot.pkl"
ROSINALITY = DATA / "rosinality_tiny_converted_ckpt.pt"
STEPS = 10


def _create(config):
    registry = Registry()
    registry.add_extractor(StyleGAN2Extractor)
    return registry.create("stylegan2", config)


def test_registered_through_entry_points():
    info = load_registry().info("stylegan2")
    assert info.cls is StyleGAN2Extractor and info.distribution == "facefeat"
    assert info.version == "1.1.0"


@pytest.mark.parametrize("path", [NVIDIA, ROSINALITY])
def test_declarations_from_the_header(path):
    ext = _create({"checkpoint": str(path)})
    assert ext.requires().aligned_sizes == (32,)
    field = ext.output_schema().field("stylegan2__latent")
    assert json.loads(field.metadata[b"shape"]) == [8, 64] and field.type.list_size == 512
    assert ext._G is None  # nothing loaded
    w = _create({"checkpoint": str(path), "space": "w"})
    assert json.loads(w.output_schema().field("stylegan2__latent").metadata[b"shape"]) == [1, 64]
    names = ext.output_schema().names
    assert names == ["stylegan2__latent"] + [f"diag__stylegan2__{k}" for k in ("loss", "mse", "psnr", "lpips", "steps")]
    assert ext.model_files() == {"checkpoint": str(path)}


def test_facefeat_format_header_reads_only_the_json(tmp_path):
    from facefeat.models.checkpoints import convert_checkpoint

    weights, cfg = convert_checkpoint(NVIDIA, tmp_path / "tiny")
    weights.write_bytes(b"not read for the header")  # a header read must not touch the weights
    assert checkpoint_header(str(cfg)) == {"resolution": 32, "w_dim": 64, "num_ws": 8}
    files = _create({"checkpoint": str(weights)}).model_files()
    assert files == {"checkpoint": str(weights), "checkpoint_config": str(cfg)}


def _plan(tmp_path, examples_dir, **cfg):
    return plan_run({"input": str(examples_dir), "out": str(tmp_path / "out"), "extractors": ["stylegan2"],
                     "stylegan2": cfg})


def test_errors_before_any_image(tmp_path, examples_dir):
    (tmp_path / "notes.pkl").write_bytes(b"\x80\x04K\x01.")  # a pickle of the int 1
    with pytest.raises(ModelError, match="notes.pkl"):
        _plan(tmp_path, examples_dir, checkpoint=str(tmp_path / "notes.pkl"))
    (tmp_path / "trunc.pt").write_bytes(ROSINALITY.read_bytes()[:4000])
    with pytest.raises(ModelError, match="trunc.pt.*(truncated|corrupt)"):
        _plan(tmp_path, examples_dir, checkpoint=str(tmp_path / "trunc.pt"))
    with pytest.raises(ModelError, match="no network 'G_old'"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), network="G_old")
    with pytest.raises(ModelError, match="'D' is a discriminator"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), network="D")
    with pytest.raises(ModelError, match="does_not_exist.pkl"):
        _plan(tmp_path, examples_dir, checkpoint=str(tmp_path / "does_not_exist.pkl"))
    with pytest.raises(ConfigError, match="lpips_vgg16"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), loss="lpips")
    with pytest.raises(ConfigError, match="reconstructions_dir"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), save_reconstructions=True)
    with pytest.raises(ConfigError, match="space"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), space="z")


def test_unsupported_resolution_is_refused(tmp_path, examples_dir):
    from facefeat.models.checkpoints import save_checkpoint
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    cfg = GeneratorConfig.nvidia(16, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8)
    weights, _ = save_checkpoint(tmp_path / "g16", {"G_ema": Generator(cfg)})
    with pytest.raises(ModelError, match="resolution 16 px is not supported"):
        _plan(tmp_path, examples_dir, checkpoint=str(weights))


def test_registry_model_not_cached(tmp_path, examples_dir, monkeypatch):
    monkeypatch.setenv("FACEFEAT_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match="facefeat models pull nvidia-ffhq-256"):
        _plan(tmp_path, examples_dir, checkpoint="nvidia-ffhq-256")
    with pytest.raises(ModelError, match="not a StyleGAN2 generator"):
        _plan(tmp_path, examples_dir, checkpoint="e4e-ffhq-encode")


def test_image_seed_depends_on_seed_and_id_only():
    assert image_seed(0, "a" * 64) == image_seed(0, "a" * 64)
    assert len({image_seed(0, "a"), image_seed(1, "a"), image_seed(0, "b")}) == 3


@pytest.fixture(scope="module")
def engine_run(tmp_path_factory, examples_dir):
    out = tmp_path_factory.mktemp("sg2_run")
    config = {"input": str(examples_dir), "out": str(out), "extractors": ["stylegan2"], "batch_size": 8,
              "stylegan2": {"checkpoint": str(NVIDIA), "steps": STEPS, "batch_size": 3,
                            "save_reconstructions": True, "reconstructions_dir": str(out / "reconstructions")}}
    summary = run_extraction(config, progress=False)
    return out, summary, config


def test_engine_end_to_end(engine_run):
    out, summary, _ = engine_run
    table = pq.read_table(out / "stylegan2.parquet")
    df = table.to_pandas()
    assert len(df) == 5 and summary.status_counts["ok"] == 4 and summary.status_counts["no_face"] == 1
    ok = df[df.status == "ok"]
    lat = np.stack(ok["stylegan2__latent"].to_numpy())
    assert lat.shape == (4, 512) and lat.dtype == np.float32 and np.isfinite(lat).all()
    assert json.loads(table.schema.field("stylegan2__latent").metadata[b"shape"]) == [8, 64]
    assert ok["diag__stylegan2__lpips"].isna().all()  # no LPIPS weights configured
    assert ((ok["diag__stylegan2__steps"] > 0) & (ok["diag__stylegan2__steps"] <= STEPS)).all()
    psnr = ok["diag__stylegan2__psnr"].to_numpy()
    assert np.allclose(psnr, -10 * np.log10(ok["diag__stylegan2__mse"].to_numpy()))
    assert (psnr > 5).all() and (psnr < 60).all()
    bad = df[df.status != "ok"]
    assert bad["stylegan2__latent"].isna().all() and bad["diag__stylegan2__psnr"].isna().all()
    for path in ok["diag__stylegan2__reconstruction"]:
        from PIL import Image

        assert Image.open(path).size == (32, 32)


def test_provenance_records_checkpoint_hash_and_every_hyperparameter(engine_run):
    out, _, _ = engine_run
    prov = read_provenance(out / "stylegan2.parquet")
    assert prov["models_sha256"]["checkpoint"] == sha256_file(NVIDIA)
    cfg = prov["extractor"]["config"]
    for key in ("space", "steps", "batch_size", "loss", "seed", "initial_learning_rate", "lr_rampdown_length",
                "lr_rampup_length", "initial_noise_factor", "noise_ramp_length", "regularize_noise_weight",
                "w_avg_samples", "w_avg_seed", "early_stop_patience", "early_stop_min_delta", "optimize_noise",
                "batch_invariant", "init", "network", "lpips_vgg16", "lpips_lin"):
        assert key in cfg, key
    assert prov["preprocessing"]["aligned_sizes"] == [32]


def test_rows_do_not_depend_on_batching(engine_run, tmp_path):
    """Same images, another engine batch and extractor batch size: bit-identical latents (per-image
    seeds from the image id, batch-invariant projection)."""
    out, _, config = engine_run
    config = json.loads(json.dumps(config))
    config.update(out=str(tmp_path), batch_size=2)
    config["stylegan2"].update(batch_size=4, save_reconstructions=False, reconstructions_dir=None)
    run_extraction(config, progress=False)
    a = pq.read_table(out / "stylegan2.parquet").to_pandas().set_index("image_id")
    b = pq.read_table(tmp_path / "stylegan2.parquet").to_pandas().set_index("image_id")
    for image_id in a.index[a.status == "ok"]:
        assert np.array_equal(a.loc[image_id, "stylegan2__latent"], b.loc[image_id, "stylegan2__latent"])
        assert a.loc[image_id, "diag__stylegan2__psnr"] == b.loc[image_id, "diag__stylegan2__psnr"]


def test_extract_matches_project(engine_run):
    """The extractor is a thin layer: its latent equals project() on the same crop and seed."""
    from facefeat.engine import Face, FaceBatch
    from facefeat.inversion import project

    ext = _create({"checkpoint": str(NVIDIA), "steps": 3, "space": "w"})
    crop = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    face = Face("img0", "s0", np.zeros((68, 2)), (0, 0, 1, 1), aligned={32: crop})
    rb = ext.extract(FaceBatch([face]))
    got = np.asarray(rb.column("stylegan2__latent")[0].as_py(), dtype=np.float32)
    kw = projection_kwargs(ext.config, resolution=32)
    assert kw["num_steps"] == 3 and kw["space"] == "w" and kw["batch_invariant"]
    ref = project(ext._G, crop[None], seed=[image_seed(0, "img0")], w_stats_cache=ext._w_stats, **kw)
    assert np.array_equal(got, ref.latents.reshape(-1).numpy())
    assert torch.is_tensor(ref.latents) and rb.num_rows == 1


# --- hybrid inversion: init=encoder (fixtures: tests/plugins/conftest.py) -----------------------

def _faces(n, seed=0, sizes=(32, 64)):
    from facefeat.engine import Face, FaceBatch

    rng = np.random.default_rng(seed)
    return FaceBatch([Face(f"img{i}", f"s{i}", np.zeros((68, 2)), (0, 0, 1, 1),
                           aligned={s: rng.integers(0, 256, (s, s, 3), dtype=np.uint8) for s in sizes})
                      for i in range(n)])


def _hybrid(e4e_files, **kw):
    return {"checkpoint": str(e4e_files["generator"]), "init": "encoder", "init_encoder": str(e4e_files["encoder"]),
            "w_avg_samples": 1000, **kw}


@pytest.mark.slow
def test_hybrid_starts_from_the_encoder_codes(e4e_files):
    """Zero steps return the start itself: the encoder's W+ codes (space w: their row mean), so
    the extractor hands the codes of the right crop (the encoder's 64 px one) to project()."""
    from facefeat.models.e4e import encode, load_e4e

    ext = _create(_hybrid(e4e_files, steps=0))
    assert ext.requires().aligned_sizes == (32, 64)
    assert ext.model_files()["init_encoder"] == str(e4e_files["encoder"])
    batch = _faces(3)
    rb = ext.extract(batch)
    ck = load_e4e(e4e_files["encoder"])
    codes = encode(ck.encoder, batch.aligned(64), latent_avg=ck.latent_avg, batch_size=1)
    got = np.stack(rb.column("stylegan2__latent").to_numpy(zero_copy_only=False)).reshape(3, 8, 512)
    assert np.array_equal(got, codes.numpy()) and rb.column("diag__stylegan2__steps").to_pylist() == [0, 0, 0]
    w = _create(_hybrid(e4e_files, steps=0, space="w")).extract(batch)
    got_w = np.stack(w.column("stylegan2__latent").to_numpy(zero_copy_only=False)).reshape(3, 1, 512)
    assert np.array_equal(got_w, codes.mean(1, keepdim=True).numpy())


def test_hybrid_passes_the_codes_and_its_schedule_to_project(e4e_files, monkeypatch):
    import facefeat.inversion as inversion

    seen = {}
    real = inversion.project

    def spy(G, target, **kw):
        seen.update(kw)
        return real(G, target, **kw)

    monkeypatch.setattr(inversion, "project", spy)
    ext = _create(_hybrid(e4e_files, steps=2, encoder_learning_rate=0.02))
    ext.extract(_faces(2))
    assert torch.is_tensor(seen["init"]) and tuple(seen["init"].shape) == (2, 8, 512)
    assert seen["initial_learning_rate"] == 0.02 and seen["initial_noise_factor"] == 0.0
    assert seen["noise_init"] == "const"
    seen.clear()
    plain = _create({"checkpoint": str(e4e_files["generator"]), "steps": 1, "w_avg_samples": 1000})
    plain.extract(_faces(1, sizes=(32,)))
    assert seen["init"] == "w_avg" and "noise_init" not in seen
    assert seen["initial_learning_rate"] == PRESETS["fast"]["initial_learning_rate"]


def test_hybrid_changes_the_fingerprint(e4e_files):
    from facefeat.engine.run import _fingerprint

    a = _create({"checkpoint": str(e4e_files["generator"])})
    b = _create(_hybrid(e4e_files, w_avg_samples=10000))
    assert b.config["init"] == "encoder" and b.config["init_encoder"] == str(e4e_files["encoder"])
    assert _fingerprint(a, {}) != _fingerprint(b, {})


def test_hybrid_errors_before_any_image(tmp_path, examples_dir, e4e_files):
    with pytest.raises(ModelError, match=r"enc_styles10\.pt produces 10 W\+ rows.*g512.*num_ws=8"):
        _plan(tmp_path, examples_dir, **_hybrid(e4e_files, init_encoder=str(e4e_files["styles10"])))
    with pytest.raises(ModelError, match=r"enc_bundled\.pt produces 512-wide.*nvidia_tiny.*w_dim=64"):
        _plan(tmp_path, examples_dir, **_hybrid(e4e_files, checkpoint=str(NVIDIA)))
    with pytest.raises(ModelError, match=r"stylegan2\.init_encoder: .*enc_no_avg\.pt has no 'latent_avg'"):
        _plan(tmp_path, examples_dir, **_hybrid(e4e_files, init_encoder=str(e4e_files["no_avg"])))
    with pytest.raises(ConfigError, match="needs stylegan2.init_encoder"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), init="encoder")
    with pytest.raises(ConfigError, match="init=encoder"):
        _plan(tmp_path, examples_dir, checkpoint=str(NVIDIA), init_encoder=str(e4e_files["encoder"]))
    with pytest.raises(ConfigError, match="wplus_start"):
        _plan(tmp_path, examples_dir, **_hybrid(e4e_files, wplus_start=0.2))
