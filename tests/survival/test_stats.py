"""Intervals within range, hazard-ratio tables, paired comparisons, LRT and the subgroup audit,
checked against lifelines and scikit-survival on their reference data sets."""

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from facefeat.errors import DataError
from facefeat.survival import FeatureBlock, SurvivalEstimator, cross_validate
from facefeat.survival.compare import likelihood_ratio_test, paired_comparison
from facefeat.survival.dataset import load_reference_dataset
from facefeat.survival.hazard import hazard_ratio_table
from facefeat.survival.intervals import bounded_interval, corrected_t_test, harrell_c_se, wald_interval
from facefeat.survival.subgroups import subgroup_audit
from facefeat.survival.target import to_structured

from .conftest import synthetic


# -- intervals --------------------------------------------------------------------------------------

def test_bounded_interval_stays_in_range_where_the_raw_t_interval_does_not():
    from scipy.stats import t as t_dist

    folds = np.array([1.0, 0.93, 0.71, 1.0, 0.88, 0.97, 0.62, 1.0, 0.95, 0.99])
    n_train, n_test = 24, 6
    # the old symmetric interval on the raw scale leaves [0, 1]
    half = t_dist.ppf(0.975, 9) * math.sqrt(np.var(folds, ddof=1) * (1 / 10 + n_test / n_train))
    assert folds.mean() + half > 1
    lo, hi, method = bounded_interval(folds, n_train=n_train, n_test=n_test)
    assert 0 < lo < folds.mean() < hi < 1
    assert "logit" in method and "Nadeau" in method
    hr = np.array([0.4, 5.0, 1.3, 9.0, 0.9])
    lo, hi, method = bounded_interval(hr, n_train=40, n_test=10, bounds=(0, math.inf))
    assert 0 < lo < hr.mean() < hi and "log scale" in method
    lo, hi, method = bounded_interval(np.linspace(0.2, 0.9, 200), method="percentile")
    assert lo == pytest.approx(np.quantile(np.linspace(0.2, 0.9, 200), 0.025)) and "percentile" in method
    assert bounded_interval([1.0, 1.0, 1.0], n_train=8, n_test=2)[:2] == (1.0, 1.0)
    assert all(math.isnan(v) for v in bounded_interval([0.7], n_train=8, n_test=2)[:2])


def test_corrected_t_test_agrees_with_its_interval():
    d = np.array([0.02, 0.035, -0.01, 0.04, 0.03, 0.01, 0.025, 0.05, 0.0, 0.03])
    t = corrected_t_test(d, n_train=400, n_test=100, bounds=(-1, 1))
    assert t["ci_low"] < t["estimate"] < t["ci_high"]
    assert (t["ci_low"] > 0) == (t["p_value"] < 0.05)
    # near 0 the logit scale of (d + 1) / 2 is nearly linear: the raw corrected t test
    from scipy.stats import t as t_dist

    se = math.sqrt(np.var(d, ddof=1) * (1 / 10 + 100 / 400))
    assert t["p_value"] == pytest.approx(2 * t_dist.sf(d.mean() / se, 9), rel=0.02)


def test_harrell_c_se_is_sksurv_c_and_the_jackknife():
    from sksurv.metrics import concordance_index_censored

    X, y = load_reference_dataset("veterans")
    risk = np.round(X["Karnofsky_score"].to_numpy(float) * -1, 0)  # ties in risk on purpose
    e, t = y["Status"], y["Survival_in_days"]
    c, se, pairs = harrell_c_se(risk, t, e)
    assert c == pytest.approx(concordance_index_censored(e, t, risk)[0], abs=1e-12)
    loo = np.array([harrell_c_se(np.delete(risk, i), np.delete(t, i), np.delete(e, i))[0] for i in range(len(t))])
    jack = math.sqrt((len(t) - 1) / len(t) * ((loo - loo.mean()) ** 2).sum())
    assert se == pytest.approx(jack, rel=0.05)
    lo, hi, _ = wald_interval(c, se)
    assert 0 < lo < c < hi < 1


# -- cross-validation: bounded summaries, split hash --------------------------------------------

