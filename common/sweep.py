"""Run a W&B sweep file without a W&B server: ``python -m common.sweep experiments/sweeps/cls_loss.yaml``.

The same YAML that ``wandb sweep`` + ``wandb agent`` run online (``method``, ``metric``, ``parameters``,
``program``, ``command``) runs here one configuration after another, for clusters with no outbound network:

* ``grid``: every combination of the ``values`` (in file order); ``random``: configurations drawn with a seeded
  generator (``value``, ``values`` [+ ``probabilities``], ``min``/``max``, ``distribution``); ``bayes``: Optuna's
  TPE sampler, told each run's ``metric`` (stored in ``optuna.db``).
* The command is expanded with W&B's own macro code (``${env}``, ``${interpreter}``, ``${program}``,
  ``${args}``...), so each run gets exactly the arguments ``wandb agent`` would pass. The runner adds its own
  arguments (run dir, experiment name, W&B offline, data root, extra ``--config`` overlays) before ``${args}``.
* Resume: the plan (``plan.json``) and the run index (``index.csv``) live in the sweep dir. Starting the same
  sweep again skips finished runs, moves an interrupted run's folder aside (``<run>.interrupted-N``) and
  runs it again; it never repeats a finished run. A changed sweep file is refused for an existing sweep dir.
* After each run, ``comparison.md``/``.csv`` (configuration → test metrics, mean ± std over seeds) and seaborn
  figures (metrics by configuration, training curves overlaid) are rewritten in the sweep dir.
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

from common.compare import compare_sweep
from common.errors import MedlitError

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


# --- the index -----------------------------------------------------------------------------------------------
_INDEX_COLUMNS = ["run_id", "status", "run_dir", "params", "started", "finished", "seconds", "metric"]


def _read_index(sweep_dir: Path) -> pd.DataFrame:
    path = sweep_dir / "index.csv"
    if not path.exists():
        return pd.DataFrame(columns=_INDEX_COLUMNS)
    return pd.read_csv(path, dtype={"run_id": str, "status": str, "run_dir": str, "params": str})


def _write_index(sweep_dir: Path, index: pd.DataFrame) -> None:
    tmp = sweep_dir / ".index.csv.tmp"
    index.to_csv(tmp, index=False)
    tmp.replace(sweep_dir / "index.csv")


def _set_row(index: pd.DataFrame, run_id: str, **values: Any) -> pd.DataFrame:
    if run_id not in set(index["run_id"]):
        index = pd.concat([index, pd.DataFrame([{"run_id": run_id}])], ignore_index=True)
    for key, value in values.items():
        index[key] = index[key].astype(object)
        index.loc[index["run_id"] == run_id, key] = value
    return index


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
    """Run a command, its output into ``log_path`` (and the console); kill it if the runner is stopped."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

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


