"""The design pieces: survival times, censoring calibration, directions, generator calibration."""

import numpy as np
import pytest
import torch

from facefeat.errors import ConfigError, InputError
from facefeat.simulate import design
from facefeat.survival.cox import hazard_ratio_per_sd


def _score(n, seed=0):
    s = np.random.default_rng(seed).standard_normal(n)
    return (s - s.mean()) / s.std(ddof=1)


@pytest.mark.parametrize("baseline,shape", [("exponential", 1.0), ("weibull", 1.5), ("weibull", 0.7)])
def test_cox_on_the_true_score_recovers_the_effect(baseline, shape):
    s = _score(4000)
    t = design.simulate_times(0.8 * s, seed=1, baseline=baseline, shape=shape, censoring=0.0)
    assert t["event"].all() and t["censoring_achieved"] == 0.0
    fit = hazard_ratio_per_sd(s, t["time"], t["event"])
    assert fit["coef"] == pytest.approx(0.8, abs=0.06)


def test_exponential_baseline_has_the_stated_rate():
    t = design.simulate_times(np.zeros(20000), seed=3, baseline="exponential", scale=4.0, censoring=0.0)
    assert t["time"].mean() == pytest.approx(4.0, rel=0.03)  # mean of Exp(1/scale)
    w = design.simulate_times(np.zeros(20000), seed=3, baseline="weibull", shape=2.0, scale=4.0, censoring=0.0)
    assert np.median(w["time"]) == pytest.approx(4.0 * np.log(2) ** 0.5, rel=0.03)


@pytest.mark.parametrize("dist", ["uniform", "exponential"])
@pytest.mark.parametrize("target", [0.1, 0.3, 0.6])
def test_censoring_reaches_the_target(dist, target):
    s = _score(5000, seed=2)
    t = design.simulate_times(1.0 * s, seed=4, censoring=target, censoring_dist=dist)
    assert t["censoring_expected"] == pytest.approx(target, abs=1e-6)
    assert t["censoring_achieved"] == pytest.approx(target, abs=0.025)
    # censored subjects are observed at their censoring time, before their event
    c = ~t["event"]
    assert np.all(t["time"][c] == t["censor_time"][c]) and np.all(t["censor_time"][c] < t["event_time"][c])


def test_censoring_keeps_the_effect_estimable():
    s = _score(4000, seed=5)
    t = design.simulate_times(0.7 * s, seed=6, censoring=0.5)
    assert hazard_ratio_per_sd(s, t["time"], t["event"])["coef"] == pytest.approx(0.7, abs=0.08)


def test_times_are_deterministic():
    s = _score(100)
    a = design.simulate_times(s, seed=11, censoring=0.3)
    b = design.simulate_times(s, seed=11, censoring=0.3)
    c = design.simulate_times(s, seed=12, censoring=0.3)
    assert np.array_equal(a["time"], b["time"]) and np.array_equal(a["event"], b["event"])
    assert not np.array_equal(a["time"], c["time"])


@pytest.mark.parametrize("kw,option", [
    ({"censoring": 1.0}, "--censoring"), ({"censoring": -0.1}, "--censoring"),
    ({"effect": float("nan")}, "--effect"), ({"effect": float("inf")}, "--effect"),
    ({"baseline": "gompertz"}, "--baseline"), ({"shape": 0.0}, "--shape"), ({"scale": -1.0}, "--scale"),
    ({"truncation_psi": 0.0}, "--psi"), ({"folds": 1}, "--folds"),
    ({"n": 30, "folds": 5}, "--n"), ({"n": 60, "folds": 5, "censoring": 0.9}, "--n"),
])
def test_bad_design_values_name_the_option(kw, option):
    with pytest.raises(ConfigError, match=option):
        design.check_design(**kw)


def test_random_direction_is_a_unit_vector():
    d = design.random_direction(64, seed=0)
    assert d.shape == (64,) and np.linalg.norm(d) == pytest.approx(1.0)
    assert np.array_equal(d, design.random_direction(64, seed=0))


def test_direction_files(tmp_path):
    v = np.arange(1, 65, dtype=float)
    np.save(tmp_path / "d.npy", v)
    d, info = design.load_direction(tmp_path / "d.npy", w_dim=64, num_ws=8)
    assert np.allclose(d, v / np.linalg.norm(v)) and info["kind"] == "npy"
    np.save(tmp_path / "dp.npy", np.tile(v, (8, 1)))  # W+ -> summed over layers
    d2, info2 = design.load_direction(tmp_path / "dp.npy", w_dim=64, num_ws=8)
    assert np.allclose(d2, d) and "W+" in info2["reduced_from"]
    np.save(tmp_path / "bad.npy", np.ones(512))
    with pytest.raises(InputError, match=r"--direction .*shape \(512,\).*\(64,\)"):
        design.load_direction(tmp_path / "bad.npy", w_dim=64, num_ws=8)
    np.save(tmp_path / "zero.npy", np.zeros(64))
    with pytest.raises(InputError, match="zero"):
        design.load_direction(tmp_path / "zero.npy", w_dim=64)
    with pytest.raises(InputError, match="no such file"):
        design.load_direction(tmp_path / "missing.npy", w_dim=64)


def test_tiny_generator_resolves():
    p = design.resolve_generator(None)
    assert p.is_file() and p == design.resolve_generator("tiny")


def test_output_calibration_is_an_exact_affine_map():
    from facefeat.models.checkpoints import load_generator

    path = design.tiny_generator_path()
    G0, G1 = load_generator(path), load_generator(path)
    info = design.calibrate_output(G1, n=128)
    assert info["clipped_fraction_before"] > 0.3 and info["clipped_fraction_after"] < 0.02
    ws = G0.mapping(torch.randn(4, G0.z_dim, generator=torch.Generator().manual_seed(0)))
    with torch.no_grad():
        a, b = G0.synthesis(ws, noise_mode="const"), G1.synthesis(ws, noise_mode="const")
    m = torch.tensor(info["median"]).view(1, 3, 1, 1)
    s = torch.tensor(info["scale"]).view(1, 3, 1, 1)
    assert torch.allclose(b, (a - m) / s, atol=1e-4)
