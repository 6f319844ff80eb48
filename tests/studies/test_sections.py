"""Helpers of the tasks' report sections: the run chosen on validation, tables, weights, budgets, intervals."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from common.studies import sections  # not its tested_weights by name: pytest would collect it as a test
from common.studies.runs import RunResult, load_run
from common.studies.sections import best_run, mean_std, no_best_run, table, training_rows, with_interval
from tests.toy_task.report import write_toy_run


@pytest.mark.parametrize(
    ("trainer", "budget"),
    [
        ({"max_epochs": 1000, "max_time": "00:00:55:00"}, "1000 epochs or 55 min (whichever ends first)"),
        ({"max_epochs": 20}, "20 epochs"),
        (
            {"max_steps": 500, "max_epochs": None, "max_time": {"hours": 1, "minutes": 30}},
            "500 steps or 90 min (whichever ends first)",
        ),
    ],
)
def test_training_rows_give_the_budget_and_what_was_used(trainer: dict, budget: str) -> None:
    """The report's training rows: the limits the config set, and the epochs, optimizer steps (last validation)
    and fit minutes the run's files record."""
    history = pd.DataFrame({"epoch": [0, 1, 2], "step": [220, 440, 650]})
    run = RunResult(
        Path("run"),
        {},
        {"trainer": {**trainer, "precision": "bf16-mixed"}},
        {},
        history,
        {"fit_s": 3300.0, "epochs": 3},
    )
    assert training_rows(run) == {
        "training budget": budget,
        "trained": "3 epochs, 650 steps, 55.0 min",
        "precision": "bf16-mixed",
    }
    bare = RunResult(Path("run"), {}, {}, {}, history.drop(columns="step"))
    assert training_rows(bare) == {"training budget": "–", "trained": "3 epochs", "precision": "32-true"}


def _run(tmp_path: Path, name: str, validation: float | None, **info: str) -> RunResult:
    return load_run(write_toy_run(tmp_path / name / "r", 0.2, validation, info=info))


def test_best_run_is_chosen_on_the_validation_monitor_in_its_direction(tmp_path: Path) -> None:
    low, high = _run(tmp_path, "low", 0.1), _run(tmp_path, "high", 0.3)
    assert best_run([high, low]) is low  # val/mae: lower is better
    up_low = _run(tmp_path, "up_low", 0.1, monitor_mode="max")
    up_high = _run(tmp_path, "up_high", 0.3, monitor_mode="max")
    assert best_run([up_low, up_high]) is up_high
    assert best_run([_run(tmp_path, "test_alone", None), low]) is low  # a run of test alone was not validated
    assert best_run([_run(tmp_path, "t2", None)]) is None


def test_runs_selected_on_different_metrics_have_no_best_run(tmp_path: Path) -> None:
    other = write_toy_run(tmp_path / "b" / "r", 0.2, info={"monitor": "val/r2", "monitor_mode": "max"})
    (other / "history.csv").write_text("epoch,val/r2\n0,0.9\n")
    runs = [_run(tmp_path, "a", 0.1), load_run(other)]
    assert best_run(runs) is None
    assert no_best_run(runs, {"val/mae": "MAE"}) == (
        "No run is named better: their checkpoints were selected on different validation metrics (a on MAE, b on "
        "val/r2), whose values do not compare."
    )


def test_table_puts_runs_in_columns_and_shows_configuration_values() -> None:
    frame = table({"a": {"lr": 1e-05, "TTA": True, "test": "0.500"}, "b": {"lr": 0.001, "TTA": None, "test": "n/a"}})
    assert list(frame.columns) == ["a", "b"] and list(frame.index) == ["lr", "TTA", "test"]
    assert frame.to_dict("index") == {
        "lr": {"a": "1e-05", "b": "0.001"},
        "TTA": {"a": "yes", "b": "–"},
        "test": {"a": "0.500", "b": "n/a"},
    }


def test_mean_std_of_a_per_case_summary() -> None:
    assert mean_std({"mean": 0.81234, "std": 0.05}) == "0.812 ± 0.050"
    assert mean_std({"mean": 14.256, "std": None}, 2) == "14.26 ± n/a"


def test_with_interval_writes_the_headline_value_and_its_stored_interval(tmp_path: Path) -> None:
    run = load_run(
        write_toy_run(
            tmp_path / "r",
            0.2,
            0.2,
            rmse={"mean": 14.256, "std": 1.0},
            ci95={"mae": [0.15, 0.25], "rmse": [10.1, 18.0]},
        )
    )
    assert with_interval(run, "mae") == "0.200 (0.150-0.250)"
    assert with_interval(run, "rmse", 2) == "14.26 (10.10-18.00)"  # a per-case summary by its mean
    missing = load_run(write_toy_run(tmp_path / "m", 0.2, 0.2, rmse=None))
    assert with_interval(missing, "mae") == "0.200" and with_interval(missing, "rmse") == "n/a"
    undefined = load_run(write_toy_run(tmp_path / "u", 0.2, 0.2, rmse={"mean": None, "std": None}))
    assert with_interval(undefined, "rmse") == "n/a"


def test_tested_weights_name_the_epoch_or_the_ensemble(tmp_path: Path) -> None:
    assert sections.tested_weights(_run(tmp_path, "best", 0.2)) == "best epoch 1 (validation)"
    assert sections.tested_weights(_run(tmp_path, "last", 0.2, test_checkpoint="last")) == "last epoch 1"
    ensemble = load_run(write_toy_run(tmp_path / "e" / "r", 0.2, info={"ensemble": ["a.ckpt", "b.ckpt"]}))
    assert sections.tested_weights(ensemble) == "ensemble of 2 members (run_info.json)"
    alone = load_run(write_toy_run(tmp_path / "t" / "r", 0.2, checkpoint="model.ckpt"))
    assert sections.tested_weights(alone) == "model.ckpt"
