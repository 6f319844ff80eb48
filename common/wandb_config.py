"""The W&B config of a run: every resolved setting under flat dotted names, and what else tells two runs apart.

A sweep sets its parameters as flat names (``model.loss``, ``data.augmentation``); the run's config uses the same
names for every setting it was run with, so that the columns of a sweep table and the axes of a parallel-coordinates
panel are the command-line keys. Besides the settings (``model.*``, ``data.*``, ``trainer.*``, ``seed_everything``,
``run.*``, ``outputs.*``, ``subcommand``) the config holds:

* ``code.commit`` and ``code.dirty``: the git commit of the code and whether tracked files had changes
  (``unknown`` outside a git checkout);
* ``packages.<name>``: the versions of :data:`PACKAGES`;
* ``device.accelerator``, ``device.name``, ``device.count``, ``device.nodes``, ``device.precision``;
* ``dataset.root`` (the data root, absolute), ``dataset.n_<split>`` (items per split of ``split.csv``) and
  ``dataset.split_hash`` (a hash of which item is in which split: ``split.csv``'s first column, ``split`` and ``fold``
  when it has one, sorted; the same split gives the same hash on any machine).

:class:`WandbRunConfig` writes it when the trainer sets up, after :class:`~common.callbacks.SplitExport` wrote
``split.csv``; a failure is one ``warning:`` line, never an error of the run.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from common.rundir import run_dir_of
from common.wandb_media import random_states_kept, wandb_run, warn_not_logged

__all__ = [
    "PACKAGES",
    "WandbRunConfig",
    "code_version",
    "data_fingerprint",
    "device_description",
    "flat_settings",
    "package_versions",
]

PACKAGES = ("torch", "lightning", "monai", "timm", "torchmetrics", "numpy", "wandb")
"""The packages whose versions the config records (``packages.<name>``; ``not installed`` when absent)."""
_REPO = Path(__file__).resolve().parents[1]


def _plain(value: Any) -> Any:
    """A config value W&B stores as it is (numbers, strings, lists of them); anything else as its text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(value)


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"loss": "ce"}}`` → ``{"model.loss": "ce"}``: nested mappings joined with dots; lists kept
    (a list of mappings, e.g. configured callbacks, as text)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_settings(value, f"{name}."))
        elif isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value):
            flat[name] = str(value)
        else:
            flat[name] = _plain(value)
    return flat


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_REPO), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """``code.commit`` (the checkout's commit) and ``code.dirty`` (tracked files changed; untracked ones, such as
    run dirs, do not count); ``unknown`` when the code is not a git checkout or git is missing."""
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return {"code.commit": "unknown", "code.dirty": "unknown"}
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"code.commit": commit, "code.dirty": bool(status) if status is not None else "unknown"}


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """``packages.<name>``: each package's installed version (its distribution's, else the imported module's
    ``__version__``: a package put on the path without pip has no distribution metadata)."""
    versions = {}
    for name in names:
        try:
            versions[f"packages.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            module = sys.modules.get(name.replace("-", "_"))
            versions[f"packages.{name}"] = str(getattr(module, "__version__", "not installed"))
    return versions


def device_description(trainer: Trainer) -> dict[str, Any]:
    """``device.*``: the accelerator, the device's name (the GPU's, or ``cpu``), devices per node, nodes, precision."""
    device = trainer.strategy.root_device
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {
        "device.accelerator": type(trainer.accelerator).__name__,
        "device.name": name,
        "device.count": trainer.num_devices,
        "device.nodes": trainer.num_nodes,
        "device.precision": str(trainer.precision),
    }


def data_fingerprint(split_csv: Path, root: str | None) -> dict[str, Any]:
    """``dataset.*``: the data root, items per split and the hash of the split assignment (module docstring)."""
    fingerprint: dict[str, Any] = {"dataset.root": str(Path(root).resolve()) if root else None}
    if not split_csv.is_file():
        return fingerprint
    split = pd.read_csv(split_csv, dtype=str, keep_default_na=False)
    if "split" not in split:
        return fingerprint
    for name, count in split["split"].value_counts().sort_index().items():
        fingerprint[f"dataset.n_{name}"] = int(count)
    columns = [split.columns[0], "split", *(["fold"] if "fold" in split else [])]
    rows = sorted(",".join(row) for row in split[columns].itertuples(index=False, name=None))
    fingerprint["dataset.split_hash"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]
    return fingerprint


class WandbRunConfig(Callback):
    """Writes the run's settings, code version, packages, device and data fingerprint into the W&B config (module
    docstring), once per run, on rank 0, when the trainer sets up (after ``split.csv`` is written).

    Args:
        settings: The resolved settings of the run (nested, as the CLI parsed them).
    """

    def __init__(self, settings: Mapping[str, Any]) -> None:
        self.settings = flat_settings(settings)
        self._done = False

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._done or not trainer.is_global_zero:
            return
        self._done = True
        with random_states_kept():  # starting the W&B run, too, leaves the run's random numbers alone
            try:
                run = wandb_run(trainer)
                if run is None:
                    return
                config = {**self.settings, **code_version(), **package_versions(), **device_description(trainer)}
                root = self.settings.get("data.root")
                config.update(data_fingerprint(run_dir_of(trainer) / "split.csv", str(root) if root else None))
                run.config.update(config, allow_val_change=True)
            except Exception as err:  # the run goes on without it: said once
                warn_not_logged(["the run's config"], err)
