"""Bad input that is not the dataset, through the real CLI: settings typed on the command line, output folders,
checkpoints and config files. Each gives one ``error:`` line naming the key or file, exit status 2, no traceback,
and leaves what was there before as it was."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lesion_cls.__main__ import main
from tests.helpers import REPO, tiny_cls_args


def _one_error_line(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0].removeprefix("error: ")


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _checkpoint(path: Path, hyper_parameters: dict) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(3)}, "hyper_parameters": hyper_parameters}, path)
    return path


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1h", "trainer.max_time '1h': not DD:HH:MM:SS (days:hours:minutes:seconds; e.g. 00:01:30:00 for 90 minutes"),
        ("00:10:00", "trainer.max_time '00:10:00': not DD:HH:MM:SS"),
        ("00:00:00:00", "trainer.max_time '00:00:00:00': the training budget must be longer than zero"),
    ],
)
def test_a_malformed_time_budget_is_one_line(
    value: str, expected: str, tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    message = _one_error_line(["fit", *tiny_cls_args(tiny_ham, runs, "--trainer.max_time", value)], capsys)
    assert message.startswith(expected)
    assert not runs.exists()  # refused before a run dir was made


@pytest.mark.parametrize(
    ("flag", "value", "named"),
    [("--trainer.max_epochs", "-5", "max_epochs"), ("--trainer.accelerator", "gpu", "GPU")],
)
def test_a_trainer_setting_lightning_refuses_is_one_line(
    flag: str, value: str, named: str, tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    if named == "GPU" and torch.cuda.is_available():
        pytest.skip("a GPU is here: the setting is valid")
    runs = tmp_path / "runs"
    message = _one_error_line(["fit", *tiny_cls_args(tiny_ham, runs, flag, value)], capsys)
    assert message.startswith("trainer settings: ") and named.lower() in message.lower()


@pytest.mark.parametrize("key", ["run.root", "run.dir"])
def test_an_output_folder_that_is_a_file_is_one_line(
    key: str, tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("my notes\n")
    where = taken if key == "run.root" else taken / "run1"
    message = _one_error_line(["fit", *tiny_cls_args(tiny_ham, tmp_path / "runs", f"--{key}", str(where))], capsys)
    assert message == f"{key} {where}: {taken} is a file, not a folder; choose another --{key}"
    assert taken.read_text() == "my notes\n"


def test_a_read_only_run_root_is_one_line(tiny_ham: Path, tmp_path: Path) -> None:
    """On a read-only filesystem (a bind mount in a user namespace; skipped where there is none)."""
    mount = tmp_path / "mount"
    mount.mkdir()
    if not shutil.which("unshare"):
        pytest.skip("no unshare")
    args = " ".join(["fit", *tiny_cls_args(tiny_ham, mount / "runs")])
    script = f"mount --bind -o ro {mount} {mount} && mount -o remount,ro,bind {mount} && "
    script += f"{sys.executable} -m lesion_cls {args}"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True)
    if "mount" in result.stderr and "error:" not in result.stderr:
        pytest.skip(f"cannot mount read-only here: {result.stderr.strip()[:200]}")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: run.root {mount / 'runs'}: {mount} is not writable (permissions or a read-only filesystem); "
        "choose another --run.root"
    ]


def test_a_damaged_missing_or_foreign_checkpoint_is_one_line(
    tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "keep.txt").write_text("earlier results\n")
    before = _snapshot(runs)
    good = _checkpoint(tmp_path / "whole.ckpt", {"backbone": "resnet18"})
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # a copy stopped half-way
    test = ["test", *tiny_cls_args(tiny_ham, runs)]

    message = _one_error_line([*test, "--ckpt_path", str(cut)], capsys)
    assert message.startswith(f"--ckpt_path {cut}: not a readable checkpoint (")
    assert message.endswith("was the file cut short while copying or saving?")
    message = _one_error_line([*test, "--ckpt_path", str(tmp_path / "nope.ckpt")], capsys)
    assert message == f"--ckpt_path {tmp_path / 'nope.ckpt'}: no such checkpoint file"
    message = _one_error_line([*test, "--ckpt_path", str(tmp_path)], capsys)
    assert message.startswith(f"--ckpt_path {tmp_path}: no such checkpoint file; a run dir is given as --ensemble RUN")
    plain = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(3)}, plain)
    message = _one_error_line([*test, "--ckpt_path", str(plain)], capsys)
    assert message == f"--ckpt_path {plain}: not a Lightning checkpoint (no state_dict); give a .ckpt written by fit"
    foreign = _checkpoint(tmp_path / "unet.ckpt", {"roi_size": [16, 16, 16], "channels": [4, 8]})
    message = _one_error_line([*test, "--ckpt_path", str(foreign)], capsys)
    assert message.startswith(f"--ckpt_path {foreign}: trained with another task's model (settings channels, roi_size")
    assert _snapshot(runs) == before  # no run dir made, nothing earlier touched


def test_a_missing_or_broken_config_file_is_one_line(
    tiny_ham: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  backbone: [resnet18\n")
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    runs = tmp_path / "runs"
    fit = ["fit", *tiny_cls_args(tiny_ham, runs)]
    missing = tmp_path / "missing.yaml"
    assert _one_error_line([*fit, "--config", str(missing)], capsys) == f"--config {missing}: file not found"
    message = _one_error_line([*fit, f"--config={broken}"], capsys)
    assert message.startswith(f"--config {broken}: not valid YAML (line 3, column 1: ")
    message = _one_error_line([*fit, "--config", str(listed)], capsys)
    assert message == f"--config {listed}: holds a list, not a mapping of keys"
    assert not runs.exists()
