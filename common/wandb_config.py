"""The W&B config of a run: every resolved setting under flat dotted names, and what else tells two runs apart.

A sweep sets its parameters as flat names (``model.loss``, ``data.augmentation``); the run's config uses the same
names for every setting it was run with, so that the columns of a sweep table and the axes of a parallel-coordinates
panel are the command-line keys. Besides the settings (``model.*``, ``data.*``, ``trainer.*``, ``seed_everything``,
``run.*``, ``outputs.*``, ``subcommand``) the config holds:

the provenance of :mod:`common.provenance`: ``code.*`` (commit, changed files), ``packages.*``, ``device.*`` and
``dataset.*`` (root, items per split, split and test-item hashes).

:class:`WandbRunConfig` writes it when the trainer sets up, after :class:`~common.callbacks.SplitExport` wrote
``split.csv``; a failure is one ``warning:`` line, never an error of the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from common.provenance import code_version, data_fingerprint, device_description, package_versions
from common.rundir import run_dir_of
from common.wandb_media import random_states_kept, wandb_run, warn_not_logged

__all__ = ["WandbRunConfig", "flat_settings"]


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
