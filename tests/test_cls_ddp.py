"""Two-process DistributedDataParallel on CPU through Lightning: one run dir, every test image once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from lesion_cls import CLASS_NAMES
from lesion_cls.metrics import classification_metrics
from tests.conftest import REPO, tiny_cls_args


@pytest.mark.ddp
def test_ddp_two_processes_share_one_run_dir(tiny_ham: Path, tmp_path: Path) -> None:
    args = tiny_cls_args(
        tiny_ham,
        tmp_path / "runs",
        "--trainer.strategy",
        "ddp",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--outputs.gradcam_per_class",
        "0",
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "lesion_cls", "fit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run_dirs = list((tmp_path / "runs" / "cls_ce").iterdir())
    assert len(run_dirs) == 1, run_dirs
    run_dir = run_dirs[0]
    assert result.stdout.strip().splitlines()[-1] == f"run_dir: {run_dir}"
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
