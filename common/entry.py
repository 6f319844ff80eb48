"""The one entry of both tasks' command lines: run :class:`~common.cli.MedlitCLI`, then print the check's result,
one ``error:`` line, or ``run_dir: <path>`` as the last line, and exit with the status that says which."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from lightning.pytorch import Callback, LightningDataModule, LightningModule
from lightning.pytorch.utilities import rank_zero_only

from common.cli import MedlitCLI
from common.errors import MedlitError, exit_on_error
from common.loggers import finish_wandb
from common.run_options import Link
from common.rundir import run_environment

__all__ = ["run_cli"]


def run_cli(
    model_class: type[LightningModule],
    datamodule_class: type[LightningDataModule],
    outputs_callback_class: type[Callback],
    links: Sequence[Link] = (),
    report_module: str | None = None,
    args: list[str] | None = None,
) -> Path | None:
    """Run the CLI; print ``error: ...`` and exit 2 on expected mistakes, else print ``run_dir: <path>``.

    ``check`` prints the dataset check and exits 1 when it found a problem, 0 otherwise. Arguments as
    :class:`~common.cli.MedlitCLI`'s.

    Returns:
        The run directory (also when called from Python, e.g. by tests and the sweep runner).
    """
    with run_environment():
        cli = MedlitCLI(model_class, datamodule_class, outputs_callback_class, links, report_module, args)
        finish_wandb(cli.loggers, exit_code=2 if cli.error else 0)
    if cli.check_result is not None and cli.error is None:
        print(cli.check_result.render())
        sys.exit(0 if cli.check_result.ok else 1)
    if cli.error is not None:
        _exit_with(cli.error, cli.run_dir)
    if rank_zero_only.rank == 0:
        print(f"run_dir: {cli.run_dir}", flush=True)
    return cli.run_dir


def _exit_with(error: MedlitError, run_dir: Path | None) -> NoReturn:
    """Rank 0 keeps the message in the run dir's ``error.txt`` (when one was made) and leaves by the one error exit;
    a DDP worker says its own, marked with its rank (the same as rank 0's is a repeat); both exit with status 2."""
    if rank_zero_only.rank == 0:
        if run_dir is not None and run_dir.is_dir():
            (run_dir / "error.txt").write_text(f"{error}\n")
        with exit_on_error():  # `error: <message>` on stderr, status 2
            raise error
    print(f"[rank {rank_zero_only.rank}] {error}", file=sys.stderr)
    sys.exit(2)
