"""The classifier's test in W&B (lesion_cls.dashboard), read from an offline run's transaction log: the config, the
summary with interval bounds, the tables, the charts and figures; and runs whose W&B is off, fails, or that have no
test set: the same files and numbers, at most one warning line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from lesion_cls.callbacks import LOGGED_METRICS
from lesion_cls.dashboard import FIGURES
from tests.helpers import WandbLog, run_with_stderr, tiny_cls_args, wandb_warnings

pytestmark = pytest.mark.smoke


def _run(data: Path, runs: Path, *extra: str) -> tuple[Path, str]:
    """A tiny fit + test through the CLI; its run dir and what it printed on stderr."""
    return run_with_stderr(main, ["fit", *tiny_cls_args(data, runs, *extra)])


@pytest.fixture(scope="module")
def offline(tiny_ham: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    runs = tmp_path_factory.mktemp("offline")
    return _run(tiny_ham, runs, "--run.wandb", "offline", "--outputs.wandb_checkpoint", "true")


@pytest.fixture(scope="module")
def off(tiny_ham: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _run(tiny_ham, tmp_path_factory.mktemp("off"))  # tiny_cls_args: --run.wandb off


@pytest.fixture(scope="module")
def log(offline: tuple[Path, str]) -> WandbLog:
    return WandbLog(offline[0])


def test_config_has_every_setting_and_what_tells_runs_apart(offline: tuple[Path, str], log: WandbLog) -> None:
    run_dir = offline[0]
    config = log.config
    assert config["model.loss"] == "ce" and config["model.backbone"] == "resnet10t"
    assert config["data.augment"] is not None and config["data.image_size"] == 32
    assert config["trainer.max_epochs"] == 2 and config["seed_everything"] == 42
    assert config["run.experiment"] == "cls_ce" and config["run.wandb"] == "offline"
    assert config["outputs.wandb_media"] is True and config["subcommand"] == "fit"
    assert {f"packages.{name}" for name in ("torch", "lightning", "monai", "timm")} <= set(config)
    assert {"code.commit", "code.dirty", "device.name", "device.accelerator"} <= set(config)
    split = pd.read_csv(run_dir / "split.csv")
    for name, count in split["split"].value_counts().items():
        assert config[f"dataset.n_{name}"] == count
    assert config["dataset.root"] == config["data.root"] and len(config["dataset.split_hash"]) == 16


def test_summary_has_the_headline_metrics_and_their_intervals(offline: tuple[Path, str], log: WandbLog) -> None:
    metrics = json.loads((offline[0] / "metrics.json").read_text())
    for name in LOGGED_METRICS:
        assert log.summary[f"test/{name}"] == pytest.approx(metrics[name], rel=1e-6)
    assert set(metrics["ci95"]) == {"accuracy", "balanced_accuracy", "f1_macro", "auc_macro"}
    for name, (low, high) in metrics["ci95"].items():
        assert (log.summary[f"test/{name}_ci_low"], log.summary[f"test/{name}_ci_high"]) == (low, high)


def test_tables_hold_one_row_per_test_image_and_per_class(offline: tuple[Path, str], log: WandbLog) -> None:
    predictions = pd.read_csv(offline[0] / "predictions.csv")
    columns, rows = log.table("test/predictions")
    assert columns == ["image_id", "lesion_id", "truth", "prediction", *(f"p_{c}" for c in CLASS_NAMES)]
    table = pd.DataFrame(rows, columns=columns)
    assert table["image_id"].tolist() == predictions["image"].tolist()
    assert table["truth"].tolist() == predictions["label"].tolist()
    pd.testing.assert_frame_equal(
        table[[f"p_{c}" for c in CLASS_NAMES]].set_axis(list(CLASS_NAMES), axis=1), predictions[list(CLASS_NAMES)],
        atol=1e-6, check_dtype=False,
    )  # fmt: skip
    split = pd.read_csv(offline[0] / "split.csv").set_index("image_id")
    assert table["lesion_id"].tolist() == split.loc[table["image_id"], "lesion_id"].tolist()
    metrics = json.loads((offline[0] / "metrics.json").read_text())
    columns, rows = log.table("test/per_class")
    assert columns == ["class", "precision", "recall", "f1", "support", "recall_ci_low", "recall_ci_high"]
    assert [row[0] for row in rows] == list(CLASS_NAMES)
    for name, _, recall, _, support, *interval in rows:
        assert recall == metrics["per_class"][name]["recall"] and support == metrics["per_class"][name]["support"]
        assert interval == (metrics["per_class"][name].get("recall_ci95") or [None, None])


def test_charts_are_wandbs_own_and_count_what_the_files_show(offline: tuple[Path, str], log: WandbLog) -> None:
    charts = log.config["_wandb"]["visualize"]
    assert charts["test/roc"]["panel_config"]["panelDefId"] == "wandb/area-under-curve/v0"
    assert charts["test/confusion_matrix"]["panel_config"]["panelDefId"] == "wandb/confusion_matrix/v1"
    _, rows = log.table("test/confusion_matrix_table")
    assert len(rows) == len(CLASS_NAMES) ** 2
    assert sum(count for *_, count in rows) == len(pd.read_csv(offline[0] / "predictions.csv"))
    columns, rows = log.table("test/roc_table")
    assert columns == ["class", "fpr", "tpr"] and {"micro", "macro"} <= {row[0] for row in rows}


def test_every_figure_png_of_the_test_is_an_image(offline: tuple[Path, str], log: WandbLog) -> None:
    run_dir = offline[0]
    written = [p for p in run_dir.rglob("*.png") if "wandb" not in p.parts and p.name != "curves.png"]  # curves: fit
    assert len(written) == len(FIGURES) + len(list(run_dir.glob("gradcam/*/*.png"))) > len(FIGURES)
    figures = [caption for name in FIGURES for caption in log.images(f"test/figures/{name}")]
    classes = [name for name in CLASS_NAMES if list((run_dir / "gradcam" / name).glob("*.png"))]
    captions = [caption for name in classes for caption in log.images(f"test/gradcam/{name}")]
    assert len(figures) + len(captions) == len(written)
    assert not [key for step in log.history for key in step if key.startswith("test/gradcam/")
                and key.removeprefix("test/gradcam/") not in classes]  # fmt: skip
    for caption in captions:
        assert " true " in caption and ", predicted " in caption and "(p=" in caption, caption


def test_the_tested_checkpoint_is_an_artifact(log: WandbLog) -> None:
    assert [kind for name, kind in log.artifacts if name.startswith("model-")] == ["model"]


def _same_files(one: Path, other: Path) -> None:
    for name in ("predictions.csv", "classification_report.csv", "split.csv"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    histories = [pd.read_csv(run / "history.csv").drop(columns="epoch_time_s") for run in (one, other)]
    pd.testing.assert_frame_equal(*histories, check_exact=True)  # every digit of every epoch, not the timing
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, other)]
    for written in metrics:
        written.pop("checkpoint")  # the run dir's own path
    assert metrics[0] == metrics[1]


def test_wandb_changes_no_number_and_off_writes_nothing_of_it(offline: tuple[Path, str], off: tuple[Path, str]) -> None:
    _same_files(offline[0], off[0])
    assert not (off[0] / "wandb").exists() and not wandb_warnings(off[1]) and not wandb_warnings(offline[1])


@pytest.mark.slow
def test_a_failing_upload_is_one_warning_line_and_the_same_files(
    tiny_ham: Path, tmp_path: Path, off: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("media upload refused")

    monkeypatch.setattr(wandb, "Image", refuse)
    run_dir, stderr = _run(tiny_ham, tmp_path, "--run.wandb", "offline")
    assert wandb_warnings(stderr) == [
        "warning: W&B did not log the test figures and tables (ConnectionError: media upload refused)"
    ]
    _same_files(run_dir, off[0])
    log = WandbLog(run_dir)
    assert "test/balanced_accuracy_ci_low" in log.summary and "test/predictions" not in log.summary


@pytest.mark.slow
def test_a_run_without_test_set_logs_no_test_and_warns_nothing(tiny_ham: Path, tmp_path: Path) -> None:
    run_dir, stderr = _run(tiny_ham, tmp_path, "--run.wandb", "offline", "--data.test_fraction", "0")
    assert not (run_dir / "metrics.json").exists() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not wandb_warnings(stderr)
    log = WandbLog(run_dir)
    assert log.config["data.test_fraction"] == 0 and "dataset.n_test" not in log.config
    assert not [key for key in log.summary if key.startswith("test/")]
