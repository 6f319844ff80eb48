"""Optimizers and learning-rate schedules by name, shared by every task.

A module takes ``optimizer``, ``lr``, ``weight_decay`` and ``scheduler`` as init arguments (so they are config
keys, ``model.optimizer`` etc., and the report reads them from ``config.yaml``) and returns
:func:`configure_optimizers` from its ``configure_optimizers`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from common.errors import check_choice

__all__ = ["OPTIMIZERS", "SCHEDULERS", "build_optimizer", "build_scheduler", "configure_optimizers"]


def _adam(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.99, nesterov=True)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}
"""Optimizers by name: Adam (the seeds' choice), AdamW (decoupled weight decay), SGD with Nesterov momentum
0.99 (nnU-Net's setting)."""


def _cosine(optimizer: torch.optim.Optimizer, max_epochs: int) -> dict[str, Any]:
    return {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, max_epochs))}


def _plateau(optimizer: torch.optim.Optimizer, max_epochs: int) -> dict[str, Any]:
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=2)
    return {"scheduler": scheduler, "monitor": "val/loss"}


def _step_lr(optimizer: torch.optim.Optimizer, max_epochs: int) -> dict[str, Any]:
    step_size = max(1, max_epochs // 3)
    return {"scheduler": torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=0.1)}


SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer, int], dict[str, Any]] | None] = {
    "none": None,
    "cosine": _cosine,
    "plateau": _plateau,
    "step": _step_lr,
}
"""Epoch-wise schedules by name: ``none`` (constant, the seeds' setting), ``cosine`` (to 0 over the epochs),
``plateau`` (halve after 2 epochs without a lower ``val/loss``), ``step`` (x0.1 every third of the epochs)."""


def build_optimizer(name: str, params: Iterable[Any], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer registered under ``name`` (``model.optimizer``)."""
    check_choice("model.optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name](params, lr, weight_decay)


def build_scheduler(name: str, optimizer: torch.optim.Optimizer, max_epochs: int) -> dict[str, Any] | None:
    """Lightning's ``lr_scheduler`` entry for the schedule ``name`` (``model.scheduler``), ``None`` for ``none``."""
    check_choice("model.scheduler", name, SCHEDULERS)
    factory = SCHEDULERS[name]
    return factory(optimizer, max_epochs) if factory is not None else None


def configure_optimizers(
    params: Iterable[Any],
    max_epochs: int | None,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    scheduler: str = "none",
) -> Any:
    """What a LightningModule's ``configure_optimizers`` returns for these settings."""
    built = build_optimizer(optimizer, params, lr, weight_decay)
    schedule = build_scheduler(scheduler, built, max_epochs if max_epochs and max_epochs > 0 else 1)
    return built if schedule is None else {"optimizer": built, "lr_scheduler": schedule}
