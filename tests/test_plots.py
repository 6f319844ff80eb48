"""``common.plots``: training-curve panels, and figures that leave the caller's matplotlib settings alone."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import common.plots
from common.plots import history_metric_names, plot_history
from lesion_cls import CLASS_NAMES
from lesion_cls.viz import plot_confusion
from tests.helpers import assert_png, capture_figures


def test_history_metric_names_loss_first() -> None:
    history = pd.DataFrame(columns=["epoch", "step", "val/dice", "train/acc", "val/loss", "train/loss", "lr"])
    assert history_metric_names(history) == ["loss", "acc", "dice"]
    assert history_metric_names(pd.DataFrame(columns=["epoch", "val/acc", "val/auc"])) == ["acc", "auc"]


def test_plot_history_panels_and_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = capture_figures(monkeypatch, common.plots)
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "train/loss": [1.0, 0.8, 0.6],
            "val/loss": [1.1, 0.9, 0.8],
            "train/acc": [np.nan] * 3,
            "val/acc": [0.3, 0.5, 0.6],
            "val/dice": [0.1, 0.2, 0.3],
            "train/f1": [0.2, 0.3, 0.4],
        }
    )
    path = plot_history(history, tmp_path / "curves.png", "exp / run", {"loss": "cross-entropy", "acc": "accuracy"})
    assert_png(path)
    fig = figures[0]
    axes = fig.axes
    assert len(axes) == 6  # 4 metrics on a 2 x 3 grid, the rest switched off
    assert [ax.get_ylabel() for ax in axes[:4]] == ["cross-entropy", "accuracy", "dice", "f1"]
    assert [ax.axison for ax in axes] == [True] * 4 + [False] * 2
    assert [line.get_label() for line in axes[0].lines] == ["training", "validation"]
    np.testing.assert_array_equal(axes[0].lines[0].get_xdata(), [1, 2, 3])  # 1-based epochs
    np.testing.assert_array_equal(axes[0].lines[1].get_ydata(), [1.1, 0.9, 0.8])
    assert [line.get_label() for line in axes[1].lines] == ["validation"]  # all-NaN training curve left out
    assert fig.get_suptitle() == "exp / run"


def test_plots_leave_the_callers_matplotlib_settings_alone(tmp_path: Path) -> None:
    # seaborn's set_theme alone would restyle every later figure of the process (a user's notebook importing medlit)
    with plt.rc_context({"axes.grid": False, "font.size": 7.0, "axes.facecolor": "#fafafa"}):
        plot_confusion(np.eye(len(CLASS_NAMES), dtype=int) * 3, tmp_path / "confusion.png")
        plot_history(pd.DataFrame({"epoch": [0, 1], "train/loss": [1.0, 0.5]}), tmp_path / "history.png")
        assert plt.rcParams["axes.grid"] is False
        assert plt.rcParams["font.size"] == 7.0
        assert plt.rcParams["axes.facecolor"] == "#fafafa"
    assert_png(tmp_path / "confusion.png")
