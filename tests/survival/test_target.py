import numpy as np
import pandas as pd
import pytest

from facefeat.errors import DataError
from facefeat.survival.target import check_survival_target, make_survival_target


def test_structured_and_dataframe_targets_agree():
    y = make_survival_target([1, 0, True, "false"], [1.0, 2.0, 3.0, 4.5])
    assert y.dtype.names == ("event", "time")
    assert y["event"].tolist() == [True, False, True, False]
    df = pd.DataFrame({"time": [1.0, 2.0, 3.0, 4.5], "status": [1, 0, 1, 0]})
    e, t = check_survival_target(df)
    assert e.tolist() == y["event"].tolist() and t.tolist() == y["time"].tolist()


def test_sksurv_field_names_are_positional():
    y = np.array([(True, 5.0), (False, 3.0)], dtype=[("cens", "?"), ("t", "<f8")])
    e, t = check_survival_target(y)
    assert e.tolist() == [True, False] and t.tolist() == [5.0, 3.0]


@pytest.mark.parametrize("bad", [[1, 2, 1, 2], [0, 1, "dead?", 1], [0, 1, 0.5, 1]])
def test_bad_event_coding_names_rows(bad):
    with pytest.raises(DataError, match=r"event column .* rows"):
        make_survival_target(bad, [1.0, 2.0, 3.0, 4.0], index=["a", "b", "c", "d"])


def test_r_style_coding_hint():
    with pytest.raises(DataError, match="status - 1"):
        make_survival_target([1, 2], [1.0, 2.0])


@pytest.mark.parametrize("time,match", [([1.0, -2.0], "must be > 0"), ([0.0, 2.0], "must be > 0"),
                                         ([1.0, np.nan], "missing"), ([1.0, np.inf], "infinite")])
def test_bad_times(time, match):
    with pytest.raises(DataError, match=match):
        make_survival_target([1, 0], time, index=["s1", "s2"])


def test_time_with_decimal_comma_gets_a_hint():
    with pytest.raises(DataError, match="decimal commas"):
        make_survival_target([1, 0], np.array(["1,5", "2,0"], dtype=object))


def test_missing_event_names_rows():
    with pytest.raises(DataError, match=r"missing value.*rows s2"):
        make_survival_target([1, None], [1.0, 2.0], index=["s1", "s2"])


def test_all_censored_is_refused():
    y = make_survival_target([0, 0, 0], [1.0, 2.0, 3.0])
    with pytest.raises(DataError, match="all 3 subjects are censored"):
        check_survival_target(y)
    check_survival_target(y, allow_all_censored=True)


def test_length_mismatch():
    y = make_survival_target([0, 1], [1.0, 2.0])
    with pytest.raises(DataError, match="X has 3 rows but y has 2"):
        check_survival_target(y, n_samples=3)