@pytest.fixture(scope="module")
def small_strong():
    # few subjects, strong signal: fold C-indices near 1, the case that printed intervals above 1
    X, y = synthetic(40, 2, seed=11, censor=0.2)
    return X * 3, y


def test_cv_summary_intervals_inside_their_range(small_strong):
    X, y = small_strong
    res = cross_validate(SurvivalEstimator("coxph"), X, y, n_splits=4, n_repeats=3, random_state=1)
    s = res.summary.set_index("metric")
    for m in ("c_index", "uno_c", "auc_mean", "ibs"):
        if np.isfinite(s.loc[m, "mean"]):
            assert 0 <= s.loc[m, "ci_low"] <= s.loc[m, "mean"] <= s.loc[m, "ci_high"] <= 1, m
    assert s.loc["hr_per_sd", "ci_low"] > 0
    assert "logit" in s.loc["c_index", "method"] and "log hazard ratio" in s.loc["hr_per_sd", "method"]
    assert "logit" in res.to_markdown()


def test_splits_hash_identifies_the_folds():
    X, y = load_reference_dataset("gbsg2")
    a = cross_validate(SurvivalEstimator("coxph", blocks={"c": FeatureBlock(columns=["age", "pnodes"])}), X, y,
                       n_splits=3, n_repeats=1)
    b = cross_validate(SurvivalEstimator("coxph", blocks={"c": FeatureBlock(columns=["age"])}), X, y,
                       n_splits=3, n_repeats=1)
    c = cross_validate(SurvivalEstimator("coxph", blocks={"c": FeatureBlock(columns=["age"])}), X, y,
                       n_splits=3, n_repeats=1, random_state=5)
    assert len(a.settings["splits_sha256"]) == 64
    assert a.settings["splits_sha256"] == b.settings["splits_sha256"] != c.settings["splits_sha256"]
    assert "id" in a.oof.columns and len(a.folds) == 3
    cmp = paired_comparison(a, b)
    assert list(cmp.columns) == ["metric", "arm", "reference", "difference", "ci_low", "ci_high", "p_value", "better",
                                 "folds", "method"]
    row = cmp.set_index("metric").loc["c_index"]
    d = a.folds["c_index"] - b.folds["c_index"]
    assert row["difference"] == pytest.approx(d.mean())
    assert row["ci_low"] < row["difference"] < row["ci_high"] and 0 <= row["p_value"] <= 1
    assert "lower is better" in cmp.set_index("metric").loc["ibs", "better"]
    with pytest.raises(DataError, match="different folds"):
        paired_comparison(a, c)


# -- likelihood-ratio test and hazard-ratio tables against lifelines --------------------------------

def test_lrt_equals_lifelines_on_gbsg2():
    from lifelines import CoxPHFitter
    from lifelines.statistics import StatisticalResult  # noqa: F401  (lifelines' LRT type)

    X, y = load_reference_dataset("gbsg2")
    full = list(X.columns)
    reduced = [c for c in full if c != "tgrade"]
    res = likelihood_ratio_test(X, y, full=full, reduced=reduced)
    d = pd.get_dummies(X, drop_first=True, dtype=float).assign(T=y["time"], E=y["cens"].astype(int))
    grade = [c for c in d.columns if c.startswith("tgrade")]
    f = CoxPHFitter().fit(d, "T", "E")
    r = CoxPHFitter().fit(d.drop(columns=grade), "T", "E")
    manual = 2 * (f.log_likelihood_ - r.log_likelihood_)
    assert res["df"] == 2 and res["n"] == 686 and res["events"] == 299
    assert res["statistic"] == pytest.approx(manual, abs=1e-6)
    assert res["loglik_full"] == pytest.approx(f.log_likelihood_, abs=1e-6)
    from scipy.stats import chi2

    assert res["p_value"] == pytest.approx(chi2.sf(manual, 2), rel=1e-5)
    with pytest.raises(Exception, match="not nested"):
        likelihood_ratio_test(X, y, full=reduced, reduced=["tgrade"])


def _lifelines_frame(name):
    from lifelines import datasets

    if name == "rossi":
        return datasets.load_rossi(), "week", "arrest"
    return datasets.load_lung().dropna(), "time", "status"


