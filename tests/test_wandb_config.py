"""common.wandb_config: flat dotted settings, the code version, package versions, the data fingerprint, and the
callback that writes them into an offline W&B run's config."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import WandbLogger

from common.loggers import build_loggers, finish_wandb, new_wandb_id
from common.wandb_config import WandbRunConfig, flat_settings
from tests.helpers import WandbLog


def test_flat_settings_join_nested_keys_with_dots() -> None:
    settings = {
        "seed_everything": 42,
        "model": {"loss": "ce", "channels": [4, 8], "nested": {"deep": None}},
        "trainer": {"max_epochs": 2, "callbacks": [{"class_path": "x.Y", "init_args": {"a": 1}}]},
        "config": [Path("a.yaml")],
    }
    assert flat_settings(settings) == {
        "seed_everything": 42,
        "model.loss": "ce",
        "model.channels": [4, 8],
        "model.nested.deep": None,
        "trainer.max_epochs": 2,
        "trainer.callbacks": "[{'class_path': 'x.Y', 'init_args': {'a': 1}}]",
        "config": ["a.yaml"],
    }


def _trainer(run_dir: Path, loggers: list) -> SimpleNamespace:
    return SimpleNamespace(
        is_global_zero=True,
        loggers=loggers,
        default_root_dir=str(run_dir),
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        accelerator=SimpleNamespace(),
        num_devices=1,
        num_nodes=1,
        precision="32-true",
    )


def test_the_callback_writes_the_config_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = tmp_path / "run"
    loggers = build_loggers(run_dir, "exp", "offline", "medlit", new_wandb_id())
    run_dir.mkdir(exist_ok=True)
    pd.DataFrame({"id": ["a", "b"], "split": ["train", "test"]}).to_csv(run_dir / "split.csv", index=False)
    settings = {"seed_everything": 7, "model": {"loss": "dice"}, "data": {"root": str(tmp_path)}}
    callback = WandbRunConfig(settings)
    trainer = _trainer(run_dir, loggers)
    try:
        callback.setup(trainer, None, "fit")
        callback.setup(trainer, None, "test")  # the test after fit: already written
    finally:
        finish_wandb(loggers)
    config = WandbLog(run_dir).config
    assert config["seed_everything"] == 7 and config["model.loss"] == "dice"
    assert config["dataset.n_train"] == 1 and config["dataset.root"] == str(tmp_path.resolve())
    assert config["device.name"] == "cpu" and config["device.precision"] == "32-true"
    assert {"code.commit", "code.dirty", "packages.torch", "packages.lightning", "packages.monai"} <= set(config)


def test_a_failing_config_is_one_warning_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = build_loggers(tmp_path / "run", "exp", "offline", "medlit", new_wandb_id())
    wandb_logger = next(logger for logger in loggers if isinstance(logger, WandbLogger))
    try:
        monkeypatch.setattr(type(wandb_logger.experiment.config), "update", lambda *a, **k: 1 / 0)
        WandbRunConfig({"model": {"loss": "ce"}}).setup(_trainer(tmp_path / "run", loggers), None, "fit")
    finally:
        monkeypatch.undo()
        finish_wandb(loggers)
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "warning: W&B did not log the run's config (ZeroDivisionError: division by zero)"
