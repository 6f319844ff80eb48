"""Callbacks every run gets: epoch history + curves, the data split, and timings.

Task-specific outputs (predictions, reports, overlays) live in each task's ``callbacks.py``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from common.plots import plot_history

__all__ = [
    "MetricHistory",
    "RunTimer",
    "SplitExport",
    "atomic_path",
    "gather_objects",
    "run_dir_of",
    "write_json",
]


def run_dir_of(trainer: Trainer) -> Path:
    """The run directory (the CLI sets ``default_root_dir`` to it)."""
    return Path(trainer.default_root_dir)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path (same suffixes) renamed to ``path`` on success: readers and other processes writing
    the same file never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes)}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (NaN written as null), so a reader never sees half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` when not distributed)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return [obj]
    gathered: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, obj)
    return gathered


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
    """Wall-clock seconds of fit/test/predict, merged into ``timing.json``."""

    def __init__(self) -> None:
        self._start: dict[str, float] = {}

    def _begin(self, stage: str) -> None:
        self._start[stage] = time.perf_counter()

    def _end(self, trainer: Trainer, stage: str) -> None:
        if not trainer.is_global_zero or stage not in self._start:
            return
        path = run_dir_of(trainer) / "timing.json"
        timing = json.loads(path.read_text()) if path.exists() else {}
        timing[f"{stage}_s"] = round(time.perf_counter() - self._start.pop(stage), 3)
        if stage == "fit":
            timing["epochs"] = trainer.current_epoch
            timing["devices"] = trainer.num_devices
            timing["accelerator"] = type(trainer.accelerator).__name__
        write_json(path, timing)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._begin("fit")

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
