"""Edits along a direction (facefeat.explain.edit): steps, layer ranges, rendering with the tiny
generator, the real model's risk per frame, grids and GIFs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facefeat.errors import ConfigError, DataError
from facefeat.explain.direction import health_direction
from facefeat.explain.edit import (
    edit_grid,
    edit_latents,
    edit_subject,
    layer_indices,
    layer_resolution,
    load_edit_context,
    model_features,
    parse_steps,
    render_edits,
    risk_labels,
    save_gif,
)


@pytest.fixture(scope="module")
def ctx(study):
    return load_edit_context(study["models"]["coxph"], study["run"], clinical=study["clinical"])


@pytest.fixture(scope="module")
def direction(ctx):
    return ctx.direction()


def test_parse_steps():
    assert parse_steps("-3..3").tolist() == [-3, -2, -1, 0, 1, 2, 3]
    assert parse_steps("-1..1:0.5").tolist() == [-1, -0.5, 0, 0.5, 1]
    assert parse_steps("-2,0,2").tolist() == [-2, 0, 2]
    assert parse_steps([1, 2]).tolist() == [1, 2]
    for bad in ("3..-3", "a..b", "", "-1..1:0"):
        with pytest.raises(ConfigError, match="steps"):
            parse_steps(bad)


def test_layer_ranges_follow_the_resolution():
    assert [layer_resolution(i) for i in range(6)] == [4, 4, 8, 8, 16, 16]
    # 1024 px: 18 rows
    assert layer_indices("coarse", 18).tolist() == [0, 1, 2, 3]
    assert layer_indices("middle", 18).tolist() == [4, 5, 6, 7]
    assert layer_indices("fine", 18).tolist() == list(range(8, 18))
    # 256 px: 14 rows
    assert layer_indices("fine", 14).tolist() == list(range(8, 14))
    assert layer_indices("coarse,middle", 14).tolist() == list(range(8))
    assert layer_indices(None, 8).tolist() == list(range(8))
    assert layer_indices("all", 8).tolist() == list(range(8))
    assert layer_indices("0-2,5", 8).tolist() == [0, 1, 2, 5]
    assert layer_indices([7, 1], 8).tolist() == [1, 7]
    with pytest.raises(ConfigError, match="fine.*empty.*8 W\\+ rows"):
        layer_indices("fine", 8)  # the 32 px generator has no 64 px layers
    with pytest.raises(ConfigError, match="outside 0-7"):
        layer_indices("6-9", 8)
    with pytest.raises(ConfigError, match="not a group"):
        layer_indices("eyes", 8)


def test_layer_range_edits_change_only_those_rows(direction):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(8, 64))
    steps = [-2.0, 0.0, 1.5]
    out = edit_latents(x, direction, steps, "middle")
    assert out.shape == (3, 8, 64)
    assert np.array_equal(out[:, :4], np.broadcast_to(x[:4], (3, 4, 64)))
    assert np.allclose(out[:, 4:] - x[4:], np.array(steps)[:, None, None] * direction.vector[4:])
    assert np.array_equal(out[1], x)
    full = edit_latents(x, direction, steps)
    assert np.allclose(full - x, np.array(steps)[:, None, None] * direction.vector)


def test_w_latent_and_w_direction_broadcast():
    rng = np.random.default_rng(2)
    w, v = rng.normal(size=(1, 64)), rng.normal(size=64)
    out = edit_latents(w, v, [0.0, 2.0], num_ws=8)
    assert out.shape == (2, 8, 64)
    assert np.allclose(out[1], w + 2 * v)  # every row moves alike
    assert np.allclose(model_features(out, 1)[:, 0], [w[0], w[0] + 2 * v])
    part = edit_latents(w, v, [1.0], "coarse", num_ws=8)
    assert np.allclose(part[0, :4], w + v) and np.allclose(part[0, 4:], w)
    with pytest.raises(ConfigError, match="3 W\\+ rows"):
        edit_latents(rng.normal(size=(3, 64)), v, [1.0], num_ws=8)


def test_edit_risk_is_monotone_and_exact(ctx, direction, tiny_G):
    steps = parse_steps("-3..3")
    res = edit_subject(ctx, "P017", direction, steps, G=tiny_G)
    assert res.images.shape == (7, 32, 32, 3) and res.images.dtype == np.uint8
    assert np.all(np.diff(res.log_hazard) > 0)
    assert np.allclose(res.log_hazard - res.base_log_hazard, steps, atol=1e-6)
    assert res.relative_hazard[3] == pytest.approx(1.0)
    assert res.relative_hazard[4] == pytest.approx(np.e)
    # the frames differ (the edit changes the rendering) and step 0 is the reconstruction
    row, lat, _ = ctx.subject("P017")
    assert np.array_equal(res.images[3], render_edits(tiny_G, lat[None])[0])
    assert np.abs(res.images[0].astype(int) - res.images[6]).sum() > 0
    t = res.table()
    assert list(t.columns) == ["subject_id", "image_id", "step", "log_hazard", "delta_log_hazard", "relative_hazard"]


def test_layer_restricted_edit_risk(ctx, direction, tiny_G):
    steps = [-2.0, -1.0, 0.0, 1.0, 2.0]
    res = edit_subject(ctx, "P017", direction, steps, layers="coarse", G=tiny_G)
    assert res.layers.tolist() == [0, 1, 2, 3]
    assert np.all(np.diff(res.log_hazard) > 0)
    share = direction.layer_shares()[:4].sum()  # g_L . v_L = |g_L|^2 / |g|^2
    assert np.allclose(res.log_hazard - res.base_log_hazard, share * np.array(steps), atol=1e-6)
    assert np.array_equal(res.latents[:, 4:], np.broadcast_to(res.latents[2, 4:], (5, 4, 64)))


def test_w_model_edit(study, tiny_G):
    ctx = load_edit_context(study["models"]["w"], study["run_w"])
    res = edit_subject(ctx, "P003", steps=[-1.0, 0.0, 1.0], G=tiny_G)
    assert res.direction.space == "w" and res.latents.shape == (3, 8, 64)
    assert np.allclose(res.log_hazard - res.base_log_hazard, [-1, 0, 1], atol=1e-6)


def test_grid_and_gif_files(ctx, direction, tiny_G, tmp_path):
    res = edit_subject(ctx, "P020", direction, parse_steps("-3..3"), G=tiny_G)
    paths = res.save(tmp_path, gif=True, frames=True)
    grid = Image.open(paths["grid"])
    assert grid.size[0] == 7 * 128 + 8 * 4  # 32 px frames enlarged to 128, 4 px gaps
    gif = Image.open(paths["gif"])
    assert gif.n_frames == 7 and gif.size[0] == 128 + 2 * 4  # one labelled tile per frame
    assert len([k for k in paths if k.startswith("frame")]) == 7
    assert Image.open(paths["frame+0"]).size == (32, 32)
    risk = pd.read_csv(paths["risk"])
    assert risk["step"].tolist() == list(range(-3, 4)) and risk["log_hazard"].is_monotonic_increasing


def test_grid_helpers():
    frames = np.zeros((3, 256, 256, 3), np.uint8)
    labels = risk_labels([-1, 0, 1], [0.5, 1.5, 2.5])
    assert labels[1].splitlines() == ["step +0", "log-hazard +1.50", "rel. hazard 1.00"]
    assert "rel. hazard 2.72" in labels[2]
    img = edit_grid(frames, labels, title="t")
    assert img.size[0] == 3 * 256 + 4 * 4
    assert edit_grid(frames, columns=2).size[0] == 2 * 256 + 3 * 4
    with pytest.raises(ConfigError, match="2 labels for 3 frames"):
        edit_grid(frames, labels[:2])


def test_save_gif_counts_frames(tmp_path):
    frames = np.stack([np.full((32, 32, 3), v, np.uint8) for v in (0, 80, 160, 240)])
    p = save_gif(frames, tmp_path / "a.gif", [f"f{i}" for i in range(4)])
    assert Image.open(p).n_frames == 4


def test_bad_subjects_name_subject_and_table(study, ctx, direction):
    with pytest.raises(DataError, match="subject 'P999' is not in feature table .*stylegan2.parquet"):
        ctx.subject("P999")
    with pytest.raises(DataError, match="subject 'P_FAIL' has no latent in feature table .*no_face"):
        ctx.subject("P_FAIL")
    with pytest.raises(DataError, match="image 'nope' of subject 'P001'"):
        ctx.subject("P001", image_id="nope")
    clin = pd.read_csv(study["clinical"])
    partial = load_edit_context(study["models"]["coxph"], study["run"], clinical=clin[clin.subject_id != "P001"])
    with pytest.raises(DataError, match="subject 'P001' has a latent .* no row in the modelling table"):
        partial.subject("P001")


def test_covariates_need_the_clinical_table(study):
    with pytest.raises(ConfigError, match="clinical covariate.*age.*--clinical"):
        load_edit_context(study["models"]["coxph"], study["run"])


def test_generator_from_the_table_provenance(ctx):
    spec = ctx.generator_spec()
    assert spec["checkpoint"].endswith("rosinality_tiny_converted_ckpt.pt") and spec["network"] == "G_ema"
    assert ctx.generator_spec("other.pt")["checkpoint"] == "other.pt"


def test_probe_direction_edit(ctx, tiny_G):
    from facefeat.explain.direction import LatentDirection
    from facefeat.explain.probes import LinearProbe

    rng = np.random.default_rng(4)
    probe = LinearProbe(name="age", kind="ridge", space="w", latent_column="stylegan2__latent",
                        latent_shape=(8, 64), label_column="age", coef=rng.normal(size=64), intercept=60.0)
    d = LatentDirection.from_probe(probe)
    res = edit_subject(ctx, "P002", d, [-1.0, 0.0, 1.0], G=tiny_G)
    score = probe.decision_function(res.latents)
    assert np.allclose(np.diff(score), 1.0)
    assert res.log_hazard.shape == (3,)  # the model's risk is still reported for each frame


def test_health_direction_from_an_estimator_in_memory(ctx):
    d = health_direction(ctx.estimator, metadata=ctx.metadata)
    assert d.vector.shape == (8, 64)
    d2 = health_direction(ctx.estimator)  # shape inferred from the flat names: 512 values -> [1, 512]
    assert d2.vector.size == 512
    d3 = health_direction(ctx.estimator, latent_shape=(8, 64))
    assert np.allclose(d3.vector, d.vector)