@pytest.mark.parametrize("name", ["rossi", "lung"])
def test_hazard_ratio_table_equals_lifelines(name):
    from lifelines import CoxPHFitter

    d, T, E = _lifelines_frame(name)
    X = d.drop(columns=[T, E]).astype(float)
    y = to_structured(d[E].to_numpy() > 0, d[T].to_numpy(float))
    tab = hazard_ratio_table(SurvivalEstimator("coxph").fit(X, y))
    ref = CoxPHFitter().fit(d, T, E, fit_options={"precision": 1e-10}).summary
    ours = tab[["hr", "ci_low", "ci_high", "p_value"]].to_numpy()
    theirs = ref[["exp(coef)", "exp(coef) lower 95%", "exp(coef) upper 95%", "p"]].to_numpy()
    assert np.abs(ours - theirs).max() < 1e-4
    assert list(tab["term"]) == list(X.columns)
    assert tab["unit"].str.startswith("per unit of").all()
    assert "Wald" in tab["method"].iloc[0]


def test_hazard_ratio_table_units_of_a_scaled_pipeline_with_categories():
    from lifelines import CoxPHFitter

    X, y = load_reference_dataset("gbsg2")
    cols = ["age", "pnodes", "tgrade", "menostat"]
    est = SurvivalEstimator("coxph", blocks={"clinical": FeatureBlock(columns=cols)}).fit(X, y)
    tab = hazard_ratio_table(est).set_index("term")
    assert tab.loc["age", "unit"].startswith("per SD of age (SD ")
    assert tab.loc["tgrade_II", "unit"] == "tgrade = II vs I (reference)"
    per_unit = hazard_ratio_table(est, per="unit").set_index("term")
    assert per_unit.loc["age", "unit"] == "per unit of age"
    d = pd.get_dummies(X[cols], drop_first=True, dtype=float).assign(T=y["time"], E=y["cens"].astype(int))
    ref = CoxPHFitter().fit(d, "T", "E").summary
    assert per_unit.loc["age", "hr"] == pytest.approx(ref.loc["age", "exp(coef)"], abs=1e-4)
    assert per_unit.loc["pnodes", "ci_high"] == pytest.approx(ref.loc["pnodes", "exp(coef) upper 95%"], abs=1e-4)
    assert tab.loc["tgrade_III", "p_value"] == pytest.approx(ref.loc["tgrade_III", "p"], abs=1e-4)
    # the per-SD p-value is the per-unit one: scaling does not change the test
    assert tab.loc["age", "p_value"] == pytest.approx(per_unit.loc["age", "p_value"], rel=1e-9)


def test_penalised_models_say_why_there_is_no_p_value():
    X, y = load_reference_dataset("gbsg2")
    blocks = {"clinical": FeatureBlock(columns=["age", "pnodes", "tsize", "progrec"])}
    ridge = SurvivalEstimator("coxph", model_params={"alpha": 5.0}, blocks=blocks).fit(X, y)
    tab = hazard_ratio_table(ridge)
    assert tab["p_value"].isna().all() and tab["note"].str.contains("no valid Wald").all()
    assert (tab["hr"] > 0).all()
    net = SurvivalEstimator("coxnet", model_params={"cv": None}, blocks=blocks, random_state=0).fit(X, y)
    tab = hazard_ratio_table(net)
    assert tab["p_value"].isna().all() and "coxnet" in tab["note"].iloc[0]


@pytest.mark.slow
def test_penalised_models_get_bootstrap_intervals_when_asked():
    X, y = load_reference_dataset("gbsg2")
    blocks = {"clinical": FeatureBlock(columns=["age", "pnodes", "tsize", "progrec"])}
    ridge = SurvivalEstimator("coxph", model_params={"alpha": 5.0}, blocks=blocks).fit(X, y)
    boot = hazard_ratio_table(ridge, X=X, y=y, n_bootstrap=30, random_state=0)
    assert (boot["ci_low"] < boot["hr"]).all() and (boot["hr"] < boot["ci_high"]).all() and (boot["ci_low"] > 0).all()
    assert "bootstrap percentile" in boot["method"].iloc[0] and boot["p_value"].isna().all()


