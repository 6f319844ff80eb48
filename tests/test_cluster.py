"""The SLURM templates in examples/slurm: valid bash, and the commands they give srun are ones medlit accepts (the
array template run for real, as two array tasks on this machine with ``srun`` standing in)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml

from common.studies.workers import without_options
from tests.helpers import REPO
from tests.test_workers import _events, _sweep_file

TEMPLATES = REPO / "examples" / "slurm"
RECORD_SRUN = '#!/bin/sh\nprintf "%s\\n" "$@" > "$SRUN_RECORD"\n'
PASS_SRUN = '#!/bin/sh\nexec "$@"\n'


def _srun(tmp_path: Path, body: str) -> dict[str, str]:
    """An environment whose ``srun`` runs ``body`` (recording its arguments, or running them here)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "srun").write_text(body)
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    return env | {"SRUN_RECORD": str(tmp_path / "srun.txt"), "PYTHON": sys.executable, "SLURM_SUBMIT_DIR": str(REPO)}


def _recorded(template: str, tmp_path: Path, **env: str) -> list[str]:
    """The arguments the template gives ``srun``."""
    result = subprocess.run(
        ["bash", str(TEMPLATES / template)], env=_srun(tmp_path, RECORD_SRUN) | env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return (tmp_path / "srun.txt").read_text().splitlines()


def _print_config(task: str, fit_args: list[str]) -> dict:
    """``python -m <task> fit <fit_args> --print_config``: every key and config file checked, nothing trained."""
    result = subprocess.run(
        [sys.executable, "-m", task, "fit", *fit_args, "--print_config"],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return yaml.safe_load(result.stdout)


@pytest.mark.parametrize("template", sorted(p.name for p in TEMPLATES.glob("*.sbatch")))
def test_templates_are_valid_bash_with_sbatch_headers(template: str) -> None:
    text = (TEMPLATES / template).read_text()
    assert subprocess.run(["bash", "-n", str(TEMPLATES / template)]).returncode == 0
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --job-name=" in text and "set -euo pipefail" in text


def test_the_ddp_template_starts_a_multi_node_fit_lightning_accepts(tmp_path: Path) -> None:
    args = _recorded("ddp_multinode.sbatch", tmp_path, SLURM_NNODES="2", SLURM_NTASKS_PER_NODE="4")
    assert args[:3] == [sys.executable, "-m", "volume_seg"] and args[3] == "fit"
    config = _print_config("volume_seg", args[4:])
    trainer = config["trainer"]
    assert (trainer["num_nodes"], str(trainer["devices"]), trainer["strategy"]) == (2, "4", "ddp")
    assert config["data"]["root"] == "data/LA" and config["run"]["experiment"] == "la16"  # the recipe was read


def test_the_cv_template_gives_each_task_the_same_fold_arguments(tmp_path: Path) -> None:
    first = _recorded("cv_array.sbatch", tmp_path, SLURM_ARRAY_JOB_ID="9", SLURM_ARRAY_TASK_ID="0")
    second = _recorded("cv_array.sbatch", tmp_path, SLURM_ARRAY_JOB_ID="9", SLURM_ARRAY_TASK_ID="3")
    assert first[:4] == [sys.executable, "-m", "common.studies.cv", "volume_seg"]
    assert without_options(first, ("--worker-label",)) == without_options(second, ("--worker-label",))
    assert first[first.index("--worker-label") + 1] == "9_0" and second[second.index("--worker-label") + 1] == "9_3"
    fit_args = without_options(first[4:], ("--folds", "--cv-dir", "--worker-label", "--stale-after"))
    assert _print_config("volume_seg", fit_args)["run"]["experiment"] == "la16"


@pytest.mark.e2e
def test_two_array_tasks_of_the_sweep_template_share_the_sweep(tmp_path: Path) -> None:
    """Two tasks of the array (``srun`` runs its command here) on a 6-configuration sweep: each configuration once."""
    sweep_dir = tmp_path / "sweep"
    env = _srun(tmp_path, PASS_SRUN) | {"SWEEP_FILE": str(_sweep_file(tmp_path)), "SWEEP_DIR": str(sweep_dir)}
    env |= {"FAKE_EVENTS": str(tmp_path / "events.txt"), "FAKE_SECONDS": "2", "SLURM_ARRAY_JOB_ID": "77"}
    tasks = [
        subprocess.Popen(
            ["bash", str(TEMPLATES / "sweep_array.sbatch"), "--wandb", "off"],
            env=env | {"SLURM_ARRAY_TASK_ID": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (0, 1)
    ]
    outputs = [task.communicate(timeout=300)[0] for task in tasks]
    assert [task.returncode for task in tasks] == [0, 0], outputs
    assert _events(tmp_path, "end") == Counter([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert _events(tmp_path, "start") == _events(tmp_path, "end")  # none started twice
    index = (sweep_dir / "index.csv").read_text()
    assert "77_0" in index and "77_1" in index  # both tasks ran configurations
