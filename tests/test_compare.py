"""A sweep dir's comparison: configurations over seeds, paired tests, the figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _toy_sweep(sweep_dir: Path, scores: dict[tuple[float, int], float]) -> None:
    """A finished grid sweep of the toy task (no per-item scores): x x seed -> validation score and MAE."""
    runs = []
    for i, ((x, seed), mae) in enumerate(scores.items()):
        run_dir = sweep_dir / "runs" / f"run{i:03d}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(f"model: {{x: {x}}}\nseed_everything: {seed}\n")
        info = {"monitor": "val/score", "monitor_mode": "max", "task": "toy_regression"}
        (run_dir / "run_info.json").write_text(json.dumps({**info, "report_module": "tests.toy_task.report"}))
        (run_dir / "history.csv").write_text(f"epoch,train/loss,val/score\n0,1.0,{-mae}\n")
        (run_dir / "metrics.json").write_text(json.dumps({"mae": mae, "rmse": mae * 1.5}))
        runs.append({"run_id": run_dir.name, "status": "finished", "run_dir": str(run_dir)})
        runs[-1]["params"] = json.dumps({"seed_everything": seed, "model.x": x})
    pd.DataFrame(runs).to_csv(sweep_dir / "index.csv", index=False)
    (sweep_dir / "plan.json").write_text(json.dumps({"sweep": "toy", "method": "grid"}))


def test_sweep_compares_configurations_over_their_common_seeds(tmp_path: Path) -> None:
    """Per configuration: mean, std and the Student-t interval over seeds; two configurations with the same
    seeds: the paired t over seeds (scipy's ttest_rel); a task without per-item scores pairs no single runs."""
    from scipy import stats

    from common.studies.compare import compare_sweep

    a = {1: 0.20, 2: 0.25, 3: 0.22}
    b = {1: 0.15, 2: 0.21, 3: 0.16}
    _toy_sweep(tmp_path, {**{(0.1, s): v for s, v in a.items()}, **{(0.3, s): v for s, v in b.items()}})
    compare_sweep(tmp_path)
    table = pd.read_csv(tmp_path / "comparisons.csv")
    mae = table[table["metric"] == "mae"].iloc[0]
    assert (mae["run_a"], mae["run_b"], mae["test"], mae["n_units"]) == (
        "model.x=0.1",
        "model.x=0.3",
        "paired t over seeds",
        3,
    )
    reference = stats.ttest_rel(list(b.values()), list(a.values()))
    assert mae["p_value"] == pytest.approx(reference.pvalue)
    assert (mae["ci_low"], mae["ci_high"]) == pytest.approx(tuple(reference.confidence_interval()))
    assert mae["delta"] == pytest.approx(np.mean(list(b.values())) - np.mean(list(a.values())))
    assert set(table["metric"]) == {"mae", "rmse"} and (table["p_holm"] >= table["p_value"]).all()
    text = (tmp_path / "comparison.md").read_text()
    ci = stats.ttest_1samp(list(a.values()), 0).confidence_interval()
    assert f"0.223 ± 0.025 [{ci.low:.3f}-{ci.high:.3f}] (3)" in text
    assert "has no per-item test scores" in text
    assert (tmp_path / "comparison_metrics.png").stat().st_size > 10_000


def test_metrics_figure_draws_a_run_whose_point_lies_outside_its_interval(tmp_path: Path) -> None:
    """A percentile interval can leave out its own point (a model that predicts one class: float rounding between
    the point and the resamples); the comparison figure draws it instead of failing the sweep."""
    from common.studies.compare import _plot_metrics

    runs = pd.DataFrame(
        {
            "model.loss": ["ce", "ce", "focal"],
            "bal_acc": [1 / 7, 0.5, 0.6],
            "bal_acc_ci_low": [1 / 7 + 1e-9, 0.4, 0.5],
            "bal_acc_ci_high": [1 / 7 + 2e-9, 0.6, 0.7],
        }
    )
    path = _plot_metrics(runs, ["model.loss"], tmp_path / "comparison_metrics.png", {"bal_acc": "balanced accuracy"})
    assert path.stat().st_size > 5_000
