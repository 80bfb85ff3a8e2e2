import numpy as np
import pandas as pd
import pytest

from facefeat.errors import DataError
from facefeat.survival import (
    FeatureBlock,
    SurvivalEstimator,
    SurvivalStratifiedKFold,
    cross_validate,
    evaluate,
    hazard_ratio_per_sd,
)
from facefeat.survival.metrics import calibration_table

from .conftest import synthetic


@pytest.fixture(scope="module")
def split():
    X, y = synthetic(400, 4, seed=2)
    return X[:250], y[:250], X[250:], y[250:]


def test_evaluate_metrics_and_bootstrap(split):
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, integrated_brier_score

    Xtr, ytr, Xte, yte = split
    est = SurvivalEstimator("coxph").fit(Xtr, ytr)
    res = evaluate(est, Xte, yte, n_bootstrap=50, random_state=0)
    m = res.metrics
    risk = est.predict(Xte)
    assert m["c_index"] == pytest.approx(concordance_index_censored(yte["event"], yte["time"], risk)[0])
    tau = res.settings["tau"]
    assert m["uno_c"] == pytest.approx(concordance_index_ipcw(ytr, yte, risk, tau=tau)[0])
    assert 0 < m["ibs"] < 0.25 and 0.5 < m["auc_mean"] < 1
    assert m["hr_per_sd"] > 1
    lo, hi = res.intervals["c_index"]
    assert lo < m["c_index"] < hi
    assert len(res.calibration) == 3 and len(res.auc_curve) > 0
    md = res.to_markdown()
    assert "c_index" in md and "Calibration" in md
    d = res.to_dict()
    assert set(d) >= {"metrics", "intervals_95", "calibration", "settings"}
    del integrated_brier_score


def test_hr_per_sd_matches_lifelines():
    from lifelines import CoxPHFitter

    X, y = synthetic(300, 2, seed=4)
    risk = X @ np.array([0.8, 0.3])
    hr = hazard_ratio_per_sd(risk, y["time"], y["event"])
    z = (risk - risk.mean()) / risk.std(ddof=1)
    cph = CoxPHFitter().fit(pd.DataFrame({"z": z, "T": y["time"], "E": y["event"]}), "T", "E")
    assert np.log(hr["hr"]) == pytest.approx(cph.params_["z"], abs=1e-6)
    assert hr["se"] == pytest.approx(cph.standard_errors_["z"], rel=1e-4)


def test_calibration_table_of_a_perfectly_calibrated_model():
    rng = np.random.default_rng(0)
    n = 4000
    rate = np.exp(rng.normal(size=n))
    t = rng.exponential(1 / rate)
    y = np.empty(n, dtype=[("event", bool), ("time", float)])
    y["event"], y["time"] = True, t
    tt = 0.7
    tab = calibration_table(np.exp(-rate * tt), y, tt)
    assert len(tab) == 10 and tab["n"].sum() == n
    assert np.max(np.abs(tab["predicted"] - tab["observed"])) < 0.06


def test_cross_validate_repeated_and_nested(split):
    Xtr, ytr, _, _ = split
    res = cross_validate(SurvivalEstimator("coxph"), Xtr, ytr, n_splits=3, n_repeats=2, random_state=0)
    assert len(res.folds) == 6 and set(res.summary["metric"]) >= {"c_index", "uno_c", "ibs", "auc_mean", "hr_per_sd"}
    row = res.summary.set_index("metric").loc["c_index"]
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert len(res.oof) == len(ytr) and set(res.oof["risk_group"]) == {1, 2}
    nested = cross_validate(SurvivalEstimator("coxph"), Xtr, ytr, n_splits=3, n_repeats=1,
                            param_grid={"model_params": [{"alpha": 0.01}, {"alpha": 100.0}]}, scoring="uno_c")
    assert all(p["model_params"]["alpha"] in (0.01, 100.0) for p in nested.folds["params"])
    assert "Nadeau" in nested.to_markdown()


def test_too_few_events_for_folds_is_an_error():
    X, y = synthetic(30, 2)
    y["event"] = False
    y["event"][:3] = True
    with pytest.raises(DataError, match="only 3 event"):
        cross_validate(SurvivalEstimator("coxph"), X, y, n_splits=5, n_repeats=1)


def test_single_class_event_in_a_test_fold_is_reported_not_fatal():
    from facefeat.survival.metrics import _metrics_core

    X, y = synthetic(60, 2)
    est = SurvivalEstimator("coxph").fit(X, y)
    y_te = y[:10].copy()
    y_te["event"] = False
    notes: list[str] = []
    m, _ = _metrics_core(est.predict(X[:10]), None, y, y_te, np.array([1.0]), np.array([1.0, 2.0]), 5.0, notes)
    assert np.isnan(m["c_index"]) and "no event" in notes[0]


def test_stratified_splitter_keeps_events_in_every_fold():
    X, y = synthetic(100, 2, censor=2.0)
    for tr, te in SurvivalStratifiedKFold(5, random_state=0).split(X, y):
        assert y["event"][te].sum() >= y["event"].sum() // 5


def test_scorers_need_a_training_target():
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    from facefeat.errors import ConfigError
    from facefeat.survival import get_scorer

    X, y = synthetic(80, 2)
    plain = CoxPHSurvivalAnalysis().fit(X, y)
    with pytest.raises(ConfigError, match="training target"):
        get_scorer("uno_c")(plain, X, y)
    assert 0.5 < get_scorer("c_index")(plain, X, y) < 1


def test_evaluate_late_fusion_and_blocks_in_cv():
    X, y = synthetic(200, 4, seed=9)
    df = pd.DataFrame(X, columns=list("abcd"))
    est = SurvivalEstimator("coxph", blocks={"one": FeatureBlock(columns=["a", "b"]), "two": FeatureBlock(columns=["c", "d"])},
                            fusion="late", stack_cv=3, random_state=0)
    res = cross_validate(est, df, y, n_splits=3, n_repeats=1)
    assert res.summary.set_index("metric").loc["c_index", "mean"] > 0.65
    assert res.oof["id"].tolist() == list(range(200))


def test_too_few_subjects_for_folds_is_an_error():
    X, y = synthetic(7, 2)
    with pytest.raises(DataError, match="at least 10 subjects"):
        cross_validate(SurvivalEstimator("coxph"), X, y, n_splits=5, n_repeats=1)


def test_hazard_ratio_of_a_separating_score_is_nan_not_an_overflow():
    from facefeat.survival.cox import hazard_ratio_per_sd

    time = np.array([1.0, 2.0, 3.0, 4.0])
    hr = hazard_ratio_per_sd(-time, time, np.ones(4, bool))  # earlier death <=> higher risk, always
    assert np.isnan(hr["hr"]) and np.isnan(hr["ci_high"])
