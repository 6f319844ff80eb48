"""One run in a subprocess: its output logged and its exit status returned, an interrupted attempt moved aside, the
runner's own arguments in order, and the sweep metric read from the run's history."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from common.studies.plan import SweepSpec
from common.studies.runner import fresh_run_dir, run_logged, run_metric, runner_arguments


def test_run_logged_writes_the_output_and_returns_the_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    program = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
    log = tmp_path / "logs" / "run.log"
    assert run_logged([sys.executable, "-c", program], log) == 3
    assert sorted(log.read_text().splitlines()) == ["err", "out"]
    assert sorted(capsys.readouterr().out.splitlines()) == ["err", "out"]


def test_fresh_run_dir_moves_interrupted_attempts_aside(tmp_path: Path) -> None:
    assert fresh_run_dir(tmp_path, "run000") == tmp_path / "run000" and not (tmp_path / "run000").exists()
    for attempt in (1, 2):
        (tmp_path / "run000").mkdir()
        (tmp_path / "run000" / "partial").write_text(str(attempt))
        assert fresh_run_dir(tmp_path, "run000") == tmp_path / "run000"
        assert not (tmp_path / "run000").exists()
        assert (tmp_path / f"run000.interrupted-{attempt}" / "partial").read_text() == str(attempt)


def test_runner_arguments_come_in_order() -> None:
    spec = SweepSpec(Path("s.yaml"), {"name": "loss", "parameters": {}})
    args = {"configs": ["a.yaml", "b.yaml"], "wandb": "off", "data_root": "/data", "overrides": ["model.lr=0.1"]}
    assert runner_arguments(spec, Path("runs/run000"), args) == [
        "--config=a.yaml",
        "--config=b.yaml",
        "--run.dir=runs/run000",
        "--run.experiment=loss",
        "--run.wandb=off",
        "--data.root=/data",
        "--model.lr=0.1",
    ]
    assert "--data.root" not in " ".join(runner_arguments(spec, Path("r"), args | {"data_root": None}))


def test_run_metric_is_the_best_epoch_value_for_the_goal(tmp_path: Path) -> None:
    (tmp_path / "history.csv").write_text("epoch,val/score\n0,0.2\n1,\n2,0.7\n3,0.4\n")
    assert run_metric(tmp_path, "val/score", "maximize") == 0.7
    assert run_metric(tmp_path, "val/score", "minimize") == 0.2
    assert math.isnan(run_metric(tmp_path, "val/other", "maximize"))  # not logged
    assert math.isnan(run_metric(tmp_path, None, "maximize"))  # the sweep has no metric
    assert math.isnan(run_metric(tmp_path / "missing", "val/score", "maximize"))  # no history