def _prepare_dir(sweep_dir: Path, spec: SweepSpec, plan: list[dict[str, Any]] | None, args: dict) -> list | None:
    """Create or reopen the sweep dir; the stored plan wins so that a resumed sweep runs the same runs."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    plan_path = sweep_dir / "plan.json"
    if plan_path.exists():
        stored = json.loads(plan_path.read_text())
        if stored["digest"] != spec.digest:
            raise MedlitError(
                f"{sweep_dir}: holds a sweep of another version of {spec.path.name}; resume with the same file or "
                "choose a new --sweep-dir"
            )
        return stored["plan"]
    plan_path.write_text(
        json.dumps(
            {
                "sweep": spec.name,
                "digest": spec.digest,
                "file": str(spec.path),
                "method": spec.method,
                "runner_args": args,
                "plan": plan,
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    (sweep_dir / "sweep.yaml").write_text(spec.path.read_text())
    return plan


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


def _execute(
    spec: SweepSpec, sweep_dir: Path, index: pd.DataFrame, run_dir: Path, params: dict[str, Any], command: list[str]
) -> tuple[pd.DataFrame, str, float]:
    """Run one configuration, recording it in the index before and after; returns the index, status, metric."""
    run_id = run_dir.name
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    index = _set_row(index, run_id, status="running", run_dir=str(run_dir), params=json.dumps(params), started=started)
    _write_index(sweep_dir, index)
    start = time.perf_counter()
    (sweep_dir / "logs").mkdir(exist_ok=True)
    code = run_logged(command, sweep_dir / "logs" / f"{run_id}.log")
    metric = _metric_of(run_dir, spec.metric.get("name"), spec.metric.get("goal", "maximize"))
    status = "finished" if code == 0 and (run_dir / "metrics.json").exists() else f"failed (exit {code})"
    finished = time.strftime("%Y-%m-%d %H:%M:%S")
    seconds = round(time.perf_counter() - start, 1)
    index = _set_row(index, run_id, status=status, finished=finished, seconds=seconds, metric=metric)
    _write_index(sweep_dir, index)
    return index, status, metric


def _is_finished(index: pd.DataFrame, run_id: str) -> bool:
    row = index.loc[index["run_id"] == run_id]
    return not row.empty and row["status"].iloc[0] == "finished"


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
) -> Path:
    """Run (or resume) a sweep; returns the sweep dir. See the module docstring.

    ``run_id_format`` names the runs by their position in the plan (``runs/<run id>/``).
    """
    spec = load_sweep(sweep_file)
    sweep_dir = sweep_dir or Path("runs") / "sweeps" / spec.name
    runner_args = {
        "max_runs": max_runs,
        "data_root": data_root,
        "configs": list(configs),
        "overrides": list(overrides),
        "wandb": wandb_mode,
        "seed": seed,
    }
    plan = _prepare_dir(sweep_dir, spec, plan_runs(spec, max_runs, seed), runner_args)
    total = len(plan) if plan is not None else (max_runs or spec.run_cap)
    if not total:
        raise MedlitError(f"{sweep_file}: bayes search needs run_cap in the file or --max-runs")
    study = _optuna_study(spec, sweep_dir, seed) if plan is None else None
    index = _read_index(sweep_dir)
    for position in range(total):
        run_id = run_id_format.format(position)
        if _is_finished(index, run_id):
            continue
        run_dir = fresh_run_dir(sweep_dir / "runs", run_id)
        trial = _ask(study, spec, run_id) if study is not None else None
        params = plan[position] if plan is not None else trial.params
        command = expand_command(spec, params, _runner_arguments(spec, run_dir, runner_args))
        print(f"[sweep {spec.name}] {run_id} ({position + 1}/{total}): {' '.join(command)}", flush=True)
        index, status, metric = _execute(spec, sweep_dir, index, run_dir, params, command)
        if study is not None:
            _tell(study, trial, metric, status == "finished")
        compare_sweep(sweep_dir)  # after every run, so a stopped sweep still has its comparison
    if not (sweep_dir / "comparison.md").exists():
        compare_sweep(sweep_dir)
    return sweep_dir


def _optuna_study(spec: SweepSpec, sweep_dir: Path, seed: int) -> Any:
    try:
        import optuna
    except ImportError:
        raise MedlitError("method bayes needs optuna (pip install optuna); grid and random need nothing more") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if spec.metric.get("goal", "maximize") == "maximize" else "minimize"
    study = optuna.create_study(
        study_name=spec.name,
        storage=f"sqlite:///{sweep_dir / 'optuna.db'}",
        load_if_exists=True,
        direction=direction,
        sampler=optuna.samplers.TPESampler(seed=seed),
    )
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)  # interrupted: its run starts over
    return study


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


def _ask(study: Any, spec: SweepSpec, run_id: str) -> Any:
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
    parser = argparse.ArgumentParser(prog="python -m common.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_file", type=Path, help="W&B sweep YAML (experiments/sweeps/*.yaml)")
    parser.add_argument("--sweep-dir", type=Path, default=None, help="default: runs/sweeps/<name>")
    parser.add_argument("--max-runs", type=int, default=None, help="run at most this many configurations")
    parser.add_argument("--data-root", default=None, help="passed to every run as --data.root")
    parser.add_argument("--config", action="append", default=[], help="extra config overlay for every run")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra override")
    parser.add_argument("--wandb", default="offline", choices=("offline", "online", "auto", "off"))
    parser.add_argument("--seed", type=int, default=0, help="seed of random/bayes sampling")
    args = parser.parse_args(argv)
    try:
        sweep_dir = run_sweep(
            args.sweep_file, args.sweep_dir, args.max_runs, args.data_root, args.config, args.set, args.wandb, args.seed
        )
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    index = _read_index(sweep_dir)
    failed = index[~index["status"].astype(str).eq("finished")]
    print(f"sweep_dir: {sweep_dir}")
    if not failed.empty:
        sys.exit(1)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
