"""End to end through the CLI: fit + test outputs, predict from a checkpoint, errors, the last line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import accuracy_score, classification_report, precision_recall_fscore_support

from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from tests.helpers import REPO, assert_one_number, assert_png, tiny_cls_args


@pytest.fixture(scope="module")
def fitted_run(tiny_ham: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    run_dir = main(["fit", *tiny_cls_args(tiny_ham, runs)])
    assert run_dir is not None and run_dir.parent == runs / "cls_ce"
    return run_dir


@pytest.mark.smoke
def test_fit_writes_the_run_dir(fitted_run: Path) -> None:
    for name in (
        "config.yaml",
        "history.csv",
        "curves.png",
        "split.csv",
        "predictions.csv",
        "metrics.json",
        "classification_report.csv",
        "classification_report.md",
        "roc.png",
        "confusion_matrix.png",
        "timing.json",
        "logs/metrics.csv",
        "checkpoints/last.ckpt",
    ):
        assert (fitted_run / name).is_file(), name
    for figure in ("curves.png", "roc.png", "confusion_matrix.png"):
        assert_png(fitted_run / figure)  # a drawn figure, not an empty canvas
    assert list((fitted_run / "checkpoints").glob("best-epoch*.ckpt"))
    history = pd.read_csv(fitted_run / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    assert {"train/loss", "val/loss", "train/acc", "val/acc", "val/bal_acc"} <= set(history.columns)
    config = yaml.safe_load((fitted_run / "config.yaml").read_text())
    assert config["model"]["backbone"] == "resnet10t" and config["trainer"]["max_epochs"] == 2


@pytest.mark.smoke
def test_test_outputs_agree_with_sklearn(fitted_run: Path) -> None:
    predictions = pd.read_csv(fitted_run / "predictions.csv")
    assert list(predictions.columns) == ["image", *CLASS_NAMES, "label"]
    probs = predictions[list(CLASS_NAMES)].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    target = predictions["label"].map(CLASS_NAMES.index).to_numpy()
    pred = probs.argmax(axis=1)
    split = pd.read_csv(fitted_run / "split.csv")
    assert sorted(predictions["image"]) == sorted(split.loc[split["split"] == "test", "image_id"])
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()

    metrics = json.loads((fitted_run / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(accuracy_score(target, pred), abs=1e-5)
    assert_one_number(fitted_run, ("loss", "accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "ece"))
    macro = precision_recall_fscore_support(target, pred, average="macro", zero_division=0)
    assert metrics["balanced_accuracy"] == pytest.approx(macro[1], abs=1e-5)
    assert metrics["f1_macro"] == pytest.approx(macro[2], abs=1e-5)
    assert metrics["loss"] > 0 and "definitions" in metrics and metrics["checkpoint"].endswith(".ckpt")
    report = pd.read_csv(fitted_run / "classification_report.csv", index_col=0)
    expected = classification_report(
        target, pred, labels=range(7), target_names=CLASS_NAMES, output_dict=True, zero_division=0
    )
    for name in (*CLASS_NAMES, "weighted avg"):
        assert report.loc[name, "f1-score"] == pytest.approx(expected[name]["f1-score"], abs=1e-4)
        assert report.loc[name, "support"] == expected[name]["support"]
    assert "| macro avg |" in (fitted_run / "classification_report.md").read_text()


@pytest.mark.smoke
def test_gradcam_for_every_class(fitted_run: Path) -> None:
    predictions = pd.read_csv(fitted_run / "predictions.csv")
    for name in CLASS_NAMES:
        folder = fitted_run / "gradcam" / name
        assert folder.is_dir()
        if (predictions["label"] == name).any():
            assert list(folder.glob("*.png")), f"no Grad-CAM example for {name}"


@pytest.mark.smoke
def test_predict_from_checkpoint_reproduces_test_probabilities(
    fitted_run: Path, tiny_ham: Path, tmp_path: Path
) -> None:
    test_predictions = pd.read_csv(fitted_run / "predictions.csv").set_index("image")
    folder = tmp_path / "to_predict"
    folder.mkdir()
    for image_id in test_predictions.index[:12]:
        shutil.copy(tiny_ham / "images" / f"{image_id}.jpg", folder)
    best = next((fitted_run / "checkpoints").glob("best-epoch*.ckpt"))
    run_dir = main(
        [
            "predict",
            "--config",
            str(fitted_run / "config.yaml"),
            "--ckpt_path",
            str(best),
            "--data.predict_dir",
            str(folder),
            "--run.root",
            str(tmp_path / "runs"),
            "--outputs.gradcam_on_predict",
            "true",
            # predict reads only its own folder: no training data, even with class weights configured
            "--data.root",
            str(tmp_path / "no_training_data_here"),
            "--data.class_weights",
            "balanced",
        ]
    )
    predicted = pd.read_csv(run_dir / "predictions.csv").set_index("image")
    assert list(predicted.columns) == [*CLASS_NAMES, "decision"]
    probabilities = predicted[list(CLASS_NAMES)]
    np.testing.assert_allclose(
        probabilities.to_numpy(), test_predictions.loc[predicted.index, list(CLASS_NAMES)], atol=2e-4
    )
    # the probabilities are written after the decision rule: the decision is their most probable class
    assert predicted["decision"].tolist() == probabilities.idxmax(axis=1).tolist()
    assert len(list((run_dir / "gradcam").glob("*/*.png"))) == 12


def _run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "lesion_cls", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
@pytest.mark.smoke
def test_last_line_is_run_dir_with_wandb_offline(tiny_ham: Path, tmp_path: Path) -> None:
    args = tiny_cls_args(
        tiny_ham,
        tmp_path / "runs",
        "--run.wandb",
        "offline",
        "--trainer.max_epochs",
        "1",
        "--outputs.gradcam_per_class",
        "0",
    )
    result = _run_module("fit", *args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run_dir: ")
    run_dir = Path(last.removeprefix("run_dir: "))
    assert (tmp_path / run_dir if not run_dir.is_absolute() else run_dir).is_dir()
    assert list((tmp_path / run_dir).glob("wandb/offline-run-*"))


@pytest.mark.slow
@pytest.mark.smoke
def test_bad_input_is_one_line_without_traceback(tiny_ham: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    meta = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    meta.loc[5, "dx"] = "melanoma"
    meta.to_csv(bad / "HAM10000_metadata.csv", index=False)
    (bad / "images").symlink_to(tiny_ham / "images")
    earlier = tmp_path / "runs" / "cls_ce" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")
    result = _run_module("fit", *tiny_cls_args(bad, tmp_path / "runs"), cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: {bad / 'HAM10000_metadata.csv'} row 7: unknown dx 'melanoma' "
        "(expected one of mel, nv, bcc, akiec, bkl, df, vasc)"
    ]
    assert (earlier / "metrics.json").read_text() == "{}"
    result = _run_module("fit", *tiny_cls_args(tiny_ham, tmp_path / "runs", "--model.loss", "dice"), cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr and "model.loss" in result.stderr


def test_print_config_creates_no_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "fit",
                "--config",
                str(REPO / "experiments" / "cls_ce_focal.yaml"),
                "--run.root",
                str(tmp_path),
                "--print_config",
            ]
        )
    assert exit_info.value.code == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["loss"] == "ce_focal" and printed["trainer"]["max_epochs"] == 10
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.e2e
def test_recipe_options_train_and_reach_the_outputs(tiny_ham: Path, tmp_path: Path) -> None:
    """Sampling power, batch augmentation, TrivialAugment, mixup/cutmix, logit adjustment and flip TTA together in
    one fit: the model gets the sampled class priors of the training split, and the test scores equal sklearn's
    on predictions.csv."""
    import torch

    from lesion_cls.class_balance import sampled_class_priors

    extra = [
        *("--data.class_balance", "0.5", "--data.batch_augment", "true", "--data.auto_augment", "trivial"),
        *("--model.mixup_alpha", "0.2", "--model.cutmix_alpha", "1.0", "--model.logit_adjustment", "1.0"),
        *("--model.tta_flips", "true", "--model.label_smoothing", "0.1"),
    ]
    run = main(["fit", *tiny_cls_args(tiny_ham, tmp_path, *extra)])
    split = pd.read_csv(run / "split.csv")
    labels = split.loc[split["split"] == "train", "label"].to_numpy()
    hparams = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    np.testing.assert_allclose(hparams["class_priors"], sampled_class_priors(labels, 0.5))
    predictions = pd.read_csv(run / "predictions.csv")
    metrics = json.loads((run / "metrics.json").read_text())
    predicted = np.asarray(CLASS_NAMES)[predictions[list(CLASS_NAMES)].to_numpy().argmax(axis=1)]
    assert metrics["accuracy"] == pytest.approx(accuracy_score(predictions["label"], predicted))


def test_ten_minute_recipe_is_the_recipe_with_its_budget_and_input_size(capsys: pytest.CaptureFixture[str]) -> None:
    """``ham10000_10min.yaml`` given after the recipe changes the budget, the input size and the experiment name;
    every other setting is the recipe's."""
    import yaml

    recipes = REPO / "experiments" / "recipes"
    overlay = yaml.safe_load((recipes / "ham10000_10min.yaml").read_text())
    args = ["fit", "--config", str(recipes / "ham10000.yaml"), "--data.root", "unused", "--print_config"]
    configs = []
    for extra in ([], ["--config", str(recipes / "ham10000_10min.yaml")]):
        with pytest.raises(SystemExit):
            main([*args[:3], *extra, *args[3:]])
        configs.append(yaml.safe_load(capsys.readouterr().out))
    recipe, ten_minutes = configs
    assert ten_minutes["data"]["image_size"] == [75, 100] != recipe["data"]["image_size"]
    assert ten_minutes["trainer"]["max_time"] == "00:00:10:00" != recipe["trainer"]["max_time"]
    changed = {(section, key) for section, values in overlay.items() for key in values}
    for section in ("data", "model", "trainer", "run"):
        for key, value in recipe[section].items():
            if (section, key) not in changed:
                assert ten_minutes[section][key] == value, f"{section}.{key}"
