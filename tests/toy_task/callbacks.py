"""The toy outputs: ``metrics.json`` with the test MAE and RMSE over all test samples."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from common.files import write_json
from common.rundir import run_dir_of


class ToyOutputs(Callback):
    """Collects test predictions and writes ``metrics.json``."""

    def __init__(self, digits: int = 6) -> None:
        self.digits = digits
        self._rows: list[tuple[torch.Tensor, torch.Tensor]] = []

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._rows = []

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *_: Any) -> None:
        self._rows.append((outputs["prediction"].cpu(), outputs["y"].cpu()))

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        prediction = torch.cat([p for p, _ in self._rows])
        y = torch.cat([t for _, t in self._rows])
        error = prediction - y
        metrics = {
            "n_samples": len(y),
            "mae": round(float(error.abs().mean()), self.digits),
            "rmse": round(float(error.pow(2).mean().sqrt()), self.digits),
            "units": {"mae": "y units", "rmse": "y units"},
        }
        write_json(run_dir_of(trainer) / "metrics.json", metrics)
