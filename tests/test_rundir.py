"""Run directories (common.rundir): new and explicit run dirs, which dir a resume continues, making the dir, and
the settings a resumed run may not change. A killed fit resumed through the CLI: tests/test_resume.py."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from common.errors import MedlitError
from common.rundir import (
    RUN_DIR_ENV,
    WANDB_ID_ENV,
    choose_run_dir,
    make_run_dir,
    refuse_changed_settings,
    resolve_run_dir,
    run_environment,
)


def _unfinished_run(experiment_dir: Path, name: str) -> Path:
    run_dir = experiment_dir / name
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints" / "last.ckpt").write_bytes(b"weights")
    (run_dir / "config.yaml").write_text("model:\n  lr: 0.1\nrun:\n  root: runs\ntrainer:\n  max_epochs: 3\n")
    (run_dir / "run_info.json").write_text(json.dumps({"started": "then"}))
    return run_dir


def test_run_dirs_are_new_and_explicit_dirs_are_not_reused(tmp_path: Path) -> None:
    first = resolve_run_dir(tmp_path, "exp")
    first.mkdir(parents=True)
    second = resolve_run_dir(tmp_path, "exp")
    assert second != first and second.parent == first.parent == tmp_path / "exp" and second.name.startswith(first.name)
    (first / "config.yaml").write_text("{}")
    with pytest.raises(MedlitError, match="already holds a run"):
        resolve_run_dir(tmp_path, "exp", exact=first)


def test_a_resume_continues_the_unfinished_run_and_anything_else_gets_a_new_dir(tmp_path: Path) -> None:
    unfinished = _unfinished_run(tmp_path / "exp", "20250101-000000")
    checkpoint = unfinished / "checkpoints" / "last.ckpt"
    assert choose_run_dir(tmp_path, "exp", None, "last") == (unfinished, checkpoint)
    assert choose_run_dir(tmp_path, "exp", None, str(checkpoint)) == (unfinished, checkpoint)
    (unfinished / "run_info.json").write_text(json.dumps({"fit_finished": "now"}))
    new_dir, resumed = choose_run_dir(tmp_path, "exp", None, str(checkpoint))  # a finished run is never changed
    assert resumed is None and new_dir.parent == tmp_path / "exp" and new_dir != unfinished
    with pytest.raises(MedlitError, match="ckpt_path: last: no unfinished run"):
        choose_run_dir(tmp_path, "exp", None, "last")
    assert choose_run_dir(tmp_path, "exp", tmp_path / "mine", None) == (tmp_path / "mine", None)


def test_making_the_run_dir_names_it_to_workers_and_keeps_the_earlier_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RUN_DIR_ENV, "unset again after the test")
    fresh = tmp_path / "exp" / "run1"
    assert make_run_dir(fresh, resuming=False) == fresh / "config.yaml" and fresh.is_dir()
    assert os.environ[RUN_DIR_ENV] == str(fresh)
    (fresh / "logs").mkdir()
    (fresh / "logs" / "metrics.csv").write_text("epoch\n0\n")
    assert make_run_dir(fresh, resuming=True) == fresh / "config.resume-1.yaml"
    assert (fresh / "logs" / "metrics.before-resume-1.csv").read_text() == "epoch\n0\n"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(MedlitError, match=r"cannot make the run dir \("):
        make_run_dir(blocker / "run", resuming=False)


def test_a_resumed_run_may_change_only_where_it_is_recorded_and_how_long_it_trains(tmp_path: Path) -> None:
    run_dir = _unfinished_run(tmp_path, "run")
    refuse_changed_settings(run_dir, "model:\n  lr: 0.1\nrun:\n  root: elsewhere\ntrainer:\n  max_epochs: 9\n")
    with pytest.raises(MedlitError) as error:
        refuse_changed_settings(run_dir, "model:\n  lr: 0.5\nrun:\n  root: runs\ntrainer:\n  max_epochs: 3\n")
    assert str(error.value) == (
        f"{run_dir / 'config.yaml'}: a resumed run keeps its settings, but model.lr differ; resume with the same "
        "arguments (only run.*, trainer.max_epochs/max_steps/max_time may change)"
    )
    seven_more = "".join(f"  k{i}: {i}\n" for i in range(7))
    with pytest.raises(MedlitError, match=r"but model\.k0, model\.k1, model\.k2, model\.k3, model\.k4 \.\.\. differ;"):
        refuse_changed_settings(run_dir, f"model:\n  lr: 0.1\n{seven_more}trainer:\n  max_epochs: 3\n")


def test_under_a_wandb_agent_fit_continues_the_unfinished_run_of_the_agents_run_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    experiment = tmp_path / "runs" / "exp"
    mine, other = _unfinished_run(experiment, "a"), _unfinished_run(experiment, "b")
    for run_dir, wandb_id in ((mine, "agentrun1"), (other, "otherrun")):
        (run_dir / "run_info.json").write_text(json.dumps({"wandb_id": wandb_id}))
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    monkeypatch.setenv("WANDB_RUN_ID", "agentrun1")
    # no agent (no sweep id): a new run dir, as for any fit
    assert choose_run_dir(tmp_path / "runs", "exp", None, None, fit=True)[1] is None
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    assert choose_run_dir(tmp_path / "runs", "exp", None, None, fit=True) == (mine, mine / "checkpoints" / "last.ckpt")
    # test and other subcommands, an explicit run.dir, or a finished run: a new run dir
    assert choose_run_dir(tmp_path / "runs", "exp", None, None)[1] is None
    assert choose_run_dir(tmp_path / "runs", "exp", tmp_path / "x", None, fit=True) == (tmp_path / "x", None)
    (mine / "run_info.json").write_text(json.dumps({"wandb_id": "agentrun1", "fit_finished": "then"}))
    assert choose_run_dir(tmp_path / "runs", "exp", None, None, fit=True)[1] is None


def test_what_a_run_sets_for_its_workers_is_unset_when_it_ends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(RUN_DIR_ENV, raising=False)
    monkeypatch.setenv(WANDB_ID_ENV, "kept")
    with run_environment():
        make_run_dir(tmp_path / "run", resuming=False)
        os.environ[WANDB_ID_ENV] = "this run's"
        assert os.environ[RUN_DIR_ENV] == str(tmp_path / "run")
    assert RUN_DIR_ENV not in os.environ and os.environ[WANDB_ID_ENV] == "kept"
