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
    choose_run_dir,
    make_run_dir,
    refuse_changed_settings,
    resolve_run_dir,
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
