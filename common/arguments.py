"""Checks of what the command line gives, each one ``error:`` line before a library reads it (config files,
checkpoints, ensemble members, settings typed as flags, the cheap dataset check), and the help of the arguments
the CLI adds."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch import LightningModule
from lightning.pytorch.cli import LightningArgumentParser

from common.check import DataCheck
from common.contracts import EnsembleModule, check_contract
from common.ensemble import Member, find_members, stored_settings
from common.errors import MedlitError
from common.files import unwritable_reason
from common.run_options import RunOptions
from common.rundir import check_max_time

__all__ = [
    "CHECK_HELP",
    "ENSEMBLE_HELP",
    "ONE_AT_A_TIME_HELP",
    "add_ensemble_arguments",
    "check_checkpoint",
    "check_config_files",
    "check_settings",
    "ensemble_members",
    "expand_data_root",
    "given_model_keys",
    "program_of",
    "stop_at_first_problem",
]

CHECK_HELP = "Check the dataset: every problem (file, row, what, hint) and a summary; takes the keys of fit."
ENSEMBLE_HELP = (
    "Average the class probabilities of these runs (their tested checkpoints) or checkpoint files, each after its "
    "test-time augmentation, then apply the decision rule; settings from the first member, --model.* flags apply"
)
ONE_AT_A_TIME_HELP = (
    "With --ensemble: keep the members in host memory and move each to the accelerator for its turn (one member's "
    "weights there at a time, for members that do not fit together; each is copied there and back for every batch)"
)
_LIGHTNING_CHECKPOINT_NAMES = ("last", "best", "hpc", "registry")
"""``ckpt_path`` values that name a checkpoint Lightning finds itself (``fit``'s ``last``: resume the newest run)."""


def program_of(model_class: type[LightningModule]) -> str:
    """``python -m <task>``: the command that runs the task of ``model_class`` (its top-level package)."""
    return f"python -m {model_class.__module__.split('.')[0]}"


def check_config_files(args: Sequence[str]) -> None:
    """Each ``--config`` file exists and holds a YAML mapping; one line naming the file (and the line of a YAML
    mistake) instead of jsonargparse's unnamed, multi-line message."""
    paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in paths:
        if path.lstrip().startswith(("{", "[")) or "\n" in path:
            continue  # a config given inline, not a file
        if not Path(path).is_file():
            raise MedlitError(f"--config {path}: file not found")
        try:
            content = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise MedlitError(f"--config {path}: not valid YAML ({where}{problem})") from None
        except (OSError, UnicodeDecodeError) as err:
            raise MedlitError(f"--config {path}: cannot be read ({err})") from None
        if content is not None and not isinstance(content, dict):
            raise MedlitError(f"--config {path}: holds a {type(content).__name__}, not a mapping of keys")


def given_model_keys(args: Sequence[str]) -> set[str]:
    """The ``model.*`` keys that command-line flags set (``--model.key value``, ``--model.key=value``; for a nested
    ``--model.key.sub`` the top-level ``key``). ``--config`` files do not count: a generic config (``cls_ce.yaml``)
    must not replace the network a checkpoint was trained with."""
    return {
        arg.removeprefix("--model.").split("=", 1)[0].split(".", 1)[0] for arg in args if arg.startswith("--model.")
    }


def check_checkpoint(path: str, model_class: type[LightningModule]) -> None:
    """A checkpoint file that is missing, damaged, not Lightning's or another task's: one line, before anything
    reads it (Lightning's own names and remote URLs are left to Lightning)."""
    if path in _LIGHTNING_CHECKPOINT_NAMES or path.startswith("registry:") or "://" in path:
        return
    if not Path(path).is_file():
        hint = "; a run dir is given as --ensemble RUN, or by its checkpoints/*.ckpt" if Path(path).is_dir() else ""
        raise MedlitError(f"--ckpt_path {path}: no such checkpoint file{hint}")
    stored_settings(f"--ckpt_path {path}: ", Path(path), model_class)


def add_ensemble_arguments(parser: LightningArgumentParser) -> None:
    """``--ensemble RUN_OR_CHECKPOINT ...`` and ``--ensemble_one_at_a_time`` (``test`` and ``predict``)."""
    parser.add_argument("--ensemble", nargs="+", default=None, metavar="RUN_OR_CHECKPOINT", help=ENSEMBLE_HELP)
    parser.add_argument("--ensemble_one_at_a_time", type=bool, default=False, help=ONE_AT_A_TIME_HELP)


def ensemble_members(config: Mapping[str, Any], model_class: type[LightningModule]) -> list[Member]:
    """The members ``--ensemble`` names, checked (none without it); the ensemble flags given wrongly: one line.

    Args:
        config: The subcommand's parsed configuration.
        model_class: The task's module; it must satisfy :class:`~common.contracts.EnsembleModule`.
    """
    if config.get("ensemble_one_at_a_time") and not config.get("ensemble"):
        raise MedlitError("--ensemble_one_at_a_time: it only applies with --ensemble RUN_OR_CHECKPOINT ...")
    if not config.get("ensemble"):
        return []
    if config.get("ckpt_path"):
        raise MedlitError("--ckpt_path and --ensemble: give one (an ensemble of one is --ensemble RUN)")
    check_contract(model_class, EnsembleModule, "model class (for --ensemble)")
    return find_members(config["ensemble"], model_class)


def check_settings(config: Mapping[str, Any], options: RunOptions) -> None:
    """Values typed on the command line that would fail later with a library's traceback: one line each."""
    check_max_time(config["trainer"].get("max_time"))
    key, folder = ("run.dir", Path(options.dir)) if options.dir else ("run.root", Path(options.root))
    reason = unwritable_reason(folder if options.dir else folder / options.experiment)
    if reason:
        raise MedlitError(f"{key} {folder}: {reason}; choose another --{key}")


def expand_data_root(config: Any) -> None:
    """``data.root`` may name environment variables (``$MEDLIT_DATA_ROOT/ham10000``), so that a sweep file finds
    the data on any machine without an edit; the run's ``config.yaml`` keeps the expanded path.

    Args:
        config: The subcommand's parsed config (a jsonargparse namespace, or a mapping), changed in place.
    """
    data = config.get("data")
    root = data.get("root") if hasattr(data, "get") else None
    if not isinstance(root, str) or "$" not in root:
        return
    expanded = os.path.expandvars(root)
    unset = re.search(r"\$\{?(\w+)", expanded)
    if unset:
        name = unset.group(1)
        raise MedlitError(
            f"data.root {root}: the environment variable {name} is not set; export {name}=/path/to/the/data "
            "or pass --data.root"
        )
    data["root"] = expanded


def stop_at_first_problem(result: DataCheck, program: str) -> None:
    """Raise the first problem the cheap dataset check found, saying how many more there are.

    Args:
        result: The datamodule's ``check_data(full=False)``.
        program: The task's command (:func:`program_of`), for the hint to run its ``check``.
    """
    if len(result.problems) == 1:
        raise MedlitError(str(result.problems[0]))
    if result.problems:
        raise MedlitError(
            f"{result.problems[0]}; and {len(result.problems) - 1} more problem(s): `{program} check` with the same "
            "arguments lists them all (run.check_data=false skips this check)"
        )
