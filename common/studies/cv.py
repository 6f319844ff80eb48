"""K-fold cross-validation as one command: ``python -m common.studies.cv <task> <fit arguments> --folds 5``.

The fit arguments are those of ``python -m <task> fit`` (``--config``, ``--data.root``, ``--trainer.max_time``...).
The run writes a ``cv/`` dir (``--cv-dir``, default ``runs/cv/<task>``):

* ``cv.yaml``, ``plan.json``, ``index.csv``, ``logs/``, ``runs/fold<k>/``: the folds, run by the sweep runner
  (:mod:`common.studies.sweep`) as a grid over ``data.fold`` with ``--data.num_folds K``: resumable, offline
  W&B. Each fold trains on the other folds' items, selects on its own, and is tested on the test set as any run.
* ``oof_runs/fold<k>/``: each fold's model tested on the fold it did not train on (``--data.test_split val``):
  ordinary test run dirs, with the raw probabilities (no decision rule, no post-processing).
* ``oof/``: the **out-of-fold predictions** pooled (every labelled non-test item exactly once), their metrics with
  intervals (``metrics.json``) under the decisions chosen on them, and ``decisions.json``: what was chosen on
  them (the classifier's decision τ, the segmenter's largest-component post-processing), the score of every
  candidate, and which data chose it. The choice is made by the task's ``<task>.ensemble.pool_out_of_fold``.
* ``ensemble/``: the fold models' ensemble (``test --ensemble runs/fold0 ...``, the chosen decisions) tested on
  the test set: an ordinary run dir.
* ``folds.csv``, ``summary.md`` and ``ensemble_comparisons.csv``: each fold's out-of-fold and test numbers, the
  pooled out-of-fold estimate, the ensemble's test numbers with intervals, and the ensemble against each fold model
  on the same test items (paired bootstrap, :func:`common.studies.paired.compare_runs`), written by
  :mod:`common.studies.cv_summary`.

Starting the same command again resumes: finished folds and steps are kept, an interrupted one is redone.
Several workers share one cv dir (``--workers N`` on this machine, or the same command on machines sharing the
filesystem): the folds are claimed like a sweep's runs (:mod:`common.studies.claims`), and the evaluation after
them is done once, by one worker (``claims/evaluate.json``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from common.contracts import TaskEnsemble, check_contract
from common.errors import MedlitError, exit_on_error
from common.files import atomic_path
from common.rundir import read_run_info, update_run_info
from common.studies.claims import WorkerOptions, add_worker_arguments
from common.studies.cv_summary import write_summary
from common.studies.runner import fresh_run_dir, run_logged
from common.studies.sweep import run_sweep
from common.studies.workers import start_local_workers

__all__ = ["RUNNER_KEYS", "cv_spec", "main", "run_cv"]

RUNNER_KEYS = ("--data.num_folds", "--data.fold", "--data.test_split", "--run.dir", "--run.experiment")
"""Fit arguments the runner sets itself (refused on the command line)."""


def cv_spec(task: str, fit_args: Sequence[str], folds: int, name: str) -> dict[str, Any]:
    """The sweep file of the folds: a grid over ``data.fold`` of ``python -m <task> fit <fit_args>``."""
    return {
        "name": name,
        "program": task,
        "method": "grid",
        "metric": {},
        "parameters": {"data.fold": {"values": list(range(folds))}},
        "command": [
            "${env}",
            "${interpreter}",
            "-m",
            "${program}",
            "fit",
            *fit_args,
            f"--data.num_folds={folds}",
            "${args}",
        ],
    }


def _check_arguments(task: str, fit_args: Sequence[str], folds: int) -> Any:
    """The task's ensemble module; one error line for arguments the runner owns."""
    if folds < 2:
        raise MedlitError(f"--folds must be at least 2, got {folds}")
    for arg in fit_args:
        key = arg.split("=", 1)[0]
        if key in RUNNER_KEYS:
            raise MedlitError(f"{key}: set by the cross-validation runner for each fold; leave it out")
    try:
        module = importlib.import_module(f"{task}.ensemble")
    except ModuleNotFoundError as err:
        if err.name not in (task, f"{task}.ensemble"):
            raise
        raise MedlitError(f"'{task}': not a task with cross-validation (no module {task}.ensemble)") from None
    check_contract(module, TaskEnsemble, "ensemble module")
    return module


def _write_spec(cv_dir: Path, spec: dict[str, Any]) -> Path:
    """``cv.yaml``; a cv dir made by other arguments is refused (resume with the same command)."""
    path = cv_dir / "cv.yaml"
    text = yaml.safe_dump(spec, sort_keys=False)
    if path.exists() and yaml.safe_load(path.read_text()) != spec:
        raise MedlitError(
            f"{cv_dir}: holds a cross-validation run with other arguments (see its cv.yaml); resume with the same "
            "command or choose a new --cv-dir"
        )
    cv_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        with atomic_path(path) as tmp:  # workers starting together read all of it or nothing
            tmp.write_text(text)
    return path


def _tested_checkpoint(run_dir: Path) -> str:
    checkpoint = read_run_info(run_dir).get("tested_checkpoint") or ""
    if not checkpoint or not Path(checkpoint).is_file():
        raise MedlitError(f"{run_dir}: no tested checkpoint recorded in run_info.json (did the fold finish?)")
    return checkpoint


def _finished(run_dir: Path) -> bool:
    return (run_dir / "metrics.json").is_file()


