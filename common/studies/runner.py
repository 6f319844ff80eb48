"""One run of a sweep or cross-validation in a subprocess: its command's runner arguments, its log, its run dir (an
interrupted attempt moved aside) and the sweep metric it reached."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from common.studies.plan import SweepSpec
from common.studies.workers import die_with_parent

__all__ = ["fresh_run_dir", "run_logged", "run_metric", "runner_arguments"]


def run_logged(command: list[str], log_path: Path) -> int:
    """Run a command, its output into ``log_path`` (and the console); kill it if the runner is stopped.

    The command dies with this process, even when this one is killed with SIGKILL (see
    :func:`common.studies.workers.die_with_parent`).
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, preexec_fn=die_with_parent
        )

        def stop(signum: int, _frame: Any) -> None:
            process.terminate()
            raise SystemExit(128 + signum)

        previous = signal.signal(signal.SIGTERM, stop)
        try:
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                sys.stdout.write(line)
            return process.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
            if process.poll() is None:
                process.kill()


def fresh_run_dir(parent: Path, run_id: str) -> Path:
    """``parent/run_id``, not yet made: an interrupted earlier attempt is moved aside (kept as
    ``<run>.interrupted-N``)."""
    run_dir = parent / run_id
    if run_dir.exists():
        attempt = 1
        while run_dir.with_name(f"{run_id}.interrupted-{attempt}").exists():
            attempt += 1
        run_dir.rename(run_dir.with_name(f"{run_id}.interrupted-{attempt}"))
    return run_dir


def runner_arguments(spec: SweepSpec, run_dir: Path, runner_args: dict[str, Any]) -> list[str]:
    """What the runner adds to every run's command, before the sweep parameters: extra ``--config`` overlays, the
    run dir, the experiment name, the W&B mode, the data root and extra ``--set`` overrides."""
    extra = [f"--config={c}" for c in runner_args["configs"]]
    extra += [f"--run.dir={run_dir}", f"--run.experiment={spec.name}", f"--run.wandb={runner_args['wandb']}"]
    extra += [f"--data.root={runner_args['data_root']}"] if runner_args["data_root"] else []
    return extra + [f"--{o}" for o in runner_args["overrides"]]


def run_metric(run_dir: Path, name: str | None, goal: str) -> float:
    """The sweep metric of a finished run: its best epoch value (as checkpoint selection), from history.csv."""
    history = run_dir / "history.csv"
    if not name or not history.exists():
        return float("nan")
    table = pd.read_csv(history)
    if name not in table:
        return float("nan")
    values = table[name].dropna()
    if values.empty:
        return float("nan")
    return float(values.max() if goal == "maximize" else values.min())