# -- subgroup audit --------------------------------------------------------------------------------

def test_subgroup_audit_on_gbsg2():
    from lifelines import CoxPHFitter
    from sksurv.metrics import concordance_index_censored

    X, y = load_reference_dataset("gbsg2")
    risk = SurvivalEstimator("coxph", blocks={"c": FeatureBlock(columns=["pnodes", "tsize", "progrec"])}) \
        .fit(X, y).predict(X)
    groups = X[["menostat", "age", "tgrade"]].copy()
    groups.loc[:9, "menostat"] = np.nan
    tab = subgroup_audit(risk, y, groups, bands={"age": [45, 60]}, min_events=20)
    assert list(tab.columns)[:9] == ["variable", "subgroup", "n", "events", "c_index", "ci_low", "ci_high",
                                     "interaction_p", "note"]
    ages = tab[tab["variable"] == "age"]
    assert list(ages["subgroup"]) == ["< 45", "[45, 60)", ">= 60"] and ages["n"].sum() == 686
    post = tab[(tab["variable"] == "menostat") & (tab["subgroup"] == "Post")].iloc[0]
    m = (groups["menostat"] == "Post").to_numpy()
    assert post["c_index"] == pytest.approx(concordance_index_censored(y["cens"][m], y["time"][m], risk[m])[0])
    assert 0 < post["ci_low"] < post["c_index"] < post["ci_high"] < 1
    # the small subgroups are listed with the reason, not dropped
    small = tab[(tab["variable"] == "tgrade") & (tab["subgroup"] == "I")].iloc[0]
    assert small["events"] == 18 and math.isnan(small["c_index"]) and "too small" in small["note"]
    miss = tab[(tab["variable"] == "menostat") & (tab["subgroup"] == "(missing)")].iloc[0]
    assert miss["n"] == 10 and "too small" in miss["note"]
    # interaction p equals lifelines' LRT of risk x age band
    z = (risk - risk.mean()) / risk.std()
    band = np.where(X["age"] < 45, 0, np.where(X["age"] < 60, 1, 2))
    d = pd.DataFrame({"z": z, "b1": (band == 1) * 1.0, "b2": (band == 2) * 1.0, "T": y["time"], "E": y["cens"] * 1})
    d["zb1"], d["zb2"] = d.z * d.b1, d.z * d.b2
    f = CoxPHFitter().fit(d, "T", "E")
    r = CoxPHFitter().fit(d.drop(columns=["zb1", "zb2"]), "T", "E")
    from scipy.stats import chi2

    p = chi2.sf(2 * (f.log_likelihood_ - r.log_likelihood_), 2)
    assert ages["interaction_p"].iloc[0] == pytest.approx(p, rel=1e-4)


# -- guards ------------------------------------------------------------------------------------------

def test_more_features_than_events_warns_once_without_solver_flood():
    from facefeat.survival.guards import ModelWarning

    rng = np.random.default_rng(0)
    X, y = synthetic(40, 2, seed=3, censor=3.0)  # heavy censoring: few events
    wide = np.hstack([X, rng.normal(size=(40, 30))])
    n_ev = int(y["event"].sum())
    assert wide.shape[1] >= n_ev
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        est = SurvivalEstimator("coxph").fit(wide, y)
    ours = [w for w in caught if issubclass(w.category, ModelWarning)]
    kinds = {w.message.key for w in ours}
    assert "dimensions" in kinds and len(ours) == len(kinds)
    assert not [w for w in caught if "LinAlg" in type(w.message).__name__]
    assert any("coxnet" in str(w.message) and "PCA" in str(w.message) for w in ours)
    assert any(i.level == "warning" and "more features" in i.message for i in est.report_.items)


