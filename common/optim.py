"""Optimizers and learning-rate schedules by name, shared by every task.

A module takes ``optimizer``, ``lr``, ``weight_decay``, ``scheduler`` and ``warmup_steps`` as init arguments (so
they are config keys, ``model.optimizer`` etc., and the report reads them from ``config.yaml``), gathers them into
an :class:`OptimizerSettings` in ``__init__`` (which checks them before anything trains) and returns
:func:`configure_optimizers` from its ``configure_optimizers`` hook.

The decaying schedules follow the training budget, not a step count fixed in advance: the learning rate is
updated after every step from :func:`training_progress`, the larger of the share of steps done (``max_steps``,
or the steps ``max_epochs`` gives) and the share of ``trainer.max_time`` used. A CPU run budgeted by time
therefore reaches the end of its schedule when the time runs out instead of being cut in the middle of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import Timer

from common.errors import MedlitError, check_choice

__all__ = [
    "LR_FACTORS",
    "OPTIMIZERS",
    "SCHEDULERS",
    "OptimizerSettings",
    "build_optimizer",
    "configure_optimizers",
    "schedule_factor",
    "training_progress",
]


def _adam(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def _adamw(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)


def _sgd(params: Iterable[Any], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=0.99, nesterov=True)


OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {"adam": _adam, "adamw": _adamw, "sgd": _sgd}
"""Optimizers by name: Adam (the seeds' choice), AdamW (decoupled weight decay), SGD with Nesterov momentum
0.99 (nnU-Net's setting)."""

LR_FACTORS: dict[str, Callable[[float], float]] = {
    "none": lambda progress: 1.0,
    "cosine": lambda progress: 0.5 * (1.0 + math.cos(math.pi * progress)),
    "poly": lambda progress: (1.0 - progress) ** 0.9,
    "step": lambda progress: 0.1 ** min(2, math.floor(3 * progress)),
}
"""The step-wise schedules: learning-rate factors by training progress ``p`` in [0, 1]: ``none`` (constant, the
seeds' setting), ``cosine`` (to 0), ``poly`` (``(1 - p)^0.9``, nnU-Net's), ``step`` (x0.1 at a third and at two
thirds of the budget)."""

SCHEDULERS = (*LR_FACTORS, "plateau")
"""Every ``model.scheduler`` value: the step-wise :data:`LR_FACTORS` and ``plateau`` (halve the learning rate after 2
validations without a lower ``val/loss``)."""


def schedule_factor(name: str, progress: float, step: int = 0, warmup_steps: int = 0) -> float:
    """The factor on the base learning rate of schedule ``name`` at ``progress`` (clipped to [0, 1]), times a
    linear warm-up from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps (``step`` counts from 0)."""
    check_choice("model.scheduler", name, LR_FACTORS)
    warmup = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    return warmup * LR_FACTORS[name](min(1.0, max(0.0, progress)))


def _timer(trainer: Trainer) -> Timer | None:
    return next((c for c in trainer.callbacks if isinstance(c, Timer)), None)


def training_progress(trainer: Trainer) -> float:
    """The share of the training budget used, in [0, 1]: the larger of the steps done over the step budget
    (``max_steps`` or what ``max_epochs`` gives, whichever is smaller) and the training time over ``max_time``
    (Lightning's :class:`~lightning.pytorch.callbacks.Timer`, which keeps its time across a resume).

    The time share is each process's own clock: under DDP the processes' learning rates can differ in the last
    digits, and a run budgeted by time is not repeatable step for step (one budgeted by steps is)."""
    shares = [0.0]
    steps = trainer.estimated_stepping_batches  # Lightning's: the smaller of max_steps and what max_epochs gives
    if steps and math.isfinite(steps):
        shares.append(trainer.global_step / steps)
    timer = _timer(trainer)
    if timer is not None:
        elapsed, remaining = timer.time_elapsed("train"), timer.time_remaining("train")
        if remaining is not None and elapsed + remaining > 0:
            shares.append(elapsed / (elapsed + remaining))
    return min(1.0, max(shares))


def build_optimizer(name: str, params: Iterable[Any], lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The optimizer registered under ``name`` (``model.optimizer``)."""
    check_choice("model.optimizer", name, OPTIMIZERS)
    return OPTIMIZERS[name](params, lr, weight_decay)


@dataclass(frozen=True)
class OptimizerSettings:
    """The optimizer and its learning-rate schedule, checked when made (a module makes it in ``__init__``).

    Args:
        optimizer: ``adam`` (the seeds'), ``adamw`` or ``sgd`` (:data:`OPTIMIZERS`).
        lr: Base learning rate.
        weight_decay: Weight decay (decoupled for ``adamw``).
        scheduler: ``none``, ``cosine``, ``poly``, ``step`` (each over the training budget: steps or
            ``trainer.max_time``, whichever runs out first; :data:`LR_FACTORS`) or ``plateau`` (on ``val/loss``).
        warmup_steps: Linear learning-rate warm-up over the first steps (0: none; not with ``plateau``).
    """

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        check_choice("model.optimizer", self.optimizer, OPTIMIZERS)
        check_choice("model.scheduler", self.scheduler, SCHEDULERS)
        if self.warmup_steps < 0:
            raise MedlitError(f"model.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.warmup_steps and self.scheduler == "plateau":
            raise MedlitError("model.warmup_steps needs a step-wise schedule (not model.scheduler=plateau)")


def configure_optimizers(params: Iterable[Any], trainer: Trainer, settings: OptimizerSettings) -> Any:
    """What a LightningModule's ``configure_optimizers`` returns for ``settings`` (``trainer``: the module's)."""
    built = build_optimizer(settings.optimizer, params, settings.lr, settings.weight_decay)
    if settings.scheduler == "plateau":
        plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(built, mode="min", factor=0.5, patience=2)
        return {"optimizer": built, "lr_scheduler": {"scheduler": plateau, "monitor": "val/loss"}}
    if settings.scheduler == "none" and settings.warmup_steps == 0:
        return built
    scheduler, warmup_steps = settings.scheduler, settings.warmup_steps

    def factor(step: int) -> float:  # a function, not an object: LambdaLR's state dict then leaves it out
        return schedule_factor(scheduler, training_progress(trainer), step, warmup_steps)

    schedule = torch.optim.lr_scheduler.LambdaLR(built, factor)
    return {"optimizer": built, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
