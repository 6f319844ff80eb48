"""Callbacks every run gets (:func:`house_callbacks`): epoch history + curves, the data split, timings, the random
states that a resumed run continues from, checkpoints and a progress bar; and an optional one, :class:`EMAWeights`.

Task-specific outputs (predictions, reports, overlays) live in each task's ``callbacks.py``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import (
    EMAWeightAveraging,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    RichProgressBar,
)
from lightning.pytorch.trainer.states import TrainerFn

from common.files import write_json
from common.plots import plot_history
from common.rundir import LAST_CHECKPOINT_STEM, TIMING, read_timing, run_dir_of

__all__ = ["EMAWeights", "MetricHistory", "RngState", "RunTimer", "SplitExport", "house_callbacks"]


class MetricHistory(Callback):
    """Collect epoch-level ``train/*`` and ``val/*`` metrics into ``history.csv`` and ``curves.png``.

    The history is part of the checkpoint, so a resumed run keeps its earlier epochs.

    Args:
        metric_labels: Axis labels of the curves by metric name (the module's ``metric_labels``).
    """

    def __init__(self, metric_labels: Mapping[str, str] | None = None) -> None:
        self.metric_labels = dict(metric_labels or {})
        self.rows: list[dict[str, float]] = []
        self._epoch_start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        row: dict[str, float] = {"epoch": trainer.current_epoch, "step": trainer.global_step}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(("train/", "val/")) and not key.endswith("_step"):
                row[key.removesuffix("_epoch")] = float(value)
        row["epoch_time_s"] = time.perf_counter() - self._epoch_start
        self.rows = [r for r in self.rows if r["epoch"] != row["epoch"]] + [row]
        if trainer.is_global_zero:
            pd.DataFrame(self.rows).to_csv(run_dir_of(trainer) / "history.csv", index=False)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero and self.rows:
            history = pd.DataFrame(self.rows)
            plot_history(history, run_dir_of(trainer) / "curves.png", _title(trainer), self.metric_labels)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = list(state_dict.get("rows", []))


def _title(trainer: Trainer) -> str:
    run_dir = run_dir_of(trainer)
    return f"{run_dir.parent.name} / {run_dir.name}"


class SplitExport(Callback):
    """Write the datamodule's split table (``split_table()``, one row per sample) to ``split.csv``.

    The datamodule satisfies :class:`~common.contracts.TaskDataModule` (checked when the CLI starts).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if not trainer.is_global_zero or datamodule is None or stage == "predict":
            return
        path = run_dir_of(trainer) / "split.csv"
        if not path.exists():
            datamodule.split_table().to_csv(path, index=False)


class RunTimer(Callback):
    """Wall-clock seconds of fit/test/predict, merged into ``timing.json``.

    The fit seconds spent before a checkpoint travel in it, so a resumed fit reports its whole training time.
    """

    def __init__(self) -> None:
        self._start: dict[str, float] = {}
        self._carried_fit_s = 0.0

    def _begin(self, stage: str) -> None:
        self._start[stage] = time.perf_counter()

    def _end(self, trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero or stage not in self._start:
            return
        run_dir = run_dir_of(trainer)
        timing = read_timing(run_dir)
        seconds = time.perf_counter() - self._start.pop(stage) + (self._carried_fit_s if stage == "fit" else 0.0)
        timing[f"{stage}_s"] = round(seconds, 3)
        if stage == "fit":
            timing["epochs"] = trainer.current_epoch
            timing["devices"] = trainer.num_devices
            timing["accelerator"] = type(trainer.accelerator).__name__
        write_json(run_dir / TIMING, timing)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("fit")

    def state_dict(self) -> dict[str, Any]:
        running = time.perf_counter() - self._start["fit"] if "fit" in self._start else 0.0
        return {"fit_s": self._carried_fit_s + running}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._carried_fit_s = float(state_dict.get("fit_s", 0.0))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, "fit")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("test")

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, "test")

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("predict")

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._end(trainer, "predict")


def _rng_states() -> dict[str, Any]:
    """The global random states as plain values (loadable with ``torch.load(weights_only=True)``)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, keys.tolist(), int(position), int(has_gauss), float(cached)],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()  # this process's device (a resume may see other devices)
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, cached))
    version, internal, gauss = states["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])


class RngState(Callback):
    """Keeps the global random states (torch, numpy, Python, CUDA) in every checkpoint and restores them when
    training resumes, so that a run resumed from an epoch-end checkpoint draws the same shuffles and
    augmentations as one that was never stopped.

    Only rank 0 writes checkpoints, so under DDP every process resumes with rank 0's states: equality with an
    uninterrupted run is promised for one process with data loaded in it (what the tests check).

    Lightning creates the first epoch's training iterator (which draws a seed) before ``on_train_start``, and the
    sanity check's loader draws one too; so the states are restored after the sanity check (and at fit start,
    for runs without one), just before that iterator is created, as in a run that never stopped.
    """

    KEY = "medlit_rng_states"

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = _rng_states()

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        self._pending = checkpoint.get(self.KEY)

    def _restore(self) -> None:
        if self._pending is not None:
            _set_rng_states(self._pending)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_sanity_check_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()  # again: the sanity check's loader drew from the restored states

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._pending = None


class EMAWeights(EMAWeightAveraging):
    """An exponential moving average of the weights (Lightning's :class:`EMAWeightAveraging`: validation, the
    checkpoints' ``state_dict`` and the final model use the average), also for the test after ``fit``.

    Lightning's callback, still holding its average when the same trainer tests the best checkpoint, would load
    the checkpoint's raw weights (``current_model_state``) for the test; here a test or predict uses the
    averaged ``state_dict`` that was validated and selected. (A ``validate`` by the same trainer after ``fit``
    would still see Lightning's swap of the end-of-training average; the CLI never does that.) Config::

        trainer:
          callbacks:
            - class_path: common.callbacks.EMAWeights
              init_args: {decay: 0.999}
    """

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # resuming a fit: restore the raw weights and the average
            super().on_load_checkpoint(trainer, pl_module, checkpoint)


def house_callbacks(
    run_dir: Path, module: LightningModule, trainer_config: Mapping[str, Any], with_loggers: bool
) -> list[Callback]:
    """The callbacks the CLI adds to every run, after those ``trainer.callbacks`` configures.

    Args:
        run_dir: The run directory (checkpoints go to its ``checkpoints/``).
        module: The task's module: its ``metric_labels``, and the validation ``monitor`` and ``monitor_mode`` the
            best checkpoint is chosen on.
        trainer_config: The ``trainer`` settings: a configured checkpoint or progress bar replaces the house's.
        with_loggers: Whether the run logs (the learning rate is logged each epoch).
    """
    configured = trainer_config.get("callbacks") or []
    if not isinstance(configured, list):  # one callback given as `--trainer.callbacks X`
        configured = [configured]
    callbacks: list[Callback] = [MetricHistory(module.metric_labels), SplitExport(), RunTimer(), RngState()]
    if not any(isinstance(c, ModelCheckpoint) for c in configured):
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints",
                filename="best-epoch{epoch:03d}",
                monitor=module.monitor,
                mode=module.monitor_mode,
                auto_insert_metric_name=False,
            )
        )
        # last.ckpt by a checkpoint of its own, rewritten every epoch: Lightning's save_last only rewrites it
        # when the best one improves, so it held the best epoch's weights (a resume went back to them)
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir / "checkpoints", filename=LAST_CHECKPOINT_STEM, enable_version_counter=False
            )
        )
    if trainer_config.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in configured):
        callbacks.append(RichProgressBar())
    if with_loggers:
        callbacks.append(LearningRateMonitor(logging_interval="epoch"))
    return callbacks
