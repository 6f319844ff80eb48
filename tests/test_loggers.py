"""The run's loggers (common.loggers): W&B modes, the W&B project and run names, the run's W&B id kept for a
resume, and loggers configured under ``trainer.logger``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lightning.pytorch.loggers import CSVLogger

from common.loggers import resolve_wandb_mode, run_loggers, run_wandb_id
from common.rundir import WANDB_ID_ENV


def test_wandb_modes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "off"
    assert resolve_wandb_mode("offline") == "offline"


def test_wandb_project_names_the_offline_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``run.wandb_project`` is the project of the W&B run (offline here; online it is where the run appears)."""
    from lightning.pytorch.loggers import WandbLogger

    from common.loggers import build_loggers, finish_wandb, new_wandb_id

    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = build_loggers(tmp_path / "run", "exp", "offline", "my-lab-project", new_wandb_id())
    wandb_logger = next(logger for logger in loggers if isinstance(logger, WandbLogger))
    try:
        assert wandb_logger.experiment.project == "my-lab-project"
        assert wandb_logger.experiment.group == "exp" and wandb_logger.experiment.name == "exp/run"
    finally:
        finish_wandb(loggers)


def test_the_wandb_id_is_kept_in_run_info_and_shared_with_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WANDB_ID_ENV, "")  # none inherited (and unset again after the test)
    tmp_path.joinpath("run_info.json").write_text(json.dumps({"task": "toy"}))
    first = run_wandb_id(tmp_path)
    assert len(first) == 8 and first.isalnum() and first == first.lower()
    assert json.loads(tmp_path.joinpath("run_info.json").read_text()) == {"task": "toy", "wandb_id": first}
    assert run_wandb_id(tmp_path) == first  # a resumed run continues the same W&B run
    other = tmp_path / "worker_view"
    other.mkdir()
    assert run_wandb_id(other) == first  # a DDP worker Lightning started gets rank 0's through the environment


def test_run_loggers_are_csv_then_configured_ones_or_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WANDB_ID_ENV, "fixedid1")
    assert run_loggers(tmp_path, "exp", "off", "p", configured=False) == []
    (csv,) = run_loggers(tmp_path, "exp", "off", "p")
    assert isinstance(csv, CSVLogger) and Path(csv.log_dir) == tmp_path / "logs"
    mine = CSVLogger(tmp_path / "mine")
    assert run_loggers(tmp_path, "exp", "off", "p", configured=mine)[1:] == [mine]
    assert run_loggers(tmp_path, "exp", "off", "p", configured=[mine, mine])[1:] == [mine, mine]


def test_without_wandb_installed_a_run_logs_to_csv_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    from common.loggers import build_loggers

    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` fails as when it is not installed
    (csv,) = build_loggers(tmp_path / "run", "exp", "offline", "p", "fixedid1")
    assert isinstance(csv, CSVLogger)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"warning: W&B is not installed (pip install wandb): this run logs to {tmp_path / 'run' / 'logs'} only"
    ]


def test_under_a_wandb_agent_the_run_takes_the_agents_id_and_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lightning.pytorch.loggers import WandbLogger

    from common.loggers import build_loggers, finish_wandb

    monkeypatch.setenv(WANDB_ID_ENV, "")
    for name, value in (("WANDB_SWEEP_ID", "sweep1"), ("WANDB_RUN_ID", "agentid1"), ("WANDB_PROJECT", "lab")):
        monkeypatch.setenv(name, value)
    tmp_path.joinpath("run_info.json").write_text("{}")
    assert run_wandb_id(tmp_path) == "agentid1"
    loggers = build_loggers(tmp_path, "exp", "offline", "medlit", "agentid1")
    wandb_logger = next(logger for logger in loggers if isinstance(logger, WandbLogger))
    try:
        assert (wandb_logger.experiment.id, wandb_logger.experiment.project) == ("agentid1", "lab")
    finally:
        finish_wandb(loggers)
