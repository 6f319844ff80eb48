"""The shared CLI (common.cli.MedlitCLI): its subcommands and their keys, the callbacks it adds, resume from a
checkpoint, checkpoint weights instead of hub weights, no W&B key in run files."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from common.cli import MedlitCLI
from common.run_options import Link
from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from tests.helpers import REPO, tiny_cls_args
from tests.toy_task.callbacks import ToyOutputs
from tests.toy_task.data import ToyDataModule
from tests.toy_task.model import ToyRegressor


def _toy_cli(args: list[str], links: tuple[Link, ...] = ()) -> MedlitCLI:
    return MedlitCLI(ToyRegressor, ToyDataModule, ToyOutputs, links, args=args)


def _quiet(runs: Path) -> list[str]:
    return ["--run.root", str(runs), "--run.wandb", "off", "--trainer.enable_progress_bar", "false"]


def test_check_takes_the_keys_of_fit_and_builds_only_the_datamodule(tmp_path: Path) -> None:
    cli = _toy_cli(["check", *_quiet(tmp_path / "runs"), "--data.n", "50"])
    assert cli.error is None and cli.check_result is not None and cli.check_result.summary == {"samples": "50"}
    assert cli.run_dir is None and not (tmp_path / "runs").exists() and not hasattr(cli, "trainer")
    parsers = cli.subcommand_parsers
    assert list(parsers) == ["fit", "validate", "test", "predict", "check"]
    assert parsers["check"].dump(parsers["check"].get_defaults()) == parsers["fit"].dump(parsers["fit"].get_defaults())


def test_links_and_ensemble_arguments_belong_to_their_subcommands(tmp_path: Path) -> None:
    link = Link("data.features", "model.features", subcommands=("fit",))
    cli = _toy_cli(["check", *_quiet(tmp_path / "runs")], links=(link,))
    linked = {name for name, p in cli.subcommand_parsers.items() if "features" not in p.get_defaults().model}
    assert linked == {"fit", "check"}  # a link that applies to fit applies to check: the same keys
    with_ensemble = {name for name, p in cli.subcommand_parsers.items() if "ensemble" in p.get_defaults()}
    assert with_ensemble == {"test", "predict"}


def test_the_house_callbacks_follow_the_configured_and_outputs_ones(tmp_path: Path) -> None:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary, RichProgressBar

    from common.callbacks import MetricHistory, RngState, RunTimer, SplitExport

    runs = ["--run.root", str(tmp_path / "runs"), "--run.wandb", "off"]
    cli = _toy_cli(["test", *runs, "--trainer.callbacks", "ModelSummary"])
    ours = (ModelSummary, ToyOutputs, MetricHistory, SplitExport, RunTimer, RngState, LearningRateMonitor)
    assert [type(c) for c in cli.trainer.callbacks if isinstance(c, ours)] == list(ours)
    assert sum(isinstance(c, RichProgressBar) for c in cli.trainer.callbacks) == 1  # the house's progress bar
    checkpoints = [c for c in cli.trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert [Path(c.dirpath) for c in checkpoints] == [cli.run_dir / "checkpoints"] * 2
    assert [c.monitor for c in checkpoints] == ["val/mae", None] and checkpoints[1].filename == "last"


@pytest.mark.slow
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


def test_help_names_the_program_and_lists_check() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "volume_seg", "--help"], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert result.stdout.startswith("usage: python -m volume_seg ")
    assert "{fit,validate,test,predict,check}" in result.stdout and "Check the dataset" in result.stdout
