"""Matplotlib/seaborn helpers shared by both tasks (headless: Agg backend)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and CI
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from common.files import atomic_path

__all__ = ["history_metric_names", "plot_history", "save_figure", "seaborn_theme"]


@contextmanager
def seaborn_theme(style: str = "whitegrid") -> Iterator[None]:
    """seaborn's ``style`` (``notebook`` context) for the figures drawn inside; as a decorator, for one plotting
    function. Matplotlib's settings are restored after: ``sns.set_theme`` alone would restyle every later figure
    of the process (a user's notebook importing medlit too)."""
    with plt.rc_context():
        sns.set_theme(style=style, context="notebook")
        yield


def save_figure(fig: plt.Figure, path: Path, dpi: int = 110) -> Path:
    """Save and close ``fig`` (parents created)."""
    with atomic_path(path) as tmp:  # a figure rewritten by one process is never seen half-written by another
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def history_metric_names(history: pd.DataFrame) -> list[str]:
    """Metric names logged as ``train/<name>`` or ``val/<name>``, loss first."""
    names = {c.split("/", 1)[1] for c in history.columns if c.startswith(("train/", "val/"))}
    return sorted(names, key=lambda n: (n != "loss", n))


@seaborn_theme("whitegrid")
def plot_history(history: pd.DataFrame, path: Path, title: str = "", labels: Mapping[str, str] | None = None) -> Path:
    """One panel per metric, training and validation curves over epochs (x = epoch, 1-based).

    Args:
        history: One row per epoch: ``epoch`` and ``train/<name>``, ``val/<name>`` columns.
        path: PNG to write.
        title: Figure title.
        labels: Axis label of each metric name (the module's ``metric_labels``); the name where missing.
    """
    labels = labels or {}
    names = history_metric_names(history)
    cols = min(len(names), 3) or 1
    rows = -(-len(names) // cols) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    epochs = history["epoch"] + 1
    for ax, name in zip(axes.flat, names, strict=False):
        for stage, style in (("train", "-o"), ("val", "-s")):
            key = f"{stage}/{name}"
            if key in history and history[key].notna().any():
                ax.plot(
                    epochs, history[key], style, markersize=3, label="training" if stage == "train" else "validation"
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(labels.get(name, name))
        ax.legend(frameon=False)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path)
