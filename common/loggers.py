"""Loggers for every run: CSV always, Weights & Biases online, offline (into the run dir) or off."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Literal

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

__all__ = ["WandbMode", "build_loggers", "finish_wandb", "new_wandb_id", "resolve_wandb_mode"]

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


def finish_wandb(loggers: list[Logger], exit_code: int = 0) -> None:
    """Close the W&B run now, so that its closing lines are printed before ours."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and logger._experiment is not None:
            logger.experiment.finish(exit_code=exit_code)
