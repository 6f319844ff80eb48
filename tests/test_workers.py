"""Many workers on one sweep dir: each configuration run once, a dead worker's run redone, one shared Optuna study,
one line for each mistake (another sweep file, other arguments, a storage that cannot be opened, a read-only dir)."""

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

from common.studies.workers import WorkQueue, without_options
from tests.helpers import REPO

FAKE_TRAINER = """
import json, os, sys, time
from pathlib import Path
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
run_dir = Path(args["run.dir"])
x = float(args["model.x"])
events = Path(os.environ["FAKE_EVENTS"])
with events.open("a") as f:
    f.write(f"start {x} {os.getpid()}\\n")
run_dir.mkdir(parents=True)
time.sleep(float(os.environ.get("FAKE_SECONDS", "0")))
(run_dir / "config.yaml").write_text("model: {x: %s}\\n" % x)
(run_dir / "run_info.json").write_text(json.dumps({"monitor": "val/score", "monitor_mode": "max",
                                                   "task": "toy_regression", "report_module": "tests.toy_task.report"}))
(run_dir / "history.csv").write_text("epoch,train/loss,val/score\\n0,1.0,%r\\n" % (-(x - 0.3) ** 2))
(run_dir / "metrics.json").write_text(json.dumps({"mae": abs(x - 0.3), "rmse": abs(x - 0.3)}))
with events.open("a") as f:
    f.write(f"end {x} {os.getpid()}\\n")
"""


