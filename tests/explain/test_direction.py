"""Health-attribute directions from real fitted survival models (facefeat.explain.direction).

The study (``conftest.py``) plants a linear log-hazard in W+ latents of the 32 px test generator;
models are fitted with ``facefeat fit`` (scaling + PCA in the pipeline, clinical covariates
including a categorical one).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from facefeat.errors import ConfigError, InputError, ModelError
from facefeat.explain.direction import (
    DIRECTION_FORMAT,
    LatentDirection,
    gradient_direction,
    health_direction,
    load_direction,
)
from facefeat.explain.edit import load_edit_context


def _cos(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def ctx(study):
    return load_edit_context(study["models"]["coxph"], study["run"], clinical=study["clinical"])


@pytest.mark.parametrize("model", ["coxph", "coxnet"])
def test_recovers_the_planted_direction(study, model):
    d = health_direction(study["models"][model])
    assert d.space == "wplus" and d.vector.shape == (8, 64)
    assert _cos(d.gradient, study["beta"]) > 0.9
    assert _cos(d.vector, study["beta"]) > 0.9  # v is parallel to g


@pytest.mark.parametrize("model", ["coxph", "coxnet"])
def test_one_unit_is_one_log_hazard(study, model):
    """predict(latent + v) - predict(latent) == 1 through scaling, PCA and held covariates."""
    d = health_direction(study["models"][model])
    ctx = load_edit_context(study["models"][model], study["run"], clinical=study["clinical"])
    for subject in ("P000", "P123", "P239"):
        row, lat, _ = ctx.subject(subject)
        r = ctx.predict(row, np.stack([lat, lat + d.vector, lat - 2.5 * d.vector]))
        assert r[1] - r[0] == pytest.approx(1.0, abs=1e-6)
        assert r[2] - r[0] == pytest.approx(-2.5, abs=1e-6)
    assert d.effect(1.0) == pytest.approx(1.0)
    assert d.per_unit == 1.0


def test_unit_norm_per(study):
    d = health_direction(study["models"]["coxph"], per="unit_norm")
    assert d.norm == pytest.approx(1.0)
    assert d.per_unit == pytest.approx(np.linalg.norm(d.gradient))
    assert d.effect(1.0) == pytest.approx(d.per_unit)


def test_late_fusion_uses_the_latent_block(study, late_model):
    d = health_direction(late_model)
    assert d.provenance["fusion"] == "late" and d.provenance["block"] == "image"
    assert _cos(d.gradient, study["beta"]) > 0.9
    ctx = load_edit_context(late_model, study["run"], clinical=study["clinical"])
    row, lat, _ = ctx.subject("P010")
    r = ctx.predict(row, np.stack([lat, lat + d.vector]))
    assert r[1] - r[0] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ConfigError, match="no block 'nope'"):
        health_direction(late_model, block="nope")


def test_w_model_gives_a_w_direction_that_broadcasts(study):
    d = health_direction(study["models"]["w"])
    assert d.space == "w" and d.vector.shape == (1, 64) and d.num_ws == 1
    full = d.broadcast(8)
    assert full.shape == (8, 64) and np.allclose(full, d.vector[0])
    assert np.allclose(d.layer_shares(8), 1 / 8)
    ctx = load_edit_context(study["models"]["w"], study["run_w"])
    row, lat, _ = ctx.subject("P005")
    assert lat.shape == (1, 64)
    r = ctx.predict(row, np.stack([lat, lat + d.vector]))
    assert r[1] - r[0] == pytest.approx(1.0, abs=1e-6)
    # a W+ direction cannot be broadcast to another number of layers
    dp = health_direction(study["models"]["coxph"])
    with pytest.raises(ConfigError, match="8 W\\+ layers"):
        dp.broadcast(14)


def test_layer_shares_and_provenance(study):
    d = health_direction(study["models"]["coxph"])
    shares = d.layer_shares()
    assert shares.shape == (8,) and shares.sum() == pytest.approx(1.0) and (shares > 0).all()
    prov = d.provenance
    meta = json.loads((study["models"]["coxph"] / "model.json").read_text())
    assert prov["model_sha256"] == meta["model_sha256"]
    assert prov["model_dir"] == str(study["models"]["coxph"])
    assert prov["latent_column"] == "stylegan2__latent" and prov["latent_shape"] == [8, 64]
    assert prov["generator"]["checkpoint"].endswith("rosinality_tiny_converted_ckpt.pt")
    assert len(prov["generator"]["sha256"]) == 64


def test_save_load_roundtrip(study, tmp_path):
    d = health_direction(study["models"]["coxph"])
    path = d.save(tmp_path / "health.npz")
    with np.load(path, allow_pickle=False) as raw:  # plain arrays, no pickle
        assert json.loads(str(raw["meta"]))["format"] == DIRECTION_FORMAT
    back = load_direction(path)
    assert np.array_equal(back.vector, d.vector) and np.array_equal(back.gradient, d.gradient)
    assert back.space == d.space and back.per_unit == d.per_unit and back.provenance == json.loads(
        json.dumps(d.provenance))
    with pytest.raises(ConfigError, match=".npz"):
        d.save(tmp_path / "health.npy")
    with pytest.raises(InputError, match="does not exist"):
        load_direction(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, something=np.zeros(3))
    with pytest.raises(ModelError, match="not a facefeat direction"):
        load_direction(bad)


def test_probe_direction_units():
    from facefeat.explain.probes import LinearProbe

    rng = np.random.default_rng(0)
    for space, n_coef in (("w", 64), ("w+", 8 * 64)):
        probe = LinearProbe(name="smile", kind="ridge", space=space, latent_column="stylegan2__latent",
                            latent_shape=(8, 64), label_column="smile", coef=rng.normal(size=n_coef), intercept=0.3)
        d = LatentDirection.from_probe(probe)
        x = rng.normal(size=(8, 64))
        step = d.broadcast(8)
        delta = probe.decision_function(np.stack([x + step, x])) @ [1, -1]
        assert delta == pytest.approx(1.0)
        assert d.target == "probe:smile" and d.space == ("w" if space == "w" else "wplus")


def test_gradient_direction_matches_the_linear_one(study, ctx):
    d = health_direction(study["models"]["coxph"])
    row, lat, _ = ctx.subject("P001")
    row.loc[:, ctx.flat] = lat.reshape(1, -1)
    local = gradient_direction(ctx.estimator, row, eps=1e-2)
    assert local.provenance["local"] is True
    assert _cos(local.gradient, d.gradient) > 0.9999
    assert local.effect() == pytest.approx(1.0)


def test_non_linear_model_is_refused(rsf_model):
    with pytest.raises(ConfigError, match="linear Cox model.*coxph.*gradient_direction"):
        health_direction(rsf_model)


def test_model_without_latents_is_refused(scalar_model):
    with pytest.raises(ConfigError, match="not fitted on StyleGAN latents.*clinical: \\[age\\]; image: \\[landmarks__jaw_width"):
        health_direction(scalar_model)


def test_unknown_latent_column(study):
    with pytest.raises(ConfigError, match="not an embedding"):
        health_direction(study["models"]["coxph"], column="e4e__latent")
    with pytest.raises(ConfigError, match="per must be"):
        health_direction(study["models"]["coxph"], per="sd")
