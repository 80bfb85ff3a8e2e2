"""Reliability statistics, vectorised over features: ICC (six forms), Lin's CCC, within-subject CV.

Every function takes ratings as an array ``Y`` of shape ``(n_features, n_subjects, n_raters)``
(one complete ``subjects x raters`` table per feature; a ``(n_subjects, n_raters)`` array is one
feature) and returns one value per feature, so thousands of embedding dimensions cost one
NumPy pass. "Subjects" are the targets of measurement (a source photo, or a person for repeat
photos); "raters" are the conditions that should not matter (the original photo and its
perturbed copies, projection seeds, photo sessions).

ICC forms follow Shrout & Fleiss (1979, Psychol Bull 86:420) and McGraw & Wong (1996, Psychol
Methods 1:30), from the two-way ANOVA mean squares: ``MSR`` (between subjects), ``MSC``
(between raters), ``MSE`` (residual) and ``MSW`` (within subjects, raters folded in):

=========  ===============  ========================================================
form       McGraw & Wong    estimate
=========  ===============  ========================================================
ICC(1,1)   ICC(1)           (MSR - MSW) / (MSR + (k-1) MSW)
ICC(2,1)   ICC(A,1)         (MSR - MSE) / (MSR + (k-1) MSE + k (MSC - MSE) / n)
ICC(3,1)   ICC(C,1)         (MSR - MSE) / (MSR + (k-1) MSE)
ICC(1,k)   ICC(k)           (MSR - MSW) / MSR
ICC(2,k)   ICC(A,k)         (MSR - MSE) / (MSR + (MSC - MSE) / n)
ICC(3,k)   ICC(C,k)         (MSR - MSE) / MSR
=========  ===============  ========================================================

95 % intervals are the F-based ones of those papers (for ICC(2,*) with Satterthwaite's
approximate degrees of freedom), as in pingouin's ``intraclass_corr``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facefeat.errors import ConfigError, DataError

#: The six forms, in output order, with the McGraw & Wong name.
ICC_FORMS: dict[str, str] = {
    "ICC(1,1)": "ICC(1): one-way random, single measurement",
    "ICC(2,1)": "ICC(A,1): two-way random, absolute agreement, single measurement",
    "ICC(3,1)": "ICC(C,1): two-way mixed, consistency, single measurement",
    "ICC(1,k)": "ICC(k): one-way random, mean of k measurements",
    "ICC(2,k)": "ICC(A,k): two-way random, absolute agreement, mean of k measurements",
    "ICC(3,k)": "ICC(C,k): two-way mixed, consistency, mean of k measurements",
}

#: Default form: perturbations and seeds are a random sample of the conditions a photo may meet,
#: and a feature that shifts systematically under a condition is not robust (absolute agreement).
DEFAULT_FORM = "ICC(2,1)"

#: Fewest subjects for an F-based interval with at least 2 numerator degrees of freedom.
MIN_SUBJECTS = 3


def column_name(form: str) -> str:
    """Column-name stem of a form in output tables: ``ICC(2,1)`` -> ``icc2_1``, ``ICC(3,k)`` -> ``icc3_k``."""
    check_form(form)
    return "icc" + form[4] + "_" + form[6]


def check_form(form: str) -> str:
    """Return ``form`` if it is one of :data:`ICC_FORMS`; otherwise raise ConfigError listing them."""
    if form not in ICC_FORMS:
        raise ConfigError(f"unknown ICC form {form!r}; choose one of {', '.join(ICC_FORMS)}")
    return form


def _as_3d(Y: np.ndarray) -> np.ndarray:
    Y = np.asarray(Y, dtype=np.float64)
    if Y.ndim == 2:
        Y = Y[None]
    if Y.ndim != 3:
        raise DataError(f"ratings must be (subjects, raters) or (features, subjects, raters); got shape {Y.shape}")
    if np.isnan(Y).any():
        raise DataError("ratings contain NaN; pass complete subjects (drop subjects with a missing rating first)")
    return Y


@dataclass
class MeanSquares:
    """Two-way ANOVA mean squares per feature (arrays of length n_features)."""

    n: int
    k: int
    msr: np.ndarray
    msc: np.ndarray
    mse: np.ndarray
    msw: np.ndarray
    constant: np.ndarray  # True where every rating of the feature is the same value


def mean_squares(Y: np.ndarray) -> MeanSquares:
    """ANOVA mean squares of ratings ``Y`` ``(features, subjects, raters)``."""
    Y = _as_3d(Y)
    _, n, k = Y.shape
    if n < 2 or k < 2:
        raise DataError(f"an ICC needs at least 2 subjects and 2 raters; got {n} subject(s) x {k} rater(s)")
    grand = Y.mean(axis=(1, 2))
    dev = Y - grand[:, None, None]
    row = dev.mean(axis=2)  # subject means minus grand mean
    col = dev.mean(axis=1)  # rater means minus grand mean
    sst = np.einsum("fij,fij->f", dev, dev)
    ssr = k * np.einsum("fi,fi->f", row, row)
    ssc = n * np.einsum("fj,fj->f", col, col)
    sse = np.maximum(sst - ssr - ssc, 0.0)
    ssw = np.maximum(sst - ssr, 0.0)
    # "Constant": the spread is at rounding level of the values themselves, not only exactly 0.
    scale = np.abs(Y).max(axis=(1, 2))
    constant = np.ptp(Y.reshape(len(Y), -1), axis=1) <= 8 * np.finfo(float).eps * np.maximum(scale, np.finfo(float).tiny)
    return MeanSquares(n=n, k=k, msr=ssr / (n - 1), msc=ssc / (k - 1), mse=sse / ((n - 1) * (k - 1)),
                       msw=ssw / (n * (k - 1)), constant=constant)


def icc(Y: np.ndarray, *, level: float = 0.95) -> dict[str, dict[str, np.ndarray]]:
    """All six ICC forms with F-based intervals, per feature.

    Parameters
    ----------
    Y : array, shape (n_features, n_subjects, n_raters) or (n_subjects, n_raters)
        Complete ratings (no NaN).
    level : float
        Confidence level of the intervals.

    Returns
    -------
    dict
        ``{form: {"icc", "low", "high", "F", "df1", "df2", "p_value"}}`` with arrays of length
        n_features. Features constant across all ratings get NaN everywhere (the ICC is 0/0);
        :func:`reliability` turns that into a status and a reason. Features with no
        within-subject variation at all (``MSE = MSW = 0``, some between-subject variation) get
        ICC 1 with the interval [1, 1].
    """
    from scipy.stats import f as fdist

    if not 0 < level < 1:
        raise ConfigError(f"level must be in (0, 1), got {level}")
    ms = mean_squares(Y)
    n, k = ms.n, ms.k
    msr, msc, mse, msw = ms.msr, ms.msc, ms.mse, ms.msw
    q = 1 - (1 - level) / 2
    df1, df_w, df_e = n - 1, n * (k - 1), (n - 1) * (k - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        est = {
            "ICC(1,1)": (msr - msw) / (msr + (k - 1) * msw),
            "ICC(2,1)": (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n),
            "ICC(3,1)": (msr - mse) / (msr + (k - 1) * mse),
            "ICC(1,k)": (msr - msw) / msr,
            "ICC(2,k)": (msr - mse) / (msr + (msc - mse) / n),
            "ICC(3,k)": (msr - mse) / msr,
        }
        f1, f3 = msr / msw, msr / mse
        f1l, f1u = f1 / fdist.ppf(q, df1, df_w), f1 * fdist.ppf(q, df_w, df1)
        f3l, f3u = f3 / fdist.ppf(q, df1, df_e), f3 * fdist.ppf(q, df_e, df1)
        # ICC(2,*): Satterthwaite degrees of freedom v of the denominator (McGraw & Wong 1996, Table 7).
        a = est["ICC(2,1)"]
        fj = msc / mse
        vn = df_e * (k * a * fj + n * (1 + (k - 1) * a) - k * a) ** 2
        vd = df1 * k ** 2 * a ** 2 * fj ** 2 + (n * (1 + (k - 1) * a) - k * a) ** 2
        v = vn / vd
        fin = np.isfinite(v) & (v > 0)
        f2u = np.full_like(v, np.nan)
        f2l = np.full_like(v, np.nan)
        f2u[fin] = fdist.ppf(q, df1, v[fin])
        f2l[fin] = fdist.ppf(q, v[fin], df1)
        den = k * msc + (k * n - k - n) * mse
        l2 = n * (msr - f2u * mse) / (f2u * den + n * msr)
        u2 = n * (f2l * msr - mse) / (den + n * f2l * msr)
        ci = {
            "ICC(1,1)": ((f1l - 1) / (f1l + k - 1), (f1u - 1) / (f1u + k - 1)),
            "ICC(2,1)": (l2, u2),
            "ICC(3,1)": ((f3l - 1) / (f3l + k - 1), (f3u - 1) / (f3u + k - 1)),
            "ICC(1,k)": (1 - 1 / f1l, 1 - 1 / f1u),
            "ICC(2,k)": (l2 * k / (1 + l2 * (k - 1)), u2 * k / (1 + u2 * (k - 1))),
            "ICC(3,k)": (1 - 1 / f3l, 1 - 1 / f3u),
        }
    p1 = fdist.sf(f1, df1, df_w)
    p3 = fdist.sf(f3, df1, df_e)
    perfect = ~ms.constant & (msw == 0)  # every subject rated identically by every rater
    out: dict[str, dict[str, np.ndarray]] = {}
    for form, value in est.items():
        low, high = (np.array(x, dtype=float) for x in ci[form])
        value = np.array(value, dtype=float)
        one_way = form.startswith("ICC(1")
        F = np.array(f1 if one_way else f3, dtype=float)
        p = np.array(p1 if one_way else p3, dtype=float)
        for arr, fill in ((value, 1.0), (low, 1.0), (high, 1.0), (p, 0.0)):
            arr[perfect] = fill
            arr[ms.constant] = np.nan
        F[ms.constant] = np.nan
        out[form] = {"icc": value, "low": low, "high": high, "F": F,
                     "df1": np.full(len(value), float(df1)), "df2": np.full(len(value), float(df_w if one_way else df_e)),
                     "p_value": p}
    return out


def lin_ccc(x: np.ndarray, y: np.ndarray, *, level: float = 0.95) -> dict[str, np.ndarray]:
    """Lin's concordance correlation coefficient of paired ratings, with its interval.

    Parameters
    ----------
    x, y : array, shape (n_features, n_subjects) or (n_subjects,)
        Reference ratings (e.g. the original photo) and the other ratings, paired by subject.
    level : float
        Confidence level.

    Returns
    -------
    dict
        ``ccc``, ``low``, ``high`` per feature. The interval is Lin's (1989, Biometrics 45:255)
        asymptotic one: normal on Fisher's z scale with Lin's variance of z and ``n - 2`` in its
        denominator (as R's ``epiR::epi.ccc``), back-transformed, so it stays inside (-1, 1).
        NaN where a series is constant.

    Notes
    -----
    ``ccc = 2 s_xy / (s_x^2 + s_y^2 + (m_x - m_y)^2)`` with moments using the divisor n, as
    Lin defines it.
    """
    from scipy.stats import norm

    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    n = x.shape[1]
    if n < 3:
        raise DataError(f"Lin's CCC interval needs at least 3 subjects; got {n}")
    mx, my = x.mean(axis=1), y.mean(axis=1)
    dx, dy = x - mx[:, None], y - my[:, None]
    sxx, syy = (dx * dx).mean(axis=1), (dy * dy).mean(axis=1)
    sxy = (dx * dy).mean(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ccc = 2 * sxy / (sxx + syy + (mx - my) ** 2)
        r = sxy / np.sqrt(sxx * syy)
        u = (mx - my) / (sxx * syy) ** 0.25
        var_z = ((1 - r ** 2) * ccc ** 2 / ((1 - ccc ** 2) * r ** 2)
                 + 2 * ccc ** 3 * (1 - ccc) * u ** 2 / (r * (1 - ccc ** 2) ** 2)
                 - ccc ** 4 * u ** 4 / (2 * r ** 2 * (1 - ccc ** 2) ** 2)) / (n - 2)
        z = np.arctanh(ccc)
        half = norm.ppf(1 - (1 - level) / 2) * np.sqrt(var_z)
        low, high = np.tanh(z - half), np.tanh(z + half)
    exact = np.isclose(ccc, 1.0, rtol=0, atol=1e-15)
    low[exact], high[exact] = 1.0, 1.0
    return {"ccc": ccc, "low": low, "high": high}


def overall_ccc(Y: np.ndarray) -> np.ndarray:
    """Overall concordance of k raters (Barnhart, Haber & Song 2002, Biometrics 58:1020), per feature.

    ``2 sum_{j<l} s_jl / ((k-1) sum_j s_j^2 + sum_{j<l} (m_j - m_l)^2)`` with divisor-n moments;
    equals Lin's CCC for k = 2.
    """
    Y = _as_3d(Y)
    _, n, k = Y.shape
    m = Y.mean(axis=1)  # (f, k)
    D = Y - m[:, None, :]
    S = np.einsum("fij,fil->fjl", D, D) / n  # (f, k, k) covariance with divisor n
    var = np.einsum("fjj->fj", S)
    off = (S.sum(axis=(1, 2)) - var.sum(axis=1)) / 2  # sum over j<l of s_jl
    diff = sum(((m[:, j] - m[:, l]) ** 2) for j in range(k) for l in range(j + 1, k))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 2 * off / ((k - 1) * var.sum(axis=1) + diff)


def within_subject(Y: np.ndarray) -> dict[str, np.ndarray]:
    """Within-subject standard deviation and coefficient of variation, per feature.

    ``wsd = sqrt(MSW)`` (the pooled SD of a subject's ratings, in the feature's unit) and
    ``cv = wsd / |grand mean|`` (Bland & Altman's within-subject CV). A CV needs a ratio-scale
    quantity: it is NaN unless every rating of the feature has the same sign (angles, pose,
    centred features and embedding dimensions take both signs, and a ratio to a mean near zero
    says nothing).
    """
    Y = _as_3d(Y)
    ms = mean_squares(Y)
    wsd = np.sqrt(ms.msw)
    grand = Y.mean(axis=(1, 2))
    one_sign = (Y > 0).all(axis=(1, 2)) | (Y < 0).all(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        cv = np.where(one_sign, wsd / np.abs(grand), np.nan)
    return {"wsd": wsd, "cv": cv, "mean": grand}


#: Columns of :func:`reliability`, in order.
RELIABILITY_COLUMNS = (
    ["n_subjects", "n_raters", "icc_form", "status", "note", "icc", "icc_low", "icc_high"]
    + [column_name(f) + end for f in ICC_FORMS for end in ("", "_low", "_high")]
    + ["f_value", "p_value", "ccc", "ccc_low", "ccc_high", "wsd", "cv", "mean"]
)

#: Row statuses of :func:`reliability`.
STATUSES = {
    "ok": "statistics computed",
    "constant": "the feature has the same value on every photo and condition: ICC is 0/0, undefined",
    "too_few": "fewer complete subjects than an interval needs",
}


def reliability(Y: np.ndarray, *, reference: int | None = 0, level: float = 0.95, form: str = DEFAULT_FORM,
                min_subjects: int = MIN_SUBJECTS):
    """Every reliability statistic of complete ratings, one row per feature.

    Parameters
    ----------
    Y : array, shape (n_features, n_subjects, n_raters)
        Complete ratings; rater ``reference`` is the reference condition (the original photo).
    reference : int or None
        Rater index of the reference for Lin's CCC with k = 2 raters; with k > 2 the overall CCC
        (Barnhart et al. 2002) is reported without an interval.
    level : float
        Confidence level of every interval.
    form : str
        The ICC form copied to the ``icc``, ``icc_low``, ``icc_high`` columns (all six forms are
        in ``icc1_1`` ... ``icc3_k_high`` anyway).
    min_subjects : int
        Fewest subjects for an interval; below it every row has status ``too_few``.

    Returns
    -------
    pandas.DataFrame
        Columns ``n_subjects``, ``n_raters``, ``status``, ``note``, ``icc``, ``icc_low``,
        ``icc_high``, ``icc_form``, one ``<icc*>``/``_low``/``_high`` triple per form,
        ``f_value``, ``p_value`` (H0: ICC = 0, of the chosen form's F test), ``ccc``,
        ``ccc_low``, ``ccc_high``, ``wsd``, ``cv``, ``mean``. Undefined values are NaN and
        ``note`` says why.
    """
    import pandas as pd

    check_form(form)
    Y = _as_3d(Y)
    nf, n, k = Y.shape
    base = {"n_subjects": np.full(nf, n), "n_raters": np.full(nf, k), "icc_form": form}
    if n < max(min_subjects, 2) or k < 2:
        need = f"at least {max(min_subjects, 2)} subjects with a usable rating in every condition"
        df = pd.DataFrame({**base, "status": "too_few",
                           "note": f"{n} complete subject(s) x {k} rater(s); an interval needs {need} and 2 raters"},
                          index=range(nf))
        return df.reindex(columns=RELIABILITY_COLUMNS)
    stats = icc(Y, level=level)
    ws = within_subject(Y)
    cols: dict[str, np.ndarray] = {}
    for f_name, s in stats.items():
        stem = column_name(f_name)
        cols[stem], cols[stem + "_low"], cols[stem + "_high"] = s["icc"], s["low"], s["high"]
    chosen = stats[form]
    if k == 2 and reference is not None:
        other = 1 - reference
        c = lin_ccc(Y[:, :, reference], Y[:, :, other], level=level)
        ccc, ccc_low, ccc_high = c["ccc"], c["low"], c["high"]
    else:
        ccc, ccc_low, ccc_high = overall_ccc(Y), np.full(nf, np.nan), np.full(nf, np.nan)
    constant = mean_squares(Y).constant
    status = np.where(constant, "constant", "ok").astype(object)
    note = np.full(nf, "", dtype=object)
    note[constant] = STATUSES["constant"]
    no_ci = ~constant & np.isfinite(chosen["icc"]) & ~np.isfinite(chosen["low"])
    note[no_ci] = "interval undefined: no residual variation (raters differ only by constant shifts)"
    if k > 2:
        ok = ~constant & (note == "")
        note[ok] = f"ccc is the overall CCC of {k} raters (Barnhart et al. 2002); no interval for k > 2"
    cv_undefined = ~constant & ~np.isfinite(ws["cv"])
    note[cv_undefined] = np.array([(x + "; " if x else "") + "cv undefined: values of both signs (not a ratio-scale quantity)" for x in note[cv_undefined]],
                                  dtype=object)
    return pd.DataFrame({
        **base, "status": status, "note": note,
        "icc": chosen["icc"], "icc_low": chosen["low"], "icc_high": chosen["high"], **cols,
        "f_value": chosen["F"], "p_value": chosen["p_value"],
        "ccc": ccc, "ccc_low": ccc_low, "ccc_high": ccc_high,
        "wsd": np.where(constant, 0.0, ws["wsd"]), "cv": ws["cv"], "mean": ws["mean"],
    }).reindex(columns=RELIABILITY_COLUMNS)
