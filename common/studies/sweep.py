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
* Many workers, one sweep: any number of runners - ``--workers N`` on this machine (``--devices 0,1``: one GPU
  each), or the same command on other machines sharing the filesystem (SLURM array tasks) - work on one sweep dir.
  Each configuration is claimed under the dir's lock (:class:`common.studies.workers.WorkQueue`): ``claims/<run>.json``
  names the worker's host and pid and carries its heartbeat; ``index.csv`` records which worker ran what. A run
  whose worker died (no heartbeat for ``--stale-after`` seconds, or its process gone on this host) goes back to
  the queue and is redone; a worker with nothing left to claim waits for the others, to take over a dead one's
  run, and stops when every configuration has finished (or failed: a failing configuration is retried by the next
  worker started, not in a loop). ``bayes`` workers share one Optuna study.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from common.errors import MedlitError, first_line
from common.files import write_json
from common.studies.compare import compare_sweep
from common.studies.index import index_row, read_index, set_row, write_index
from common.studies.workers import WorkerOptions, WorkQueue, add_worker_arguments, die_with_parent, start_local_workers

__all__ = [
    "DISTRIBUTIONS",
    "SweepSpec",
    "expand_command",
    "fresh_run_dir",
    "load_sweep",
    "main",
    "plan_runs",
    "run_logged",
    "run_sweep",
]


# --- the sweep file -------------------------------------------------------------------------------------------
class SweepSpec:
    """A parsed W&B sweep file."""

    def __init__(self, path: Path, config: dict[str, Any]) -> None:
        self.path = path
        self.config = config
        self.name: str = str(config.get("name") or path.stem)
        self.method: str = config.get("method", "grid")
        self.metric: dict[str, Any] = config.get("metric") or {}
        self.parameters: dict[str, dict[str, Any]] = config.get("parameters") or {}
        self.program: str = str(config.get("program", ""))
        self.command: list[str] = [str(c) for c in config.get("command") or []]
        self.run_cap: int | None = config.get("run_cap")
        self.digest = hashlib.sha1(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def load_sweep(path: Path) -> SweepSpec:
    """Read and check a sweep file; errors name the file and key."""
    if not path.is_file():
        raise MedlitError(f"{path}: sweep file not found")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise MedlitError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("parameters"), dict):
        raise MedlitError(f"{path}: a sweep file needs a 'parameters' mapping")
    spec = SweepSpec(path, config)
    if spec.method not in ("grid", "random", "bayes"):
        raise MedlitError(f"{path}: method '{spec.method}' unknown; choose grid, random or bayes")
    if spec.method == "bayes" and not spec.metric.get("name"):
        raise MedlitError(f"{path}: method bayes needs metric.name and metric.goal")
    if "${args}" not in spec.command and "${args_no_hyphens}" not in spec.command and spec.command:
        raise MedlitError(f"{path}: command must contain ${{args}} for the sweep parameters")
    for name, param in spec.parameters.items():
        if not isinstance(param, dict):
            raise MedlitError(f"{path}: parameters.{name} must be a mapping (value, values, min/max, distribution)")
        if "parameters" in param:
            raise MedlitError(f"{path}: parameters.{name}: nested parameters are not supported; use dotted names")
        if spec.method == "grid" and not ({"value", "values"} & set(param)):
            raise MedlitError(f"{path}: parameters.{name}: grid search needs 'value' or 'values'")
    return spec


# --- planning ------------------------------------------------------------------------------------------------
def _int_uniform(param: dict[str, Any], rng: np.random.Generator) -> int:
    return int(rng.integers(param["min"], param["max"] + 1))


def _uniform(param: dict[str, Any], rng: np.random.Generator) -> float:
    return float(rng.uniform(param["min"], param["max"]))


def _log_uniform_values(param: dict[str, Any], rng: np.random.Generator) -> float:
    return float(math.exp(rng.uniform(math.log(param["min"]), math.log(param["max"]))))


def _q_uniform(param: dict[str, Any], rng: np.random.Generator) -> float:
    q = param.get("q", 1.0)
    return float(round(rng.uniform(param["min"], param["max"]) / q) * q)


def _normal(param: dict[str, Any], rng: np.random.Generator) -> float:
    return float(rng.normal(param.get("mu", 0.0), param.get("sigma", 1.0)))


DISTRIBUTIONS: dict[str, Callable[[dict[str, Any], np.random.Generator], Any]] = {
    "int_uniform": _int_uniform,
    "uniform": _uniform,
    "log_uniform_values": _log_uniform_values,
    "q_uniform": _q_uniform,
    "normal": _normal,
}
"""W&B distributions the offline random search draws from (besides ``value`` and ``values``)."""