def _task_test(task: str, config: Path, extra: Sequence[str], run_dir: Path, experiment: str, log: Path) -> None:
    """``python -m <task> test --config <a fold's config> <extra> --run.dir <run_dir>``, unless already done."""
    if _finished(run_dir):
        return
    run_dir = fresh_run_dir(run_dir.parent, run_dir.name)
    command = [sys.executable, "-m", task, "test", f"--config={config}", *extra, f"--run.dir={run_dir}"]
    command += [f"--run.experiment={experiment}"]
    command += ["--run.wandb=off", "--run.test_after_fit=false"]
    print(f"[cv] {' '.join(command)}", flush=True)
    code = run_logged(command, log)
    if code != 0 or not _finished(run_dir):
        raise MedlitError(f"{run_dir}: the test failed (exit {code}); see {log}")


def run_cv(
    task: str,
    fit_args: Sequence[str],
    folds: int,
    cv_dir: Path | None = None,
    wandb_mode: str = "offline",
    workers: WorkerOptions | None = None,
) -> Path:
    """Run (or resume, or join as one more worker) a cross-validation; returns the cv dir. See the module docstring.

    Several workers share the folds (:func:`common.studies.sweep.run_sweep`); the evaluation after them (out-of-fold
    tests, pool, ensemble, summary) is done by one worker at a time (``claims/evaluate.json``), and once.
    """
    ensemble = _check_arguments(task, fit_args, folds)
    cv_dir = cv_dir or Path("runs") / "cv" / task
    workers = workers or WorkerOptions()
    try:
        spec_file = _write_spec(cv_dir, cv_spec(task, fit_args, folds, cv_dir.name))
    except OSError as err:
        raise MedlitError(f"{cv_dir}: cannot write the cv dir ({err.strerror}); choose a writable --cv-dir") from None
    run_sweep(
        spec_file,
        cv_dir,
        wandb_mode=wandb_mode,
        run_id_format="fold{}",
        workers=workers,
    )
    fold_dirs = [cv_dir / "runs" / f"fold{k}" for k in range(folds)]
    queue = workers.queue(cv_dir)
    held = [d.name for d in fold_dirs if queue.claim_of(d.name)]
    if held:  # --no-wait: other workers still train these; the last of them evaluates
        print(f"[cv] {', '.join(held)} still running in other workers; the last to finish evaluates", flush=True)
        return cv_dir
    failed = [d.name for d in fold_dirs if not _finished(d) or not read_run_info(d).get("fit_finished")]
    if failed:
        raise MedlitError(f"{cv_dir}: fold(s) {', '.join(failed)} did not finish; see {cv_dir / 'logs'} and rerun")
    with queue.exclusive("evaluate"):
        if all(_finished(d) for d in (cv_dir / "oof", cv_dir / "ensemble")) and (cv_dir / "summary.md").is_file():
            return cv_dir  # another worker evaluated the folds
        _evaluate(task, ensemble, cv_dir, fold_dirs)
    return cv_dir


def _evaluate(task: str, ensemble: Any, cv_dir: Path, fold_dirs: list[Path]) -> None:
    """The out-of-fold tests and pool, the decisions, the ensemble's test and the summary (each step resumable)."""
    oof_dirs = [cv_dir / "oof_runs" / d.name for d in fold_dirs]
    for fold_dir, oof_dir in zip(fold_dirs, oof_dirs, strict=True):
        extra = [f"--ckpt_path={_tested_checkpoint(fold_dir)}", "--data.test_split=val", *ensemble.OUT_OF_FOLD_ARGS]
        log = cv_dir / "logs" / f"oof_{fold_dir.name}.log"
        _task_test(task, fold_dir / "config.yaml", extra, oof_dir, f"{cv_dir.name}_oof_{fold_dir.name}", log)
    shutil.rmtree(cv_dir / "oof", ignore_errors=True)  # pooled again from the out-of-fold runs on every resume
    decisions = ensemble.pool_out_of_fold(oof_dirs, cv_dir / "oof")
    update_run_info(cv_dir / "oof", experiment=f"{cv_dir.name}_oof")
    members = ["--ensemble", *map(str, fold_dirs)]
    ensemble_dir = cv_dir / "ensemble"
    extra = [*members, *decisions["args"]]
    log = cv_dir / "logs" / "ensemble.log"
    _task_test(task, fold_dirs[0] / "config.yaml", extra, ensemble_dir, f"{cv_dir.name}_ensemble", log)
    update_run_info(ensemble_dir, decisions={k: decisions[k] for k in ("values", "chosen_on")})
    write_summary(cv_dir, fold_dirs, oof_dirs, ensemble_dir, decisions)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m common.studies.cv",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        usage="python -m common.studies.cv TASK [fit arguments ...] --folds K [--cv-dir DIR] [--wandb MODE] "
        "[--workers N]",
    )
    parser.add_argument("task", help="the task package (its `python -m <task> fit` trains a fold)")
    parser.add_argument("--folds", type=int, default=5, help="number of folds (default 5)")
    parser.add_argument("--cv-dir", type=Path, default=None, help="default: runs/cv/<task>")
    parser.add_argument("--wandb", default="offline", choices=("offline", "online", "auto", "off"))
    add_worker_arguments(parser)
    argv = list(sys.argv[1:] if argv is None else argv)
    args, fit_args = parser.parse_known_args(argv)
    if args.workers > 1 or args.devices:
        sys.exit(start_local_workers("common.studies.cv", argv, args))
    with exit_on_error():
        cv_dir = run_cv(args.task, fit_args, args.folds, args.cv_dir, args.wandb, WorkerOptions.from_arguments(args))
    if (cv_dir / "summary.md").is_file():
        print((cv_dir / "summary.md").read_text())
    print(f"cv_dir: {cv_dir}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
