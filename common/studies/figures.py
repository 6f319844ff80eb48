"""The sweep comparison's figures: each metric by configuration with its intervals, and the training curves.

Both take the sweep's table of runs (one row per run, as :mod:`common.studies.comparison` builds it) and each run's
configuration label (``ce, none``), and write a PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from common.plots import save_figure, seaborn_theme
from common.stats import t_interval

__all__ = ["plot_curves", "plot_metrics"]


@seaborn_theme("whitegrid")
def plot_metrics(runs: pd.DataFrame, labels: pd.Series, path: Path, titles: dict[str, str]) -> Path:
    """One panel per metric of ``titles`` (metric → panel title): each run as a dot with its bootstrap interval
    over test items (thin bar; none for the validation metric), each configuration's mean with its Student-t
    interval over seeds (thick black bar). ``labels``: each run's configuration."""
    metrics = list(titles)
    configurations = list(labels.unique())
    palette = dict(zip(configurations, sns.color_palette("tab10", len(configurations)), strict=False))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for x, configuration in enumerate(configurations):
            group = runs[labels == configuration]
            _draw_runs(ax, x, group, metric, palette[configuration])
            _draw_mean(ax, x, group[metric].to_numpy(float))
        ax.set_xticks(range(len(configurations)), configurations, rotation=30, ha="right", fontsize=8)
        ax.set_title(titles[metric], fontsize=10)
    fig.suptitle(
        "by configuration: dots = runs with their 95% bootstrap interval over test items; black = mean over seeds "
        "with its 95% t-interval",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)


def _draw_runs(ax: plt.Axes, x: int, group: pd.DataFrame, metric: str, color: object) -> None:
    """The runs of one configuration as dots left of ``x``, each with its own interval."""
    offsets = np.linspace(-0.3, 0.05, len(group)) if len(group) > 1 else np.full(1, -0.12)  # mean: +0.25
    for offset, (_, run) in zip(offsets, group.iterrows(), strict=True):
        low, high = run.get(f"{metric}_ci_low", np.nan), run.get(f"{metric}_ci_high", np.nan)
        # a percentile interval may leave out its own point (float rounding, a degenerate model): no bar side
        below, above = max(run[metric] - low, 0.0), max(high - run[metric], 0.0)
        yerr = [[below], [above]] if np.isfinite(low) else None
        ax.errorbar(x + offset, run[metric], yerr=yerr, fmt="o", ms=4, lw=1, color=color)


def _draw_mean(ax: plt.Axes, x: int, values: np.ndarray) -> None:
    """A configuration's mean over seeds right of ``x``, with its t-interval when there is one."""
    summary = t_interval(values)
    if np.isfinite(summary["ci_low"]):
        ax.errorbar(
            x + 0.25,
            summary["mean"],
            yerr=[[summary["mean"] - summary["ci_low"]], [summary["ci_high"] - summary["mean"]]],
            fmt="_",
            ms=18,
            lw=2.5,
            color="black",
            capsize=5,
            zorder=3,
        )
    elif np.isfinite(summary["mean"]):
        ax.plot([x + 0.15, x + 0.35], [summary["mean"]] * 2, color="black", lw=2)


@seaborn_theme("whitegrid")
def plot_curves(runs: pd.DataFrame, labels: pd.Series, path: Path, legend_title: str | None = None) -> Path:
    """Training loss and the validation monitor by epoch, one line per run coloured by its configuration
    (``labels``), read from each run's ``history.csv``."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    palette = dict(zip(labels.unique(), sns.color_palette("tab10", labels.nunique()), strict=False))
    shown: set[str] = set()
    for (_, run), label in zip(runs.iterrows(), labels, strict=True):
        history = pd.read_csv(Path(run["run_dir"]) / "history.csv")
        epochs = history["epoch"] + 1
        kwargs = {"color": palette[label], "alpha": 0.8, "lw": 1.4, "label": None if label in shown else label}
        shown.add(label)
        axes[0].plot(epochs, history["train/loss"], **kwargs)
        if run["monitor"] in history:
            axes[1].plot(epochs, history[run["monitor"]], **{**kwargs, "label": None})
    axes[0].set(xlabel="epoch", ylabel="training loss", title="training loss (each run's own loss function)")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].set(xlabel="epoch", ylabel=runs["monitor"].iloc[0], title=f"validation {runs['monitor'].iloc[0]}")
    axes[0].legend(fontsize=8, title=legend_title, title_fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
