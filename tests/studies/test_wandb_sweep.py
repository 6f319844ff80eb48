"""Sweep files online: W&B's own schema accepts each file, the printed commands, and a run started by W&B's own agent
code (its expansion of the file's ``command`` block and its environment) that is killed and started again by the
agent continues as one run dir and one W&B run."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from common.errors import MedlitError
from common.studies.wandb_sweep import DATA_ROOT_ENV, online_commands
from tests.helpers import REPO

SWEEP_FILES = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
SCHEMA = Path(__file__).parents[1] / "data" / "wandb_sweep_schema.json"
"""The sweep-config JSON schema of W&B's ``sweeps`` package 0.3.0 (MIT licence; the schema W&B checks a sweep
against), kept here because that package pins numpy<2."""


@pytest.mark.parametrize("sweep_file", SWEEP_FILES, ids=lambda p: p.stem)
def test_each_sweep_file_passes_wandbs_schema_names_its_project_and_reads_the_data_root(sweep_file: Path) -> None:
    from jsonschema import Draft7Validator

    config = yaml.safe_load(sweep_file.read_text())
    errors = [error.message for error in Draft7Validator(json.loads(SCHEMA.read_text())).iter_errors(config)]
    assert errors == []
    assert config["project"] == "medlit"
    command = config["command"]
    assert command[:4] == ["${env}", "${interpreter}", "-m", "${program}"] and command[-1] == "${args}"
    assert command[command.index("--data.root") + 1] == f"${DATA_ROOT_ENV}"


def test_the_printed_commands_run_the_agent_here_with_this_interpreter(tmp_path: Path) -> None:
    interpreter = Path(sys.executable)
    sweep_file = REPO / "experiments" / "sweeps" / "ham10000_loss.yaml"
    lines = online_commands(sweep_file, tmp_path, interpreter, REPO)
    assert lines[1].startswith(f"cd {REPO} && ") and lines[1].endswith(" sweep experiments/sweeps/ham10000_loss.yaml")
    assert f"PATH={interpreter.parent}:$PATH {DATA_ROOT_ENV}={tmp_path} " in lines[3]
    assert lines[3].endswith(" agent <entity>/medlit/<id>")
    with pytest.raises(MedlitError, match="no such folder"):
        online_commands(sweep_file, tmp_path / "missing", interpreter, REPO)
    no_project = tmp_path / "sweep.yaml"
    config = yaml.safe_load(sweep_file.read_text())
    del config["project"]
    no_project.write_text(yaml.safe_dump(config))
    with pytest.raises(MedlitError, match=f"{no_project}: no project: key"):
        online_commands(no_project, None, interpreter, REPO)


def _start_as_the_agent(config: dict[str, object], run_id: str, args: dict[str, object]) -> object:
    """Start one run through W&B's agent code (its expansion of the sweep's ``command`` and its environment), as for
    the server's ``run`` command; the process."""
    from wandb.wandb_agent import Agent

    agent = Agent(api=None, queue=None, sweep_id="sweep0")
    agent._sweep_command = config["command"]  # what the agent reads from the sweep's config (private: no public hook)
    values = {key: {"value": value} for key, value in args.items()}
    agent._command_run({"run_id": run_id, "program": config["program"], "args": values})
    return agent._run_processes[run_id]._popen


@pytest.mark.e2e
def test_a_run_the_agent_starts_reaches_its_steps_and_killed_and_restarted_is_one_run(
    tiny_ham: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load((REPO / "experiments" / "sweeps" / "cls_loss.yaml").read_text())
    monkeypatch.chdir(REPO)  # the agent runs in the clone it was started in
    # what `wandb agent` sets (the agent's code sets WANDB_RUN_ID itself; monkeypatch unsets it afterwards)
    for name, value in (("WANDB_SWEEP_ID", "sweep0"), ("WANDB_RUN_ID", ""), ("WANDB_DIR", str(tmp_path))):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", "")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}:{os.environ['PATH']}")  # the printed agent line
    monkeypatch.setenv(DATA_ROOT_ENV, str(tiny_ham))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    args = {"seed_everything": 1, "model.loss": "ce_focal", "data.class_balance": 0.0}
    args |= {"model.backbone": "resnet10t", "model.pretrained": False, "data.image_size": 32, "data.batch_size": 16}
    args |= {"data.num_workers": 0, "trainer.max_epochs": 3, "trainer.enable_progress_bar": False}
    args |= {"run.root": str(tmp_path / "runs"), "run.wandb": "offline", "outputs.gradcam_per_class": 0}

    first = _start_as_the_agent(config, "agentrun7", args)
    deadline = time.monotonic() + 300
    while first.poll() is None and time.monotonic() < deadline:
        if list((tmp_path / "runs").glob("*/*/checkpoints/last.ckpt")):  # the end of the first epoch
            os.kill(first.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert first.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    second = _start_as_the_agent(config, "agentrun7", args)
    assert second.wait(timeout=600) == 0

    (run_dir,) = [info.parent for info in (tmp_path / "runs").glob("*/*/run_info.json")]  # one run dir
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["wandb_id"] == "agentrun7" and len(info["resumes"]) == 1
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["data"]["root"] == str(tiny_ham) and saved["model"]["loss"] == "ce_focal"
    wandb_runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    assert len(wandb_runs) == 2 and {p.name.rsplit("-", 1)[1] for p in wandb_runs} == {"agentrun7"}
    assert json.loads((run_dir / "metrics.json").read_text())["n_images"] > 0
