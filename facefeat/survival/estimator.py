"""``SurvivalEstimator``: one scikit-learn estimator for every survival model, block and fusion.

It follows scikit-learn and scikit-survival: ``__init__`` stores parameters, ``fit(X, y)``
validates; ``y`` is a structured array (event first, time second) or a DataFrame with named
event and time columns; ``predict`` returns a risk score (higher = worse); ``score`` is
Harrell's C; survival and cumulative hazard functions come from the fitted model. It can be
cloned, tuned by ``GridSearchCV`` and used as the last step of a ``Pipeline``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from facefeat.errors import ConfigError, DataError
from facefeat.survival.blocks import FeatureBlock
from facefeat.survival.target import check_survival_target, to_structured

MODELS = ("coxph", "coxnet", "rsf", "gbsa", "deepsurv")
FUSIONS = ("early", "late")
COMBINERS = ("stack", "mean")

#: Defaults that differ from the underlying library's, with the reason.
MODEL_DEFAULTS: dict[str, dict[str, Any]] = {
    # Efron's tie handling is R's and lifelines' default and more accurate than Breslow's
    "coxph": {"alpha": 0.0, "ties": "efron", "n_iter": 100, "tol": 1e-9},
    "coxnet": {},
    # sksurv's min_samples_leaf=3 overfits small clinical cohorts; 15 matches common practice
    "rsf": {"n_estimators": 200, "min_samples_split": 10, "min_samples_leaf": 15, "max_features": "sqrt", "n_jobs": 1},
    "gbsa": {"loss": "coxph", "n_estimators": 200, "learning_rate": 0.05, "max_depth": 3, "subsample": 0.8},
    "deepsurv": {},
}


def make_model(name: str, *, random_state: int | None = None, **params: Any) -> BaseEstimator:
    """Build one of the survival models by name with facefeat's defaults.

    Parameters
    ----------
    name : {"coxph", "coxnet", "rsf", "gbsa", "deepsurv"}
        ``coxph``: ``sksurv.linear_model.CoxPHSurvivalAnalysis`` (``alpha`` is the ridge
        penalty); ``coxnet``: :class:`~facefeat.survival.cox.CoxnetCV` (elastic-net path,
        penalty by inner CV); ``rsf``: ``RandomSurvivalForest``; ``gbsa``:
        ``GradientBoostingSurvivalAnalysis``; ``deepsurv``: :class:`~facefeat.survival.DeepSurv`.
    random_state : int, optional
        Passed to the models that use randomness.
    **params
        Override the defaults in :data:`MODEL_DEFAULTS` and the model's own.
    """
    if name not in MODELS:
        raise ConfigError(f"unknown model {name!r}; choose one of {MODELS}")
    kw = {**MODEL_DEFAULTS[name], **params}
    if name == "coxph":
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        return CoxPHSurvivalAnalysis(**kw)
    if name == "coxnet":
        from facefeat.survival.cox import CoxnetCV

        return CoxnetCV(**{"random_state": random_state, **kw})
    if name == "rsf":
        from sksurv.ensemble import RandomSurvivalForest

        return RandomSurvivalForest(**{"random_state": random_state, **kw})
    if name == "gbsa":
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return GradientBoostingSurvivalAnalysis(**{"random_state": random_state, **kw})
    from facefeat.survival.deepsurv import DeepSurv

    return DeepSurv(**{"random_state": 0 if random_state is None else random_state, **kw})


def _inference_of(model: Any, Xt: np.ndarray, y: np.ndarray) -> dict[str, Any] | None:
    """Covariance and log-likelihood of a fitted CoxPHSurvivalAnalysis, for hazard-ratio tables.

    Kept on the estimator (``cox_inference_``) so that a saved model can print its table
    without the training data; ``None`` for other models.
    """
    if type(model).__name__ != "CoxPHSurvivalAnalysis":
        return None
    from facefeat.survival.cox import cox_inference

    with np.errstate(all="ignore"):
        out = cox_inference(model.coef_, Xt, y["time"], y["event"], ties=getattr(model, "ties", "breslow"))
    out["alpha"] = float(np.max(np.asarray(getattr(model, "alpha", 0.0), float)))
    return out


def _default_block() -> FeatureBlock:
    # no preprocessing at all: X is used as given, only checked (NaN is an error, constant
    # columns are dropped and reported)
    return FeatureBlock(categorical=(), impute=None, scale=False)


class SurvivalEstimator(BaseEstimator):
    """A survival model on one or more feature blocks, with early or late fusion.

    Parameters
    ----------
    model : str, estimator or dict, default "coxph"
        ``"coxph"``, ``"coxnet"``, ``"rsf"``, ``"gbsa"``, ``"deepsurv"`` (see :func:`make_model`), a
        scikit-survival compatible estimator, or (late fusion) a dict mapping block names to
        either; blocks not named get the ``"*"`` entry, or ``"coxph"``.
    model_params : dict, optional
        Parameters for a model given by name (e.g. ``{"alpha": 0.1}`` for coxph's ridge penalty,
        ``{"l1_ratio": 0.9}`` for coxnet, ``{"hidden_layers": (64,)}`` for deepsurv).
    blocks : dict or list of (name, FeatureBlock), optional
        Column blocks. ``None``: all columns of ``X`` form one block used as given (numeric,
        no missing values; constant columns dropped and reported).
    fusion : {"early", "late"}, default "early"
        ``early`` concatenates the blocks' outputs into one model; ``late`` fits one model per
        block and combines their risk scores.
    combiner : {"stack", "mean"}, default "stack"
        Late fusion only. ``stack``: a Cox model on out-of-fold block risk scores (each
        standardised), so the fusion weights are learned without leakage; ``mean``: a fixed
        weighted mean of the standardised block risks (weights from ``weights``), with a
        one-covariate Cox model on the out-of-fold combined score for survival curves.
    weights : dict, optional
        Block name -> weight for ``combiner="mean"`` (default: equal).
    stack_cv : int, default 5
        Folds (stratified on the event) for the out-of-fold risks of late fusion.
    random_state : int, optional
        Seeds the models and the stacking folds.

    Attributes
    ----------
    blocks_ : dict of name -> fitted FeatureBlock (early fusion)
    model_ : fitted model (early fusion)
    block_models_ : dict of name -> (FeatureBlock, model) fitted on all training data (late fusion)
    oof_risk_ : DataFrame of out-of-fold risk per block (late fusion)
    combiner_ : fitted Cox model on standardised block risks (late fusion)
    fusion_weights_ : Series (late fusion): the combiner's coefficients or the fixed weights
    feature_names_out_ : ndarray of str (early fusion)
    report_ : DataReport of dropped columns and imputations
    y_train_ : structured array, the training target (used by IPCW scorers)
    unique_times_ : ndarray, time grid of ``return_array=True`` survival functions
    """

    def __init__(
        self,
        model: Any = "coxph",
        *,
        model_params: Mapping[str, Any] | None = None,
        blocks: Mapping[str, FeatureBlock] | Sequence[tuple[str, FeatureBlock]] | None = None,
        fusion: str = "early",
        combiner: str = "stack",
        weights: Mapping[str, float] | None = None,
        stack_cv: int = 5,
        random_state: int | None = None,
    ):
        self.model = model
        self.model_params = model_params
        self.blocks = blocks
        self.fusion = fusion
        self.combiner = combiner
        self.weights = weights
        self.stack_cv = stack_cv
        self.random_state = random_state

    # -- parameters: blocks are addressable as <block>__<param> (e.g. for GridSearchCV) --------

    def _block_items(self) -> list[tuple[str, FeatureBlock]]:
        if self.blocks is None:
            return []
        items = list(self.blocks.items()) if isinstance(self.blocks, Mapping) else [tuple(b) for b in self.blocks]
        own = set(self._get_param_names())
        for item in items:
            if len(item) != 2 or not isinstance(item[0], str):
                raise ConfigError("blocks must be a dict or a list of (name, FeatureBlock) pairs")
            if item[0] in own or "__" in item[0]:
                raise ConfigError(f"block name {item[0]!r} is reserved or contains '__'")
        return items

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        out = super().get_params(deep=deep)
        if deep and self.blocks is not None:
            for name, blk in self._block_items():
                out[name] = blk
                if hasattr(blk, "get_params"):
                    out.update({f"{name}__{k}": v for k, v in blk.get_params().items()})
        return out

    def set_params(self, **params: Any) -> "SurvivalEstimator":
        names = {n for n, _ in self._block_items()} if "blocks" not in params else set()
        own, mine = {}, {}
        for key, value in params.items():
            head = key.split("__", 1)[0]
            (mine if head in names else own).setdefault(key, value)
        if own:
            super().set_params(**own)
        if mine:
            items = self._block_items()
            index = {n: i for i, (n, _) in enumerate(items)}
            for key, value in mine.items():
                if "__" not in key:
                    items[index[key]] = (key, value)
            for key, value in mine.items():
                if "__" in key:
                    name, sub = key.split("__", 1)
                    items[index[name]][1].set_params(**{sub: value})
            self.blocks = dict(items) if isinstance(self.blocks, Mapping) else items
        return self

    # -- fitting ---------------------------------------------------------------------------------

    def _model_for(self, block: str | None) -> BaseEstimator:
        spec = self.model
        if isinstance(spec, Mapping):
            if self.fusion != "late":
                raise ConfigError("a dict of models (one per block) needs fusion='late'")
            spec = spec.get(block, spec.get("*", "coxph"))
        if isinstance(spec, str):
            return make_model(spec, random_state=self.random_state, **dict(self.model_params or {}))
        if not hasattr(spec, "fit") or not hasattr(spec, "predict"):
            raise ConfigError(f"model must be a name in {MODELS} or an estimator, not {spec!r}")
        return clone(spec)

    def _blocks_to_fit(self, X: Any) -> list[tuple[str, FeatureBlock]]:
        items = self._block_items()
        if not items:
            return [("features", _default_block())]
        return [(n, clone(b)) for n, b in items]

    def fit(self, X: Any, y: Any) -> "SurvivalEstimator":
        """Fit the blocks' preprocessing and the model(s) on training data.

        Parameters
        ----------
        X : DataFrame or array of shape (n_samples, n_features)
        y : structured array (event, time) or DataFrame with event and time columns
        """
        from facefeat.survival.report import DataReport

        if self.fusion not in FUSIONS:
            raise ConfigError(f"fusion must be one of {FUSIONS}, not {self.fusion!r}")
        if self.combiner not in COMBINERS:
            raise ConfigError(f"combiner must be one of {COMBINERS}, not {self.combiner!r}")
        n = X.shape[0] if hasattr(X, "shape") else len(X)
        event, time = check_survival_target(y, n_samples=n)
        if n < 2:
            raise DataError("need at least two subjects to fit a survival model")
        self.y_train_ = to_structured(event, time)
        self.n_features_in_ = X.shape[1] if hasattr(X, "shape") and len(X.shape) == 2 else None
        if isinstance(X, pd.DataFrame):
            self.feature_names_in_ = np.asarray([str(c) for c in X.columns], dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_
        self.report_ = DataReport()
        blocks = self._blocks_to_fit(X)
        if self.fusion == "early":
            self._fit_early(X, blocks)
        else:
            self._fit_late(X, blocks, event, time)
        return self

    def _fit_early(self, X: Any, blocks: list[tuple[str, FeatureBlock]]) -> None:
        parts, names = [], []
        self.blocks_ = {}
        for name, blk in blocks:
            parts.append(blk.fit_transform(X))
            self.report_.extend(blk.report_)
            self.blocks_[name] = blk
            out = blk.get_feature_names_out()
            names.extend(out if len(blocks) == 1 else [f"{name}:{f}" for f in out])
        Xt = parts[0] if len(parts) == 1 else np.hstack(parts)
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.model_ = self._fit_guarded(self._model_for(None), Xt, names)
        self.cox_inference_ = _inference_of(self.model_, Xt, self.y_train_)
        self.unique_times_ = getattr(self.model_, "unique_times_", None)

    def _fit_guarded(self, model: Any, Xt: np.ndarray, names: Sequence[str], y: Any = None, *,
                     report: bool = True) -> Any:
        """Fit ``model``; for linear Cox models, one clear warning instead of the solver's flood."""
        from facefeat.survival import guards

        y = self.y_train_ if y is None else y
        if type(model).__name__ not in ("CoxPHSurvivalAnalysis", "CoxnetCV"):
            return model.fit(Xt, y)
        rep = self.report_ if report else None
        warned = guards.check_dimensions(model, Xt.shape[1], int(y["event"].sum()), report=rep) if report else False
        with guards.quiet_solver() as caught:
            model.fit(Xt, y)
        if report:
            guards.check_fit(model, Xt, y, names, caught, report=rep, already_warned=warned)
        return model

    def _fit_late(self, X: Any, blocks, event: np.ndarray, time: np.ndarray) -> None:
        from sklearn.model_selection import StratifiedKFold
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        if len(blocks) < 2:
            raise ConfigError("late fusion needs at least two blocks")
        k = min(int(self.stack_cv), int(event.sum()), max(int((~event).sum()), 2))
        if k < 2:
            raise DataError(f"too few events ({int(event.sum())}) for out-of-fold stacking")
        folds = list(StratifiedKFold(k, shuffle=True, random_state=self.random_state).split(np.zeros(len(event)), event))
        rows = X.iloc if isinstance(X, pd.DataFrame) else X
        oof = np.zeros((len(event), len(blocks)))
        self.block_models_ = {}
        for j, (name, blk) in enumerate(blocks):
            for tr, te in folds:
                b = clone(blk)
                # the fold fits are judged by the full-data fit below: one warning, not one per fold
                m = self._fit_guarded(self._model_for(name), b.fit_transform(rows[tr]), (), self.y_train_[tr],
                                      report=False)
                oof[te, j] = m.predict(b.transform(rows[te]))
            b = clone(blk)
            m = self._fit_guarded(self._model_for(name), b.fit_transform(X), b.get_feature_names_out())
            self.report_.extend(b.report_)
            self.block_models_[name] = (b, m)
        names = [n for n, _ in blocks]
        self.oof_risk_ = pd.DataFrame(oof, columns=names, index=X.index if isinstance(X, pd.DataFrame) else None)
        self.risk_mean_ = oof.mean(axis=0)
        sd = oof.std(axis=0)
        self.risk_scale_ = np.where(sd > 0, sd, 1.0)
        Z = (oof - self.risk_mean_) / self.risk_scale_
        if self.combiner == "stack":
            # a tiny ridge keeps the stacker defined when two blocks' risks are collinear
            self.combiner_ = CoxPHSurvivalAnalysis(alpha=1e-6, ties="efron").fit(Z, self.y_train_)
            self.fusion_weights_ = pd.Series(self.combiner_.coef_, index=names, name="log HR per SD")
            self.cox_inference_ = _inference_of(self.combiner_, Z, self.y_train_)
        else:
            w = np.array([float((self.weights or {}).get(n, 1.0)) for n in names])
            if (w < 0).any() or w.sum() <= 0:
                raise ConfigError(f"weights must be non-negative with a positive sum; got {dict(zip(names, w))}")
            self.fusion_weights_ = pd.Series(w / w.sum(), index=names, name="weight")
            combined = Z @ self.fusion_weights_.to_numpy()
            self.combiner_ = CoxPHSurvivalAnalysis(ties="efron").fit(combined[:, None], self.y_train_)
            self.cox_inference_ = _inference_of(self.combiner_, combined[:, None], self.y_train_)
        self.unique_times_ = self.combiner_.unique_times_

    # -- prediction ------------------------------------------------------------------------------

    def _check_X(self, X: Any) -> None:
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "y_train_")
        if self.blocks is None:
            if isinstance(X, pd.DataFrame) and hasattr(self, "feature_names_in_"):
                cols = [str(c) for c in X.columns]
                extra = sorted(set(cols) - set(self.feature_names_in_))
                if extra:
                    raise DataError(f"X has column(s) {extra[:10]} that were not seen in fit")
            elif not isinstance(X, pd.DataFrame) and X.shape[1] != self.n_features_in_:
                raise DataError(f"X has {X.shape[1]} features but the model was fitted on {self.n_features_in_}")

    def _transform_early(self, X: Any) -> np.ndarray:
        parts = [blk.transform(X) for blk in self.blocks_.values()]
        return parts[0] if len(parts) == 1 else np.hstack(parts)

    def block_risks(self, X: Any) -> pd.DataFrame:
        """Late fusion: each block model's risk score for ``X`` (before standardisation)."""
        if self.fusion != "late":
            raise ConfigError("block_risks is for late fusion")
        self._check_X(X)
        out = {n: m.predict(b.transform(X)) for n, (b, m) in self.block_models_.items()}
        return pd.DataFrame(out, index=X.index if isinstance(X, pd.DataFrame) else None)

    def _late_inputs(self, X: Any) -> np.ndarray:
        Z = (self.block_risks(X).to_numpy() - self.risk_mean_) / self.risk_scale_
        if self.combiner == "stack":
            return Z
        return (Z @ self.fusion_weights_.to_numpy())[:, None]

    # Fitted pandas attributes (late fusion's out-of-fold risks and weights) are kept in a model
    # file as plain arrays and labels: the data-only model format (facefeat.survival.persist)
    # rebuilds arrays and built-in containers, not pandas' internals.
    _PANDAS_ATTRS = ("oof_risk_", "fusion_weights_")

    def __getstate__(self):
        state = dict(super().__getstate__())  # object.__getstate__ returns the live __dict__
        for name in self._PANDAS_ATTRS:
            v = state.get(name)
            if isinstance(v, pd.DataFrame):
                state[name] = {"pandas": "DataFrame", "values": v.to_numpy(), "columns": [str(c) for c in v.columns],
                               "index": None if isinstance(v.index, pd.RangeIndex) else v.index.to_numpy()}
            elif isinstance(v, pd.Series):
                state[name] = {"pandas": "Series", "values": v.to_numpy(), "index": [str(i) for i in v.index],
                               "name": v.name}
        return state

    def __setstate__(self, state):
        state = dict(state)
        for name in self._PANDAS_ATTRS:
            v = state.get(name)
            if isinstance(v, dict) and v.get("pandas") == "DataFrame":
                state[name] = pd.DataFrame(v["values"], columns=v["columns"], index=v["index"])
            elif isinstance(v, dict) and v.get("pandas") == "Series":
                state[name] = pd.Series(v["values"], index=v["index"], name=v["name"])
        super().__setstate__(state)

    def predict(self, X: Any) -> np.ndarray:
        """Risk score for each row of ``X`` (higher = worse prognosis)."""
        self._check_X(X)
        if self.fusion == "late":
            return self.combiner_.predict(self._late_inputs(X))
        return np.asarray(self.model_.predict(self._transform_early(X)), dtype=float)

    def _final(self, X: Any):
        self._check_X(X)
        if self.fusion == "late":
            return self.combiner_, self._late_inputs(X)
        return self.model_, self._transform_early(X)

    def predict_survival_function(self, X: Any, return_array: bool = False):
        """Survival functions: an array of step functions, or values at ``unique_times_``."""
        model, Xt = self._final(X)
        if not hasattr(model, "predict_survival_function"):
            raise ConfigError(f"{type(model).__name__} does not predict survival functions")
        return model.predict_survival_function(Xt, return_array=return_array)

    def predict_cumulative_hazard_function(self, X: Any, return_array: bool = False):
        """Cumulative hazard functions: step functions, or values at ``unique_times_``."""
        model, Xt = self._final(X)
        if not hasattr(model, "predict_cumulative_hazard_function"):
            raise ConfigError(f"{type(model).__name__} does not predict cumulative hazard functions")
        return model.predict_cumulative_hazard_function(Xt, return_array=return_array)

    def score(self, X: Any, y: Any) -> float:
        """Harrell's concordance index of ``predict(X)`` against ``y``."""
        from sksurv.metrics import concordance_index_censored

        event, time = check_survival_target(y, n_samples=X.shape[0])
        return float(concordance_index_censored(event, time, self.predict(X))[0])

    # -- inspection ------------------------------------------------------------------------------

    def coefficients(self, *, block: str | None = None, space: str = "model") -> pd.Series:
        """Coefficients of a linear model (coxph, coxnet), named by feature.

        Parameters
        ----------
        block : str, optional
            Late fusion: which block's model.
        space : {"model", "input"}
            ``model``: per model feature (after scaling, one-hot, PCA); ``input``: per input
            column of a numeric block, through the block's affine preprocessing (scaling, PCA),
            i.e. the direction in the original feature space (e.g. a latent direction).
        """
        if self.fusion == "late":
            if block is None:
                raise ConfigError(f"late fusion: name a block, one of {list(self.block_models_)}")
            blk, model = self.block_models_[block]
            blocks = {block: blk}
        else:
            model, blocks = self.model_, self.blocks_
        if not hasattr(model, "coef_"):
            raise ConfigError(f"{type(model).__name__} has no coefficients")
        coef = np.asarray(model.coef_, dtype=float).ravel()
        if space == "model":
            names = [n for b in blocks.values() for n in b.get_feature_names_out()]
            return pd.Series(coef, index=names, name="coef")
        if space != "input":
            raise ConfigError("space must be 'model' or 'input'")
        out, start = [], 0
        for blk in blocks.values():
            k = len(blk.get_feature_names_out())
            lm = blk.linear_map()
            if lm is None:
                raise ConfigError("input-space coefficients need numeric-only blocks (no one-hot columns)")
            out.append(pd.Series(lm[1] @ coef[start:start + k], index=blk.numeric_columns_))
            start += k
        return pd.concat(out).rename("coef")
