import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from facefeat.errors import ConfigError, DataError
from facefeat.survival import FeatureBlock, SurvivalEstimator, SurvivalStratifiedKFold, get_scorer

from .conftest import synthetic


@pytest.fixture(scope="module")
def data():
    X, y = synthetic(240, 5)
    return pd.DataFrame(X, columns=[f"f{i}" for i in range(5)]), y


def test_init_stores_params_only_and_clone_works(data):
    est = SurvivalEstimator("coxph", model_params={"alpha": 0.1}, blocks={"a": FeatureBlock(columns=["f0", "f1"])})
    assert not hasattr(est, "model_")
    c = clone(est)
    assert c.get_params(deep=False)["model_params"] == {"alpha": 0.1}
    assert c.blocks["a"] is not est.blocks["a"]


def test_fit_predict_survival_functions(data):
    X, y = data
    est = SurvivalEstimator("coxph").fit(X, y)
    risk = est.predict(X)
    assert risk.shape == (240,)
    assert est.score(X, y) > 0.7
    sf = est.predict_survival_function(X.iloc[:3])
    assert len(sf) == 3 and all(0 <= f(f.x[0]) <= 1 for f in sf)
    arr = est.predict_survival_function(X.iloc[:3], return_array=True)
    assert arr.shape == (3, len(est.unique_times_))
    assert np.all(np.diff(arr, axis=1) <= 1e-12)
    ch = est.predict_cumulative_hazard_function(X.iloc[:3], return_array=True)
    np.testing.assert_allclose(np.exp(-ch), arr, rtol=1e-10)
    # higher risk = worse: the highest-risk subject has the lowest survival everywhere
    full = est.predict_survival_function(X, return_array=True)
    assert np.argmax(risk) == np.argmin(full[:, len(est.unique_times_) // 2])


def test_y_as_dataframe(data):
    X, y = data
    ydf = pd.DataFrame({"time": y["time"], "event": y["event"].astype(int)})
    a = SurvivalEstimator("coxph").fit(X, y).predict(X)
    b = SurvivalEstimator("coxph").fit(X, ydf).predict(X)
    np.testing.assert_allclose(a, b)


def test_in_pipeline_and_gridsearch_with_block_params(data):
    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("model", SurvivalEstimator("coxph"))])
    pipe.fit(X.to_numpy(), y)
    assert pipe.score(X.to_numpy(), y) > 0.7
    est = SurvivalEstimator("coxph", blocks={"img": FeatureBlock(pca=2)})
    assert est.get_params()["img__pca"] == 2
    gs = GridSearchCV(est, {"img__pca": [1, 3], "model_params": [{"alpha": 0.0}, {"alpha": 10.0}]},
                      cv=SurvivalStratifiedKFold(3, random_state=0), scoring=get_scorer("uno_c"))
    gs.fit(X, y)
    assert gs.best_params_["img__pca"] == 3
    assert est.blocks["img"].pca == 2  # the original is untouched
    assert gs.best_estimator_.blocks_["img"].pca_.n_components_ == 3


def test_pipeline_scorer_finds_training_target(data):
    X, y = data
    pipe = Pipeline([("scale", StandardScaler()), ("model", SurvivalEstimator("coxph"))]).fit(X.to_numpy(), y)
    assert 0.5 < get_scorer("uno_c")(pipe, X.to_numpy(), y) < 1
    assert get_scorer("neg_ibs")(pipe, X.to_numpy(), y) < 0


@pytest.mark.parametrize("model", ["coxnet", "rsf", "gbsa"])
def test_other_models(data, model):
    X, y = data
    params = {"n_estimators": 20} if model in ("rsf", "gbsa") else {}
    est = SurvivalEstimator(model, model_params=params, random_state=0).fit(X, y)
    assert est.score(X, y) > 0.65
    assert est.predict_survival_function(X.iloc[:2], return_array=True).shape[0] == 2


def test_coxnet_inner_cv_picks_a_penalty(data):
    X, y = data
    est = SurvivalEstimator("coxnet", model_params={"l1_ratio": 0.9}, random_state=0).fit(X, y)
    m = est.model_
    assert m.cv_scores_.shape == (len(m.alphas_), 5)
    assert m.alpha_ in m.alphas_
    np.testing.assert_allclose(est.coefficients().to_numpy(), m.coef_)
    one_se = SurvivalEstimator("coxnet", model_params={"rule": "1se"}, random_state=0).fit(X, y)
    assert one_se.model_.alpha_ >= SurvivalEstimator("coxnet", random_state=0).fit(X, y).model_.alpha_


def test_late_fusion_is_inspectable_and_stacks_out_of_fold(data):
    X, y = data
    blocks = {"a": FeatureBlock(columns=["f0", "f1"]), "b": FeatureBlock(columns=["f2", "f3", "f4"])}
    est = SurvivalEstimator("coxph", blocks=blocks, fusion="late", random_state=0).fit(X, y)
    assert set(est.block_models_) == {"a", "b"}
    assert est.oof_risk_.shape == (240, 2)
    assert (est.fusion_weights_ > 0).all()
    br = est.block_risks(X)
    np.testing.assert_allclose(br["a"], est.block_models_["a"][1].predict(est.block_models_["a"][0].transform(X)))
    assert est.score(X, y) > 0.7
    assert est.predict_survival_function(X.iloc[:2], return_array=True).shape[0] == 2
    mean = SurvivalEstimator("coxph", blocks=blocks, fusion="late", combiner="mean", weights={"a": 1, "b": 3}).fit(X, y)
    assert mean.fusion_weights_.to_dict() == {"a": 0.25, "b": 0.75}
    assert mean.coefficients(block="a").index.tolist() == ["f0", "f1"]
    mixed = SurvivalEstimator({"a": "coxph", "*": "coxnet"}, blocks=blocks, fusion="late", random_state=0).fit(X, y)
    assert type(mixed.block_models_["b"][1]).__name__ == "CoxnetCV"


