"""ICC, CCC and within-subject CV against published values and pingouin."""

import numpy as np
import pandas as pd
import pytest

from facefeat.errors import ConfigError, DataError
from facefeat.robustness.icc import (
    ICC_FORMS, icc, lin_ccc, overall_ccc, reliability, within_subject,
)

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = np.array([
    [9, 2, 5, 8],
    [6, 1, 3, 2],
    [8, 4, 6, 8],
    [7, 1, 2, 6],
    [10, 5, 6, 9],
    [6, 2, 4, 7],
], dtype=float)

# Their Table 4 (two decimals as published).
PUBLISHED = {"ICC(1,1)": 0.17, "ICC(2,1)": 0.29, "ICC(3,1)": 0.71,
             "ICC(1,k)": 0.44, "ICC(2,k)": 0.62, "ICC(3,k)": 0.91}


def test_shrout_fleiss_published_values():
    out = icc(SHROUT_FLEISS)
    for form, value in PUBLISHED.items():
        assert round(float(out[form]["icc"][0]), 2) == value, form


def _pingouin(wide: np.ndarray) -> pd.DataFrame:
    pg = pytest.importorskip("pingouin")
    n, k = wide.shape
    long = pd.DataFrame({"t": np.repeat(np.arange(n), k), "r": np.tile(np.arange(k), n), "y": wide.ravel()})
    old = pg.options.get("round.column.CI95")
    pg.options["round.column.CI95"] = None  # pingouin rounds the interval to 2 decimals by default
    try:
        return pg.intraclass_corr(long, targets="t", raters="r", ratings="y").set_index("Type")
    finally:
        pg.options["round.column.CI95"] = old


PG_NAMES = {"ICC(1,1)": "ICC(1,1)", "ICC(2,1)": "ICC(A,1)", "ICC(3,1)": "ICC(C,1)",
            "ICC(1,k)": "ICC(1,k)", "ICC(2,k)": "ICC(A,k)", "ICC(3,k)": "ICC(C,k)"}


@pytest.mark.parametrize("which", ["wine", "random"])
def test_equals_pingouin(which):
    pg = pytest.importorskip("pingouin")
    if which == "wine":  # pingouin's bundled data set: 8 wines x 4 judges
        d = pg.read_dataset("icc")
        wide = d.pivot(index="Wine", columns="Judge", values="Scores").to_numpy(float)
    else:
        rng = np.random.default_rng(7)
        wide = rng.normal(size=(25, 1)) * 2 + rng.normal(size=(1, 3)) + rng.normal(size=(25, 3))
    ref = _pingouin(wide)
    ours = icc(wide)
    for form, pg_name in PG_NAMES.items():
        row = ref.loc[pg_name]
        assert abs(ours[form]["icc"][0] - row["ICC"]) < 1e-9, form
        assert abs(ours[form]["low"][0] - row["CI95"][0]) < 1e-9, form
        assert abs(ours[form]["high"][0] - row["CI95"][1]) < 1e-9, form
        assert abs(ours[form]["F"][0] - row["F"]) < 1e-9 * max(1, row["F"]), form
        assert abs(ours[form]["p_value"][0] - row["pval"]) < 1e-9, form


def test_vectorised_equals_one_by_one():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(50, 12, 3)) + rng.normal(size=(50, 12, 1)) * rng.uniform(0, 3, size=(50, 1, 1))
    all_at_once = icc(Y)
    for i in (0, 17, 49):
        one = icc(Y[i])
        for form in ICC_FORMS:
            for key in ("icc", "low", "high"):
                assert all_at_once[form][key][i] == pytest.approx(one[form][key][0], rel=1e-12, abs=1e-12)


def test_intervals_contain_estimate_and_stay_in_range():
    rng = np.random.default_rng(3)
    Y = rng.normal(size=(200, 10, 4)) + rng.normal(size=(200, 10, 1)) * rng.uniform(0, 2, size=(200, 1, 1))
    out = icc(Y)
    for form in ICC_FORMS:
        v, lo, hi = out[form]["icc"], out[form]["low"], out[form]["high"]
        assert np.all(lo <= v + 1e-12) and np.all(v <= hi + 1e-12), form
        assert np.all(hi <= 1 + 1e-12), form


def test_lin_ccc_matches_definition_and_interval():
    rng = np.random.default_rng(5)
    x = rng.normal(10, 2, size=40)
    y = 0.9 * x + 1.5 + rng.normal(0, 0.5, size=40)
    out = lin_ccc(x, y)
    sxy = np.mean((x - x.mean()) * (y - y.mean()))
    expected = 2 * sxy / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert out["ccc"][0] == pytest.approx(expected, rel=1e-12)
    assert -1 < out["low"][0] < out["ccc"][0] < out["high"][0] < 1
    # k = 2: the overall CCC is Lin's
    assert overall_ccc(np.stack([x, y], axis=1))[0] == pytest.approx(expected, rel=1e-12)


def test_within_subject_cv():
    Y = np.array([[10.0, 12.0], [20.0, 18.0], [30.0, 30.0]])
    ws = within_subject(Y)
    msw = ((1 + 1) + (1 + 1) + 0) / 3  # squared deviations from subject means, n (k - 1) = 3 df
    assert ws["wsd"][0] == pytest.approx(np.sqrt(msw))
    assert ws["cv"][0] == pytest.approx(np.sqrt(msw) / 20.0)
    centred = within_subject(Y - Y.mean())
    assert np.isnan(centred["cv"][0])


def test_constant_feature_is_reported_not_bare_nan():
    Y = np.stack([np.full((5, 3), 2.5), np.arange(15.0).reshape(5, 3)])
    df = reliability(Y)
    assert df.loc[0, "status"] == "constant"
    assert "undefined" in df.loc[0, "note"]
    assert np.isnan(df.loc[0, "icc"])
    assert df.loc[1, "status"] == "ok" and np.isfinite(df.loc[1, "icc"])


def test_perfect_agreement_is_one():
    Y = np.repeat(np.arange(6.0)[:, None], 3, axis=1)
    df = reliability(Y)
    assert df.loc[0, "icc"] == 1.0 and df.loc[0, "icc_low"] == 1.0 and df.loc[0, "icc_high"] == 1.0


def test_too_few_subjects_says_how_many():
    df = reliability(np.random.default_rng(0).normal(size=(4, 2, 2)))
    assert set(df["status"]) == {"too_few"}
    assert "at least 3 subjects" in df.loc[0, "note"]


def test_bad_inputs():
    with pytest.raises(DataError, match="NaN"):
        icc(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ConfigError, match="ICC\\(2,1\\)"):
        reliability(np.ones((3, 2)), form="ICC(4,1)")
    with pytest.raises(DataError, match="2 subjects"):
        icc(np.ones((1, 3)))
