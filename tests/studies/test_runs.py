"""Reading run dirs back: finished runs, the newest of each experiment, and what is read once per run object."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import common.studies.runs
from common.errors import MedlitError
from common.studies.runs import latest_runs, load_run
from tests.toy_task.report import ToyReport, write_toy_run

ITEMS = {"item": ["a", "b", "c"], "unit": ["a", "b", "c"], "error": [0.1, -0.2, 0.3]}


def test_load_run_reads_the_run_files_and_refuses_an_unfinished_run(tmp_path: Path) -> None:
    run = load_run(write_toy_run(tmp_path / "exp" / "r1", 0.2, 0.25, units={"mae": "y units"}))
    assert (run.task, run.monitor, run.monitor_mode, run.experiment) == ("toy_regression", "val/mae", "min", "exp")
    assert run.headline() == {"mae": 0.2, "rmse": pytest.approx(0.3)} and run.validation_score == 0.25
    assert run.cfg("model.optimizer") == "sgd" and run.cfg("model.nothing", "x") == "x"
    assert run.unit("mae") == "y units" and run.unit("rmse") == ""
    (tmp_path / "exp" / "r1" / "metrics.json").unlink()
    with pytest.raises(MedlitError, match=r"r1: not a finished run \(metrics.json missing\)"):
        load_run(tmp_path / "exp" / "r1")


def test_a_run_of_test_alone_has_no_history_and_no_validation_score(tmp_path: Path) -> None:
    run = load_run(write_toy_run(tmp_path / "ensemble", 0.2))
    assert run.history.empty and run.best_epoch().empty and math.isnan(run.validation_score)


def test_a_per_case_summary_gives_its_mean_as_headline(tmp_path: Path) -> None:
    run = load_run(write_toy_run(tmp_path / "r", 0.0, 0.1, rmse={"mean": 0.5, "std": 0.1}))
    assert run.headline()["rmse"] == 0.5
    undefined = load_run(write_toy_run(tmp_path / "u", 0.0, 0.1, rmse={"mean": None, "std": None}))
    assert math.isnan(undefined.headline()["rmse"])  # NaN, written as null: a mean over no defined case


def test_latest_runs_takes_the_newest_finished_run_of_each_experiment(tmp_path: Path) -> None:
    write_toy_run(tmp_path / "a" / "20260101-000000", 0.3, 0.3)
    write_toy_run(tmp_path / "a" / "20260102-000000", 0.2, 0.2)
    (tmp_path / "a" / "20260103-000000").mkdir()  # started, never finished
    write_toy_run(tmp_path / "b" / "20260101-000000", 0.1, 0.1)
    write_toy_run(tmp_path / "c" / "20260101-000000", 0.1)  # test alone (no history.csv): not a fit to report
    runs = latest_runs(tmp_path)
    assert list(runs) == ["a", "b"] and runs["a"].path.name == "20260102-000000"
    with pytest.raises(MedlitError, match="no such runs folder"):
        latest_runs(tmp_path / "missing")


def test_scored_items_are_read_once_per_run_object(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The cache lives with the run object: a second object of the same dir reads the files again."""
    reads: list[Path] = []
    real = ToyReport.scored_items
    monkeypatch.setattr(ToyReport, "scored_items", lambda self, run: reads.append(run.path) or real(self, run))
    run_dir = write_toy_run(tmp_path / "r", 0.2, 0.2, ITEMS)
    run = load_run(run_dir)
    assert run.scored_items() is run.scored_items() and run.scored_items().n_items == 3
    assert reads == [run_dir]
    load_run(run_dir).scored_items()
    assert reads == [run_dir, run_dir]
    bare = load_run(write_toy_run(tmp_path / "n", 0.2, 0.2))
    assert bare.scored_items() is None and bare.scored_items() is None and len(reads) == 3  # None is kept too


def test_bootstrap_intervals_are_computed_once_per_resamples_and_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    real = common.studies.runs.bootstrap_intervals

    def counting(items: object, n_resamples: int, seed: int) -> dict:
        calls.append((n_resamples, seed))
        return real(items, n_resamples, seed)

    monkeypatch.setattr(common.studies.runs, "bootstrap_intervals", counting)
    run = load_run(write_toy_run(tmp_path / "r", 0.2, 0.2, ITEMS))
    first = run.bootstrap_intervals(100, 0)
    assert run.bootstrap_intervals(100, 0) is first and "mae" in first
    run.bootstrap_intervals(100, 1)
    assert calls == [(100, 0), (100, 1)]
    assert load_run(write_toy_run(tmp_path / "n", 0.2, 0.2)).bootstrap_intervals(100, 0) == {}
