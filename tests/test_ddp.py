"""Two-process DistributedDataParallel on CPU through Lightning: one run dir, every test item once."""

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

from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from lesion_cls.metrics import classification_metrics
from tests.helpers import REPO, assert_one_number, tiny_cls_args, tiny_seg_args

DDP = ("--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu")
ONE_PROCESS = ("--trainer.strategy", "auto", "--trainer.devices", "1")


def _fit_ddp(package: str, args: list[str], runs: Path) -> Path:
    """Run ``fit`` in 2 processes; return the one run dir they shared."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", package, "fit", *args],
        cwd=runs.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = [d for experiment in runs.iterdir() for d in experiment.iterdir()]
    assert len(run_dirs) == 1, run_dirs
    assert result.stdout.strip().splitlines()[-1] == f"run_dir: {run_dirs[0]}"
    return run_dirs[0]


@pytest.mark.e2e
@pytest.mark.ddp
def test_classification_ddp(tiny_ham: Path, tmp_path: Path) -> None:
    # the decision tau searched on validation logits gathered from both processes
    search = ("--model.decision_tau", "null", "--model.selection_metric", "acc_bal_mean")
    args = tiny_cls_args(tiny_ham, tmp_path / "runs", *DDP, *search, "--outputs.gradcam_per_class", "0")
    run_dir = _fit_ddp("lesion_cls", args, tmp_path / "runs")
    assert json.loads((run_dir / "timing.json").read_text())["devices"] == 2
    predictions = pd.read_csv(run_dir / "predictions.csv")
    split = pd.read_csv(run_dir / "split.csv")
    assert sorted(predictions["image"]) == sorted(split.loc[split["split"] == "test", "image_id"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    recomputed = classification_metrics(
        predictions[list(CLASS_NAMES)].to_numpy(), predictions["label"].map(CLASS_NAMES.index).to_numpy()
    )
    assert metrics["accuracy"] == pytest.approx(recomputed["accuracy"])
    assert metrics["n_images"] == len(predictions)
    # the test used the tau chosen on validation at the tested checkpoint's epoch
    history = pd.read_csv(run_dir / "history.csv")
    best = history.loc[history["val/acc_bal_mean"].idxmax()]
    assert best["val/acc_bal_mean"] == pytest.approx((best["val/acc"] + best["val/bal_acc"]) / 2, abs=1e-6)
    assert metrics["decision_tau"] == best["val/decision_tau"]
    assert json.loads((run_dir / "run_info.json").read_text())["monitor"] == "val/acc_bal_mean"
    # predict from that checkpoint (one process) restores the same tau: the test's probabilities again
    folder = tmp_path / "to_predict"
    folder.mkdir()
    for image_id in predictions["image"][:8]:
        shutil.copy(tiny_ham / "images" / f"{image_id}.jpg", folder)
    best_checkpoint = next((run_dir / "checkpoints").glob("best-epoch*.ckpt"))
    predict_args = ["--ckpt_path", str(best_checkpoint), "--data.predict_dir", str(folder), "--run.root", str(tmp_path)]
    predicted_dir = main(["predict", "--config", str(run_dir / "config.yaml"), *predict_args, *ONE_PROCESS])
    predicted = pd.read_csv(predicted_dir / "predictions.csv").set_index("image")
    expected = predictions.set_index("image").loc[predicted.index, list(CLASS_NAMES)]
    np.testing.assert_allclose(predicted.to_numpy(), expected.to_numpy(), atol=2e-4)
    assert_one_number(run_dir, ("loss", "accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "ece"))


@pytest.mark.e2e
@pytest.mark.ddp
def test_segmentation_ddp(tiny_la: Path, tmp_path: Path) -> None:
    args = tiny_seg_args(tiny_la, tmp_path / "runs", *DDP, "--trainer.max_epochs", "1", "--outputs.views_3d", "false")
    run_dir = _fit_ddp("volume_seg", args, tmp_path / "runs")
    table = pd.read_csv(run_dir / "metrics_per_case.csv")
    test_cases = (tiny_la / "test.list").read_text().split()
    assert sorted(table["case"]) == sorted(test_cases)  # 3 cases on 2 processes: the padded repeat dropped
    assert sorted(p.name for p in (run_dir / "predictions").iterdir()) == sorted(f"{c}.nii.gz" for c in test_cases)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_cases"] == 3 and metrics["dice"]["mean"] == pytest.approx(table["dice"].mean(), abs=1e-6)
    assert_one_number(run_dir, ("dice", "jaccard", "hd95", "asd", "loss"))


@pytest.mark.e2e
@pytest.mark.ddp
def test_bad_volume_in_ddp_workers_is_one_line(tiny_la: Path, tmp_path: Path) -> None:
    """A mistake found after the worker processes started (while caching volumes): one line, exit 2, no process
    left behind."""
    import shutil

    import h5py
    import numpy as np

    root = Path(shutil.copytree(tiny_la, tmp_path / "la"))
    path = root / "LA002" / "mri_norm2.h5"
    with h5py.File(path, "r+") as h5:
        image = h5["image"][()]
        image[1, 2, 3] = np.nan
        del h5["image"]
        h5.create_dataset("image", data=image)
    args = tiny_seg_args(root, tmp_path / "runs", *DDP, "--trainer.max_epochs", "1")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "volume_seg", "fit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = f"{path}: image holds 1 NaN/Inf voxel(s); fix or mask them before training"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {message}"]  # one error line, from rank 0
    worker = [line for line in result.stderr.splitlines() if line.startswith("[rank 1]")]
    assert worker in ([], [f"[rank 1] {message}"])  # the worker says what it met, marked as such
    leftover = subprocess.run(["pgrep", "-f", str(root)], capture_output=True, text=True).stdout.split()
    assert not leftover, leftover
