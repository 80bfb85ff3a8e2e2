import numpy as np
import pytest
import torch

from facefeat.survival import DeepSurv, SurvivalEstimator, cox_log_partial_likelihood, cox_ph_loss

from .conftest import synthetic


def _loop_nll(eta, time, event, ties):
    """Textbook negative log partial likelihood, one unique event time at a time."""
    nll = 0.0
    for t in np.unique(time[event]):
        d = (time == t) & event
        risk = time >= t
        R = np.exp(eta[risk]).sum()
        T = np.exp(eta[d]).sum()
        k = d.sum()
        nll -= eta[d].sum()
        if ties == "breslow":
            nll += k * np.log(R)
        else:
            nll += sum(np.log(R - j / k * T) for j in range(k))
    return nll


@pytest.mark.parametrize("ties", ["breslow", "efron"])
def test_loss_matches_sksurv_and_a_loop_implementation(ties):
    from sksurv.linear_model.coxph import CoxPHOptimizer

    rng = np.random.default_rng(1)
    n = 150
    X = rng.normal(size=(n, 3))
    time = rng.integers(1, 20, n).astype(float)  # many ties
    event = rng.random(n) < 0.7
    w = np.array([0.7, -0.4, 0.1])
    eta = X @ w
    ref = CoxPHOptimizer(X, event, time, np.zeros(3), ties).nlog_likelihood(w) * n  # sksurv averages over n
    loss = cox_ph_loss(torch.tensor(eta), time, event, ties=ties, reduction="sum").item()
    assert loss == pytest.approx(ref, rel=1e-10)
    assert loss == pytest.approx(_loop_nll(eta, time, event, ties), rel=1e-10)
    assert -cox_log_partial_likelihood(eta, time, event, ties) == pytest.approx(ref, rel=1e-10)
    mean = cox_ph_loss(torch.tensor(eta), time, event, ties=ties).item()
    assert mean == pytest.approx(ref / event.sum(), rel=1e-10)


def test_loss_matches_lifelines_log_likelihood_on_gbsg2(gbsg2):
    import pandas as pd
    from lifelines import CoxPHFitter

    X, y = gbsg2
    num = X[["age", "estrec", "pnodes", "progrec", "tsize"]].astype(float)
    df = num.assign(T=y["time"], E=y["cens"].astype(int))
    cph = CoxPHFitter().fit(df, "T", "E")  # Efron ties
    eta = num.to_numpy() @ cph.params_.to_numpy()
    loss = cox_ph_loss(torch.tensor(eta), y["time"], y["cens"], ties="efron", reduction="sum").item()
    assert -loss == pytest.approx(cph.log_likelihood_, rel=1e-8)
    del pd


def test_loss_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    time = rng.integers(1, 8, 40).astype(float)
    event = rng.random(40) < 0.6
    eta = torch.tensor(rng.normal(size=40), requires_grad=True)
    cox_ph_loss(eta, time, event, ties="efron").backward()
    e0 = eta.detach().numpy().copy()
    h = 1e-6
    for i in (0, 5, 17):
        ep, em = e0.copy(), e0.copy()
        ep[i] += h
        em[i] -= h
        fd = (cox_ph_loss(torch.tensor(ep), time, event).item() - cox_ph_loss(torch.tensor(em), time, event).item()) / (2 * h)
        assert eta.grad[i].item() == pytest.approx(fd, abs=1e-7)


def test_loss_is_stable_for_large_risks():
    time = np.array([1.0, 2.0, 3.0, 4.0])
    event = np.array([True, True, False, True])
    loss = cox_ph_loss(torch.tensor([800.0, 10.0, -700.0, 900.0]), time, event)
    assert torch.isfinite(loss)


def test_deepsurv_learns_is_deterministic_and_stops_early():
    X, y = synthetic(300, 4, seed=3)
    kw = dict(hidden_layers=(16,), max_epochs=200, patience=10, learning_rate=1e-2, random_state=7)
    a = DeepSurv(**kw).fit(X[:200], y[:200])
    b = DeepSurv(**kw).fit(X[:200], y[:200])
    np.testing.assert_array_equal(a.predict(X[200:]), b.predict(X[200:]))
    assert a.score(X[200:], y[200:]) > 0.7
    assert a.n_epochs_ < 200 and a.best_epoch_ < a.n_epochs_
    assert "val_loss" in a.history_[0]
    state = torch.random.get_rng_state()
    DeepSurv(**{**kw, "max_epochs": 3}).fit(X[:100], y[:100])
    assert torch.equal(state, torch.random.get_rng_state()), "fit must not touch the global torch RNG"
    c = DeepSurv(**{**kw, "random_state": 8}).fit(X[:200], y[:200])
    assert not np.array_equal(a.predict(X[200:]), c.predict(X[200:]))


def test_deepsurv_options_and_survival_curves():
    X, y = synthetic(200, 3, seed=5)
    m = DeepSurv(hidden_layers=(8, 8), batch_norm=True, batch_size=64, activation="selu", ties="breslow",
                 max_epochs=20, validation_fraction=0, random_state=0).fit(X, y)
    assert m.n_epochs_ == 20
    s = m.predict_survival_function(X[:4], return_array=True)
    assert s.shape == (4, len(m.unique_times_)) and np.all(np.diff(s, axis=1) <= 1e-12)
    est = SurvivalEstimator("deepsurv", model_params={"hidden_layers": (8,), "max_epochs": 30}, random_state=0).fit(X, y)
    assert est.predict(X).shape == (200,)


def test_deepsurv_saves_as_arrays_and_predicts_the_same(tmp_path):
    import joblib
    import skops.io as sio

    X, y = synthetic(120, 3)
    m = DeepSurv(hidden_layers=(8,), max_epochs=10, random_state=0).fit(X, y)
    # the network is kept as arrays in the state: no torch object in a model file
    state = m.__getstate__()
    assert all(isinstance(v, np.ndarray) for v in state["net_"].values())
    joblib.dump(m, tmp_path / "m.joblib")
    m2 = joblib.load(tmp_path / "m.joblib")
    np.testing.assert_array_equal(m.predict(X), m2.predict(X))
    data = sio.dumps(m)
    m3 = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    np.testing.assert_array_equal(m.predict(X), m3.predict(X))
