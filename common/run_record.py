"""What a run's ``run_info.json`` records about it: when it starts (task, classes, monitor, parameter counts, and its
``provenance``: code version, packages, device), each resume, and the end of its ``fit`` (the best checkpoint and the
one tested). Written by rank 0 through :func:`common.rundir.update_run_info`, read by :mod:`common.studies.runs`."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only

from common.ensemble import Member
from common.provenance import code_version, device_description, package_versions
from common.run_options import RunOptions
from common.rundir import LAST_CHECKPOINT_STEM, read_run_info, update_run_info

__all__ = ["record_device", "record_fit_end", "record_resume", "record_start"]


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def _write(run_dir: Path, **values: Any) -> None:
    """Merge ``values`` into ``run_info.json`` (rank 0 only): what the report needs to know about the run."""
    if rank_zero_only.rank == 0:
        update_run_info(run_dir, **values)


def _counted_parameters(module: LightningModule, members: Sequence[Member]) -> list[Any]:
    """The module's parameters, or its ensemble members' (the ensemble's own network is not used)."""
    held = getattr(module, "members", None)
    if members and held is not None:
        return list(held.member_parameters())
    return list(module.parameters())


def record_start(
    run_dir: Path,
    options: RunOptions,
    subcommand: str,
    module: LightningModule,
    datamodule: LightningDataModule,
    report_module: str | None,
    members: Sequence[Member] = (),
) -> None:
    """A new run: its experiment, task, classes, monitor, parameter counts, start time, command line and (for an
    ensemble) its members.

    Args:
        run_dir: The run directory.
        options: The run's ``run`` settings.
        subcommand: What runs (``fit``, ``test`` ...).
        module: The built task module (an ensemble's holds its members).
        datamodule: The built datamodule.
        report_module: The module that registers the task's report sections.
        members: The ensemble's members (none for a single model).
    """
    parameters = _counted_parameters(module, members)
    _write(
        run_dir,
        experiment=options.experiment,
        task=module.task,
        report_module=report_module,
        subcommand=subcommand,
        model_class=f"{type(module).__module__}.{type(module).__qualname__}",
        datamodule_class=f"{type(datamodule).__module__}.{type(datamodule).__qualname__}",
        monitor=module.monitor,
        monitor_mode=module.monitor_mode,
        parameters=sum(p.numel() for p in parameters),
        trainable_parameters=sum(p.numel() for p in parameters if p.requires_grad),
        started=_now(),
        argv=sys.argv,
        provenance={**code_version(), **package_versions()},
        **({"ensemble": [m.record() for m in members]} if members else {}),
    )


def record_device(run_dir: Path, trainer: Trainer) -> None:
    """The device the run trains and tests on (``provenance`` in ``run_info.json``, beside the code version)."""
    provenance = read_run_info(run_dir).get("provenance", {})
    _write(run_dir, provenance={**provenance, **device_description(trainer)})


def record_resume(run_dir: Path, ckpt_path: str) -> None:
    """One more resume of an unfinished run: when, from which checkpoint, with which command line."""
    resumes = read_run_info(run_dir).get("resumes", [])
    _write(run_dir, resumes=[*resumes, {"at": _now(), "ckpt_path": ckpt_path, "argv": sys.argv}])


def record_fit_end(run_dir: Path, checkpoints: Sequence[ModelCheckpoint], test_checkpoint: str) -> str:
    """The end of ``fit`` (a later resume starts a new run), the best checkpoint (chosen on validation data) and the
    one ``run.test_checkpoint`` names for the test.

    Args:
        run_dir: The run directory.
        checkpoints: The trainer's checkpoint callbacks.
        test_checkpoint: ``best`` or ``last`` (``run.test_checkpoint``).

    Returns:
        The checkpoint to test; empty for the weights in memory.
    """
    checkpoint = next((c for c in checkpoints if c.monitor), None)  # the one that selects on validation
    best = checkpoint.best_model_path if checkpoint is not None else ""
    values: dict[str, Any] = {"fit_finished": _now()}
    if best:
        values.update(best_checkpoint=best, best_score=float(checkpoint.best_model_score))
    tested = best
    if test_checkpoint == "last":
        # the house's last.ckpt (rewritten every epoch), else the weights in memory: a configured callback's
        # save_last file is only rewritten when its best improves
        paths = [c.best_model_path for c in checkpoints if Path(c.best_model_path).stem == LAST_CHECKPOINT_STEM]
        tested = paths[0] if paths else ""
    _write(run_dir, **values, test_checkpoint=test_checkpoint, tested_checkpoint=tested)
    return tested
