"""``kill -9`` during training, then ``fit --ckpt_path last``: same run dir, same history, same final metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lesion_cls.__main__ import main
from tests.helpers import REPO, tiny_cls_args

METRICS = ("loss", "accuracy", "balanced_accuracy", "f1_macro", "auc_macro")


def _args(data: Path, runs: Path) -> list[str]:
    return tiny_cls_args(data, runs, "--trainer.max_epochs", "3", "--outputs.gradcam_per_class", "0")


def _kill_after_first_epoch(args: list[str], runs: Path) -> Path:
    """Start ``fit`` in a process and SIGKILL it once an epoch has ended (its checkpoint is written first)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lesion_cls", "fit", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if list(runs.glob("*/*/checkpoints/last.ckpt")):  # written at the end of the first epoch
                os.kill(process.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    (run_dir,) = [p.parent.parent for p in runs.glob("*/*/checkpoints/last.ckpt")]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file() and not (run_dir / "metrics.json").exists()
    return run_dir


@pytest.mark.slow
@pytest.mark.smoke
def test_killed_fit_resumes_in_place_with_the_uninterrupted_result(tiny_ham: Path, tmp_path: Path) -> None:
    reference = main(["fit", *_args(tiny_ham, tmp_path / "reference")])
    killed = _kill_after_first_epoch(_args(tiny_ham, tmp_path / "runs"), tmp_path / "runs")
    first_config = (killed / "config.yaml").read_text()
    resumed = main(["fit", *_args(tiny_ham, tmp_path / "runs"), "--ckpt_path", "last"])

    assert resumed == killed  # the same run dir, not a new one
    assert (killed / "config.yaml").read_text() == first_config and (killed / "config.resume-1.yaml").is_file()
    history, expected_history = pd.read_csv(resumed / "history.csv"), pd.read_csv(reference / "history.csv")
    assert history["epoch"].tolist() == [0, 1, 2]
    pd.testing.assert_frame_equal(
        history.drop(columns="epoch_time_s"),
        expected_history.drop(columns="epoch_time_s"),
        check_exact=False,
        rtol=1e-6,
    )
    metrics = json.loads((resumed / "metrics.json").read_text())
    expected = json.loads((reference / "metrics.json").read_text())
    assert {m: metrics[m] for m in METRICS} == pytest.approx({m: expected[m] for m in METRICS}, rel=1e-6)
    info = json.loads((resumed / "run_info.json").read_text())
    assert len(info["resumes"]) == 1 and info["resumes"][0]["ckpt_path"].endswith("last.ckpt")
    assert info["wandb_id"] and info["best_checkpoint"].startswith(str(resumed))
    # the earlier CSV log is kept beside the resumed one
    assert (resumed / "logs" / "metrics.before-resume-1.csv").is_file()
    # a finished run is never changed: last now finds no unfinished run
    with pytest.raises(SystemExit):
        main(["fit", *_args(tiny_ham, tmp_path / "runs"), "--ckpt_path", "last"])


@pytest.mark.slow
@pytest.mark.e2e
def test_same_seed_same_metrics(tiny_ham: Path, tiny_la: Path, tmp_path: Path) -> None:
    from tests.helpers import tiny_seg_args
    from volume_seg.__main__ import main as seg_main

    args = ("--trainer.max_epochs", "2", "--outputs.views_3d", "false", "--outputs.overlays", "false")
    first = seg_main(["fit", *tiny_seg_args(tiny_la, tmp_path / "a", *args)])
    second = seg_main(["fit", *tiny_seg_args(tiny_la, tmp_path / "b", *args)])
    a, b = (pd.read_csv(run / "metrics_per_case.csv") for run in (first, second))
    pd.testing.assert_frame_equal(a, b)
    cls_args = ("--trainer.max_epochs", "2", "--outputs.gradcam_per_class", "0")
    runs = [main(["fit", *tiny_cls_args(tiny_ham, tmp_path / name, *cls_args)]) for name in ("c", "d")]
    for pair in ((first, second), runs):
        histories = [pd.read_csv(run / "history.csv").drop(columns="epoch_time_s") for run in pair]
        pd.testing.assert_frame_equal(*histories)
    predictions = [pd.read_csv(run / "predictions.csv") for run in runs]
    pd.testing.assert_frame_equal(*predictions)


@pytest.mark.e2e
def test_checkpoints_load_with_weights_only(tiny_ham: Path, tmp_path: Path) -> None:
    import torch

    run_dir = main(["fit", *tiny_cls_args(tiny_ham, tmp_path, "--trainer.max_epochs", "1")])
    config = (run_dir / "config.yaml").read_text()
    assert "weights_only: true" in config  # what the CLI passes to Lightning when loading a checkpoint
    for checkpoint in (run_dir / "checkpoints").iterdir():
        state = torch.load(checkpoint, weights_only=True, map_location="cpu")  # no pickled code needed
        assert "medlit_rng_states" in state and state["hyper_parameters"]["backbone"] == "resnet10t"


@pytest.mark.e2e
def test_resume_refuses_changed_settings_and_never_reopens_a_finished_fit(
    tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [*tiny_cls_args(tiny_ham, tmp_path, "--trainer.max_epochs", "1"), "--run.test_after_fit", "false"]
    run_dir = main(["fit", *args])
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["fit_finished"] and not (run_dir / "metrics.json").exists()  # finished, though never tested
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *args, "--ckpt_path", "last"])
    assert exit_info.value.code == 2 and "no unfinished run" in capsys.readouterr().err
    # an unfinished run continues only with its own settings
    info.pop("fit_finished")
    (run_dir / "run_info.json").write_text(json.dumps(info))
    with pytest.raises(SystemExit):
        main(["fit", *args, "--model.lr", "0.5", "--ckpt_path", "last"])
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"error: {run_dir / 'config.yaml'}: a resumed run keeps its settings, but model.lr differ; resume with the "
        "same arguments (only run.*, trainer.max_epochs/max_steps/max_time may change)"
    ]
    assert not (run_dir / "config.resume-1.yaml").exists()  # nothing written