def test_separation_names_the_column_and_flags_the_apparent_c():
    from facefeat.survival.guards import ModelWarning

    X, y = synthetic(80, 2, seed=5)
    frame = pd.DataFrame(X, columns=["a", "b"])
    # a column that orders the event times perfectly
    order = np.argsort(np.argsort(-y["time"]))
    frame["leak"] = np.where(y["event"], order, -5.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        SurvivalEstimator("coxph").fit(frame, y)
    ours = [str(w.message) for w in caught if issubclass(w.category, ModelWarning)]
    assert len(ours) == 1, ours
    assert "separation" in ours[0] and "leak" in ours[0] and "apparent (training) C-index" in ours[0]


def test_null_coxnet_says_so():
    from facefeat.survival.guards import ModelWarning

    rng = np.random.default_rng(1)
    X = rng.normal(size=(60, 3))
    y = to_structured(rng.random(60) < 0.6, rng.exponential(10, 60) + 0.1)  # pure noise
    with pytest.warns(ModelWarning, match="null model"):
        SurvivalEstimator("coxnet", model_params={"cv": None, "alphas": [10.0]}).fit(X, y)


def test_hr_per_sd_of_a_score_constant_within_risk_sets_is_undefined_not_overflow():
    from facefeat.survival.cox import hazard_ratio_per_sd

    # distinct risks only among subjects censored before the first event, rounding noise after
    risk = np.r_[48.5, 7.95, 0.005225886363976057 + np.array([0, 5, 3, -6, -9, -6, -2, -14, -3, -9]) * 1e-18]
    time = np.r_[0.5, 0.7, np.arange(1, 11.0)]
    event = np.r_[False, False, np.ones(10, bool)]
    hr = hazard_ratio_per_sd(risk, time, event)
    assert math.isnan(hr["hr"]) and math.isnan(hr["ci_high"])


def test_unseen_level_is_named(tmp_path):
    from facefeat.errors import DataError as DE
    from facefeat.survival.guards import ModelWarning

    X, y = load_reference_dataset("gbsg2")
    est = SurvivalEstimator("coxph", blocks={"c": FeatureBlock(columns=["age", "tgrade"])}).fit(X, y)
    new = X.iloc[:5].copy()
    new["tgrade"] = new["tgrade"].astype(str)
    new.iloc[0, new.columns.get_loc("tgrade")] = "IV"
    with pytest.warns(ModelWarning, match=r"column 'tgrade': level\(s\) \['IV'\] in 1 row"):
        est.predict(new)
    strict = SurvivalEstimator("coxph", blocks={"c": FeatureBlock(columns=["age", "tgrade"], unknown_levels="error")})
    with pytest.raises(DE, match="IV"):
        strict.fit(X, y).predict(new)


def test_evaluate_with_partly_mismatched_ids_is_a_clear_error(tmp_path, gbsg2_split_files, capsys):
    from facefeat.cli import main

    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--features", str(run), "--clinical", str(clin), "--out", str(model)]) == 0
    table = pd.read_csv(clin)
    censored = table.index[table["event"] == 0][:3].tolist()
    late = [i for i in table.index[table["event"] == 1] if table["time"][i] > table["time"][censored].max()][:1]
    keep = set(censored + late)  # the only matching ids: no event before another subject's time
    table["subject_id"] = [s if i in keep else f"X{i}" for i, s in enumerate(table["subject_id"])]
    table.to_csv(tmp_path / "bad.csv", index=False)
    assert main(["evaluate", "--model-dir", str(model), "--features", str(run), "--clinical", str(tmp_path / "bad.csv"),
                 "--out", str(tmp_path / "held")]) == 2
    err = capsys.readouterr().err
    assert "no comparable pair" in err and "4 subjects" in err and "id column" in err
    assert "Traceback" not in err


def test_cli_fit_writes_hazard_ratios(tmp_path, gbsg2_split_files):
    from facefeat.cli import main

    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--clinical", str(clin), "--covariates", "age,tgrade", "--out", str(model)]) == 0
    hr = pd.read_csv(model / "hazard_ratios.csv")
    assert list(hr["term"]) == ["age", "tgrade_II", "tgrade_III"]
    assert hr.loc[0, "unit"].startswith("per SD of age") and (hr["ci_low"] > 0).all()
    assert hr.loc[1, "unit"] == "tgrade = II vs I (reference)"
    assert "## Hazard ratios" in (model / "fit_report.md").read_text()


@pytest.mark.slow
def test_cli_evaluate_compares_and_audits_subgroups(tmp_path, gbsg2_split_files):
    from facefeat.cli import main

    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--clinical", str(clin), "--covariates", "age,tgrade", "--out", str(model)]) == 0

    out = tmp_path / "cmp"
    assert main(["evaluate", "--clinical", str(clin), "--covariates", "age,tgrade", "--compare", "age",
                 "--subgroups", "menostat,age", "--bands", "age=45,60", "--folds", "3", "--repeats", "2",
                 "--out", str(out)]) == 0
    cmp = pd.read_csv(out / "comparison.csv").set_index("metric")
    assert {"c_index", "uno_c", "auc_mean", "ibs", "likelihood_ratio_chi2"} <= set(cmp.index)
    assert cmp.loc["c_index", "folds"] == 6 and cmp.loc["c_index", "ci_low"] < cmp.loc["c_index", "ci_high"]
    lrt = likelihood_ratio_test(pd.read_csv(clin), to_structured(pd.read_csv(clin)["event"] > 0,
                                                                pd.read_csv(clin)["time"]),
                                full=["age", "tgrade"], reduced=["age"])
    assert cmp.loc["likelihood_ratio_chi2", "difference"] == pytest.approx(lrt["statistic"])
    sub = pd.read_csv(out / "subgroups.csv")
    assert list(sub["subgroup"]) == ["all subjects", "Post", "Pre", "< 45", "[45, 60)", ">= 60"]
    text = (out / "results.md").read_text()
    assert "## Comparison with" in text and "## Subgroup audit" in text and "Likelihood-ratio test" in text

    # held-out: the saved model against another saved model, paired bootstrap
    other = tmp_path / "other"
    assert main(["fit", "--clinical", str(clin), "--covariates", "age", "--out", str(other)]) == 0
    held = tmp_path / "held"
    assert main(["evaluate", "--model-dir", str(model), "--clinical", str(clin), "--compare", str(other),
                 "--bootstrap", "40", "--out", str(held)]) == 0
    hc = pd.read_csv(held / "comparison.csv").set_index("metric")
    assert "paired bootstrap" in hc.loc["c_index", "method"]
    assert -1 <= hc.loc["c_index", "ci_low"] <= hc.loc["c_index", "ci_high"] <= 1
    # different folds are refused by the function the CLI uses (checked in test_splits_hash_identifies_the_folds)


def test_predict_names_an_unseen_level_or_refuses_it(tmp_path, gbsg2_split_files, capsys):
    from facefeat.cli import main

    clin, run, ids = gbsg2_split_files
    model = tmp_path / "model"
    assert main(["fit", "--clinical", str(clin), "--covariates", "age,tgrade", "--out", str(model)]) == 0
    new = pd.read_csv(clin).drop(columns=["time", "event"]).iloc[:10]
    new.loc[3, "tgrade"] = "IV"
    new.to_csv(tmp_path / "new.csv", index=False)
    from facefeat.survival.guards import ModelWarning

    with pytest.warns(ModelWarning, match=r"'tgrade': level\(s\) \['IV'\]"):
        assert main(["predict", "--model-dir", str(model), "--clinical", str(tmp_path / "new.csv"),
                     "--out", str(tmp_path / "p.csv")]) == 0
    assert main(["predict", "--model-dir", str(model), "--clinical", str(tmp_path / "new.csv"), "--unknown-levels",
                 "error", "--out", str(tmp_path / "p2.csv")]) == 2
    assert "IV" in capsys.readouterr().err and not (tmp_path / "p2.csv").exists()


def test_few_events_per_feature_is_flagged_in_the_fit_and_the_table():
    from facefeat.survival.guards import ModelWarning

    X, y = synthetic(120, 12, seed=8, censor=1.0)
    n_ev = int(y["event"].sum())
    assert 12 < n_ev < 120  # 12 features, fewer than 10 events each, more events than features
    with pytest.warns(ModelWarning, match="events per feature"):
        est = SurvivalEstimator("coxph").fit(X, y)
    tab = hazard_ratio_table(est)
    assert tab["note"].str.contains("events per term").all() and tab["p_value"].notna().all()
