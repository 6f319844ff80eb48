"""Run a W&B sweep file without a W&B server: ``python -m common.studies.sweep experiments/sweeps/cls_loss.yaml``.

The same YAML that ``wandb sweep`` + ``wandb agent`` run online (``method``, ``metric``, ``parameters``,
``program``, ``command``) runs here one configuration after another, for clusters with no outbound network:

* ``grid``: every combination of the ``values`` (in file order); ``random``: configurations drawn with a seeded
  generator (``value``, ``values`` [+ ``probabilities``], ``min``/``max``, ``distribution``); ``bayes``: Optuna's
  TPE sampler, told each run's ``metric`` (the study in ``optuna.journal``, or ``--storage``).
* The command is expanded with W&B's own macro code (``${env}``, ``${interpreter}``, ``${program}``,
  ``${args}``...), so each run gets exactly the arguments ``wandb agent`` would pass. The runner adds its own
  arguments (run dir, experiment name, W&B offline, data root, extra ``--config`` overlays) before ``${args}``.
* Resume: the plan (``plan.json``) and the run index (``index.csv``) live in the sweep dir. Starting the same
  sweep again skips finished runs, moves an interrupted run's folder aside (``<run>.interrupted-N``) and
  runs it again; it never repeats a finished run. A changed sweep file is refused for an existing sweep dir.
* After each run, ``comparison.md``/``.csv`` (configuration → test metrics, mean ± std over seeds) and seaborn
  figures (metrics by configuration, training curves overlaid) are rewritten in the sweep dir.
* Fit arguments after ``--`` (``-- --trainer.max_time 00:00:10:00``) go to every run, as ``--set`` overrides.
* Many workers, one sweep: any number of runners - ``--workers N`` on this machine (``--devices 0,1``: one GPU
  each), or the same command on other machines sharing the filesystem (SLURM array tasks) - work on one sweep dir.
  Each configuration is claimed under the dir's lock (:class:`common.studies.claims.WorkQueue`): ``claims/<run>.json``
  names the worker's host and pid and carries its heartbeat; ``index.csv`` records which worker ran what. A run
  whose worker died (no heartbeat for ``--stale-after`` seconds, or its process gone on this host) goes back to
  the queue and is redone; a worker with nothing left to claim waits for the others, to take over a dead one's
  run, and stops when every configuration has finished (or failed: a failing configuration is retried by the next
  worker started, not in a loop). ``bayes`` workers share one Optuna study.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd

from common.errors import MedlitError, exit_on_error
from common.studies.claims import WorkerOptions, WorkQueue, add_worker_arguments
from common.studies.comparison import compare_sweep
from common.studies.index import index_row, read_index, set_row, write_index
from common.studies.plan import SweepPlan, SweepSpec, expand_command, load_sweep, open_plan, plan_runs
from common.studies.runner import fresh_run_dir, run_logged, run_metric, runner_arguments
from common.studies.search import ask, fail_trial, open_study, tell
from common.studies.workers import start_local_workers

__all__ = ["Claimed", "Idle", "fit_overrides", "main", "run_sweep"]


@dataclass(frozen=True)
class Claimed:
    """A run this worker has just claimed: its id, its (not yet made) run dir, its configuration and its Optuna
    trial (``None`` unless the sweep is bayes)."""

    run_id: str
    run_dir: Path
    params: dict[str, Any]
    trial: Any = None


class Idle(Enum):
    """Why a worker claimed nothing."""

    WAIT = "wait"
    """The only runs left are held by live workers (wait, to take over a dead one's)."""
    DONE = "done"
    """Nothing is left."""


def _epoch_seconds(stamp: Any) -> float:
    try:
        return time.mktime(time.strptime(str(stamp), "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return 0.0


class _Worker:
    """One worker of a sweep dir: claims the next configuration, runs it, records it; see :func:`run_sweep`."""

    def __init__(self, spec: SweepSpec, queue: WorkQueue, plan: SweepPlan, run_id_format: str) -> None:
        self.spec, self.sweep_dir, self.queue, self.plan = spec, plan.folder, queue, plan
        self.run_ids = [run_id_format.format(p) for p in range(plan.run_count(spec))]
        self.started = time.time()
        self.attempted: set[str] = set()
        self.seed = int(plan.runner_args.get("seed") or 0)
        self.study = open_study(spec, plan.study_storage, self.seed) if plan.runs is None else None

    def _retryable(self, index: pd.DataFrame, run_id: str, claims: dict[str, dict]) -> bool:
        """Not finished, not held, not tried by this worker, and not failed since this worker started (a failing
        configuration is retried by the next worker started, not in a loop)."""
        row = index_row(index, run_id)
        if run_id in claims or run_id in self.attempted:
            return False
        if row is None:
            return True
        status = str(row["status"])
        return status != "finished" and not (
            status.startswith("failed") and _epoch_seconds(row["finished"]) >= self.started
        )

    def _reclaim(self, index: pd.DataFrame, claims: dict[str, dict]) -> pd.DataFrame:
        """Return stale claims (and runs left 'running' with no claim: a runner killed before claims existed)
        to the queue; their partial run dirs are moved aside when the run is started again."""
        running = set(index.loc[index["status"] == "running", "run_id"])
        for run_id in sorted(running | set(claims)):
            claim = claims.get(run_id)
            if claim is not None and not self.queue.is_stale(claim):
                continue
            if claim is not None:
                print(
                    f"[sweep {self.spec.name}] {run_id}: worker {claim.get('worker')} stopped; the run goes back to "
                    "the queue",
                    flush=True,
                )
                self.queue.release(run_id)
                claims.pop(run_id)
            if run_id in running:
                index = set_row(index, run_id, status="interrupted")
            if self.study is not None:
                fail_trial(self.study, run_id)
        return index

    def _next(self) -> Claimed | Idle:
        """Claim the next configuration; :attr:`Idle.WAIT` when the only work left is held by live workers,
        :attr:`Idle.DONE` when nothing is left."""
        with self.queue.locked():
            index, claims = read_index(self.sweep_dir), self.queue.claims()
            index = self._reclaim(index, claims)
            todo = [r for r in self.run_ids if self._retryable(index, r, claims)]
            if not todo:
                write_index(self.sweep_dir, index)
                return Idle.WAIT if any(r in claims for r in self.run_ids) else Idle.DONE
            claimed = self._claim(todo[0])
            index = set_row(
                index,
                claimed.run_id,
                status="running",
                run_dir=str(claimed.run_dir),
                params=json.dumps(claimed.params),
                started=time.strftime("%Y-%m-%d %H:%M:%S"),
                finished="",
                seconds="",
                metric="",
                worker=self.queue.label,
                trial=_trial_number(claimed.trial),
            )
            write_index(self.sweep_dir, index)
        self.attempted.add(claimed.run_id)
        return claimed

    def _claim(self, run_id: str) -> Claimed:
        """Take ``run_id`` (under the lock): its run dir made free, its configuration planned or asked of Optuna."""
        run_dir = fresh_run_dir(self.sweep_dir / "runs", run_id)
        position = self.run_ids.index(run_id)
        trial = ask(self.study, self.spec, run_id, self.seed + position) if self.study else None
        params = self.plan.runs[position] if self.plan.runs is not None else trial.params
        self.queue.take(run_id, trial=_trial_number(trial))
        return Claimed(run_id, run_dir, params, trial)

    def _run(self, claimed: Claimed) -> None:
        run_id, run_dir = claimed.run_id, claimed.run_dir
        extra = runner_arguments(self.spec, run_dir, self.plan.runner_args)
        command = expand_command(self.spec, claimed.params, extra)
        position = self.run_ids.index(run_id)
        print(
            f"[sweep {self.spec.name}] {run_id} ({position + 1}/{len(self.run_ids)}): {' '.join(command)}", flush=True
        )
        start = time.perf_counter()
        with self.queue.beating(run_id):
            code = run_logged(command, self.sweep_dir / "logs" / f"{run_id}.log")
        metric = run_metric(run_dir, self.spec.metric.get("name"), self.spec.metric.get("goal", "maximize"))
        status = "finished" if code == 0 and (run_dir / "metrics.json").exists() else f"failed (exit {code})"
        with self.queue.locked():
            if not self.queue.owns(run_id):  # taken over as stale (this worker stalled): the new owner decides
                print(
                    f"[sweep {self.spec.name}] {run_id}: no longer held by this worker; its result is not recorded",
                    flush=True,
                )
                return
            index = set_row(
                read_index(self.sweep_dir),
                run_id,
                status=status,
                finished=time.strftime("%Y-%m-%d %H:%M:%S"),
                seconds=round(time.perf_counter() - start, 1),
                metric=metric,
            )
            write_index(self.sweep_dir, index)
            self.queue.release(run_id)
            if claimed.trial is not None:
                tell(self.study, claimed.trial, metric, status == "finished")
            compare_sweep(self.sweep_dir)  # after every run, so a stopped sweep still has its comparison

    def work(self, wait: bool, poll: float) -> None:
        """Run configurations until none is left; with ``wait``, wait while others run theirs, to take over a dead
        one's."""
        waiting = False
        while True:
            claimed = self._next()
            if claimed is Idle.DONE or (claimed is Idle.WAIT and not wait):
                return
            if claimed is Idle.WAIT:
                if not waiting:
                    print(
                        f"[sweep {self.spec.name}] waiting: the configurations left are running in other workers",
                        flush=True,
                    )
                waiting = True
                time.sleep(poll)
                continue
            waiting = False
            self._run(claimed)


def _trial_number(trial: Any) -> int | str:
    """The Optuna trial's number as ``index.csv`` and the claim record it (empty without a trial)."""
    return trial.number if trial is not None else ""


def run_sweep(
    sweep_file: Path,
    sweep_dir: Path | None = None,
    max_runs: int | None = None,
    data_root: str | None = None,
    configs: Sequence[str] = (),
    overrides: Sequence[str] = (),
    wandb_mode: str = "offline",
    seed: int = 0,
    run_id_format: str = "run{:03d}",
    storage: str | None = None,
    workers: WorkerOptions | None = None,
) -> Path:
    """Run (or resume, or join as one more worker) a sweep; returns the sweep dir. See the module docstring.

    ``run_id_format`` names the runs by their position in the plan (``runs/<run id>/``). ``storage`` is the
    Optuna storage of a ``bayes`` sweep (default: a journal file in the sweep dir). ``workers``: this worker's
    heartbeat, label, and whether it waits for the runs of other workers.
    """
    spec = load_sweep(sweep_file)
    sweep_dir = sweep_dir or Path("runs") / "sweeps" / spec.name
    workers = workers or WorkerOptions()
    runner_args = {
        "max_runs": max_runs,
        "data_root": data_root,
        "configs": list(configs),
        "overrides": list(overrides),
        "wandb": wandb_mode,
        "seed": seed,
        "storage": storage,
    }
    if spec.method == "bayes" and storage:
        open_study(spec, storage, seed)  # a storage that cannot be opened is refused before the sweep dir is made
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        queue = workers.queue(sweep_dir)
        with queue.locked():
            plan = open_plan(sweep_dir, spec, plan_runs(spec, max_runs, seed), runner_args)
            (sweep_dir / "logs").mkdir(exist_ok=True)
    except OSError as err:
        raise MedlitError(
            f"{sweep_dir}: cannot write the sweep dir ({err.strerror}); choose a writable --sweep-dir"
        ) from None
    if spec.method == "bayes" and storage and storage != plan.storage:
        raise MedlitError(
            f"{sweep_dir}: its Optuna study is in {plan.storage}, not {storage}; leave out --storage or give the same "
            "one"
        )
    plan = replace(plan, runner_args={**plan.runner_args, "wandb": wandb_mode})  # how runs log may differ by worker
    _Worker(spec, queue, plan, run_id_format).work(workers.wait, poll=min(workers.heartbeat, 5.0))
    with queue.locked():
        if not (sweep_dir / "comparison.md").exists():
            compare_sweep(sweep_dir)
    return sweep_dir


def fit_overrides(fit_args: Sequence[str]) -> list[str]:
    """Fit arguments as ``--set`` overrides: ``--trainer.max_time 00:00:10:00`` (or ``--trainer.max_time=...``)
    becomes ``trainer.max_time=00:00:10:00``; an option with no value stays a flag. A word that follows no option is
    one error line."""
    overrides: list[str] = []
    for arg in fit_args:
        if arg.startswith("--") and len(arg) > 2:
            overrides.append(arg[2:])
        elif overrides and "=" not in overrides[-1]:
            overrides[-1] += f"={arg}"
        else:
            raise MedlitError(
                f"fit arguments after --: '{arg}' follows no option; write them as --key value or --key=value"
            )
    return overrides


def _split_fit_arguments(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """The runner's own arguments and the fit arguments after the first ``--``."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1 :]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m common.studies.sweep",
        description=__doc__.split("\n\n")[0],
        usage="python -m common.studies.sweep sweep_file [options] [-- fit arguments ...]",
        epilog="Fit arguments after -- (e.g. -- --trainer.max_time 00:00:10:00) go to every run, as --set overrides.",
    )
    parser.add_argument("sweep_file", type=Path, help="W&B sweep YAML (experiments/sweeps/*.yaml)")
    parser.add_argument("--sweep-dir", type=Path, default=None, help="default: runs/sweeps/<name>")
    parser.add_argument("--max-runs", type=int, default=None, help="run at most this many configurations")
    parser.add_argument("--data-root", default=None, help="passed to every run as --data.root")
    parser.add_argument("--config", action="append", default=[], help="extra config overlay for every run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override")
    parser.add_argument("--wandb", default="offline", choices=("offline", "online", "auto", "off"))
    parser.add_argument("--seed", type=int, default=0, help="seed of random/bayes sampling")
    add_worker_arguments(parser)
    parser.add_argument(
        "--storage",
        default=None,
        help="bayes: Optuna storage shared by the workers, an RDB URL "
        "(sqlite:///path.db, postgresql://...) or a journal file path (default: <sweep dir>/optuna.journal)",
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    own, fit_args = _split_fit_arguments(argv)
    args = _parser().parse_args(own)
    with exit_on_error():  # checked once, before any worker starts
        overrides = [*args.set, *fit_overrides(fit_args)]
    if args.workers > 1 or args.devices:
        sys.exit(start_local_workers("common.studies.sweep", argv, args))
    with exit_on_error():
        sweep_dir = run_sweep(
            args.sweep_file,
            args.sweep_dir,
            args.max_runs,
            args.data_root,
            args.config,
            overrides,
            args.wandb,
            args.seed,
            storage=args.storage,
            workers=WorkerOptions.from_arguments(args),
        )
    index = read_index(sweep_dir)
    failed = index[~index["status"].astype(str).eq("finished")]
    print(f"sweep_dir: {sweep_dir}")
    if not failed.empty:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
