"""The sweep runner's worker loop: a killed sweep resumed without repeating a run, a killed worker's run redone by
another, real runs shared by three workers or by two SLURM array tasks, the typed claim of the next run, and one
line for each mistake (another sweep file, other arguments, a read-only dir); fit arguments after ``--`` passed
to every run."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
import yaml

from common.errors import MedlitError
from common.studies import sweep as sweep_module
from common.studies.claims import WorkQueue
from common.studies.index import read_index, set_row, write_index
from common.studies.plan import expand_command, load_sweep, open_plan, plan_runs
from common.studies.runner import runner_arguments
from common.studies.sweep import Claimed, Idle, _Worker, fit_overrides
from tests.helpers import (
    PASS_SRUN,
    REPO,
    TEMPLATES,
    events,
    fake_env,
    fake_sweep,
    one_error_line,
    srun_env,
    sweep_command,
    write_yaml,
)


def _two_workers(tmp_path: Path) -> tuple[Path, _Worker, _Worker]:
    """A sweep dir planned for the first 2 configurations of :func:`fake_sweep`, and two workers on it."""
    spec = load_sweep(fake_sweep(tmp_path))
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    args = {"max_runs": 2, "data_root": None, "configs": [], "overrides": [], "wandb": "off", "seed": 0}
    plan = open_plan(sweep_dir, spec, plan_runs(spec, max_runs=2), args | {"storage": None})
    first, second = (_Worker(spec, WorkQueue(sweep_dir, label=label), plan, "run{:03d}") for label in "ab")
    return sweep_dir, first, second


def test_next_claims_each_run_once_then_waits_then_is_done(tmp_path: Path) -> None:
    sweep_dir, first, second = _two_workers(tmp_path)
    assert first._next() == Claimed("run000", sweep_dir / "runs" / "run000", {"model.x": 0.0}, None)
    assert second._next() == Claimed("run001", sweep_dir / "runs" / "run001", {"model.x": 0.1}, None)
    assert first._next() is Idle.WAIT  # the only run left is held by a live worker
    index = read_index(sweep_dir)
    assert list(zip(index["run_id"], index["status"], index["worker"], strict=True)) == [
        ("run000", "running", "a"),
        ("run001", "running", "b"),
    ]
    for worker, run_id in ((first, "run000"), (second, "run001")):
        with worker.queue.locked():
            write_index(sweep_dir, set_row(read_index(sweep_dir), run_id, status="finished"))
            worker.queue.release(run_id)
    assert first._next() is Idle.DONE and second._next() is Idle.DONE


def test_next_takes_over_a_dead_workers_run_and_moves_its_dir_aside(tmp_path: Path) -> None:
    sweep_dir, first, second = _two_workers(tmp_path)
    held = second._next()
    assert held.run_id == "run000"
    held.run_dir.mkdir(parents=True)  # the partial run of a worker that then died
    claim = json.loads((sweep_dir / "claims" / "run000.json").read_text())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (sweep_dir / "claims" / "run000.json").write_text(json.dumps({**claim, "pid": dead.pid}))
    assert first._next() == Claimed("run000", sweep_dir / "runs" / "run000", {"model.x": 0.0}, None)
    assert first.queue.owns("run000") and (sweep_dir / "runs" / "run000.interrupted-1").is_dir()
    assert read_index(sweep_dir).set_index("run_id").loc["run000", "worker"] == "a"


def _wait_for(predicate, timeout: float = 240.0) -> None:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError
        time.sleep(0.3)


def _finished(sweep_dir: Path) -> list[str]:
    index = sweep_dir / "index.csv"
    if not index.exists():
        return []
    table = pd.read_csv(index, dtype=str)
    return table.loc[table["status"] == "finished", "run_id"].tolist()


@pytest.mark.slow
@pytest.mark.e2e
def test_killed_sweep_resumes_without_repeating_a_run(tiny_ham: Path, tmp_path: Path) -> None:
    sweep = write_yaml(
        tmp_path / "two.yaml",
        {
            "name": "two",
            "program": "lesion_cls",
            "method": "grid",
            "metric": {"name": "val/bal_acc", "goal": "maximize"},
            "parameters": {"model.loss": {"values": ["ce", "focal"]}, "seed_everything": {"value": 7}},
            "command": [
                "${env}",
                "${interpreter}",
                "-m",
                "${program}",
                "fit",
                "--config",
                str(REPO / "experiments" / "cls_ce.yaml"),
                "${args}",
            ],
        },
    )
    tiny = write_yaml(
        tmp_path / "tiny.yaml",
        {
            "data": {"image_size": 32, "batch_size": 16},
            "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
            "outputs": {"gradcam_per_class": 0},
        },
    )
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "common.studies.sweep",
        str(sweep),
        "--sweep-dir",
        str(sweep_dir),
        "--data-root",
        str(tiny_ham),
        "--config",
        str(REPO / "experiments" / "demo" / "cls.yaml"),
        "--config",
        str(tiny),
        "--wandb",
        "off",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runner = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for(lambda: _finished(sweep_dir) == ["run000"])
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and the run it started, between or in runs
        runner.wait()
    first = sweep_dir / "runs" / "run000" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    assert _finished(sweep_dir) == ["run000"]

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "[sweep two] run000" not in resumed.stdout  # the finished run was not started again
    assert first.stat().st_mtime_ns == stamp
    index = pd.read_csv(sweep_dir / "index.csv", dtype=str)
    assert index["run_id"].tolist() == ["run000", "run001"] and set(index["status"]) == {"finished"}
    comparison = pd.read_csv(sweep_dir / "comparison.csv")
    assert sorted(comparison["run_id"]) == ["run000", "run001"]
    assert sorted(comparison["model.loss"]) == ["ce", "focal"]
    table = (sweep_dir / "comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ce ") or line.startswith("| focal ")]
    assert len(rows) == 2 and all("(1)" in row for row in rows)
    for name in ("comparison_metrics.png", "comparison_curves.png", "plan.json"):
        assert (sweep_dir / name).is_file()
    metrics = json.loads((sweep_dir / "runs" / "run001" / "metrics.json").read_text())
    low, high = metrics["ci95"]["accuracy"]
    assert f"{metrics['accuracy']:.3f} ({low:.3f}-{high:.3f})" in table  # the run with its interval
    comparisons = pd.read_csv(sweep_dir / "comparisons.csv")
    assert set(comparisons["test"]) == {"paired bootstrap", "exact McNemar"}
    assert set(zip(comparisons["run_a"], comparisons["run_b"], strict=True)) == {("run000", "run001")}
    assert "p (Holm)" in table


@pytest.mark.slow
@pytest.mark.e2e
def test_a_killed_workers_run_is_redone_by_another(tmp_path: Path) -> None:
    """Three workers started by hand (as array tasks would be); one is killed with SIGKILL in the middle of a run."""
    sweep_file, sweep_dir = fake_sweep(tmp_path), tmp_path / "sweep"
    env = fake_env(tmp_path, 3.0)
    workers = {
        label: subprocess.Popen(
            sweep_command(sweep_file, sweep_dir, "--worker-label", label, "--heartbeat", "0.5", "--stale-after", "60"),
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for label in ("a", "b", "c")
    }
    deadline = time.time() + 120
    victim = None
    while victim is None and time.time() < deadline:
        for path in (sweep_dir / "claims").glob("*.json") if (sweep_dir / "claims").is_dir() else []:
            claim = json.loads(path.read_text())
            if claim["worker"] == "b" and (sweep_dir / "runs" / claim["key"]).is_dir():
                victim = claim["key"]
        time.sleep(0.1)
    assert victim is not None, "worker b never started a run"
    workers["b"].send_signal(signal.SIGKILL)
    outputs = {label: process.communicate(timeout=300)[0] for label, process in workers.items()}
    assert workers["a"].returncode == 0 and workers["c"].returncode == 0, outputs
    index = pd.read_csv(sweep_dir / "index.csv").set_index("run_id")
    assert sorted(index.index) == [f"run{i:03d}" for i in range(6)] and set(index["status"]) == {"finished"}
    assert index.loc[victim, "worker"] in ("a", "c")  # redone by a survivor
    ended = events(tmp_path, "end")
    assert ended == Counter([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # finished once each: the killed run's child died too
    victim_x = json.loads(index.loc[victim, "params"])["model.x"]
    assert events(tmp_path, "start")[victim_x] == 2
    assert (sweep_dir / "runs" / f"{victim}.interrupted-1").is_dir()  # the partial run, moved aside
    assert "worker b stopped; the run goes back to the queue" in outputs["a"] + outputs["c"]


@pytest.mark.slow
@pytest.mark.e2e
def test_a_worker_on_a_sweep_dir_of_another_file_or_other_arguments_is_refused(tmp_path: Path) -> None:
    first, sweep_dir = fake_sweep(tmp_path, "first"), tmp_path / "sweep"
    env = fake_env(tmp_path)
    done = subprocess.run(
        sweep_command(first, sweep_dir, "--max-runs", "1"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and p.suffix in (".csv", ".json")}

    other = fake_sweep(tmp_path, "second")
    result = subprocess.run(sweep_command(other, sweep_dir), cwd=REPO, env=env, capture_output=True, text=True)
    assert one_error_line(result) == (
        f"error: {sweep_dir}: holds a sweep of another sweep file (first.yaml), not second.yaml; resume with the same "
        "file or choose a new --sweep-dir"
    )
    result = subprocess.run(
        sweep_command(first, sweep_dir, "--set", "model.y=1"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert one_error_line(result).startswith(f"error: {sweep_dir}: was started with --set [], not ['model.y=1']")
    after = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and p.suffix in (".csv", ".json")}
    assert after == before  # nothing run, nothing rewritten
    assert events(tmp_path, "start") == Counter([0.0])


def _read_only_mount_works(folder: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = f"mount --bind -o ro {folder} {folder} && mount -o remount,ro,bind {folder} && ! touch {folder}/x"
    return subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.e2e
def test_a_sweep_dir_on_a_read_only_filesystem_is_one_line(tmp_path: Path) -> None:
    sweep_file, mount = fake_sweep(tmp_path), tmp_path / "mount"
    existing = mount / "existing"
    env = fake_env(tmp_path)
    done = subprocess.run(
        sweep_command(sweep_file, existing, "--max-runs", "1"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if not _read_only_mount_works(mount):
        pytest.skip("no user namespace to mount a read-only filesystem in (unshare -rm)")
    results = {}
    for name in ("existing", "new"):
        command = " ".join(sweep_command(sweep_file, mount / name))
        script = f"mount --bind -o ro {mount} {mount} && mount -o remount,ro,bind {mount} && {command}"
        results[name] = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True
        )
    for name, result in results.items():
        assert one_error_line(result) == (
            f"error: {mount / name}: cannot write the sweep dir (Read-only file system); choose a writable --sweep-dir"
        )
    assert events(tmp_path, "start") == Counter([0.0])  # the finished run was not started again


@pytest.mark.slow
@pytest.mark.e2e
def test_three_workers_share_a_grid_of_real_runs(tiny_ham: Path, tmp_path: Path) -> None:
    """The demo overlay on tiny data: 3 workers, 6 configurations (loss x seed), each trained once, and the
    comparison, rewritten by whichever worker finished last, complete."""
    fit = ["${env}", "${interpreter}", "-m", "${program}", "fit", "--config", str(REPO / "experiments" / "cls_ce.yaml")]
    sweep = tmp_path / "six.yaml"
    spec = {
        "name": "six",
        "program": "lesion_cls",
        "method": "grid",
        "metric": {"name": "val/bal_acc", "goal": "maximize"},
        "parameters": {"model.loss": {"values": ["ce", "focal"]}, "seed_everything": {"values": [1, 2, 3]}},
        "command": [*fit, "${args}"],
    }
    sweep.write_text(yaml.safe_dump(spec, sort_keys=False))
    tiny = tmp_path / "tiny.yaml"
    settings = {
        "data": {"image_size": 32, "batch_size": 16},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
        "outputs": {"gradcam_per_class": 0},
    }
    tiny.write_text(yaml.safe_dump(settings))
    sweep_dir = tmp_path / "sweep"
    overlays = ["--config", str(REPO / "experiments" / "demo" / "cls.yaml"), "--config", str(tiny)]
    command = sweep_command(sweep, sweep_dir, "--data-root", str(tiny_ham), *overlays, "--workers", "3")
    result = subprocess.run(command, cwd=REPO, env=fake_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    started = Counter(
        line.split("[sweep six] ")[1].split()[0] for line in result.stdout.splitlines() if "[sweep six] run" in line
    )
    run_ids = [f"run{i:03d}" for i in range(6)]
    assert started == Counter(run_ids)  # each configuration started once
    index = pd.read_csv(sweep_dir / "index.csv")
    assert sorted(index["run_id"]) == run_ids and set(index["status"]) == {"finished"}
    assert index["worker"].nunique() >= 2
    comparison = pd.read_csv(sweep_dir / "comparison.csv")
    assert sorted(comparison["run_id"]) == run_ids
    assert sorted(zip(comparison["model.loss"], comparison["seed_everything"], strict=True)) == sorted(
        (loss, seed) for loss in ("ce", "focal") for seed in (1, 2, 3)
    )
    assert not list((sweep_dir / "runs").glob("*.interrupted-*"))  # nothing was run twice


@pytest.mark.slow
@pytest.mark.e2e
def test_two_array_tasks_of_the_sweep_template_share_the_sweep(tmp_path: Path) -> None:
    """Two tasks of the array (``srun`` runs its command here) on a 6-configuration sweep: each configuration once."""
    sweep_dir = tmp_path / "sweep"
    env = srun_env(tmp_path, PASS_SRUN) | {"SWEEP_FILE": str(fake_sweep(tmp_path)), "SWEEP_DIR": str(sweep_dir)}
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
    assert events(tmp_path, "end") == Counter([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert events(tmp_path, "start") == events(tmp_path, "end")  # none started twice
    index = (sweep_dir / "index.csv").read_text()
    assert "77_0" in index and "77_1" in index  # both tasks ran configurations


# --- fit arguments after `--` ------------------------------------------------------------------------------------
def test_fit_overrides_pair_each_option_with_its_value() -> None:
    fit_args = ["--trainer.max_time", "00:00:10:00", "--model.decision_tau", "-0.25", "--data.fold=2", "--flag", "--c"]
    overrides = ["trainer.max_time=00:00:10:00", "model.decision_tau=-0.25", "data.fold=2", "flag", "c=x.yaml"]
    assert fit_overrides([*fit_args, "x.yaml"]) == overrides


@pytest.mark.parametrize("fit_args", [["oops"], ["--data.fold=2", "3"], ["--a", "1", "2"]])
def test_a_fit_argument_that_follows_no_option_is_one_error(fit_args: list[str]) -> None:
    with pytest.raises(MedlitError, match=rf"^fit arguments after --: '{fit_args[-1]}' follows no option"):
        fit_overrides(fit_args)


def test_fit_arguments_after_a_double_dash_reach_every_runs_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweep_file, given = fake_sweep(tmp_path), {}

    def record(*args: object, **kwargs: object) -> Path:
        given["overrides"] = args[5]
        return tmp_path

    monkeypatch.setattr(sweep_module, "run_sweep", record)
    sweep_module.main([str(sweep_file), "--set", "model.y=1", "--", "--trainer.max_time", "00:00:10:00"])
    assert given["overrides"] == ["model.y=1", "trainer.max_time=00:00:10:00"]
    spec = load_sweep(sweep_file)
    runner_args = {"configs": [], "overrides": given["overrides"], "wandb": "off", "data_root": "/data"}
    command = expand_command(spec, {"model.x": 0.0}, runner_arguments(spec, tmp_path / "run000", runner_args))
    assert command[-4:] == ["--data.root=/data", "--model.y=1", "--trainer.max_time=00:00:10:00", "--model.x=0.0"]


def test_fit_arguments_are_checked_before_workers_start_and_passed_to_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = []
    monkeypatch.setattr(sweep_module, "start_local_workers", lambda module, argv, args: started.append(argv) or 0)
    sweep_file = str(fake_sweep(tmp_path))
    with pytest.raises(SystemExit) as stopped:
        sweep_module.main([sweep_file, "--workers", "2", "--", "stray"])
    assert stopped.value.code == 2 and started == []
    with pytest.raises(SystemExit) as stopped:
        sweep_module.main([sweep_file, "--workers", "2", "--", "--trainer.max_time", "00:00:10:00"])
    assert stopped.value.code == 0
    assert started == [[sweep_file, "--workers", "2", "--", "--trainer.max_time", "00:00:10:00"]]