def _distribution_name(param: dict[str, Any]) -> str | None:
    """The W&B distribution of a parameter; W&B infers ``int_uniform``/``uniform`` from ``min``/``max``."""
    low, high = param.get("min"), param.get("max")
    if param.get("distribution") is None and low is not None and high is not None:
        return "int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform"
    return param.get("distribution")


def _sample(name: str, param: dict[str, Any], rng: np.random.Generator) -> Any:
    """One draw from a W&B parameter specification."""
    if "value" in param:
        return param["value"]
    if "values" in param:
        values = param["values"]
        p = param.get("probabilities")
        return values[int(rng.choice(len(values), p=np.asarray(p) / np.sum(p) if p else None))]
    distribution = _distribution_name(param)
    if distribution not in DISTRIBUTIONS:
        raise MedlitError(
            f"parameters.{name}: distribution '{distribution}' is not supported offline "
            f"(use value, values, min/max or one of {', '.join(DISTRIBUTIONS)})"
        )
    return DISTRIBUTIONS[distribution](param, rng)


def plan_runs(spec: SweepSpec, max_runs: int | None = None, seed: int = 0) -> list[dict[str, Any]] | None:
    """The parameter sets to run, in order (``None`` for bayes: planned one at a time by Optuna)."""
    cap = max_runs or spec.run_cap
    if spec.method == "grid":
        names = list(spec.parameters)
        choices = [p["values"] if "values" in p else [p["value"]] for p in spec.parameters.values()]
        plan = [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]
        return plan[:cap] if cap else plan
    if spec.method == "random":
        if not cap:
            raise MedlitError(f"{spec.path}: random search needs run_cap in the file or --max-runs")
        rng = np.random.default_rng(seed)
        return [{n: _sample(n, p, rng) for n, p in spec.parameters.items()} for _ in range(cap)]
    return None


def expand_command(spec: SweepSpec, params: dict[str, Any], extra: Sequence[str]) -> list[str]:
    """The run's command line, macros expanded by W&B's own code; ``extra`` goes just before ``${args}``."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    sweep_vars = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    sweep_vars.update(env=[], interpreter=[sys.executable], program=[spec.program])
    command: list[str] = []
    for token in create_sweep_command(spec.command or None):
        token = str(token)
        if token in ("${args}", "${args_no_hyphens}", "${args_no_boolean_flags}"):
            command += list(extra)
        if token.startswith("${") and token.endswith("}"):
            command += [str(v) for v in sweep_vars.get(token[2:-1]) or []]
        else:
            command.append(token)
    if command[:1] == [spec.program] and spec.program.endswith(".py"):
        command.insert(0, sys.executable)
    return command


# --- the sweep metric --------------------------------------------------------------------------------------
def _metric_of(run_dir: Path, name: str | None, goal: str) -> float:
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


# --- running -------------------------------------------------------------------------------------------------
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


_SAME_ARGUMENTS = ("configs", "overrides", "data_root")
"""Runner arguments every worker of a sweep dir must share (they change what a run computes)."""


def _prepare_dir(sweep_dir: Path, spec: SweepSpec, plan: list[dict[str, Any]] | None, args: dict) -> dict[str, Any]:
    """Create or reopen the sweep dir (under its lock); returns the stored plan file, which wins so that a resumed
    sweep and every worker run the same runs."""
    plan_path = sweep_dir / "plan.json"
    if plan_path.exists():
        stored = json.loads(plan_path.read_text())
        if stored["digest"] != spec.digest:
            made_by = Path(stored.get("file", "")).name
            what = "another version of" if made_by == spec.path.name else f"another sweep file ({made_by}), not"
            raise MedlitError(
                f"{sweep_dir}: holds a sweep of {what} {spec.path.name}; resume with the same file or choose a new "
                "--sweep-dir"
            )
        stored_args = stored.get("runner_args") or {}
        for key in _SAME_ARGUMENTS:
            if key in stored_args and stored_args[key] != args[key]:
                flag = {"configs": "--config", "overrides": "--set", "data_root": "--data-root"}[key]
                raise MedlitError(
                    f"{sweep_dir}: was started with {flag} {stored_args[key]}, not {args[key]}; every worker and "
                    "every resume of a sweep dir uses the same arguments (or choose a new --sweep-dir)"
                )
        return stored
    stored = {
        "sweep": spec.name,
        "digest": spec.digest,
        "file": str(spec.path),
        "method": spec.method,
        "runner_args": args,
        "plan": plan,
    }
    if spec.method == "bayes":
        stored["storage"] = args["storage"] or _default_storage(sweep_dir)
    write_json(plan_path, stored)
    (sweep_dir / "sweep.yaml").write_text(spec.path.read_text())
    return stored


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


def _runner_arguments(spec: SweepSpec, run_dir: Path, runner_args: dict[str, Any]) -> list[str]:
    """What the runner adds to every run's command, before the sweep parameters."""
    extra = [f"--config={c}" for c in runner_args["configs"]]
    extra += [f"--run.dir={run_dir}", f"--run.experiment={spec.name}", f"--run.wandb={runner_args['wandb']}"]
    extra += [f"--data.root={runner_args['data_root']}"] if runner_args["data_root"] else []
    return extra + [f"--{o}" for o in runner_args["overrides"]]


