"""The commands that run a sweep file online under a W&B server: ``wandb sweep`` creates the sweep and prints its
id, ``wandb agent`` (on as many machines as there are) runs its configurations.

The sweep files need no edit for this: W&B's agent runs each configuration's command from the folder it was started
in, with ``python`` for ``${interpreter}``, and a file's ``$MEDLIT_DATA_ROOT`` is read from the environment
(:func:`common.arguments.expand_data_root`). The printed agent line therefore starts in this clone, puts the folder
of this interpreter first on ``PATH`` (so ``python`` is the project's) and sets ``MEDLIT_DATA_ROOT``::

    python -m common.studies.wandb_sweep experiments/sweeps/ham10000_loss.yaml --data-root /data/HAM10000
    make wandb-sweep SWEEP=ham10000_loss DATA=/data/HAM10000
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from common.errors import MedlitError, exit_on_error
from common.studies.plan import load_sweep

__all__ = ["DATA_ROOT_ENV", "online_commands"]

DATA_ROOT_ENV = "MEDLIT_DATA_ROOT"
"""The environment variable the sweep files' ``--data.root`` reads."""


def online_commands(sweep_file: Path, data_root: Path | None, interpreter: Path, repo: Path) -> list[str]:
    """The lines to print: ``wandb sweep`` and ``wandb agent``, each a comment then a command.

    Args:
        sweep_file: A sweep file (checked as the offline runner checks it; it must name its ``project``).
        data_root: The dataset folder the runs read (``None``: the variable is left for the user to set).
        interpreter: The project's Python (its folder also holds the ``wandb`` command).
        repo: The clone the agent runs in (the sweep files name configs relative to it).
    """
    spec = load_sweep(sweep_file)
    project = spec.config.get("project")
    if not project:
        raise MedlitError(f"{sweep_file}: no project: key; name the W&B project the sweep's runs go to")
    if data_root is not None and not data_root.is_dir():
        raise MedlitError(f"--data-root {data_root}: no such folder")
    bin_dir = interpreter.parent
    wandb = bin_dir / "wandb" if (bin_dir / "wandb").exists() else Path("wandb")
    relative = sweep_file.resolve().relative_to(repo.resolve()) if sweep_file.resolve().is_relative_to(repo) else None
    cd = f"cd {shlex.quote(str(repo.resolve()))} && "
    data = shlex.quote(str(data_root.resolve())) if data_root is not None else "/path/to/the/data"
    return [
        f"# 1. create the sweep on the W&B server; it prints the sweep's id (<entity>/{project}/<id>)",
        f"{cd}{shlex.quote(str(wandb))} sweep {shlex.quote(str(relative or sweep_file.resolve()))}",
        "# 2. on each machine that runs configurations (a clone set up as this one), start an agent with that id",
        f"{cd}PATH={shlex.quote(str(bin_dir))}:$PATH {DATA_ROOT_ENV}={data} "
        f"{shlex.quote(str(wandb))} agent <entity>/{project}/<id>",
    ]


def _clone() -> Path:
    """The clone this code runs from (its ``experiments/`` are what the sweep files name), else the working folder."""
    clone = Path(__file__).resolve().parents[2]
    return clone if (clone / "experiments").is_dir() else Path.cwd()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.studies.wandb_sweep", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_file", type=Path, help="a sweep file, e.g. experiments/sweeps/cls_loss.yaml")
    parser.add_argument("--data-root", type=Path, default=None, help="the dataset folder the runs read")
    args = parser.parse_args(argv)
    with exit_on_error():
        lines = online_commands(args.sweep_file, args.data_root, Path(sys.executable), _clone())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
