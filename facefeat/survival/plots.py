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


def plot_km_by_risk_group(time: Any, event: Any, group: Any, path: str | Path, *, title: str = "") -> float:
    """Kaplan-Meier curves per predicted risk group with the log-rank p-value; returns p."""
    from sksurv.nonparametric import kaplan_meier_estimator

    time, event, group = np.asarray(time, float), np.asarray(event, bool), np.asarray(group)
    p = logrank_p(time, event, group)
    fig, ax = _figure()
    levels = sorted(np.unique(group))
    names = {1: "low risk", len(levels): "high risk"} if len(levels) > 1 else {}
    for g in levels:
        m = group == g
        x, s, ci = kaplan_meier_estimator(event[m], time[m], conf_type="log-log")
        label = f"{names.get(g, f'risk group {g}')} (n={int(m.sum())}, events={int(event[m].sum())})"
        line = ax.step(np.r_[0, x], np.r_[1, s], where="post", label=label)[0]
        ax.fill_between(np.r_[0, x], np.r_[1, ci[0]], np.r_[1, ci[1]], step="post", alpha=0.15, color=line.get_color())
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.02)
    ax.set_title(title or "Kaplan-Meier by predicted risk group")
    ax.text(0.98, 0.98, f"log-rank p = {p:.2g}", transform=ax.transAxes, ha="right", va="top")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return p


def plot_td_auc(auc: pd.DataFrame, path: str | Path, *, title: str = "") -> None:
    """Time-dependent AUC: one curve, or the mean and 2.5-97.5 % band over CV folds."""
    fig, ax = _figure()
    if "fold" in auc.columns and len(auc):
        g = auc.groupby("time")["auc"]
        mean, lo, hi = g.mean(), g.quantile(0.025), g.quantile(0.975)
        ax.plot(mean.index, mean.to_numpy(), marker="o", label="mean over folds")
        ax.fill_between(mean.index, lo.to_numpy(), hi.to_numpy(), alpha=0.2, label="2.5-97.5 % of folds")
    elif len(auc):
        ax.plot(auc["time"], auc["auc"], marker="o", label="AUC(t)")
    ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    ax.set_ylim(0.3, 1.0)
    ax.set_xlabel("time")
    ax.set_ylabel("cumulative/dynamic AUC")
    ax.set_title(title or "Time-dependent AUC")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def plot_calibration(calibration: dict[float, pd.DataFrame], path: str | Path, *, title: str = "") -> None:
    """Predicted vs Kaplan-Meier observed survival per risk group, one series per time."""
    fig, ax = _figure(5.5, 5.0)
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    for t, df in calibration.items():
        ok = df["observed"].notna()
        d = df[ok]
        err = np.vstack([d["observed"] - d["observed_low"], d["observed_high"] - d["observed"]])
        ax.errorbar(d["predicted"], d["observed"], yerr=np.clip(err, 0, None), fmt="o-", capsize=2, label=f"t = {t:g}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted survival")
    ax.set_ylabel("observed survival (Kaplan-Meier)")
    ax.set_title(title or "Calibration by decile of predicted survival")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