def _sweep_file(tmp_path: Path, name: str = "grid", method: str = "grid", **extra: object) -> Path:
    program = tmp_path / "fake_train.py"
    program.write_text(FAKE_TRAINER)
    xs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    parameters = {"model.x": {"values": xs}} if method == "grid" else {"model.x": {"min": 0.0, "max": 1.0}}
    spec = {
        "name": name,
        "program": str(program),
        "method": method,
        "metric": {"name": "val/score", "goal": "maximize"},
        "parameters": parameters,
        "command": ["${env}", "${interpreter}", "${program}", "${args}"],
        **extra,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _sweep(sweep_file: Path, sweep_dir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "common.studies.sweep",
        str(sweep_file),
        "--sweep-dir",
        str(sweep_dir),
        "--wandb",
        "off",
        *args,
    ]


def _env(tmp_path: Path, seconds: float = 0.0) -> dict[str, str]:
    events = tmp_path / "events.txt"
    return {**os.environ, "PYTHONPATH": str(REPO), "FAKE_EVENTS": str(events), "FAKE_SECONDS": str(seconds)}


def _events(tmp_path: Path, kind: str) -> Counter:
    lines = (tmp_path / "events.txt").read_text().splitlines()
    return Counter(float(line.split()[1]) for line in lines if line.startswith(kind))


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stdout[-1500:] + result.stderr[-1500:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# --- claims ------------------------------------------------------------------------------------------------------
def test_a_claim_is_stale_when_its_heartbeat_stops_or_its_process_is_gone(tmp_path: Path) -> None:
    queue = WorkQueue(tmp_path, heartbeat=0.2, stale_after=30.0, label="me")
    with queue.locked():
        claim = queue.take("run000")
    assert queue.owns("run000") and not queue.is_stale(claim)
    assert queue.is_stale({**claim, "host": "elsewhere", "heartbeat": time.time() - 31.0})  # silent for too long
    assert not queue.is_stale({**claim, "host": "elsewhere", "pid": 999_999_999})  # another host: heartbeat only
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert queue.is_stale({**claim, "pid": dead.pid})  # this host, process gone: stale at once
    assert not queue.is_stale({**claim, "pid_namespace": "pid:[other]", "pid": dead.pid})  # another container

    before = queue.claim_of("run000")["heartbeat"]
    with queue.beating("run000"):
        time.sleep(0.7)
    assert queue.claim_of("run000")["heartbeat"] > before  # refreshed while the work ran

    other = WorkQueue(tmp_path, heartbeat=0.2, stale_after=30.0, label="other")
    assert not other.owns("run000")
    with other.locked():
        other.take("run000")  # taken over (as a worker does with a stale claim)
    with queue.beating("run000"):
        time.sleep(0.5)
    assert queue.claim_of("run000")["worker"] == "other"  # the old owner's heartbeat does not write it back
    with pytest.raises(Exception, match="must be longer than"):
        WorkQueue(tmp_path, heartbeat=5.0, stale_after=5.0)


def test_exclusive_waits_for_a_live_holder_and_takes_over_a_dead_one(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    holder = WorkQueue(tmp_path, heartbeat=0.2, stale_after=60.0)
    with holder.locked():
        holder.take("evaluate")
    claim = json.loads((tmp_path / "claims" / "evaluate.json").read_text())
    (tmp_path / "claims" / "evaluate.json").write_text(json.dumps({**claim, "pid": dead.pid}))
    start = time.perf_counter()
    with WorkQueue(tmp_path, heartbeat=0.2, stale_after=60.0, label="next").exclusive("evaluate"):
        assert json.loads((tmp_path / "claims" / "evaluate.json").read_text())["worker"] == "next"
    assert time.perf_counter() - start < 5  # the dead holder was seen at once, not after 60 s
    assert not (tmp_path / "claims" / "evaluate.json").exists()  # released


def test_without_options_drops_the_local_worker_options() -> None:
    argv = ["s.yaml", "--workers", "3", "--devices=0,1", "--sweep-dir", "d", "--worker-label", "x", "--seed=2"]
    assert without_options(argv, ("--workers", "--devices", "--worker-label")) == [
        "s.yaml",
        "--sweep-dir",
        "d",
        "--seed=2",
    ]


# --- many workers ------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_three_local_workers_run_each_configuration_once(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = _sweep(_sweep_file(tmp_path), sweep_dir, "--workers", "3")
    result = subprocess.run(command, cwd=REPO, env=_env(tmp_path, 2.0), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    started, ended = _events(tmp_path, "start"), _events(tmp_path, "end")
    xs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert started == Counter(xs) and ended == Counter(xs)  # every configuration once, none twice
    index = pd.read_csv(sweep_dir / "index.csv")
    assert sorted(index["run_id"]) == [f"run{i:03d}" for i in range(6)] and set(index["status"]) == {"finished"}
    assert index["worker"].nunique() >= 2  # shared between the workers, not run by one
    assert {w.split(":")[0] for w in index["worker"]} <= {"w0", "w1", "w2"}
    assert not list((sweep_dir / "claims").glob("*.json"))
    comparison = pd.read_csv(sweep_dir / "comparison.csv")
    assert sorted(comparison["run_id"]) == sorted(index["run_id"])  # the comparison saw every run
    assert {line.split("]")[0] for line in result.stdout.splitlines() if line.startswith("[w")} >= {"[w0", "[w1"}


@pytest.mark.e2e
def test_a_killed_workers_run_is_redone_by_another(tmp_path: Path) -> None:
    """Three workers started by hand (as array tasks would be); one is killed with SIGKILL in the middle of a run."""
    sweep_file, sweep_dir = _sweep_file(tmp_path), tmp_path / "sweep"
    env = _env(tmp_path, 3.0)
    workers = {
        label: subprocess.Popen(
            _sweep(sweep_file, sweep_dir, "--worker-label", label, "--heartbeat", "0.5", "--stale-after", "60"),
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
    ended = _events(tmp_path, "end")
    assert ended == Counter([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])  # finished once each: the killed run's child died too
    victim_x = json.loads(index.loc[victim, "params"])["model.x"]
    assert _events(tmp_path, "start")[victim_x] == 2
    assert (sweep_dir / "runs" / f"{victim}.interrupted-1").is_dir()  # the partial run, moved aside
    assert "worker b stopped; the run goes back to the queue" in outputs["a"] + outputs["c"]


@pytest.mark.e2e
def test_two_bayes_workers_share_one_optuna_study(tmp_path: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_dir = tmp_path / "sweep"
    command = _sweep(_sweep_file(tmp_path, "bayes", "bayes", run_cap=6), sweep_dir, "--workers", "2")
    result = subprocess.run(command, cwd=REPO, env=_env(tmp_path, 1.0), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    index = pd.read_csv(sweep_dir / "index.csv")
    assert len(index) == 6 and set(index["status"]) == {"finished"} and index["worker"].nunique() == 2
    study = optuna.load_study(
        study_name="bayes", storage=JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    )
    trials = study.get_trials()
    assert len(trials) == 6 and {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}  # trials = runs
    by_run = {t.user_attrs["run_id"]: t for t in trials}
    for row in index.itertuples():
        trial = by_run[row.run_id]
        assert trial.params["model.x"] == json.loads(row.params)["model.x"]
        assert trial.value == pytest.approx(row.metric) == pytest.approx(-((trial.params["model.x"] - 0.3) ** 2))
    assert len({t.params["model.x"] for t in trials}) == 6  # the two workers did not propose the same points


# --- mistakes ----------------------------------------------------------------------------------------------------
@pytest.mark.e2e
def test_a_worker_on_a_sweep_dir_of_another_file_or_other_arguments_is_refused(tmp_path: Path) -> None:
    first, sweep_dir = _sweep_file(tmp_path, "first"), tmp_path / "sweep"
    env = _env(tmp_path)
    done = subprocess.run(
        _sweep(first, sweep_dir, "--max-runs", "1"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    before = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and p.suffix in (".csv", ".json")}

    other = _sweep_file(tmp_path, "second")
    result = subprocess.run(_sweep(other, sweep_dir), cwd=REPO, env=env, capture_output=True, text=True)
    assert _one_error_line(result) == (
        f"error: {sweep_dir}: holds a sweep of another sweep file (first.yaml), not second.yaml; resume with the same "
        "file or choose a new --sweep-dir"
    )
    result = subprocess.run(
        _sweep(first, sweep_dir, "--set", "model.y=1"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert _one_error_line(result).startswith(f"error: {sweep_dir}: was started with --set [], not ['model.y=1']")
    after = {p: p.read_bytes() for p in sweep_dir.rglob("*") if p.is_file() and p.suffix in (".csv", ".json")}
    assert after == before  # nothing run, nothing rewritten
    assert _events(tmp_path, "start") == Counter([0.0])


def test_an_optuna_storage_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    sweep_file, sweep_dir = _sweep_file(tmp_path, "bayes", "bayes", run_cap=2), tmp_path / "sweep"
    url = f"sqlite:///{tmp_path}/no/such/folder/optuna.db"
    result = subprocess.run(
        _sweep(sweep_file, sweep_dir, "--storage", url), cwd=REPO, env=_env(tmp_path), capture_output=True, text=True
    )
    assert _one_error_line(result).startswith(f"error: --storage {url}: cannot open the Optuna storage (")
    assert not sweep_dir.exists()  # refused before anything was made


def _read_only_mount_works(folder: Path) -> bool:
    if not shutil.which("unshare"):
        return False
    probe = f"mount --bind -o ro {folder} {folder} && mount -o remount,ro,bind {folder} && ! touch {folder}/x"
    return subprocess.run(["unshare", "-rm", "sh", "-c", probe], capture_output=True).returncode == 0


@pytest.mark.e2e
def test_a_sweep_dir_on_a_read_only_filesystem_is_one_line(tmp_path: Path) -> None:
    sweep_file, mount = _sweep_file(tmp_path), tmp_path / "mount"
    existing = mount / "existing"
    env = _env(tmp_path)
    done = subprocess.run(
        _sweep(sweep_file, existing, "--max-runs", "1"), cwd=REPO, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    if not _read_only_mount_works(mount):
        pytest.skip("no user namespace to mount a read-only filesystem in (unshare -rm)")
    results = {}
    for name in ("existing", "new"):
        command = " ".join(_sweep(sweep_file, mount / name))
        script = f"mount --bind -o ro {mount} {mount} && mount -o remount,ro,bind {mount} && {command}"
        results[name] = subprocess.run(
            ["unshare", "-rm", "sh", "-c", script], cwd=REPO, env=env, capture_output=True, text=True
        )
    for name, result in results.items():
        assert _one_error_line(result) == (
            f"error: {mount / name}: cannot write the sweep dir (Read-only file system); choose a writable --sweep-dir"
        )
    assert _events(tmp_path, "start") == Counter([0.0])  # the finished run was not started again


def test_local_workers_get_one_gpu_and_their_share_of_the_cores(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--devices 3,5`` with 3 workers: round robin over the devices through CUDA_VISIBLE_DEVICES, the cores
    shared (OMP_NUM_THREADS), each output line marked with its worker, and the worst exit status returned."""
    from common.studies.workers import start_workers

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    show = "print(sys.argv[-1], os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])"
    program = tmp_path / "show.py"
    program.write_text(f"import os, sys\n{show}\nsys.exit(sys.argv[-1] == 'w2')\n")
    assert start_workers([sys.executable, str(program)], 3, ["3", "5"]) == 1
    lines = sorted(capsys.readouterr().out.splitlines())
    threads = max(1, len(os.sched_getaffinity(0)) // 3)
    assert lines == [f"[w0] w0 3 {threads}", f"[w1] w1 5 {threads}", f"[w2] w2 3 {threads}"]


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
    command = _sweep(sweep, sweep_dir, "--data-root", str(tiny_ham), *overlays, "--workers", "3")
    result = subprocess.run(command, cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=900)
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
