"""Your own data with your own classes through the CLI: ``check``, ``fit`` + ``test``, ``predict`` and the report,
on generated data in both layouts (a folder per class; a labels CSV with groups); metrics against sklearn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score, recall_score

from common.studies.report import main as report_main
from lesion_cls.__main__ import main
from lesion_cls.synthetic import generate_own_classes
from tests.helpers import tiny_cls_args

THREE = ["benign", "malignant", "other"]
EIGHT = ["AK", "BCC", "BKL", "DF", "MEL", "NV", "SCC", "VASC"]  # ISIC 2019's eight, sorted: not ISIC 2018's order


def _fit(root: Path, runs: Path, *extra: str) -> Path:
    run_dir = main(["fit", *tiny_cls_args(root, runs, *extra)])
    assert run_dir is not None
    return run_dir


def _check(root: Path, runs: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", *tiny_cls_args(root, runs, *extra)])
    return int(exit_info.value.code), capsys.readouterr().out


def _assert_outputs_follow_the_classes(run_dir: Path, classes: list[str], unit: str) -> None:
    """predictions.csv, metrics.json (against sklearn), split.csv and the Grad-CAM folders name the data's classes."""
    predictions = pd.read_csv(run_dir / "predictions.csv", dtype={"image": str})
    assert list(predictions.columns) == ["image", *classes, "label"]
    target = predictions["label"].map(classes.index).to_numpy()
    decided = predictions[classes].to_numpy().argmax(axis=1)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["class_names"] == classes and metrics["ci_unit"] == unit
    assert metrics["accuracy"] == pytest.approx(accuracy_score(target, decided), abs=1e-6)
    present = sorted(set(target) | set(decided))  # torchmetrics' macro: classes in truth or predictions
    recalls = recall_score(target, decided, labels=present, average=None, zero_division=0)
    assert metrics["balanced_accuracy"] == pytest.approx(float(np.mean(recalls)), abs=1e-6)
    for k, name in enumerate(classes):
        assert metrics["per_class"][name]["support"] == int((target == k).sum())
    split = pd.read_csv(run_dir / "split.csv", dtype=str)
    assert split.groupby("lesion_id")["split"].nunique().max() == 1  # no group in two splits
    assert sorted(p.name for p in (run_dir / "gradcam").iterdir()) == sorted(classes)


@pytest.mark.e2e
def test_three_classes_in_folders_check_fit_test_predict_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = generate_own_classes(tmp_path / "data", THREE, "folders", n_images=90, size_hw=(32, 32), seed=2)
    code, out = _check(root, tmp_path / "runs", capsys)
    assert code == 0 and "class folders" in out and "benign" in out
    run_dir = _fit(root, tmp_path / "runs")
    _assert_outputs_follow_the_classes(run_dir, THREE, "image")
    # predict from the checkpoint alone: the classes come with the weights, the decision names one of them
    checkpoint = next((run_dir / "checkpoints").glob("best-*.ckpt"))
    images = root / "other"
    args = ["--config", str(run_dir / "config.yaml"), "--ckpt_path", str(checkpoint)]
    predicted = main(["predict", *args, "--data.predict_dir", str(images), "--run.root", str(tmp_path / "pred")])
    frame = pd.read_csv(predicted / "predictions.csv")
    assert list(frame.columns) == ["image", *THREE, "decision"]
    assert len(frame) == len(list(images.iterdir()))
    assert frame["decision"].tolist() == [THREE[k] for k in frame[THREE].to_numpy().argmax(axis=1)]
    # the report names the data's classes and what its intervals resample
    report_main(["--root", str(tmp_path / "runs"), "--out", str(tmp_path / "report")])
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Image classification (3 classes)" in report and "benign, malignant, other" in report
    assert "images: each image its own unit" in report
    # weights of three classes tested on data of two: one line, before any weight is loaded
    two = generate_own_classes(tmp_path / "two", THREE[:2], "folders", n_images=40, size_hw=(32, 32), seed=3)
    test_args = ["test", *tiny_cls_args(two, tmp_path / "runs2"), "--ckpt_path", str(checkpoint)]
    with pytest.raises(SystemExit) as exit_info:
        main(test_args)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == "error: the checkpoint's classes (benign, malignant, other) are not this data's (benign, malignant)"


@pytest.mark.e2e
def test_eight_classes_in_a_labels_csv_with_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = generate_own_classes(tmp_path / "data", EIGHT, "csv", n_images=200, size_hw=(32, 32), seed=4)
    code, out = _check(root, tmp_path / "runs", capsys, "--data.metadata_csv", "labels.csv")
    assert code == 0 and "labels csv" in out and "groups" in out
    run_dir = _fit(root, tmp_path / "runs", "--data.metadata_csv", "labels.csv")
    _assert_outputs_follow_the_classes(run_dir, EIGHT, "group")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_units"] == pd.read_csv(run_dir / "split.csv").query("split == 'test'")["lesion_id"].nunique()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize(("classes", "layout"), [(THREE, "csv"), (EIGHT, "folders")])
def test_the_other_layouts(tmp_path: Path, classes: list[str], layout: str) -> None:
    root = generate_own_classes(tmp_path / "data", classes, layout, n_images=200, size_hw=(32, 32), seed=5)
    run_dir = _fit(root, tmp_path / "runs", "--data.metadata_csv", "labels.csv")
    _assert_outputs_follow_the_classes(run_dir, classes, "group" if layout == "csv" else "image")


@pytest.mark.e2e
@pytest.mark.slow
def test_two_classes_give_sensitivity_and_specificity(tmp_path: Path) -> None:
    classes = ["benign", "malignant"]
    root = generate_own_classes(tmp_path / "data", classes, "folders", n_images=80, size_hw=(32, 32), seed=6)
    run_dir = _fit(root, tmp_path / "runs", "--data.classes", "[benign, malignant]")
    _assert_outputs_follow_the_classes(run_dir, classes, "image")
    predictions = pd.read_csv(run_dir / "predictions.csv")
    target = (predictions["label"] == "malignant").to_numpy().astype(int)
    decided = (predictions["malignant"] > predictions["benign"]).to_numpy().astype(int)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["binary"]["positive_class"] == "malignant"
    assert metrics["sensitivity"] == pytest.approx(recall_score(target, decided, pos_label=1), abs=1e-6)
    assert metrics["specificity"] == pytest.approx(recall_score(target, decided, pos_label=0), abs=1e-6)
    assert set(metrics["ci95"]) >= {"sensitivity", "specificity"}
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(target, decided), abs=1e-6)
