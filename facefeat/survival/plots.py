"""PNG plots of survival results: Kaplan-Meier by risk group, time-dependent AUC, calibration.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot global state), so
plotting works headless and in threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _figure(w: float = 6.0, h: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=120)
    return fig, fig.add_subplot(1, 1, 1)


def logrank_p(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> float:
    """p-value of the log-rank test between groups (NaN with fewer than two groups)."""
    from sksurv.compare import compare_survival

    from facefeat.survival.target import to_structured

    if len(np.unique(group)) < 2:
        return float("nan")
    _, p = compare_survival(to_structured(np.asarray(event, bool), np.asarray(time, float)), np.asarray(group))
    return float(p)


def time_label(unit: str | None) -> str:
    """Axis label of follow-up time with its unit (the clinical table's; ``--time-unit``)."""
    return f"time ({unit})" if unit else "time (unit not recorded: pass --time-unit)"


def format_time(t: float, unit: str | None = None) -> str:
    """A time for labels: whole numbers from 100 on (1082, not 1.1e+03), else 3 significant digits."""
    text = f"{t:.0f}" if abs(t) >= 100 else f"{t:.3g}"
    return f"{text} {unit}" if unit else text


def risk_group_names(levels: Any) -> dict[int, str]:
    """One name per risk group, used by every legend and table: ``1 (low)`` ... ``k (high)``.

    Groups are numbered from 1 (lowest predicted risk); with three or more groups the inner ones
    are ``intermediate`` (a single inner group) or ``intermediate j``.
    """
    levels = sorted(int(g) for g in np.unique(np.asarray(levels)))
    if len(levels) == 1:
        return {levels[0]: f"{levels[0]} (all)"}
    inner = levels[1:-1]
    names = {levels[0]: f"{levels[0]} (low)", levels[-1]: f"{levels[-1]} (high)"}
    for j, g in enumerate(inner, start=1):
        names[g] = f"{g} (intermediate)" if len(inner) == 1 else f"{g} (intermediate {j})"
    return names


def _at_risk_times(time: np.ndarray, n: int = 6) -> np.ndarray:
    from matplotlib.ticker import MaxNLocator

    top = float(np.max(time)) if len(time) else 1.0
    ticks = MaxNLocator(nbins=n, steps=[1, 2, 2.5, 5, 10]).tick_values(0.0, top)
    return ticks[(ticks >= 0) & (ticks <= top)]


def number_at_risk(time: Any, group: Any, times: Any) -> pd.DataFrame:
    """Subjects still followed (time >= t) per group (rows) at each of ``times`` (columns)."""
    time, group = np.asarray(time, float), np.asarray(group)
    levels = sorted(np.unique(group))
    return pd.DataFrame([[int((time[group == g] >= t).sum()) for t in times] for g in levels],
                        index=levels, columns=list(times))


def plot_km_by_risk_group(time: Any, event: Any, group: Any, path: str | Path, *, title: str = "",
                          time_unit: str | None = None) -> float:
    """Kaplan-Meier curves per predicted risk group with 95 % log-log bands, the log-rank p and a
    number-at-risk table under the axis; returns p."""
    from matplotlib.figure import Figure
    from sksurv.nonparametric import kaplan_meier_estimator

    time, event, group = np.asarray(time, float), np.asarray(event, bool), np.asarray(group)
    p = logrank_p(time, event, group)
    levels = sorted(np.unique(group))
    names = risk_group_names(levels)
    fig = Figure(figsize=(6.0, 4.5 + 0.22 * len(levels)), dpi=120)
    grid = fig.add_gridspec(2, 1, height_ratios=[4.5, 0.35 + 0.22 * len(levels)], hspace=0.05)
    ax, table_ax = fig.add_subplot(grid[0]), fig.add_subplot(grid[1])
    ticks = _at_risk_times(time)
    colors = []
    for g in levels:
        m = group == g
        x, s, ci = kaplan_meier_estimator(event[m], time[m], conf_type="log-log")
        label = f"risk group {names[int(g)]}: n={int(m.sum())}, events={int(event[m].sum())}"
        line = ax.step(np.r_[0, x], np.r_[1, s], where="post", label=label)[0]
        ax.fill_between(np.r_[0, x], np.r_[1, ci[0]], np.r_[1, ci[1]], step="post", alpha=0.15, color=line.get_color())
        colors.append(line.get_color())
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    top = float(time.max()) if len(time) else 1.0
    ax.set_xlim(-0.05 * top, 1.03 * top)  # room for the at-risk numbers at t = 0
    ax.set_xticks(ticks)
    ax.tick_params(labelbottom=False)
    ax.set_title(title or "Kaplan-Meier by predicted risk group")
    ax.text(0.98, 0.98, f"log-rank p = {p:.2g}", transform=ax.transAxes, ha="right", va="top")
    ax.legend(loc="lower left", fontsize=8)
    # number at risk: subjects still followed (time >= t) per group at each tick
    table_ax.set_xlim(ax.get_xlim())
    table_ax.set_ylim(-0.5, len(levels) - 0.5)
    table_ax.set_xticks(ticks)
    table_ax.set_yticks(range(len(levels)))
    table_ax.set_yticklabels([names[int(g)] for g in levels][::-1], fontsize=7)
    for spine in ("top", "right", "left"):
        table_ax.spines[spine].set_visible(False)
    table_ax.tick_params(axis="y", length=0)
    table = number_at_risk(time, group, ticks)
    for row, (g, color) in enumerate(zip(levels[::-1], colors[::-1])):
        for t, k in zip(ticks, table.loc[g]):
            table_ax.text(t, row, str(int(k)), ha="center", va="center", fontsize=7, color=color)
    table_ax.set_xlabel(time_label(time_unit) + "; numbers: subjects at risk")
    fig.subplots_adjust(left=0.17, right=0.97, top=0.93, bottom=0.1)
    fig.savefig(path)
    return p


def plot_td_auc(auc: pd.DataFrame, path: str | Path, *, title: str = "", time_unit: str | None = None) -> Any:
    """Time-dependent AUC: one curve, or the mean and 2.5-97.5 % band over CV folds.

    The y axis spans [0, 1] when any value falls below 0.3, else [0.3, 1]: the curve and its
    band are never cut off.
    """
    fig, ax = _figure()
    low = 1.0
    if "fold" in auc.columns and len(auc):
        g = auc.groupby("time")["auc"]
        mean, lo, hi = g.mean(), g.quantile(0.025), g.quantile(0.975)
        ax.plot(mean.index, mean.to_numpy(), marker="o", label="mean over folds")
        ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), alpha=0.2, label="2.5-97.5 % of folds")
        low = float(np.nanmin(lo.to_numpy())) if len(lo) else 1.0
    elif len(auc):
        ax.plot(auc["time"], auc["auc"], marker="o", label="AUC(t)")
        low = float(np.nanmin(auc["auc"].to_numpy(float)))
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0.0 if low < 0.3 else 0.3, 1.0)
    ax.set_xlabel(time_label(time_unit))
    ax.set_ylabel("cumulative/dynamic AUC")
    ax.set_title(title or "Time-dependent AUC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return fig


def plot_calibration(calibration: dict[float, pd.DataFrame], path: str | Path, *, title: str = "",
                     time_unit: str | None = None) -> Any:
    """Predicted vs Kaplan-Meier observed survival per group of predicted survival, one series per time."""
    fig, ax = _figure(5.5, 5.0)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    n_groups = 0
    for t, df in calibration.items():
        ok = df["observed"].notna()
        d = df[ok]
        n_groups = max(n_groups, len(df))
        err = np.vstack([d["observed"] - d["observed_low"], d["observed_high"] - d["observed"]])
        ax.errorbar(d["predicted"], d["observed"], yerr=np.clip(err, 0, None), fmt="o-", capsize=2,
                    label=f"t = {format_time(t, time_unit)}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted survival")
    ax.set_ylabel("observed survival (Kaplan-Meier)")
    ax.set_title(title or f"Calibration: {calibration_groups_phrase(n_groups)}", fontsize=9)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return fig


def calibration_groups_phrase(n_groups: int) -> str:
    """How the calibration groups are named in titles and captions ("deciles" only for 10)."""
    named = {10: "deciles", 5: "quintiles", 4: "quartiles", 3: "tertiles"}
    return (f"{n_groups} groups ({named[n_groups]}) of predicted survival" if n_groups in named
            else f"{n_groups} equal-sized groups of predicted survival")


def plot_forest(labels: Any, estimate: Any, low: Any, high: Any, path: str | Path, *, xlabel: str,
                null: float | None = 1.0, log: bool = True, title: str = "", highlight: Any = None) -> Any:
    """Forest plot: one row per label with its estimate (square) and interval (line).

    Parameters
    ----------
    labels, estimate, low, high : sequences of equal length, drawn top to bottom
    xlabel : str
        What the axis shows, with its unit and the interval's level.
    null : float, optional
        The value of no effect (1 for hazard ratios, 0.5 for a C-index), drawn dotted.
    log : bool, default True
        Logarithmic axis (hazard ratios); rows with non-positive values are left out on it.
    highlight : sequence of bool, optional
        Rows drawn in grey (e.g. a reference arm).
    """
    labels = [str(x) for x in labels]
    est, lo, hi = (np.asarray(v, float) for v in (estimate, low, high))
    n = len(labels)
    fig, ax = _figure(7.0, 0.42 * n + 1.4)
    ys = np.arange(n)[::-1]
    grey = np.zeros(n, bool) if highlight is None else np.asarray(highlight, bool)
    for yi, e, a, b, g in zip(ys, est, lo, hi, grey):
        color = "#5b6475" if g else "#2b5ea7"
        if np.isfinite(a) and np.isfinite(b) and (not log or (a > 0 and b > 0)):
            ax.plot([a, b], [yi, yi], color=color, lw=2)
        if np.isfinite(e) and (not log or e > 0):
            ax.plot([e], [yi], "s", color=color, ms=6)
    if null is not None:
        ax.axvline(null, color="grey", lw=0.8, ls=":")
    if log:
        ax.set_xscale("log")
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    return fig
