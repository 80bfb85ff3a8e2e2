"""Plots say what they show: units on time axes, curves never clipped, one name per risk group,
calibration groups counted, times written readably."""

from __future__ import annotations

import numpy as np
import pandas as pd

from facefeat.survival.plots import (calibration_groups_phrase, format_time, number_at_risk, plot_calibration,
                                     plot_km_by_risk_group, plot_td_auc, risk_group_names, time_label)


def test_risk_group_names_are_one_vocabulary():
    assert risk_group_names([1, 2]) == {1: "1 (low)", 2: "2 (high)"}
    assert risk_group_names(np.array([3, 1, 2, 2])) == {1: "1 (low)", 2: "2 (intermediate)", 3: "3 (high)"}
    assert risk_group_names([1, 2, 3, 4])[3] == "3 (intermediate 2)"


def test_time_labels_and_formats():
    assert time_label("months") == "time (months)"
    assert "--time-unit" in time_label(None)
    assert format_time(1082.3, "days") == "1082 days"
    assert format_time(0.952234) == "0.952"
    assert calibration_groups_phrase(4) == "4 groups (quartiles) of predicted survival"
    assert calibration_groups_phrase(7) == "7 equal-sized groups of predicted survival"


def test_td_auc_axis_keeps_low_curves_in_view(tmp_path):
    auc = pd.DataFrame({"fold": [0, 1, 0, 1], "time": [1.0, 1.0, 2.0, 2.0], "auc": [0.1, 0.2, 0.6, 0.7]})
    fig = plot_td_auc(auc, tmp_path / "a.png", time_unit="years")
    ax = fig.axes[0]
    assert ax.get_ylim() == (0.0, 1.0) and ax.get_xlabel() == "time (years)"
    fig = plot_td_auc(auc.assign(auc=[0.6, 0.7, 0.8, 0.9]), tmp_path / "b.png", time_unit="years")
    assert fig.axes[0].get_ylim() == (0.3, 1.0)


def test_calibration_title_counts_its_groups_and_labels_times(tmp_path):
    df = pd.DataFrame({"group": [1, 2, 3, 4], "n": [5] * 4, "events": [2] * 4, "predicted": [0.2, 0.4, 0.6, 0.8],
                       "observed": [0.25, 0.4, 0.55, 0.85], "observed_low": [0.1, 0.2, 0.3, 0.6],
                       "observed_high": [0.4, 0.6, 0.8, 0.95]})
    fig = plot_calibration({0.952234: df}, tmp_path / "c.png", time_unit="years")
    ax = fig.axes[0]
    assert "4 groups (quartiles)" in ax.get_title() and "decile" not in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["t = 0.952 years"]


def test_km_plot_has_a_number_at_risk_table(tmp_path):
    rng = np.random.default_rng(0)
    t = rng.exponential(10, 60)
    e = rng.random(60) < 0.7
    g = np.repeat([1, 2, 3], 20)
    p = plot_km_by_risk_group(t, e, g, tmp_path / "km.png", time_unit="months")
    assert 0 <= p <= 1 and (tmp_path / "km.png").stat().st_size > 10_000
    table = number_at_risk([1, 2, 3, 5, 8], [1, 1, 2, 2, 2], [0, 2, 5])
    assert table.to_dict(orient="index") == {1: {0: 2, 2: 1, 5: 0}, 2: {0: 3, 2: 3, 5: 2}}


def test_forest_plot_draws_every_row_on_a_log_axis(tmp_path):
    from facefeat.survival.plots import plot_forest

    fig = plot_forest(["age (per SD)", "stage III vs I", "no interval"], [1.5, 2.5, 0.8], [1.1, 1.4, float("nan")],
                      [2.0, 4.4, float("nan")], tmp_path / "f.png", xlabel="hazard ratio (log scale), 95 % interval")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and [t.get_text() for t in ax.get_yticklabels()][0] == "age (per SD)"
    assert len(ax.lines) == 2 + 3 + 1  # two intervals, three estimates, the null line at HR 1
