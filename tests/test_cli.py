"""The shared CLI: run dirs, resume from a checkpoint, checkpoint weights instead of hub weights, W&B modes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from common.errors import MedlitError
from common.loggers import resolve_wandb_mode
from common.rundir import resolve_run_dir
from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from tests.helpers import REPO, tiny_cls_args


def test_run_dirs_are_new_and_explicit_dirs_are_not_reused(tmp_path: Path) -> None:
    first = resolve_run_dir(tmp_path, "exp")
    first.mkdir(parents=True)
    second = resolve_run_dir(tmp_path, "exp")
    assert second != first and second.parent == first.parent == tmp_path / "exp" and second.name.startswith(first.name)
    (first / "config.yaml").write_text("{}")
    with pytest.raises(MedlitError, match="already holds a run"):
        resolve_run_dir(tmp_path, "exp", exact=first)


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


@pytest.mark.smoke
def test_resume_keeps_history_and_test_uses_checkpoint_not_hub(tiny_ham: Path, tmp_path: Path) -> None:
    args = tiny_cls_args(tiny_ham, tmp_path, "--trainer.max_epochs", "1", "--outputs.gradcam_per_class", "0")
    first = main(["fit", *args])
    resumed = main(
        [
            "fit",
            *tiny_cls_args(tiny_ham, tmp_path, "--trainer.max_epochs", "2", "--outputs.gradcam_per_class", "0"),
            "--ckpt_path",
            str(first / "checkpoints" / "last.ckpt"),
        ]
    )
    history = pd.read_csv(resumed / "history.csv")
    assert history["epoch"].tolist() == [0, 1]  # epoch 0 comes from the checkpoint
    first_loss = pd.read_csv(first / "history.csv")["train/loss"].iloc[0]
    assert history["train/loss"].iloc[0] == pytest.approx(first_loss)
    # the seed config asks for hub weights (model.pretrained: true); weights from a checkpoint need no network
    tested = main(
        [
            "test",
            "--config",
            str(REPO / "experiments" / "cls_ce.yaml"),
            "--config",
            str(REPO / "experiments" / "demo" / "cls.yaml"),
            "--model.pretrained",
            "true",
            "--data.root",
            str(tiny_ham),
            "--data.image_size",
            "32",
            "--run.root",
            str(tmp_path),
            "--run.wandb",
            "off",
            "--trainer.enable_progress_bar",
            "false",
            "--outputs.gradcam_per_class",
            "0",
            "--ckpt_path",
            str(resumed / "checkpoints" / "last.ckpt"),
        ]
    )
    metrics = json.loads((tested / "metrics.json").read_text())
    predictions = pd.read_csv(tested / "predictions.csv")
    decided = [CLASS_NAMES[i] for i in predictions[list(CLASS_NAMES)].to_numpy().argmax(axis=1)]
    assert metrics["checkpoint"].endswith("last.ckpt")
    assert metrics["accuracy"] == pytest.approx(accuracy_score(predictions["label"], decided))  # what was tested
    info = json.loads((tested / "run_info.json").read_text())
    assert info["subcommand"] == "test" and info["monitor"] == "val/bal_acc"


@pytest.mark.smoke
def test_a_wandb_key_never_reaches_run_files(tiny_ham: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from common.studies.report import build_report
    from common.studies.runs import load_run

    key = "medlitsecret" + "7" * 28  # 40 characters, as W&B keys are
    monkeypatch.setenv("WANDB_API_KEY", key)
    args = tiny_cls_args(tiny_ham, tmp_path / "runs", "--trainer.max_epochs", "1", "--run.wandb", "offline")
    run_dir = main(["fit", *args, "--outputs.gradcam_per_class", "0"])
    build_report([load_run(run_dir)], tmp_path / "report")
    files = [p for root in (run_dir, tmp_path / "report") for p in root.rglob("*") if p.is_file()]
    assert any("wandb" in p.parts for p in files)  # W&B did write its offline run
    leaked = [p for p in files if key.encode() in p.read_bytes()]
    assert not leaked, leaked


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


def test_help_names_the_program_and_lists_check() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "volume_seg", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.startswith("usage: python -m volume_seg ")
    assert "{fit,validate,test,predict,check}" in result.stdout and "Check the dataset" in result.stdout
