"""The sweep comparison's figures: runs with their intervals and means over seeds; training curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import common.studies.figures
from common.studies.figures import plot_curves, plot_metrics
from tests.helpers import assert_png, capture_figures


def test_metrics_figure_draws_a_run_whose_point_lies_outside_its_interval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A percentile interval can leave out its own point (a model that predicts one class: float rounding between
    the point and the resamples); the comparison figure draws it instead of failing the sweep."""
    figures = capture_figures(monkeypatch, common.studies.figures)
    runs = pd.DataFrame(
        {
            "model.loss": ["ce", "ce", "focal"],
            "bal_acc": [1 / 7, 0.5, 0.6],
            "bal_acc_ci_low": [1 / 7 + 1e-9, 0.4, 0.5],
            "bal_acc_ci_high": [1 / 7 + 2e-9, 0.6, 0.7],
        }
    )
    labels = runs["model.loss"]
    path = plot_metrics(runs, labels, tmp_path / "comparison_metrics.png", {"bal_acc": "balanced accuracy"})
    assert_png(path, min_side=300)
    (ax,) = figures[0].axes
    assert ax.get_title() == "balanced accuracy" and [t.get_text() for t in ax.get_xticklabels()] == ["ce", "focal"]
    points = sorted(float(line.get_ydata()[0]) for line in ax.lines if line.get_marker() == "o")
    assert points == pytest.approx([1 / 7, 0.5, 0.6])  # every run drawn, the one outside its interval too
    means = [line for line in ax.lines if line.get_marker() == "_" and line.get_markersize() == 18]  # not the caps
    assert [float(line.get_ydata()[0]) for line in means] == pytest.approx([(1 / 7 + 0.5) / 2])  # ce: 2 seeds


def test_metrics_figure_has_one_panel_per_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = capture_figures(monkeypatch, common.studies.figures)
    runs = pd.DataFrame(
        {"validation": [0.4, 0.5], "mae": [0.2, 0.3], "mae_ci_low": [0.1, 0.2]} | {"mae_ci_high": [0.3, 0.4]}
    )
    titles = {"validation": "validation val/mae", "mae": "test MAE"}
    plot_metrics(runs, pd.Series(["all runs", "all runs"]), tmp_path / "m.png", titles)
    assert [ax.get_title() for ax in figures[0].axes] == list(titles.values())


def test_curves_figure_draws_each_runs_history_once_per_configuration_in_the_legend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = capture_figures(monkeypatch, common.studies.figures)
    rows = []
    for i, loss in enumerate(["ce", "ce", "focal"]):
        run_dir = tmp_path / f"run{i}"
        run_dir.mkdir()
        history = pd.DataFrame({"epoch": [0, 1, 2], "train/loss": [1.0, 0.5, 0.2 + i], "val/acc": [0.3, 0.4, 0.5]})
        history.to_csv(run_dir / "history.csv", index=False)
        rows.append({"run_dir": str(run_dir), "monitor": "val/acc", "model.loss": loss})
    runs = pd.DataFrame(rows)
    path = plot_curves(runs, runs["model.loss"], tmp_path / "curves.png", "model.loss")
    assert_png(path, min_side=300)
    loss_ax, monitor_ax = figures[0].axes
    assert len(loss_ax.lines) == 3 and len(monitor_ax.lines) == 3
    assert np.array_equal(loss_ax.lines[2].get_xdata(), [1, 2, 3]) and loss_ax.lines[2].get_ydata()[-1] == 2.2
    legend = loss_ax.get_legend()
    assert legend.get_title().get_text() == "model.loss" and [t.get_text() for t in legend.get_texts()] == [
        "ce",
        "focal",
    ]
    assert monitor_ax.get_title() == "validation val/acc"
