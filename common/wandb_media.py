"""A test's figures, tables and headline numbers in the run's W&B run, logged once by the code that wrote the files.

A task's outputs callback writes its files first, then hands this module what it wants in W&B: a ``build`` function
that turns the ``wandb`` module into ``{key: wandb object}`` (tables, images, charts), and the summary numbers (the
headline test metrics with their interval bounds, :func:`interval_summary`). This module finds the W&B run among the
trainer's loggers (rank 0 only; nothing when W&B is off), logs the objects as one step and the numbers into the run
summary, and, when something fails, prints one ``warning:`` line that says what was not logged: the run, its files and
its other numbers go on unaffected. Nothing here draws a random number: the global random states (Python, NumPy,
torch) are the same after logging as before (:func:`random_states_kept`), so a run with W&B gives the numbers of a run
without it.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd
import torch

__all__ = [
    "CheckpointUpload",
    "WandbBuild",
    "image_files",
    "interval_summary",
    "log_to_wandb",
    "logs_to_wandb",
    "random_states_kept",
    "table_of",
    "wandb_run",
    "warn_not_logged",
]

WandbBuild = Callable[[ModuleType], Mapping[str, Any]]
"""``build(wandb) -> {key: value}``: the objects to log (``wandb.Table``, ``wandb.Image`` or lists of them, charts);
called only when a W&B run is there, so that a run without W&B never builds them."""


def wandb_run(trainer: Any) -> Any | None:
    """The W&B run of the trainer's :class:`~lightning.pytorch.loggers.WandbLogger` on rank 0, else ``None`` (W&B off,
    not installed, another rank, or no trainer loggers)."""
    if not getattr(trainer, "is_global_zero", False):
        return None
    from lightning.pytorch.loggers import WandbLogger

    for logger in getattr(trainer, "loggers", None) or []:
        if isinstance(logger, WandbLogger):
            return logger.experiment
    return None


def logs_to_wandb(trainer: Any) -> bool:
    """Whether the trainer has a W&B logger (on every rank alike: a rank that gathers for rank 0 asks this)."""
    from lightning.pytorch.loggers import WandbLogger

    return any(isinstance(logger, WandbLogger) for logger in getattr(trainer, "loggers", None) or [])


@contextmanager
def random_states_kept() -> Iterator[None]:
    """The global random states of Python, NumPy and torch (CPU) are restored on leaving, whatever ran inside."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def warn_not_logged(what: Sequence[str], err: BaseException) -> None:
    """The one line a run prints when W&B did not take some of its results (stderr, like the ``error:`` line)."""
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    print(f"warning: W&B did not log {', '.join(what)} ({type(err).__name__}: {reason[:200]})", file=sys.stderr)


def interval_summary(metrics: Mapping[str, Any], logged: Sequence[str], prefix: str = "test/") -> dict[str, float]:
    """The run-summary numbers of a test: each logged metric (``<prefix><name>``, its value or ``mean``) and, where
    ``metrics.json``'s ``ci95`` has its interval, ``<prefix><name>_ci_low`` and ``_ci_high``.

    Args:
        metrics: What ``metrics.json`` holds (a value or ``{"mean": ...}`` per metric, ``ci95``: name → [low, high]).
        logged: The names the task logs as ``<prefix><name>``.
    """
    intervals = metrics.get("ci95") or {}
    summary: dict[str, float] = {}
    for name in logged:
        value = metrics.get(name)
        value = value.get("mean") if isinstance(value, Mapping) else value
        if isinstance(value, int | float):
            summary[f"{prefix}{name}"] = float(value)
        if name in intervals and intervals[name] is not None:
            low, high = intervals[name]
            summary[f"{prefix}{name}_ci_low"] = float(low)
            summary[f"{prefix}{name}_ci_high"] = float(high)
    return summary


def table_of(wandb: ModuleType, frame: pd.DataFrame) -> Any:
    """A ``wandb.Table`` of ``frame`` (its columns as they are; NaN cells become empty: W&B's JSON has no NaN)."""
    cleaned = frame.astype(object).where(frame.notna(), None)
    return wandb.Table(columns=[str(c) for c in frame.columns], data=cleaned.to_numpy().tolist())


def image_files(wandb: ModuleType, paths: Sequence[Path], captions: Sequence[str] | None = None) -> list[Any]:
    """``wandb.Image`` of PNG files written into the run dir, with a caption each (default: the file's name)."""
    captions = captions if captions is not None else [path.stem for path in paths]
    return [wandb.Image(str(path), caption=caption) for path, caption in zip(paths, captions, strict=True)]


@dataclass(frozen=True)
class CheckpointUpload:
    """The tested checkpoint as a W&B artifact ``model-<W&B run id>`` of type ``model`` (alias ``tested``),
    referenced in place (not copied).

    Args:
        path: The checkpoint file (nothing is uploaded when it is not a file, e.g. an ensemble of several).
        metadata: Shown beside the artifact (e.g. the tested run's dir).
    """

    path: str | Path | None
    metadata: Mapping[str, Any] = field(default_factory=dict)


_WHAT = {
    "summary": "the test summary (metrics and intervals)",
    "media": "the test figures and tables",
    "checkpoint": "the tested checkpoint",
}


def _log_media(run: Any, build: WandbBuild | None) -> None:
    if build is None:
        return
    import wandb

    payload = dict(build(wandb))
    if payload:
        run.log(payload)


def _log_checkpoint(run: Any, upload: CheckpointUpload | None) -> None:
    if upload is None or upload.path is None or not Path(upload.path).is_file():
        return
    import wandb

    artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=dict(upload.metadata))
    artifact.add_file(str(upload.path), policy="immutable")
    run.log_artifact(artifact, aliases=["tested"])


def log_to_wandb(
    trainer: Any,
    summary: Mapping[str, float],
    build: WandbBuild | None = None,
    checkpoint: CheckpointUpload | None = None,
) -> bool:
    """Put a test's headline numbers into the run summary, ``build``'s objects into one logged step and, when given,
    the tested checkpoint into an artifact.

    Does nothing when there is no W&B run (:func:`wandb_run`). Each part is tried on its own; what failed is named
    in one ``warning:`` line, never raised. Call it after every file is written: the files never depend on it.

    Returns:
        Whether everything was logged (``False`` also when there was no W&B run).
    """
    run = wandb_run(trainer)
    if run is None:
        return False
    steps = {
        "summary": lambda: run.summary.update(dict(summary)),
        "media": lambda: _log_media(run, build),
        "checkpoint": lambda: _log_checkpoint(run, checkpoint),
    }
    failed: list[str] = []
    first_error: BaseException | None = None
    with random_states_kept():
        for what, step in steps.items():
            try:
                step()
            except Exception as err:  # a failed upload must not fail the run: said once, below
                failed.append(_WHAT[what])
                first_error = first_error or err
    if first_error is not None:
        warn_not_logged(failed, first_error)
    return not failed
