"""Feature blocks: column selection and preprocessing fitted inside each training fold.

A :class:`FeatureBlock` is a scikit-learn transformer that selects its columns, converts
them to numbers, drops (and reports) all-NaN and constant columns, imputes, one-hot encodes
categorical columns and scales numeric ones through a ``ColumnTransformer``, and optionally
reduces the block with PCA. Because it is an ordinary transformer, everything it learns
(medians, categories, scales, principal axes) is learned on the training fold only when it
sits inside :class:`~facefeat.survival.SurvivalEstimator` or a ``Pipeline``.
"""

from __future__ import annotations

import re
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from facefeat.errors import ConfigError, DataError
from facefeat.survival.report import DataReport
from facefeat.survival.target import _rows


def _as_frame(X: Any) -> pd.DataFrame:
    if isinstance(X, pd.DataFrame):
        return X
    arr = np.asarray(X)
    if arr.ndim != 2:
        raise DataError(f"X must be 2-dimensional (n_samples, n_features); got shape {arr.shape}")
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


class FeatureBlock(TransformerMixin, BaseEstimator):
    """Select and preprocess one block of columns (image features or clinical covariates).

    Parameters
    ----------
    columns : list of str, optional
        Columns of the block. With neither ``columns`` nor ``regex``, all columns of ``X``.
    regex : str, optional
        Select the columns whose name matches this regular expression (``re.search``),
        e.g. ``"^stylegan2__"``. Combined with ``columns`` by union.
    categorical : list of str or "auto", default "auto"
        Columns one-hot encoded; ``"auto"`` takes the non-numeric (object, string, category)
        columns of the block.
    impute : {"median", "mean", None}, default "median"
        How missing numeric values are filled (learned on the training fold). Categorical
        missing values become their own level ``"missing"``. With ``None`` a missing value is
        an error naming the column and rows.
    scale : bool, default True
        Standardise numeric columns (zero mean, unit variance on the training fold).
    pca : int or float, optional
        Reduce the block's output with PCA: an int keeps that many components, a float in
        (0, 1) the fraction of variance explained.
    constant : {"drop", "error", "keep"}, default "drop"
        Columns with a single value (or only NaN) on the training data: dropped and reported,
        refused, or kept.
    one_hot_drop : {"first", "if_binary", None}, default "first"
        Passed to ``OneHotEncoder(drop=...)``; dropping the first level keeps an unpenalised
        Cox model identifiable (it has no intercept to absorb a full set of dummies).
    random_state : int, optional
        For the PCA solver.
    unknown_levels : {"warn", "error", "ignore"}, default "warn"
        A categorical level at transform (prediction) time that the training data did not
        have: one warning naming the column and level (the row is encoded as the reference
        level, so it gets the reference level's risk), a ``DataError``, or silence.

    Attributes
    ----------
    columns_ : list of str
        Input columns used (after dropping).
    numeric_columns_, categorical_columns_ : list of str
    feature_names_out_ : ndarray of str
    report_ : DataReport
        Dropped columns and imputed values.
    """

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        *,
        regex: str | None = None,
        categorical: Sequence[str] | str = "auto",
        impute: str | None = "median",
        scale: bool = True,
        pca: int | float | None = None,
        constant: str = "drop",
        one_hot_drop: str | None = "first",
        random_state: int | None = None,
        unknown_levels: str = "warn",
    ):
        self.columns = columns
        self.regex = regex
        self.categorical = categorical
        self.impute = impute
        self.scale = scale
        self.pca = pca
        self.constant = constant
        self.one_hot_drop = one_hot_drop
        self.random_state = random_state
        self.unknown_levels = unknown_levels

    # -- selection and checks ------------------------------------------------------------------

    def _select(self, X: pd.DataFrame) -> list[str]:
        names = [str(c) for c in X.columns]
        if self.columns is None and self.regex is None:
            return names
        chosen: list[str] = []
        if self.columns is not None:
            cols = [self.columns] if isinstance(self.columns, str) else list(self.columns)
            missing = [c for c in cols if c not in names]
            if missing:
                raise DataError(f"block column(s) {missing[:10]} are not in the data")
            chosen.extend(cols)
        if self.regex is not None:
            pat = re.compile(self.regex)
            chosen.extend(c for c in names if pat.search(c) and c not in chosen)
            if not chosen:
                raise DataError(f"no column matches the block's regex {self.regex!r}")
        return chosen

    def _fast_array(self, X: Any) -> np.ndarray | None:
        if isinstance(X, pd.DataFrame) or self.columns is not None or self.regex is not None:
            return None
        if self.categorical not in ("auto", (), [], None):
            return None
        arr = np.asarray(X)
        if arr.ndim != 2 or arr.dtype.kind not in "fiub":
            return None
        return arr.astype(np.float64, copy=False)

    def _numeric(self, frame: pd.DataFrame, cols: list[str]) -> np.ndarray:
        sub = frame[cols]
        try:
            return sub.to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            for c in cols:
                conv = pd.to_numeric(sub[c], errors="coerce")
                bad = conv.isna() & sub[c].notna()
                if bad.any():
                    raise DataError(
                        f"column {c!r} is treated as numeric but has non-numbers in rows "
                        f"{_rows(sub.index[bad])} (e.g. {sub[c][bad].iloc[0]!r}); fix the values or "
                        "declare the column categorical"
                    ) from None
            return sub.apply(pd.to_numeric).to_numpy(dtype=np.float64, na_value=np.nan)

    def fit(self, X: Any, y: Any = None) -> "FeatureBlock":
        """Learn the preprocessing on the training data ``X``."""
        self.fit_transform(X, y)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> np.ndarray:
        from sklearn.compose import ColumnTransformer
        from sklearn.decomposition import PCA
        from sklearn.impute import SimpleImputer
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import OneHotEncoder, StandardScaler

        if self.impute not in ("median", "mean", None):
            raise ConfigError(f"impute must be 'median', 'mean' or None, not {self.impute!r}")
        if self.constant not in ("drop", "error", "keep"):
            raise ConfigError(f"constant must be 'drop', 'error' or 'keep', not {self.constant!r}")
        report = DataReport()
        fast = self._fast_array(X)
        if fast is not None:
            # a plain numeric array taken whole: no DataFrame round trip (it copies wide data)
            values = fast
            frame = pd.DataFrame(index=pd.RangeIndex(len(values)))
            self.feature_names_in_ = np.asarray([f"x{i}" for i in range(values.shape[1])], dtype=object)
            num, cat = list(self.feature_names_in_), []
        else:
            frame = _as_frame(X)
            self.feature_names_in_ = np.asarray([str(c) for c in frame.columns], dtype=object)
            cols = self._select(frame)
            if self.categorical == "auto":
                cat = [c for c in cols if not (pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]))]
            else:
                cat = [c for c in (self.categorical or []) if c in cols]
            num = [c for c in cols if c not in cat]
            values = self._numeric(frame, num) if num else np.empty((len(frame), 0))
        self.n_features_in_ = len(self.feature_names_in_)
        nan = np.isnan(values)
        if len(values) == 0:
            raise DataError("no rows to fit the feature block on")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
            lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
        all_nan = np.isnan(lo)
        const = (lo == hi) & ~all_nan
        dropped_nan = [c for c, f in zip(num, all_nan) if f]
        dropped_const = [c for c, f in zip(num, const) if f]
        cat_const = [c for c in cat if frame[c].nunique(dropna=True) <= 1]
        dropped_const += cat_const
        if dropped_nan and self.constant != "keep":
            if self.constant == "error":
                raise DataError(f"column(s) {dropped_nan[:10]} have no value at all (all NaN) on the training rows")
            report.add("columns", f"dropped {len(dropped_nan)} all-NaN column(s)", count=len(dropped_nan), examples=dropped_nan, level="warning")
        if dropped_const and self.constant != "keep":
            if self.constant == "error":
                raise DataError(f"column(s) {dropped_const[:10]} are constant on the training rows; remove them or use constant='drop'")
            report.add("columns", f"dropped {len(dropped_const)} constant column(s)", count=len(dropped_const), examples=dropped_const, level="warning")
        if self.constant != "keep":
            keep = ~(all_nan | const)
            num = [c for c, k in zip(num, keep) if k]
            if not keep.all():  # fancy indexing copies: skip it when nothing is dropped
                values, nan = values[:, keep], nan[:, keep]
            cat = [c for c in cat if c not in cat_const]
        if not num and not cat:
            raise DataError("the feature block has no usable column left (all constant or all NaN)")
        n_nan = nan.sum(axis=0)
        if n_nan.any():
            bad = [c for c, k in zip(num, n_nan) if k]
            if self.impute is None:
                j = int(np.flatnonzero(n_nan)[0])
                rows = frame.index[nan[:, j]]
                raise DataError(
                    f"missing values in column(s) {bad[:10]} (e.g. {num[j]!r} in rows {_rows(rows)}); "
                    "impute them (FeatureBlock(impute='median'), CLI --impute median) or remove those rows"
                )
            report.add(
                "imputation",
                f"imputed {int(n_nan.sum())} missing value(s) in {len(bad)} numeric column(s) by the training {self.impute}",
                count=int(n_nan.sum()), examples=[f"{c}: {int(k)}" for c, k in zip(num, n_nan) if k],
            )
        for c in cat:
            k = int(frame[c].isna().sum())
            if k:
                report.add("imputation", f"column {c!r}: {k} missing value(s) coded as level 'missing'", count=k)

        self.numeric_columns_ = num
        self.categorical_columns_ = cat
        if self.constant != "keep" and len(num) < len(self.feature_names_in_) and fast is not None:
            self._keep_idx = np.flatnonzero(np.isin(self.feature_names_in_, num))
        else:
            self._keep_idx = None
        self.columns_ = num + cat
        self._passthrough = not cat and self.impute is None and not self.scale and self.pca is None
        if self._passthrough:
            self.feature_names_out_ = np.asarray(num, dtype=object)
            self._ct = None
            out = values
        else:
            steps_num = []
            if self.impute is not None:
                steps_num.append(("impute", SimpleImputer(strategy=self.impute)))
            if self.scale:
                steps_num.append(("scale", StandardScaler()))
            transformers = []
            if num:
                transformers.append(("num", Pipeline(steps_num) if steps_num else "passthrough", num))
            if cat:
                transformers.append((
                    "cat",
                    Pipeline([
                        ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                        ("onehot", OneHotEncoder(drop=self.one_hot_drop, handle_unknown="ignore", sparse_output=False)),
                    ]),
                    cat,
                ))
            self._ct = ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)
            if fast is not None:
                sub = pd.DataFrame(values, columns=num)
            else:
                sub = frame[num + cat].copy()
                if num:
                    sub[num] = values
            for c in cat:
                sub[c] = sub[c].astype(object).where(sub[c].notna(), np.nan).map(lambda v: v if v is np.nan else str(v))
            out = np.asarray(self._ct.fit_transform(sub), dtype=np.float64)
            self.feature_names_out_ = np.asarray(self._ct.get_feature_names_out(), dtype=object)
        self.pca_ = None
        if self.pca is not None:
            n_comp = self.pca
            limit = min(out.shape)
            if isinstance(n_comp, (int, np.integer)) and not isinstance(n_comp, bool):
                if n_comp > limit:
                    report.add("pca", f"asked for {n_comp} components but the block allows {limit}; using {limit}", level="warning")
                    n_comp = limit
            elif not (isinstance(n_comp, float) and 0 < n_comp < 1):
                raise ConfigError(f"pca must be an int >= 1 or a float in (0, 1), not {self.pca!r}")
            self.pca_ = PCA(n_components=n_comp, random_state=self.random_state)
            out = self.pca_.fit_transform(out)
            self.feature_names_out_ = np.asarray([f"pc{i + 1}" for i in range(out.shape[1])], dtype=object)
            report.add(
                "pca", f"{len(self.columns_)} column(s) reduced to {out.shape[1]} principal components "
                f"({self.pca_.explained_variance_ratio_.sum():.1%} of variance)",
            )
        self.report_ = report
        return out

    def transform(self, X: Any) -> np.ndarray:
        """Apply the learned preprocessing."""
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "columns_")
        fast = self._fast_array(X)
        if fast is not None and self._passthrough:
            if fast.shape[1] != self.n_features_in_:
                raise DataError(f"X has {fast.shape[1]} columns but the block was fitted on {self.n_features_in_}")
            out = fast[:, self._keep_idx] if self._keep_idx is not None else fast
            if self.impute is None and np.isnan(out).any():
                j = int(np.flatnonzero(np.isnan(out).any(axis=0))[0])
                rows = np.flatnonzero(np.isnan(out[:, j]))
                raise DataError(f"missing values in column {self.numeric_columns_[j]!r} in rows {_rows(rows)}; this block does not impute")
            return out
        frame = _as_frame(X)
        missing = [c for c in self.columns_ if c not in frame.columns]
        if missing:
            raise DataError(f"column(s) {missing[:10]} used in training are missing from the data")
        num, cat = self.numeric_columns_, self.categorical_columns_
        values = self._numeric(frame, num) if num else np.empty((len(frame), 0))
        if self.impute is None and np.isnan(values).any():
            j = int(np.flatnonzero(np.isnan(values).any(axis=0))[0])
            rows = frame.index[np.isnan(values[:, j])]
            raise DataError(f"missing values in column {num[j]!r} in rows {_rows(rows)}; this block does not impute")
        if self._ct is None:
            out = values
        else:
            sub = frame[num + cat].copy()
            if num:
                sub[num] = values
            for c in cat:
                sub[c] = sub[c].astype(object).where(sub[c].notna(), np.nan).map(lambda v: v if v is np.nan else str(v))
            if cat:
                from facefeat.survival.guards import check_unseen_levels

                enc = self._ct.named_transformers_["cat"].named_steps["onehot"]
                for k, c in enumerate(cat):
                    check_unseen_levels(c, enc.categories_[k], sub[c].tolist(),
                                        action=getattr(self, "unknown_levels", "warn"))
            with warnings.catch_warnings():
                # unseen levels were reported above (once, naming column and level); the encoder's
                # own warning would repeat it without the column
                warnings.filterwarnings("ignore", message="Found unknown categories")
                out = np.asarray(self._ct.transform(sub), dtype=np.float64)
        if self.pca_ is not None:
            out = self.pca_.transform(out)
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return self.feature_names_out_

    def linear_map(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The affine map ``out = (x - shift) @ M`` from numeric input columns to output, if linear.

        Returns ``(shift, M)`` with ``M`` of shape (n_numeric_columns, n_outputs), or ``None``
        when the block has categorical columns. Used to express model coefficients in the
        input space (for example a direction in a generator's latent space).
        """
        if self.categorical_columns_:
            return None
        k = len(self.numeric_columns_)
        shift = np.zeros(k)
        M = np.eye(k)
        if self._ct is not None:
            pipe = self._ct.named_transformers_["num"]
            if pipe != "passthrough":
                if "scale" in pipe.named_steps:
                    sc = pipe.named_steps["scale"]
                    shift = sc.mean_.copy()
                    M = np.diag(1.0 / sc.scale_)
        if self.pca_ is not None:
            shift = shift + (np.linalg.pinv(M.T) @ self.pca_.mean_ if M is not None else 0)
            M = M @ self.pca_.components_.T
        return shift, M
