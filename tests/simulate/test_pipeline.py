"""One small simulated study end to end: determinism, the written layout, the CLI and bad input."""

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from facefeat.cli import main
from facefeat.simulate import pipeline

SMALL = dict(n=40, steps=4, folds=2, censoring=0.2, effect=1.5, batch_size=None)


@pytest.fixture(scope="module")
def study(tiny, tmp_path_factory):
    G, info = tiny
    out = tmp_path_factory.mktemp("sim") / "study"
    res = pipeline.simulate(seed=3, out=out, G=G, generator_info=info, **SMALL)
    return res, out


def test_same_seed_same_study(tiny, study, tmp_path):
    G, info = tiny
    res, out = study
    again = pipeline.simulate(seed=3, out=tmp_path / "again", G=G, generator_info=info, **SMALL)
    for key in ("recovered", "oracle", "censoring"):
        assert again.summary[key] == res.summary[key]
    assert np.array_equal(again.cohort.latents, res.cohort.latents)
    assert np.array_equal(again.cohort.images, res.cohort.images)
    pd.testing.assert_frame_equal(pd.read_csv(out / "clinical.csv"), pd.read_csv(tmp_path / "again" / "clinical.csv"))
    a = pq.read_table(out / "features" / "stylegan2.parquet").drop(["path"])
    b = pq.read_table(tmp_path / "again" / "features" / "stylegan2.parquet").drop(["path"])
    assert a.equals(b)
    other = pipeline.simulate(seed=4, G=G, generator_info=info, **SMALL)
    assert not np.array_equal(other.cohort.w, res.cohort.w)


def test_summary_figures(study):
    res, _ = study
    s = res.summary
    assert s["n"] == 40 and s["design"]["effect"] == 1.5
    for side in ("recovered", "oracle"):
        lo, hi = s[side]["c_index_ci"]
        assert 0 <= s[side]["c_index"] <= 1 and lo <= s[side]["c_index"] <= hi
        # coxnet may keep no coefficient on 20 training subjects: no direction, cosine NaN
        assert (-1 <= s[side]["cosine"] <= 1) or (np.isnan(s[side]["cosine"]) and s[side]["null_model"])
    assert s["censoring"]["achieved"] == pytest.approx(1 - s["censoring"]["events"] / 40)
    assert set(s["timings"]) >= {"render", "invert", "fit_cv", "total"}
    assert s["generator"]["calibration"]["clipped_fraction_after"] < 0.02
    assert "| C-index" in res.table()


def test_layout_reads_back_with_the_toolkit(study):
    from facefeat.explain.probes import read_latents
    from facefeat.io.tables import read_provenance
    from facefeat.survival import load_feature_table, load_model, load_survival_data, read_clinical

    res, out = study
    assert len(list((out / "images").glob("*.png"))) == 40
    feats = load_feature_table(out / "features")
    assert len(feats) == 40 and len(feats.attrs["feature_columns"]) == 64
    table = pq.read_table(out / "features" / "stylegan2.parquet")
    assert json.loads(table.schema.field("stylegan2__latent").metadata[b"shape"]) == [1, 64]
    assert set(table.column("status").to_pylist()) == {"ok"}
    assert {"diag__stylegan2__psnr", "diag__stylegan2__steps"} <= set(table.column_names)
    prov = read_provenance(out / "features" / "stylegan2.parquet")
    ckpt = prov["extractor"]["config"]["checkpoint"]
    assert ckpt.endswith(".safetensors") and prov["simulation"]["design"]["n"] == 40
    from facefeat.models.checkpoints import load_generator

    assert load_generator(ckpt).w_dim == 64
    clin = read_clinical(out / "clinical.csv")
    assert list(clin.columns) == ["subject_id", "time", "event", "true_risk", "true_projection"]
    truth = np.load(out / "truth.npz")
    assert truth["w"].shape == (40, 64) and np.linalg.norm(truth["direction"]) == pytest.approx(1.0)
    assert np.allclose(clin["true_risk"], truth["true_risk"])
    est, meta = load_model(out / "model")
    ds = load_survival_data(clinical=out / "clinical.csv", features=out / "features", covariates="none")
    assert np.allclose(est.predict(ds.X), res.estimator.predict(ds.X))
    assert meta["schema"]["blocks"]["image"] == list(ds.X.columns)
    rows = read_latents(out / "features")
    assert rows.shape == (1, 64) and rows.ok.all()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recovered"]["c_index"] == pytest.approx(res.summary["recovered"]["c_index"])


def test_power_curve_small(tiny, study, tmp_path):
    G, info = tiny
    res, _ = study
    per_rep, per_n = pipeline.power_curve([30, 40], replicates=2, seed=1, G=G, generator_info=info, pool=res.cohort,
                                          folds=2, censoring=0.3, effect=1.5, out=tmp_path)
    assert list(per_n["n"]) == [30, 40] and len(per_rep) == 4
    assert per_n["power"].between(0, 1).all()
    assert (tmp_path / "power.png").stat().st_size > 1000 and (tmp_path / "power.csv").is_file()


@pytest.mark.parametrize("argv,needle", [
    (["--n", "12"], "--n 12 is too small"),
    (["--censoring", "1"], "--censoring"),
    (["--effect", "nan"], "--effect"),
    (["--grid", "100,x"], "--grid"),
    (["--inversion", "encoder"], "--encoder"),
    (["--steps", "0"], "--steps"),
])
def test_cli_bad_input(argv, needle, tmp_path, capsys):
    assert main(["simulate", *argv, "-o", str(tmp_path / "o")]) == 2
    assert needle in capsys.readouterr().err


def test_cli_direction_with_wrong_shape(tmp_path, capsys):
    np.save(tmp_path / "d.npy", np.ones(7))
    rc = main(["simulate", "--n", "40", "--folds", "2", "--steps", "2", "--direction", str(tmp_path / "d.npy"),
               "-o", str(tmp_path / "o")])
    assert rc == 2 and "--direction" in capsys.readouterr().err


def test_cli_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    assert "facefeat simulate --n 400" in capsys.readouterr().out


def test_encoder_inversion(tmp_path):
    """The e4e path: codes [n, num_ws, 512] from an encoder checkpoint (random weights: plumbing
    only), and a clear error for a generator whose w_dim is not 512."""
    import torch

    from facefeat.errors import ConfigError
    from facefeat.models.e4e import Encoder4Editing, save_e4e_checkpoint
    from facefeat.models.stylegan2 import Generator, GeneratorConfig

    torch.manual_seed(0)
    G = Generator(GeneratorConfig.nvidia(32, channel_base=256, channel_max=32)).eval().requires_grad_(False)
    enc = Encoder4Editing(32, input_size=32)
    path = save_e4e_checkpoint(tmp_path / "e4e.pt", enc, latent_avg=G.w_avg.expand(G.num_ws, -1).clone())
    w = G.mapping(torch.randn(3, G.z_dim))[:, 0].double().numpy()
    images = pipeline.render(G, w)
    latents, diag, params = pipeline.invert(G, images, method="encoder", encoder=str(path), batch_size=2)
    assert latents.shape == (3, G.num_ws, 512) and diag["psnr"].shape == (3,)
    assert params["method"] == "encoder"
    tiny = Generator(GeneratorConfig.nvidia(32, channel_base=256, channel_max=32, w_dim=64, z_dim=64))
    with pytest.raises(ConfigError, match="w_dim is 64"):
        pipeline.invert(tiny, images, method="encoder", encoder=str(path))
