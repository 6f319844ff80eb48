"""The Makefile's training, recipe, cross-validation and sweep targets take DATA= and ARGS=, keep their commands
without them, and the console scripts of pyproject.toml point at entry points that run.

The targets run for real with a stand-in interpreter (``PY=``) that records its arguments and does nothing: the
shell code around each command (the data lookup, the download, the quoting) runs as it would for a user.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import REPO, one_error_line

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")

ARGS = "--trainer.max_time 00:00:01:00 --run.experiment given"
_RECORDER = "import json, os, sys\nopen(os.environ['PY_CALLS'], 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
# a complete copy of each dataset in SHARED: the file or folder the Makefile looks for
_SHARED_MARKS = ("la_uamt_h5/labeled16.list", "ham10000_200x150/HAM10000_metadata.csv", "hippocampus_msd/labels/")

# each target's command (after the interpreter) without DATA or ARGS; {shared}: the SHARED folder
UNCHANGED = {
    "train-cls-ce": "-m lesion_cls fit --config experiments/cls_ce.yaml --data.root data/HAM10000",
    "train-cls-focal": "-m lesion_cls fit --config experiments/cls_ce_focal.yaml --data.root data/HAM10000",
    "train-seg-bce": "-m volume_seg fit --config experiments/seg_bce.yaml --data.root data/LA",
    "train-seg-dice": "-m volume_seg fit --config experiments/seg_dice.yaml --data.root data/LA",
    "train-seg-dice-aug": "-m volume_seg fit --config experiments/seg_dice_aug.yaml --data.root data/LA",
    "real-la": "-m volume_seg fit --config experiments/recipes/la16.yaml --data.root {shared}/la_uamt_h5",
    "real-hippocampus": "-m volume_seg fit --config experiments/recipes/hippocampus.yaml "
    "--data.root {shared}/hippocampus_msd",
    "real-ham": "-m lesion_cls fit --config experiments/recipes/ham10000.yaml --data.root {shared}/ham10000_200x150",
    "cv-la": "-m common.studies.cv volume_seg --config experiments/recipes/la16.yaml --data.root {shared}/la_uamt_h5 "
    "--trainer.max_time 00:00:16:00 --trainer.check_val_every_n_epoch 4 --folds 5 --cv-dir runs/cv/la16",
    "cv-ham": "-m common.studies.cv lesion_cls --config experiments/recipes/ham10000.yaml "
    "--config experiments/recipes/ham10000_10min.yaml --data.root {shared}/ham10000_200x150 "
    "--trainer.max_time 00:00:09:30 --folds 5 --cv-dir runs/cv/ham10000",
    "cv-hippocampus": "-m common.studies.cv volume_seg --config experiments/recipes/hippocampus.yaml "
    "--data.root {shared}/hippocampus_msd --trainer.max_time 00:00:02:42 --folds 5 --cv-dir runs/cv/hippocampus",
    "sweep-cls": "-m common.studies.sweep experiments/sweeps/cls_loss.yaml --config experiments/demo/cls.yaml "
    "--sweep-dir runs/demo/sweeps/cls_loss",
    "sweep-seg": "-m common.studies.sweep experiments/sweeps/seg_loss_aug.yaml --config experiments/demo/seg.yaml "
    "--sweep-dir runs/demo/sweeps/seg_loss_aug",
    "sweep-ham": "-m common.studies.sweep experiments/sweeps/ham10000_loss.yaml "
    "--data-root {shared}/ham10000_200x150 --sweep-dir runs/sweeps/ham10000_loss",
    "sweep-la": "-m common.studies.sweep experiments/sweeps/la16_loss_aug.yaml --data-root {shared}/la_uamt_h5 "
    "--sweep-dir runs/sweeps/la16_loss_aug",
}
TARGETS = tuple(UNCHANGED)
SWEEPS = tuple(t for t in TARGETS if t.startswith("sweep-"))
DEMO = [
    "-m lesion_cls.synthetic --out data/generated/ham10000 --n-images 1200",
    "-m volume_seg.synthetic --layout la --out data/generated/la_h5 --n-train 12 --n-test 4",
    *(
        f"-m {task} fit --config experiments/{config}.yaml --config experiments/demo/{overlay}.yaml"
        for task, overlay, configs in (
            ("lesion_cls", "cls", ("cls_ce", "cls_ce_focal")),
            ("volume_seg", "seg", ("seg_bce", "seg_dice", "seg_dice_aug")),
        )
        for config in configs
    ),
    "-m common.studies.report --root runs/demo --out runs/demo/report",
]


def _make(tmp_path: Path, target: str, **variables: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run ``make <target>`` with the recording interpreter, a complete SHARED copy in ``tmp_path`` and the
    installation step taken as done; returns the result and the interpreter's calls."""
    recorder, calls, venv = tmp_path / "python", tmp_path / "calls.jsonl", tmp_path / "venv"
    recorder.write_text(f"#!{sys.executable}\n{_RECORDER}")
    recorder.chmod(0o755)
    for mark in _SHARED_MARKS:
        folder = tmp_path / "shared" / (mark if mark.endswith("/") else Path(mark).parent)
        folder.mkdir(parents=True, exist_ok=True)
        if not mark.endswith("/"):
            (tmp_path / "shared" / mark).touch()
    venv.mkdir(exist_ok=True)
    (venv / ".medlit-installed").touch()  # newer than pyproject.toml: the installation counts as done
    calls.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATA", "ARGS", "MAX_RUNS", "WORKERS", "SHARED")}
    env = {k: v for k, v in env.items() if not k.startswith(("MAKE", "MFLAGS"))} | {"PY_CALLS": str(calls)}
    settings = {"PY": str(recorder), "VENV": str(venv), "SHARED": str(tmp_path / "shared"), **variables}
    command = ["make", "--no-print-directory", target]
    command += [f"{name}={value}" for name, value in settings.items()]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    recorded = [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []
    return result, recorded


@pytest.mark.parametrize("target", TARGETS)
def test_without_data_or_args_the_command_is_unchanged(tmp_path: Path, target: str) -> None:
    result, calls = _make(tmp_path, target)
    assert result.returncode == 0, result.stderr
    expected = shlex.split(UNCHANGED[target].format(shared=tmp_path / "shared"))
    assert calls[-1] == expected
    if "{shared}" in UNCHANGED[target]:
        assert len(calls) == 1  # the copy in SHARED is complete: nothing is downloaded


@pytest.mark.parametrize("target", TARGETS)
def test_data_is_used_as_it_is_and_args_end_the_command(tmp_path: Path, target: str) -> None:
    data = tmp_path / "my data"  # a space: the folder must reach the command as one argument
    data.mkdir()
    result, calls = _make(tmp_path, target, DATA=str(data), ARGS=ARGS)
    assert result.returncode == 0, result.stderr
    assert calls == [_expected_with_data(target, data, tmp_path / "shared")]  # no download, no generated data


def _expected_with_data(target: str, data: Path, shared: Path) -> list[str]:
    """The target's command with DATA (in place of the data it finds) and ARGS at the end (sweeps: after --)."""
    tokens = shlex.split(UNCHANGED[target].format(shared=shared))
    if target in ("sweep-cls", "sweep-seg"):  # DATA replaces the generated data and its demo overlay
        return [*tokens[:3], "--data-root", str(data), "--", *ARGS.split()]
    option = "--data-root" if target in SWEEPS else "--data.root"
    tokens[tokens.index(option) + 1] = str(data)
    return [*tokens, *(["--"] if target in SWEEPS else []), *ARGS.split()]


def test_a_missing_data_folder_is_one_error_line(tmp_path: Path) -> None:
    for target in ("real-la", "cv-ham", "train-cls-ce", "sweep-cls", "sweep-la"):
        result, calls = _make(tmp_path, target, DATA=str(tmp_path / "absent"))
        assert one_error_line(result) == f"error: DATA={tmp_path / 'absent'}: no such folder", target
        assert calls == []


def test_sweep_variables_reach_every_sweep(tmp_path: Path) -> None:
    for target in SWEEPS:
        _, calls = _make(tmp_path, target, MAX_RUNS="2", WORKERS="3")
        command = calls[-1]
        assert command[command.index("--max-runs") + 1] == "2"
        assert command[command.index("--workers") + 1] == "3"


def test_the_demo_commands_are_unchanged(tmp_path: Path) -> None:
    result, calls = _make(tmp_path, "demo")
    assert result.returncode == 0, result.stderr
    assert calls == [shlex.split(c) for c in DEMO]


# --- console scripts --------------------------------------------------------------------------------------------
def _scripts() -> dict[str, str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]


def _entry_modules() -> set[str]:
    """Every module of the packages that runs as ``python -m`` and has a ``main``."""
    modules = set()
    for package in ("common", "lesion_cls", "volume_seg"):
        for path in (REPO / package).rglob("*.py"):
            text = path.read_text()
            if "def main(" in text and 'if __name__ == "__main__":' in text:
                modules.add(".".join(path.relative_to(REPO).with_suffix("").parts))
    return modules


def test_every_entry_point_has_a_console_script() -> None:
    pointed = {target.split(":")[0] for target in _scripts().values()}
    assert _entry_modules() - pointed == set()
    assert len(set(_scripts().values())) == len(_scripts())  # no two names for one entry point


@pytest.mark.parametrize("name", sorted(_scripts()))
def test_each_console_script_is_a_callable_that_needs_no_arguments(name: str) -> None:
    module, attribute = _scripts()[name].split(":")
    entry = getattr(importlib.import_module(module), attribute)
    assert callable(entry)
    inspect.signature(entry).bind()  # the script calls it with no arguments (it reads sys.argv)


@pytest.mark.parametrize("name", ["medlit-wandb-sweep", "lesion-cls-download", "volume-seg-synthetic"])
def test_installed_console_script_prints_its_help(name: str) -> None:
    script = shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    if script is None:
        pytest.skip(f"{name} is not installed (pip install -e . makes it)")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")


def test_the_training_page_lists_every_console_script() -> None:
    listed = set(re.findall(r"`([a-z][\w-]*)`", (REPO / "docs" / "training.md").read_text()))
    assert set(_scripts()) - listed == set()
