"""Two-process DistributedDataParallel on CPU through Lightning: one run dir, every test item once."""

from __future__ import annotations

import json
import os
import shutil
import socket
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


@pytest.mark.slow
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
    np.testing.assert_allclose(predicted[list(CLASS_NAMES)].to_numpy(), expected.to_numpy(), atol=2e-4)
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


@pytest.mark.slow
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


# --- two nodes on this machine -------------------------------------------------------------------------------------
TWO_NODES = ("--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _launch_nodes(commands_and_envs: list[tuple[list[str], dict[str, str]]], cwd: Path) -> list[str]:
    """Start the nodes' processes together (they meet at the rendezvous); return their outputs."""
    nodes = [
        subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for command, env in commands_and_envs
    ]
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-3000:]
    return outputs


def _test_on_two_nodes(package: str, fold_dir: Path, tmp_path: Path, launcher: str) -> tuple[Path, Path]:
    """``test`` of the fold's checkpoint in one process, and as 2 nodes x 1 process (torchrun with a static
    rendezvous on 127.0.0.1, or the variables ``srun`` sets); returns (single run dir, two-node run dir)."""
    checkpoint = json.loads((fold_dir / "run_info.json").read_text())["tested_checkpoint"]
    test = ["test", "--config", str(fold_dir / "config.yaml"), "--ckpt_path", checkpoint]
    test += ["--trainer.accelerator", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    single = tmp_path / "single"
    result = subprocess.run(
        [sys.executable, "-m", package, *test, *ONE_PROCESS, "--run.dir", str(single)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = tmp_path / "nodes"
    test += [*TWO_NODES, "--run.dir", "null", "--run.root", str(runs), "--run.experiment", "two_nodes"]
    port = _free_port()
    if launcher == "torchrun":
        rendezvous = ["--nnodes", "2", "--nproc-per-node", "1", "--master-addr", "127.0.0.1"]
        rendezvous += ["--master-port", str(port)]
        launch = [sys.executable, "-m", "torch.distributed.run", *rendezvous]
        commands = [([*launch, "--node-rank", str(r), "-m", package, *test], env) for r in (0, 1)]
    else:
        slurm = {"SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "medlit", "SLURM_NTASKS": "2", "SLURM_NNODES": "2"}
        slurm |= {"SLURM_NTASKS_PER_NODE": "1", "SLURM_NODELIST": "127.0.0.1", "MASTER_PORT": str(port)}
        commands = [
            (
                [sys.executable, "-m", package, *test],
                {**env, **slurm, "SLURM_PROCID": str(r), "SLURM_NODEID": str(r), "SLURM_LOCALID": "0"},
            )
            for r in (0, 1)
        ]
    outputs = _launch_nodes(commands, tmp_path)
    run_dirs = list((runs / "two_nodes").iterdir())
    assert len(run_dirs) == 1, run_dirs  # one run dir for both nodes
    assert f"run_dir: {run_dirs[0]}" in outputs[0]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]  # the second node joined as rank 1 of 2
    if launcher == "slurm":
        assert run_dirs[0].name == "slurm-4242-0"  # named after the job, as on a cluster (rank from SLURM_PROCID)
    return single, run_dirs[0]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.ddp
@pytest.mark.parametrize("launcher", ["torchrun", "slurm"])
def test_classification_on_two_nodes_equals_one_process(cls_cv: Path, tmp_path: Path, launcher: str) -> None:
    single, nodes = _test_on_two_nodes("lesion_cls", cls_cv / "runs" / "fold0", tmp_path, launcher)
    one = pd.read_csv(single / "predictions.csv").set_index("image")
    two = pd.read_csv(nodes / "predictions.csv")
    assert two["image"].is_unique and sorted(two["image"]) == sorted(one.index)  # each test image once
    two = two.set_index("image").loc[one.index]
    np.testing.assert_allclose(two[list(CLASS_NAMES)].to_numpy(), one[list(CLASS_NAMES)].to_numpy(), atol=1e-5)
    expected, got = json.loads((single / "metrics.json").read_text()), json.loads((nodes / "metrics.json").read_text())
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "loss", "n_images"):
        assert got[name] == pytest.approx(expected[name], abs=1e-6), name


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.ddp
def test_segmentation_on_two_nodes_equals_one_process(seg_cv: Path, tmp_path: Path) -> None:
    single, nodes = _test_on_two_nodes("volume_seg", seg_cv / "runs" / "fold0", tmp_path, "torchrun")
    one = pd.read_csv(single / "metrics_per_case.csv").set_index("case")
    two = pd.read_csv(nodes / "metrics_per_case.csv")
    assert two["case"].is_unique and sorted(two["case"]) == sorted(one.index)  # each test case once
    two = two.set_index("case").loc[one.index]
    for name in ("dice", "jaccard", "hd95", "asd"):
        np.testing.assert_allclose(two[name].to_numpy(), one[name].to_numpy(), atol=1e-5, err_msg=name)
    expected, got = json.loads((single / "metrics.json").read_text()), json.loads((nodes / "metrics.json").read_text())
    assert got["dice"]["mean"] == pytest.approx(expected["dice"]["mean"], abs=1e-5) and got["n_cases"] == one.shape[0]