def test_late_fusion_needs_two_blocks(data):
    X, y = data
    with pytest.raises(ConfigError, match="two blocks"):
        SurvivalEstimator(fusion="late").fit(X, y)


def test_pca_inside_fold_and_input_space_coefficients(data):
    X, y = data
    est = SurvivalEstimator("coxph", blocks={"img": FeatureBlock(pca=5)}).fit(X, y)
    direct = SurvivalEstimator("coxph", blocks={"img": FeatureBlock()}).fit(X, y)
    # a full-rank PCA is a rotation: the same model, the same input-space direction
    np.testing.assert_allclose(est.coefficients(space="input"), direct.coefficients(space="input"), atol=1e-6)
    lin = est.predict(X)
    manual = (X.to_numpy() - X.to_numpy().mean(0)) @ est.coefficients(space="input").to_numpy()
    np.testing.assert_allclose(lin - lin.mean(), manual - manual.mean(), atol=1e-8)


def test_constant_and_all_nan_columns_are_dropped_and_reported(data):
    X, y = data
    X2 = X.assign(const=1.0, empty=np.nan)
    est = SurvivalEstimator("coxph").fit(X2, y)
    assert "const" not in est.feature_names_out_ and "empty" not in est.feature_names_out_
    msgs = " ".join(i.message + str(i.examples) for i in est.report_.items)
    assert "constant" in msgs and "const" in msgs and "all-NaN" in msgs and "empty" in msgs
    with pytest.raises(DataError, match="constant"):
        SurvivalEstimator("coxph", blocks={"x": FeatureBlock(constant="error", impute=None)}).fit(X.assign(const=1.0), y)


def test_missing_values_error_names_column_and_rows_or_are_imputed(data):
    X, y = data
    X2 = X.copy()
    X2.iloc[[3, 7], 1] = np.nan
    with pytest.raises(DataError, match=r"'f1' in rows 3, 7"):
        SurvivalEstimator("coxph").fit(X2, y)
    est = SurvivalEstimator("coxph", blocks={"all": FeatureBlock()}).fit(X2, y)
    assert any("imputed 2 missing" in i.message for i in est.report_.items)


def test_categorical_block_with_unseen_level(data):
    X, y = data
    X2 = X.assign(stage=np.where(X["f0"] > 0, "III", "II"))
    est = SurvivalEstimator("coxph", blocks={"c": FeatureBlock(categorical=["stage"])}).fit(X2, y)
    assert "stage_III" in est.feature_names_out_
    X3 = X2.iloc[:5].assign(stage="IV")
    from facefeat.survival.guards import ModelWarning

    with pytest.warns(ModelWarning, match=r"column 'stage': level\(s\) \['IV'\] in 5 row"):
        risk = est.predict(X3)
    # scored as the reference level (II), as the warning says
    assert np.allclose(risk, est.predict(X3.assign(stage="II")))


def test_predict_refuses_other_columns(data):
    X, y = data
    est = SurvivalEstimator("coxph").fit(X, y)
    with pytest.raises(DataError, match="not seen in fit"):
        est.predict(X.assign(extra=1.0))
    with pytest.raises(DataError):
        est.predict(X.drop(columns="f0"))


def test_unknown_model_and_fusion():
    X, y = synthetic(50, 2)
    with pytest.raises(ConfigError, match="unknown model"):
        SurvivalEstimator("cox").fit(X, y)
    with pytest.raises(ConfigError, match="fusion"):
        SurvivalEstimator(fusion="middle").fit(X, y)


def test_plain_arrays_with_a_constant_column(data):
    X, y = data
    A = np.column_stack([X.to_numpy(), np.ones(len(X))])
    est = SurvivalEstimator("coxph").fit(A, y)
    assert list(est.feature_names_out_) == ["x0", "x1", "x2", "x3", "x4"]
    np.testing.assert_allclose(est.predict(A), SurvivalEstimator("coxph").fit(X.to_numpy(), y).predict(X.to_numpy()))
    with pytest.raises(DataError, match="6 columns|fitted on 6"):
        est.predict(A[:, :5])
    scaled = SurvivalEstimator("coxph", blocks={"all": FeatureBlock(pca=3)}).fit(A, y)
    assert scaled.predict(A).shape == (240,)


def test_coxnet_inner_cv_with_a_single_censored_subject():
    # Every subject but one has an event: stratified inner folds are impossible, plain folds work.
    X, y = synthetic(60, 3, seed=4)
    y["event"][:] = True
    y["event"][0] = False
    est = SurvivalEstimator("coxnet", random_state=0).fit(X, y)
    assert np.isfinite(est.predict(X)).all()
    assert est.coefficients().abs().sum() > 0