def _epoch_seconds(stamp: Any) -> float:
    try:
        return time.mktime(time.strptime(str(stamp), "%Y-%m-%d %H:%M:%S"))
    except ValueError:
        return 0.0


class _Worker:
    """One worker of a sweep dir: claims the next configuration, runs it, records it; see :func:`run_sweep`."""

    def __init__(self, spec: SweepSpec, sweep_dir: Path, queue: WorkQueue, stored: dict, run_id_format: str) -> None:
        self.spec, self.sweep_dir, self.queue = spec, sweep_dir, queue
        self.plan: list[dict[str, Any]] | None = stored["plan"]
        self.runner_args = stored["runner_args"]
        self.run_ids = [run_id_format.format(p) for p in range(self._total(stored))]
        self.started = time.time()
        self.attempted: set[str] = set()
        self.seed = int(stored["runner_args"].get("seed") or 0)
        self.study = _optuna_study(spec, stored["storage"], self.seed) if stored["plan"] is None else None

    def _total(self, stored: dict) -> int:
        if stored["plan"] is not None:
            return len(stored["plan"])
        total = stored["runner_args"].get("max_runs") or self.spec.run_cap
        if not total:
            raise MedlitError(f"{self.spec.path}: bayes search needs run_cap in the file or --max-runs")
        return int(total)

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
                _fail_trial(self.study, run_id)
        return index

    def _next(self) -> tuple[str, Path, dict[str, Any], Any] | bool | None:
        """Claim the next configuration: ``(run_id, run_dir, params, trial)``; ``True`` when the only work left is
        held by live workers (wait), ``None`` when nothing is left."""
        with self.queue.locked():
            index, claims = read_index(self.sweep_dir), self.queue.claims()
            index = self._reclaim(index, claims)
            todo = [r for r in self.run_ids if self._retryable(index, r, claims)]
            if not todo:
                write_index(self.sweep_dir, index)
                return True if any(r in claims for r in self.run_ids) else None
            run_id = todo[0]
            run_dir = fresh_run_dir(self.sweep_dir / "runs", run_id)
            seed = self.seed + self.run_ids.index(run_id)
            trial = _ask(self.study, self.spec, run_id, seed) if self.study else None
            params = self.plan[self.run_ids.index(run_id)] if self.plan is not None else trial.params
            number = trial.number if trial is not None else ""
            self.queue.take(run_id, trial=number)
            started = time.strftime("%Y-%m-%d %H:%M:%S")
            index = set_row(
                index,
                run_id,
                status="running",
                run_dir=str(run_dir),
                params=json.dumps(params),
                started=started,
                finished="",
                seconds="",
                metric="",
                worker=self.queue.label,
                trial=number,
            )
            write_index(self.sweep_dir, index)
        self.attempted.add(run_id)
        return run_id, run_dir, params, trial

    def _run(self, run_id: str, run_dir: Path, params: dict[str, Any], trial: Any) -> None:
        command = expand_command(self.spec, params, _runner_arguments(self.spec, run_dir, self.runner_args))
        position = self.run_ids.index(run_id)
        print(
            f"[sweep {self.spec.name}] {run_id} ({position + 1}/{len(self.run_ids)}): {' '.join(command)}", flush=True
        )
        start = time.perf_counter()
        with self.queue.beating(run_id):
            code = run_logged(command, self.sweep_dir / "logs" / f"{run_id}.log")
        metric = _metric_of(run_dir, self.spec.metric.get("name"), self.spec.metric.get("goal", "maximize"))
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
            if trial is not None:
                _tell(self.study, trial, metric, status == "finished")
            compare_sweep(self.sweep_dir)  # after every run, so a stopped sweep still has its comparison

    def work(self, wait: bool, poll: float) -> None:
        """Run configurations until none is left; with ``wait``, wait while others run theirs, to take over a dead
        one's."""
        waiting = False
        while True:
            claimed = self._next()
            if claimed is None or (claimed is True and not wait):
                return
            if claimed is True:
                if not waiting:
                    print(
                        f"[sweep {self.spec.name}] waiting: the configurations left are running in other workers",
                        flush=True,
                    )
                waiting = True
                time.sleep(poll)
                continue
            waiting = False
            self._run(*claimed)


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
        _optuna_study(spec, storage, seed)  # a storage that cannot be opened is refused before the sweep dir is made
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        queue = workers.queue(sweep_dir)
        with queue.locked():
            stored = _prepare_dir(sweep_dir, spec, plan_runs(spec, max_runs, seed), runner_args)
            (sweep_dir / "logs").mkdir(exist_ok=True)
    except OSError as err:
        raise MedlitError(
            f"{sweep_dir}: cannot write the sweep dir ({err.strerror}); choose a writable --sweep-dir"
        ) from None
    if spec.method == "bayes" and storage and storage != stored.get("storage"):
        raise MedlitError(
            f"{sweep_dir}: its Optuna study is in {stored.get('storage')}, not {storage}; leave out "
            "--storage or give the same one"
        )
    stored.setdefault("storage", f"sqlite:///{sweep_dir / 'optuna.db'}")  # a sweep dir made before journals
    stored["runner_args"]["wandb"] = wandb_mode  # how runs log may differ between workers
    _Worker(spec, sweep_dir, queue, stored, run_id_format).work(workers.wait, poll=min(workers.heartbeat, 5.0))
    with queue.locked():
        if not (sweep_dir / "comparison.md").exists():
            compare_sweep(sweep_dir)
    return sweep_dir


