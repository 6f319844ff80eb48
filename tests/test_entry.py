"""The one entry of the tasks' command lines (common.entry.run_cli), run on the toy task without training: the
``run_dir:`` last line, ``check``'s output and status, and the one error exit (``error.txt``, rank-aware lines,
status 2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch.utilities import rank_zero_only

from common.entry import run_cli
from tests.toy_task.callbacks import ToyOutputs
from tests.toy_task.data import ToyDataModule
from tests.toy_task.model import ToyRegressor


def _toy(args: list[str]) -> Path | None:
    return run_cli(ToyRegressor, ToyDataModule, ToyOutputs, report_module="tests.toy_task.report", args=args)


def _quiet(runs: Path, *extra: str) -> list[str]:
    return ["--run.root", str(runs), "--run.wandb", "off", "--trainer.enable_progress_bar", "false", *extra]


def _exit_code(args: list[str]) -> int | str | None:
    with pytest.raises(SystemExit) as exit_info:
        _toy(args)
    return exit_info.value.code


def test_the_last_line_printed_is_the_run_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = _toy(["test", *_quiet(tmp_path / "runs", "--run.experiment", "toy")])
    assert run_dir is not None and run_dir.parent == tmp_path / "runs" / "toy"
    assert capsys.readouterr().out.splitlines()[-1] == f"run_dir: {run_dir}"
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["subcommand"] == "test" and json.loads((run_dir / "metrics.json").read_text())["n_samples"] == 40


def test_check_prints_the_dataset_check_and_exits_by_its_result(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs = tmp_path / "runs"
    assert _exit_code(["check", *_quiet(runs)]) == 0
    assert capsys.readouterr().out.splitlines() == ["samples  200", "no problems found"]
    assert _exit_code(["check", *_quiet(runs, "--data.n", "3")]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "problem: data.n: 3 samples cannot be split 60/20/20 (use at least 5)",
        "samples  3",
        "1 problem(s) found",
    ]
    assert not runs.exists()  # check makes no run dir


def test_a_mistake_after_the_run_dir_is_made_is_kept_in_its_error_txt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    assert (
        _exit_code(["test", *_quiet(tmp_path / "runs", "--run.dir", str(run_dir), "--trainer.max_epochs", "-5")]) == 2
    )
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err[-1].startswith("error: trainer settings: ") and "max_epochs" in err[-1]
    assert [line for line in err if line.startswith("error:")] == [err[-1]]
    assert (run_dir / "error.txt").read_text() == err[-1].removeprefix("error: ") + "\n"


def test_a_worker_says_its_own_mistake_marked_with_its_rank(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    missing = tmp_path / "missing.yaml"
    assert _exit_code(["test", "--config", str(missing), *_quiet(tmp_path / "runs")]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert err == [f"[rank 1] --config {missing}: file not found"]
