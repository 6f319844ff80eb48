"""common.wandb_media: finding the W&B run, the summary with interval bounds, tables and images as W&B records them in
an offline run, the tested checkpoint as an artifact, one warning line when W&B fails, random states untouched."""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger, WandbLogger

import common.wandb_media as wandb_media
from common.loggers import build_loggers, finish_wandb, new_wandb_id
from common.wandb_media import (
    CheckpointUpload,
    image_files,
    interval_summary,
    log_to_wandb,
    logs_to_wandb,
    random_states_kept,
    table_of,
    wandb_run,
)
from tests.helpers import WandbLog

METRICS = {
    "score": 0.5,
    "error": {"mean": 2.0, "std": 1.0},
    "loss": 0.25,
    "ci95": {"score": [0.4, 0.6], "error": [1.5, 2.5], "other": [0.0, 1.0]},
}


def _png(path: Path, value: int = 0) -> Path:
    from PIL import Image

    Image.fromarray(np.full((20, 30, 3), value, dtype=np.uint8)).save(path)
    return path


def _trainer(loggers: list[Any], rank_zero: bool = True) -> SimpleNamespace:
    return SimpleNamespace(is_global_zero=rank_zero, loggers=loggers)


def test_interval_summary_takes_logged_names_and_their_bounds() -> None:
    assert interval_summary(METRICS, ("score", "error", "loss")) == {
        "test/score": 0.5,
        "test/score_ci_low": 0.4,
        "test/score_ci_high": 0.6,
        "test/error": 2.0,
        "test/error_ci_low": 1.5,
        "test/error_ci_high": 2.5,
        "test/loss": 0.25,
    }
    assert interval_summary({"score": 1.0}, ("score", "missing")) == {"test/score": 1.0}  # no intervals (bootstrap 0)


def test_no_run_without_a_wandb_logger_or_off_rank_zero(tmp_path: Path) -> None:
    csv = CSVLogger(tmp_path)
    assert wandb_run(SimpleNamespace()) is None
    assert wandb_run(_trainer([csv])) is None and not logs_to_wandb(_trainer([csv]))
    wandb_logger = WandbLogger(save_dir=str(tmp_path), offline=True)
    assert wandb_run(_trainer([csv, wandb_logger], rank_zero=False)) is None  # never starts a run on rank 1
    assert logs_to_wandb(_trainer([csv, wandb_logger], rank_zero=False))  # ... but knows rank 0 logs
    assert not log_to_wandb(_trainer([csv]), {"test/x": 1.0}, lambda wandb: {"x": 1})


def test_table_of_keeps_columns_and_empties_nan() -> None:
    import wandb

    table = table_of(wandb, pd.DataFrame({"name": ["a", "b"], "value": [1.5, np.nan]}))
    assert table.columns == ["name", "value"] and table.data == [["a", 1.5], ["b", None]]


def test_random_states_are_kept() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    expected = random.random(), np.random.rand(), torch.rand(1).item()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    with random_states_kept():
        random.random(), np.random.rand(3), torch.rand(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


@pytest.fixture
def offline_logger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WandbLogger:
    monkeypatch.setenv("WANDB_SILENT", "true")
    loggers = build_loggers(tmp_path / "run", "exp", "offline", "medlit", new_wandb_id())
    yield next(logger for logger in loggers if isinstance(logger, WandbLogger))
    finish_wandb(loggers)


def test_an_offline_run_records_summary_tables_images_and_the_checkpoint(
    tmp_path: Path, offline_logger: WandbLogger, capsys: pytest.CaptureFixture[str]
) -> None:
    figures = [_png(tmp_path / "a.png", 10), _png(tmp_path / "b.png", 200)]
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights")

    def build(wandb: Any) -> dict[str, Any]:
        frame = pd.DataFrame({"item": ["x", "y", "z"], "value": [1.0, np.nan, 3.0]})
        return {"test/items": table_of(wandb, frame), "test/figures": image_files(wandb, figures, ["A", "B"])}

    trainer = _trainer([CSVLogger(tmp_path), offline_logger])
    summary = interval_summary(METRICS, ("score", "error"))
    assert log_to_wandb(trainer, summary, build, CheckpointUpload(checkpoint, {"run_dir": str(tmp_path)}))
    run_id = offline_logger.experiment.id
    finish_wandb([offline_logger])
    log = WandbLog(tmp_path / "run")
    assert {key: log.summary[key] for key in summary} == summary
    assert log.table("test/items") == (["item", "value"], [["x", 1.0], ["y", None], ["z", 3.0]])
    assert log.images("test/figures") == ["A", "B"]
    assert (f"model-{run_id}", "model") in log.artifacts
    assert "warning:" not in capsys.readouterr().err


def test_a_failing_upload_is_one_warning_line_and_the_rest_is_logged(
    tmp_path: Path, offline_logger: WandbLogger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("upload refused\nsecond line")

    monkeypatch.setattr(offline_logger.experiment, "log", refuse)
    monkeypatch.setattr(offline_logger.experiment, "log_artifact", refuse)
    checkpoint = tmp_path / "best.ckpt"
    checkpoint.write_bytes(b"weights")
    trainer = _trainer([offline_logger])
    build = lambda wandb: {"test/figures": image_files(wandb, [_png(tmp_path / "a.png")])}  # noqa: E731
    assert not log_to_wandb(trainer, {"test/score": 0.5}, build, CheckpointUpload(checkpoint))
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines == [
        "warning: W&B did not log the test figures and tables, the tested checkpoint (ConnectionError: upload refused)"
    ]
    assert offline_logger.experiment.summary["test/score"] == 0.5  # what did not fail is logged


def test_a_failing_build_is_caught_and_leaves_random_states(
    offline_logger: WandbLogger, capsys: pytest.CaptureFixture[str]
) -> None:
    def build(wandb: Any) -> dict[str, Any]:
        np.random.rand(10)
        raise ValueError("bad figure")

    np.random.seed(5)
    expected = np.random.rand()
    np.random.seed(5)
    assert not log_to_wandb(_trainer([offline_logger]), {}, build)
    assert np.random.rand() == expected
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == "warning: W&B did not log the test figures and tables (ValueError: bad figure)"


def test_the_checkpoint_is_left_out_when_it_is_not_a_file(
    tmp_path: Path, offline_logger: WandbLogger, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(wandb_media, "_log_media", lambda run, build: calls.append("media"))
    monkeypatch.setattr(offline_logger.experiment, "log_artifact", lambda *a, **k: calls.append("artifact"))
    ensemble = CheckpointUpload("ensemble of 3 (run_info.json)")
    assert log_to_wandb(_trainer([offline_logger]), {}, None, ensemble)
    assert calls == ["media"]
