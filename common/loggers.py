"""Loggers for every run: CSV always, Weights & Biases online, offline (into the run dir) or off."""

from __future__ import annotations

import netrc
import os
import sys
from pathlib import Path
from typing import Literal

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from common.rundir import WANDB_ID_ENV, read_run_info, update_run_info

__all__ = [
    "WandbMode",
    "build_loggers",
    "finish_wandb",
    "new_wandb_id",
    "resolve_wandb_mode",
    "run_loggers",
    "run_wandb_id",
]

WandbMode = Literal["auto", "online", "offline", "off"]


def _wandb_key_configured() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_wandb_mode(mode: WandbMode) -> Literal["online", "offline", "off"]:
    """Turn ``auto`` into a concrete mode.

    ``auto`` is online when an API key is configured (``WANDB_API_KEY`` or ``wandb login``'s netrc entry)
    and offline otherwise, so that ``wandb sync <run_dir>/wandb/offline-run-*`` uploads the run later.
    ``WANDB_MODE=offline`` or ``disabled`` in the environment wins over ``auto``.
    """
    if mode != "auto":
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in {"disabled", "off"}:
        return "off"
    if env_mode in {"offline", "dryrun"}:
        return "offline"
    return "online" if _wandb_key_configured() else "offline"


def _wandb_installed() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def new_wandb_id() -> str:
    """A fresh W&B run id (8 lowercase letters and digits, as W&B makes them)."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def build_loggers(
    run_dir: Path,
    experiment: str,
    wandb_mode: WandbMode = "auto",
    wandb_project: str = "medlit",
    wandb_id: str | None = None,
) -> list[Logger]:
    """CSV logs in ``<run_dir>/logs/metrics.csv``; W&B files in ``<run_dir>/wandb/`` unless mode is off.

    ``wandb_id`` names the W&B run; the same id continues the same run (``resume="allow"``) after a resume.
    """
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="logs", version="")]
    mode = resolve_wandb_mode(wandb_mode)
    if mode != "off" and not _wandb_installed():
        if rank_zero_only.rank == 0:
            print(
                f"warning: W&B is not installed (pip install wandb): this run logs to {run_dir / 'logs'} only",
                file=sys.stderr,
            )
        mode = "off"
    if os.environ.get("WANDB_SWEEP_ID") and os.environ.get("WANDB_PROJECT"):
        wandb_project = os.environ["WANDB_PROJECT"]  # a W&B agent's run belongs to the sweep's project
    if mode != "off":
        loggers.append(
            WandbLogger(
                save_dir=str(run_dir),
                project=wandb_project,
                name=f"{experiment}/{run_dir.name}",
                group=experiment,
                offline=mode == "offline",
                log_model=False,
                id=wandb_id,
                resume="allow" if wandb_id else None,
            )
        )
    return loggers


def run_wandb_id(run_dir: Path) -> str:
    """The run's W&B id: kept in ``run_info.json``, so that a resumed run continues the same W&B run."""
    info = read_run_info(run_dir)
    if "wandb_id" not in info:
        # a W&B agent names the run it started (WANDB_RUN_ID): the sweep knows the run by that id
        info["wandb_id"] = os.environ.get(WANDB_ID_ENV) or os.environ.get("WANDB_RUN_ID") or new_wandb_id()
        os.environ[WANDB_ID_ENV] = info["wandb_id"]  # DDP workers started by Lightning use the same
        if rank_zero_only.rank == 0:
            update_run_info(run_dir, wandb_id=info["wandb_id"])
    return str(info["wandb_id"])


def run_loggers(
    run_dir: Path, experiment: str, wandb_mode: WandbMode, wandb_project: str, configured: object = None
) -> list[Logger]:
    """The run's loggers: :func:`build_loggers`' with the run's W&B id, then those ``trainer.logger`` configures;
    none when it is ``false``."""
    if configured is False:
        return []
    loggers = build_loggers(run_dir, experiment, wandb_mode, wandb_project, run_wandb_id(run_dir))
    if isinstance(configured, Logger):
        loggers.append(configured)
    elif isinstance(configured, list):
        loggers.extend(configured)
    return loggers


def finish_wandb(loggers: list[Logger], exit_code: int = 0) -> None:
    """Close the W&B run now, so that its closing lines are printed before ours (a logger that never started its run
    is left alone: :mod:`common.lightning_private`)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=exit_code)
