"""The sweep file and its plan: a W&B sweep YAML read and checked, its configurations drawn, each run's command
expanded as ``wandb agent`` would, and the sweep dir's ``plan.json`` (read and written only here).

* ``grid``: every combination of the ``values`` (in file order); ``random``: configurations drawn with a seeded
  generator (``value``, ``values`` [+ ``probabilities``], ``min``/``max``, :data:`DISTRIBUTIONS`); ``bayes``:
  planned one run at a time by Optuna (:mod:`common.studies.search`).
* ``plan.json`` records the sweep file's digest, the planned configurations and the runner's arguments when the
  sweep dir is made; it wins on every resume and for every worker, so that they all run the same runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from common.errors import MedlitError
from common.files import write_json

__all__ = [
    "DISTRIBUTIONS",
    "PLAN_FILE",
    "SweepPlan",
    "SweepSpec",
    "distribution_name",
    "expand_command",
    "load_sweep",
    "open_plan",
    "plan_runs",
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


# --- sampling ------------------------------------------------------------------------------------------------
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


def distribution_name(param: dict[str, Any]) -> str | None:
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
    distribution = distribution_name(param)
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


# --- plan.json -----------------------------------------------------------------------------------------------
PLAN_FILE = "plan.json"

_SAME_ARGUMENTS = {"configs": "--config", "overrides": "--set", "data_root": "--data-root"}
"""Runner arguments every worker of a sweep dir must share (they change what a run computes), with their flags."""


@dataclass(frozen=True)
class SweepPlan:
    """What ``plan.json`` records for every worker and resume of a sweep dir."""

    folder: Path
    """The sweep dir."""
    runs: list[dict[str, Any]] | None
    """The configurations in run order (``None`` for bayes: asked of Optuna one at a time)."""
    runner_args: dict[str, Any]
    """The runner's arguments when the sweep dir was made (``configs``, ``overrides``, ``data_root``, ``wandb``...)."""
    storage: str | None
    """The Optuna storage recorded for a bayes sweep (``None`` when none is recorded)."""

    @property
    def study_storage(self) -> str:
        """Where the bayes study lives; a sweep dir made before journals has it in ``optuna.db``."""
        return self.storage or f"sqlite:///{self.folder / 'optuna.db'}"

    def run_count(self, spec: SweepSpec) -> int:
        """How many runs the sweep has (bayes: ``--max-runs``, else the file's ``run_cap``)."""
        if self.runs is not None:
            return len(self.runs)
        total = self.runner_args.get("max_runs") or spec.run_cap
        if not total:
            raise MedlitError(f"{spec.path}: bayes search needs run_cap in the file or --max-runs")
        return int(total)


def _check_same_sweep(sweep_dir: Path, spec: SweepSpec, stored: dict[str, Any], args: dict[str, Any]) -> None:
    """Refuse a sweep dir made by another sweep file, or by other arguments that change what a run computes."""
    if stored["digest"] != spec.digest:
        made_by = Path(stored.get("file", "")).name
        what = "another version of" if made_by == spec.path.name else f"another sweep file ({made_by}), not"
        raise MedlitError(
            f"{sweep_dir}: holds a sweep of {what} {spec.path.name}; resume with the same file or choose a new "
            "--sweep-dir"
        )
    stored_args = stored.get("runner_args") or {}
    for key, flag in _SAME_ARGUMENTS.items():
        if key in stored_args and stored_args[key] != args[key]:
            raise MedlitError(
                f"{sweep_dir}: was started with {flag} {stored_args[key]}, not {args[key]}; every worker and "
                "every resume of a sweep dir uses the same arguments (or choose a new --sweep-dir)"
            )


def open_plan(sweep_dir: Path, spec: SweepSpec, runs: list[dict[str, Any]] | None, args: dict[str, Any]) -> SweepPlan:
    """Create or reopen the sweep dir's plan (call under the dir's lock). An existing ``plan.json`` wins, so that a
    resumed sweep and every worker run the same runs; a new one also keeps a copy of the sweep file
    (``sweep.yaml``)."""
    plan_path = sweep_dir / PLAN_FILE
    if plan_path.exists():
        stored = json.loads(plan_path.read_text())
        _check_same_sweep(sweep_dir, spec, stored, args)
    else:
        stored = {
            "sweep": spec.name,
            "digest": spec.digest,
            "file": str(spec.path),
            "method": spec.method,
            "runner_args": args,
            "plan": runs,
        }
        if spec.method == "bayes":
            stored["storage"] = args["storage"] or _default_storage(sweep_dir)
        write_json(plan_path, stored)
        (sweep_dir / "sweep.yaml").write_text(spec.path.read_text())
    return SweepPlan(sweep_dir, stored["plan"], stored["runner_args"], stored.get("storage"))


def _default_storage(sweep_dir: Path) -> str:
    """A journal file in the sweep dir: the Optuna storage meant for several processes on a shared filesystem."""
    return str(sweep_dir / "optuna.journal")
