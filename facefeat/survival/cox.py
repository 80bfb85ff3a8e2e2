"""Cox model helpers: partial likelihood in NumPy, hazard ratio per SD, Coxnet with inner CV.

The partial likelihood here is written independently of the PyTorch DeepSurv loss and of
scikit-survival's optimiser; it serves the cross-validated choice of the elastic-net
penalty (Verweij & van Houwelingen's cross-validated partial likelihood, as glmnet uses) and
the hazard ratio per standard deviation of a risk score.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from facefeat.errors import ConfigError, DataError, ModelError

log = logging.getLogger("facefeat.survival")

TIES = ("breslow", "efron")


class _RiskSets:
    """Sort order and tie structure of (time, event), reused for many linear predictors."""

    def __init__(self, time: np.ndarray, event: np.ndarray):
        self.order = np.argsort(-time, kind="mergesort")
        t = time[self.order]
        e = event[self.order].astype(bool)
        # for each sorted sample, the last sorted index with the same time: the risk set
        # {j: t_j >= t_i} is the prefix up to it
        self.ends = np.searchsorted(-t, -t, side="right") - 1
        self.ev = np.flatnonzero(e)
        key = self.ends[self.ev]
        _, first, counts = np.unique(key, return_index=True, return_counts=True)
        group = np.repeat(np.arange(len(counts)), counts)
        self.key = key
        self.group = group
        self.d = counts[group].astype(float)  # tie size for each event
        self.rank = np.arange(len(key)) - first[group]  # 0..d-1 within the tie
        self.n_groups = len(counts)


def cox_log_partial_likelihood(
    eta: np.ndarray, time: np.ndarray, event: np.ndarray, ties: str = "efron", *, _rs: _RiskSets | None = None
) -> np.ndarray:
    """Cox log partial likelihood of linear predictors ``eta``.

    Parameters
    ----------
    eta : ndarray of shape (n,) or (n, m)
        Linear predictors (log relative hazards); several columns are evaluated at once.
    time, event : ndarray of shape (n,)
    ties : {"efron", "breslow"}

    Returns
    -------
    float or ndarray of shape (m,)
        The log partial likelihood (a sum over events, not an average).
    """
    if ties not in TIES:
        raise ConfigError(f"ties must be one of {TIES}, not {ties!r}")
    rs = _rs or _RiskSets(np.asarray(time, float), np.asarray(event, bool))
    h = np.asarray(eta, dtype=np.float64)
    one = h.ndim == 1
    if one:
        h = h[:, None]
    h = h[rs.order]
    c = h.max(axis=0)
    w = np.exp(h - c)
    R = np.cumsum(w, axis=0)[rs.ends[rs.ev]]
    if ties == "efron":
        T = np.zeros((rs.n_groups, h.shape[1]))
        np.add.at(T, rs.group, w[rs.ev])
        R = R - (rs.rank / rs.d)[:, None] * T[rs.group]
    ll = (h[rs.ev] - c - np.log(R)).sum(axis=0)
    return ll[0] if one else ll


def _cox_1d(beta: float, z: np.ndarray, rs: _RiskSets, ties: str) -> tuple[float, float, float]:
    """Log-likelihood, score and observed information of a one-covariate Cox model."""
    zs = z[rs.order]
    eta = beta * zs
    c = eta.max()
    w = np.exp(eta - c)
    S0 = np.cumsum(w)[rs.ends[rs.ev]]
    S1 = np.cumsum(w * zs)[rs.ends[rs.ev]]
    S2 = np.cumsum(w * zs * zs)[rs.ends[rs.ev]]
    if ties == "efron":
        f = rs.rank / rs.d
        for S, p in ((S0, 0), (S1, 1), (S2, 2)):
            T = np.zeros(rs.n_groups)
            np.add.at(T, rs.group, w[rs.ev] * zs[rs.ev] ** p)
            S -= f * T[rs.group]
    ll = float((eta[rs.ev] - c - np.log(S0)).sum())
    grad = float((zs[rs.ev] - S1 / S0).sum())
    info = float((S2 / S0 - (S1 / S0) ** 2).sum())
    return ll, grad, info


def _cox_derivatives(beta: np.ndarray, Xs: np.ndarray, rs: _RiskSets, ties: str) -> tuple[float, np.ndarray, np.ndarray]:
    """Log partial likelihood, score and observed information of a Cox model.

    ``Xs`` is the design already in ``rs.order`` (sorted by decreasing time).
    """
    eta = Xs @ beta
    c = eta.max() if len(eta) else 0.0
    w = np.exp(eta - c)
    idx = rs.ends[rs.ev]
    wx = w[:, None] * Xs
    S0 = np.cumsum(w)[idx]
    S1 = np.cumsum(wx, axis=0)[idx]
    S2 = np.cumsum(wx[:, :, None] * Xs[:, None, :], axis=0)[idx]
    if ties == "efron":
        f = rs.rank / rs.d
        ev = rs.ev
        T0 = np.zeros(rs.n_groups)
        np.add.at(T0, rs.group, w[ev])
        T1 = np.zeros((rs.n_groups, Xs.shape[1]))
        np.add.at(T1, rs.group, wx[ev])
        T2 = np.zeros((rs.n_groups, Xs.shape[1], Xs.shape[1]))
        np.add.at(T2, rs.group, wx[ev][:, :, None] * Xs[ev][:, None, :])
        S0 = S0 - f * T0[rs.group]
        S1 = S1 - f[:, None] * T1[rs.group]
        S2 = S2 - f[:, None, None] * T2[rs.group]
    m = S1 / S0[:, None]
    ll = float((eta[rs.ev] - c - np.log(S0)).sum())
    grad = (Xs[rs.ev] - m).sum(axis=0)
    info = (S2 / S0[:, None, None] - m[:, :, None] * m[:, None, :]).sum(axis=0)
    return ll, grad, info


def fit_cox(
    X: Any, time: np.ndarray, event: np.ndarray, *, ties: str = "efron", max_iter: int = 100, tol: float = 1e-9,
    init: np.ndarray | None = None,
) -> dict[str, Any]:
    """Unpenalised Cox proportional hazards fit by Newton-Raphson with step halving.

    Written for inference (standard errors, Wald tests, likelihood-ratio tests); the same
    likelihood as R's ``coxph`` and lifelines (Efron or Breslow ties).

    Parameters
    ----------
    X : array-like of shape (n, p)
        Design matrix (no intercept); ``p`` may be 0 (the null model).
    time, event : array-like of shape (n,)
    ties : {"efron", "breslow"}
    max_iter : int, default 100
    tol : float, default 1e-9
        Convergence when the Newton step's largest component is below ``tol`` (or the
        log-likelihood no longer changes).
    init : array-like, optional
        Starting coefficients (default zeros).

    Returns
    -------
    dict
        ``coef``, ``se``, ``cov`` (inverse observed information; NaN where singular),
        ``loglik``, ``loglik_null`` (all coefficients zero), ``n``, ``events``, ``n_iter``,
        ``converged`` and ``diverging`` (indices of coefficients that grew without bound:
        monotone likelihood, i.e. complete or quasi-complete separation).
    """
    if ties not in TIES:
        raise ConfigError(f"ties must be one of {TIES}, not {ties!r}")
    X = np.asarray(X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    if not event.any():
        raise DataError("a Cox model needs at least one event")
    rs = _RiskSets(time, event)
    Xs = X[rs.order]
    p = X.shape[1]
    beta = np.zeros(p) if init is None else np.asarray(init, float).copy()
    ll0 = float(cox_log_partial_likelihood(np.zeros(len(time)), time, event, ties, _rs=rs))
    ll, grad, info = _cox_derivatives(beta, Xs, rs, ties)
    converged = p == 0
    n_iter = 0
    history = [beta.copy()]
    for n_iter in range(1, max_iter + 1):
        if p == 0:
            break
        try:
            step = np.linalg.solve(info, grad)
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(info, grad, rcond=None)[0]
        new = beta + step
        ll_new, g_new, i_new = _cox_derivatives(new, Xs, rs, ties)
        halvings = 0
        while (not np.isfinite(ll_new) or ll_new < ll - 1e-12) and halvings < 30:
            step = step / 2
            new = beta + step
            ll_new, g_new, i_new = _cox_derivatives(new, Xs, rs, ties)
            halvings += 1
        done = np.max(np.abs(step)) < tol or abs(ll_new - ll) < tol * max(1.0, abs(ll))
        beta, ll, grad, info = new, ll_new, g_new, i_new
        history.append(beta.copy())
        if done:
            converged = True
            break
    cov = np.full((p, p), np.nan)
    if p:
        try:
            cov = np.linalg.inv(info)
            if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) <= 0):
                cov = np.full((p, p), np.nan)
        except np.linalg.LinAlgError:
            pass
    se = np.sqrt(np.diag(cov)) if p else np.zeros(0)
    # monotone likelihood: a coefficient that keeps growing while the likelihood creeps up
    # (its standard error explodes with it); |coef| > 10 on a standardised scale, or an SE
    # larger than the coefficient's size by orders of magnitude, flags it
    diverging = [j for j in range(p) if abs(beta[j]) > 10 and (not np.isfinite(se[j]) or se[j] > 5)]
    return {"coef": beta, "se": se, "cov": cov, "loglik": ll, "loglik_null": ll0, "n": int(len(time)),
            "events": int(event.sum()), "n_iter": n_iter, "converged": bool(converged), "diverging": diverging}


#: Largest n * p * p for which the observed information is computed (memory of the (n, p, p) sums).
MAX_INFORMATION_SIZE = 20_000_000


def cox_inference(
    coef: np.ndarray, X: np.ndarray, time: np.ndarray, event: np.ndarray, *, ties: str = "efron",
) -> dict[str, Any]:
    """Observed information, covariance and log-likelihood of a Cox model at given coefficients.

    Called once after fitting (the estimator keeps the result) so that a hazard-ratio table can
    be printed later without the training data.

    Returns
    -------
    dict with ``coef``, ``cov`` (NaN where the information is singular or too large to
    compute, see ``reason``), ``loglik``, ``loglik_null``, ``n``, ``events``, ``ties`` and
    ``reason`` (empty, or why there is no covariance).
    """
    X = np.asarray(X, dtype=np.float64)
    coef = np.asarray(coef, float).ravel()
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    rs = _RiskSets(time, event)
    p = len(coef)
    eta = X @ coef
    out: dict[str, Any] = {
        "coef": coef, "cov": np.full((p, p), np.nan), "ties": ties, "n": int(len(time)), "events": int(event.sum()),
        "loglik": float(cox_log_partial_likelihood(eta, time, event, ties, _rs=rs)),
        "loglik_null": float(cox_log_partial_likelihood(np.zeros(len(time)), time, event, ties, _rs=rs)),
        "reason": "",
    }
    if len(time) * p * p > MAX_INFORMATION_SIZE:
        out["reason"] = f"{p} terms on {len(time)} subjects: too many for a table of Wald intervals"
        return out
    _, _, info = _cox_derivatives(coef, X[rs.order], rs, ties)
    try:
        cond = np.linalg.cond(info)
        if not np.isfinite(cond) or cond > 1e12:
            raise np.linalg.LinAlgError
        cov = np.linalg.inv(info)
        if np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0):
            out["cov"] = cov
        else:
            raise np.linalg.LinAlgError
    except np.linalg.LinAlgError:
        out["reason"] = ("the information matrix is singular: collinear terms, more terms than events, or "
                         "(quasi-)complete separation")
    return out


def hazard_ratio_per_sd(
    risk: np.ndarray, time: np.ndarray, event: np.ndarray, *, ties: str = "efron", max_iter: int = 50
) -> dict[str, float]:
    """Hazard ratio per standard deviation of a risk score, from a one-covariate Cox model.

    Returns a dict with ``hr``, ``ci_low``, ``ci_high`` (95 % Wald), ``coef``, ``se`` and ``p``;
    all NaN when the score is constant or the likelihood is monotone (no finite estimate).
    """
    risk = np.asarray(risk, float)
    sd = risk.std(ddof=1)
    if not np.isfinite(sd) or sd == 0:
        return {"hr": math.nan, "ci_low": math.nan, "ci_high": math.nan, "coef": math.nan, "se": math.nan, "p": math.nan}
    z = (risk - risk.mean()) / sd
    rs = _RiskSets(np.asarray(time, float), np.asarray(event, bool))
    beta = 0.0
    ll, grad, info = _cox_1d(beta, z, rs, ties)
    for _ in range(max_iter):
        if info <= 0:
            break
        step = grad / info
        new = beta + step
        ll_new, g_new, i_new = _cox_1d(new, z, rs, ties)
        while ll_new < ll - 1e-12 and abs(step) > 1e-12:  # step halving keeps Newton monotone
            step /= 2
            new = beta + step
            ll_new, g_new, i_new = _cox_1d(new, z, rs, ties)
        beta, ll, grad, info = new, ll_new, g_new, i_new
        if abs(step) < 1e-10:
            break
    # An information of rounding-error size means the score does not vary within any risk set
    # (e.g. a ridge model whose risks differ only among subjects censored before the first
    # event): no estimate. Without this, 1/sqrt(1e-17) ends in exp(1e8) -> OverflowError.
    se = 1 / math.sqrt(info) if info > 1e-8 * max(len(rs.ev), 1) else math.nan
    if not math.isfinite(beta) or abs(beta) > 20 or not math.isfinite(se) or se > 20:
        # Monotone likelihood (the score separates events perfectly, typical of tiny test folds),
        # or no variation to estimate from: no finite value or interval.
        return {"hr": math.nan, "ci_low": math.nan, "ci_high": math.nan, "coef": math.nan, "se": math.nan,
                "p": math.nan}
    from scipy.stats import norm

    p = float(2 * norm.sf(abs(beta / se))) if se == se else math.nan
    return {
        "hr": math.exp(beta), "ci_low": math.exp(beta - 1.959964 * se), "ci_high": math.exp(beta + 1.959964 * se),
        "coef": beta, "se": se, "p": p,
    }


class BreslowPredictMixin:
    """Survival curves from a Breslow baseline (``baseline_``, ``unique_times_``) and Harrell's C.

    Shared by the estimators whose ``predict`` returns a log relative hazard.
    """

    def predict_cumulative_hazard_function(self, X: Any, return_array: bool = False):
        fns = self.baseline_.get_cumulative_hazard_function(self.predict(X))
        return np.vstack([f(self.unique_times_) for f in fns]) if return_array else fns

    def predict_survival_function(self, X: Any, return_array: bool = False):
        fns = self.baseline_.get_survival_function(self.predict(X))
        return np.vstack([f(self.unique_times_) for f in fns]) if return_array else fns

    def score(self, X: Any, y: Any) -> float:
        from sksurv.metrics import concordance_index_censored

        from facefeat.survival.target import check_survival_target

        event, time = check_survival_target(y)
        return concordance_index_censored(event, time, self.predict(X))[0]


class CoxnetCV(BreslowPredictMixin, BaseEstimator):
    """Elastic-net Cox model whose penalty is chosen by inner cross-validation.

    The path of penalties is fitted once on the training data by scikit-survival's
    ``CoxnetSurvivalAnalysis``; each inner fold refits the same path, and the penalty that
    maximises the cross-validated partial likelihood (or Harrell's C) is kept. The model
    predicts with the full-data path at that penalty, and a Breslow baseline hazard is fitted
    for it alone.

    Parameters
    ----------
    l1_ratio : float, default 0.5
        Elastic-net mixing (1 = lasso).
    n_alphas : int, default 50
    alpha_min_ratio : float or "auto", default "auto"
    alphas : array-like, optional
        Use this path instead of computing one.
    cv : int or None, default 5
        Inner folds, stratified on the event. ``None`` skips the search and uses ``alpha``, or
        the smallest penalty of the path (scikit-survival's default for ``predict``).
    alpha : float, optional
        Penalty used when ``cv`` is None; must be on the path.
    scoring : {"deviance", "cindex"}, default "deviance"
        ``deviance``: cross-validated partial likelihood of Verweij & van Houwelingen (the
        default of glmnet); ``cindex``: mean Harrell's C over the inner folds.
    rule : {"min", "1se"}, default "min"
        Best penalty, or the largest one within one standard error of the best.
    normalize : bool, default False
    max_iter : int, default 100000
    tol : float, default 1e-7
    random_state : int, optional
        Seeds the inner folds.

    Attributes
    ----------
    model_ : CoxnetSurvivalAnalysis fitted on the whole path
    alphas_ : ndarray
    alpha_ : float
        Chosen penalty.
    cv_scores_ : ndarray of shape (n_alphas, n_folds) or None
    coef_ : ndarray
        Coefficients at ``alpha_``.
    """

    def __init__(
        self, l1_ratio: float = 0.5, *, n_alphas: int = 50, alpha_min_ratio: Any = "auto", alphas: Any = None,
        cv: int | None = 5, alpha: float | None = None, scoring: str = "deviance", rule: str = "min",
        normalize: bool = False, max_iter: int = 100000, tol: float = 1e-7, random_state: int | None = None,
    ):
        self.l1_ratio = l1_ratio
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.alphas = alphas
        self.cv = cv
        self.alpha = alpha
        self.scoring = scoring
        self.rule = rule
        self.normalize = normalize
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state

    def _path(self, alphas: Any = None):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        return CoxnetSurvivalAnalysis(
            l1_ratio=self.l1_ratio, n_alphas=self.n_alphas, alpha_min_ratio=self.alpha_min_ratio,
            alphas=alphas, normalize=self.normalize, max_iter=self.max_iter, tol=self.tol,
        )

    def fit(self, X: Any, y: Any) -> "CoxnetCV":
        from sksurv.linear_model.coxph import BreslowEstimator

        from facefeat.survival.target import check_survival_target, to_structured

        if self.scoring not in ("deviance", "cindex"):
            raise ConfigError(f"scoring must be 'deviance' or 'cindex', not {self.scoring!r}")
        if self.rule not in ("min", "1se"):
            raise ConfigError(f"rule must be 'min' or '1se', not {self.rule!r}")
        X = np.asarray(X, dtype=np.float64)
        event, time = check_survival_target(y, n_samples=X.shape[0])
        y = to_structured(event, time)
        try:
            self.model_ = self._path(self.alphas).fit(X, y)
        except ArithmeticError as exc:
            raise ModelError(
                f"coxnet did not converge ({exc}); raise alpha_min_ratio (e.g. 0.05) or l1_ratio"
            ) from exc
        self.alphas_ = self.model_.alphas_
        self.cv_scores_ = None
        if self.cv:
            self.cv_scores_ = self._inner_cv(X, event, time)
            mean = np.nanmean(self.cv_scores_, axis=1)
            best = int(np.nanargmax(mean))
            if self.rule == "1se":
                k = np.sum(~np.isnan(self.cv_scores_), axis=1)
                se = np.nanstd(self.cv_scores_, axis=1, ddof=1) / np.sqrt(np.maximum(k, 1))
                ok = np.flatnonzero(mean >= mean[best] - se[best])
                best = int(ok.min())  # alphas are decreasing: the smallest index is the largest penalty
            self.alpha_ = float(self.alphas_[best])
        elif self.alpha is not None:
            idx = np.flatnonzero(np.isclose(self.alphas_, self.alpha))
            if not len(idx):
                raise ConfigError(f"alpha={self.alpha} is not on the penalty path; pass alphas=[{self.alpha}]")
            self.alpha_ = float(self.alphas_[idx[0]])
        else:
            self.alpha_ = float(self.alphas_[-1])
        self._idx = int(np.flatnonzero(self.alphas_ == self.alpha_)[0])
        self.coef_ = self.model_.coef_[:, self._idx].copy()
        self.n_features_in_ = X.shape[1]
        self.baseline_ = BreslowEstimator().fit(X @ self.coef_, event, time)
        self.unique_times_ = self.baseline_.unique_times_
        return self

    def _inner_cv(self, X: np.ndarray, event: np.ndarray, time: np.ndarray) -> np.ndarray:
        from sklearn.model_selection import KFold, StratifiedKFold
        from sksurv.metrics import concordance_index_censored

        from facefeat.survival.target import to_structured

        n_splits = min(int(self.cv), int(event.sum()))
        if n_splits < 2:
            raise DataError(f"too few events ({int(event.sum())}) to choose the coxnet penalty by inner CV; pass cv=None and alpha")
        # Stratify on the event when both classes fill every fold; with fewer censored subjects
        # than folds (even one) plain shuffled folds still give every fold an event.
        if int((~event).sum()) >= n_splits:
            skf = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        else:
            skf = KFold(n_splits=n_splits, shuffle=True, random_state=self.random_state)
        scores = np.full((len(self.alphas_), n_splits), np.nan)
        rs_full = _RiskSets(time, event) if self.scoring == "deviance" else None
        for k, (tr, te) in enumerate(skf.split(X, event)):
            try:
                m = self._path(self.alphas_).fit(X[tr], to_structured(event[tr], time[tr]))
            except ArithmeticError:
                log.warning("coxnet inner fold %d did not converge; fold skipped", k)
                continue
            B = m.coef_  # (p, n_alphas_fitted); the path may stop early
            na = B.shape[1]
            if self.scoring == "deviance":
                full = cox_log_partial_likelihood(X @ B, time, event, "breslow", _rs=rs_full)
                train = cox_log_partial_likelihood(X[tr] @ B, time[tr], event[tr], "breslow")
                scores[:na, k] = (full - train) / max(event[te].sum(), 1)
            else:
                risk = X[te] @ B
                for a in range(na):
                    scores[a, k] = concordance_index_censored(event[te], time[te], risk[:, a])[0]
        if np.isnan(scores).all():
            raise ModelError("coxnet failed on every inner fold; raise alpha_min_ratio")
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """Linear predictor at the chosen penalty (higher = worse)."""
        return np.asarray(X, dtype=np.float64) @ self.coef_