def _default_storage(sweep_dir: Path) -> str:
    """A journal file in the sweep dir: the Optuna storage meant for several processes on a shared filesystem."""
    return str(sweep_dir / "optuna.journal")


def _optuna_study(spec: SweepSpec, storage: str, seed: int) -> Any:
    """The sweep's Optuna study in ``storage`` (an RDB URL, or a journal file path), shared by every worker."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        raise MedlitError("method bayes needs optuna (pip install optuna); grid and random need nothing more") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if spec.metric.get("goal", "maximize") == "maximize" else "minimize"
    try:
        backend = storage if "://" in storage else JournalStorage(JournalFileBackend(storage))
        study = optuna.create_study(
            study_name=spec.name,
            storage=backend,
            load_if_exists=True,
            direction=direction,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
    except Exception as err:  # SQLAlchemy, its drivers and the filesystem raise many kinds
        raise MedlitError(f"--storage {storage}: cannot open the Optuna storage ({first_line(err)})") from None
    return study


def _fail_trial(study: Any, run_id: str) -> None:
    """Mark the trial of an interrupted run failed (its configuration is asked for again)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("run_id") == run_id:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _optuna_distribution(name: str, param: dict[str, Any]) -> Any:
    import optuna

    if "value" in param:
        return optuna.distributions.CategoricalDistribution([param["value"]])
    if "values" in param:
        return optuna.distributions.CategoricalDistribution(param["values"])
    kinds = {
        "int_uniform": lambda low, high: optuna.distributions.IntDistribution(low, high),
        "uniform": lambda low, high: optuna.distributions.FloatDistribution(low, high),
        "log_uniform_values": lambda low, high: optuna.distributions.FloatDistribution(low, high, log=True),
    }
    kind = _distribution_name(param)
    if kind not in kinds:
        raise MedlitError(f"parameters.{name}: distribution '{kind}' is not supported by the offline bayes search")
    return kinds[kind](param["min"], param["max"])


def _ask(study: Any, spec: SweepSpec, run_id: str, seed: int) -> Any:
    """A new trial for ``run_id``, sampled with ``seed`` (the sweep's seed + the run's position: workers asking at
    the same time get different configurations, and one worker's sequence is reproducible). ``constant_liar``:
    TPE treats the trials still running in other workers as bad, so that they are not proposed again."""
    import optuna

    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    trial = study.ask({n: _optuna_distribution(n, p) for n, p in spec.parameters.items()})
    trial.set_user_attr("run_id", run_id)
    return trial


def _tell(study: Any, trial: Any, metric: float, finished: bool) -> None:
    import optuna

    if finished and math.isfinite(metric):
        study.tell(trial, metric)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m common.studies.sweep", description=__doc__.split("\n\n")[0])
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
    args = parser.parse_args(argv)
    if args.workers > 1 or args.devices:
        sys.exit(start_local_workers("common.studies.sweep", argv, args))
    try:
        sweep_dir = run_sweep(
            args.sweep_file,
            args.sweep_dir,
            args.max_runs,
            args.data_root,
            args.config,
            args.set,
            args.wandb,
            args.seed,
            storage=args.storage,
            workers=WorkerOptions.from_arguments(args),
        )
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    index = read_index(sweep_dir)
    failed = index[~index["status"].astype(str).eq("finished")]
    print(f"sweep_dir: {sweep_dir}")
    if not failed.empty:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
