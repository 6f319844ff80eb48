"""The toy module: a linear model, MSE, the mean absolute error per stage."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule
from torchmetrics import MeanAbsoluteError

from common.optim import OptimizerSettings, configure_optimizers
from tests.toy_task import TASK


class ToyRegressor(LightningModule):
    """``y = linear(x)``; selected on the lowest validation MAE."""

    task = TASK
    monitor = "val/mae"
    monitor_mode = "min"
    metric_labels = {"loss": "MSE", "mae": "mean absolute error"}
    checkpoint_overrides: dict[str, Any] = {}

    def __init__(self, features: int = 4, optimizer: str = "sgd", lr: float = 0.05) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.optimizer_settings = OptimizerSettings(optimizer, lr)
        self.net = torch.nn.Linear(features, 1)
        self.val_mae, self.test_mae = MeanAbsoluteError(), MeanAbsoluteError()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = torch.nn.functional.mse_loss(self(batch["x"]), batch["y"])
        self.log("train/loss", loss, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: dict[str, torch.Tensor], stage: str) -> dict[str, torch.Tensor]:
        prediction = self(batch["x"])
        self.log(f"{stage}/loss", torch.nn.functional.mse_loss(prediction, batch["y"]), on_epoch=True)
        metric = getattr(self, f"{stage}_mae")
        metric(prediction, batch["y"])
        self.log(f"{stage}/mae", metric, on_epoch=True)
        return {"prediction": prediction, "y": batch["y"]}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.trainer, self.optimizer_settings)
