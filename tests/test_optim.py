"""Optimizers and budget-following learning-rate schedules (common/optim.py)."""

from __future__ import annotations

import io
import itertools
import math
import time
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer
from torch.utils.data import DataLoader, TensorDataset

from common.errors import MedlitError
from common.optim import OptimizerSettings, configure_optimizers, schedule_factor, training_progress


@pytest.mark.parametrize(
    ("name", "progress", "expected"),
    [
        ("none", 0.7, 1.0),
        ("cosine", 0.0, 1.0),
        ("cosine", 0.5, 0.5),
        ("cosine", 0.75, 0.5 * (1 + math.cos(0.75 * math.pi))),
        ("cosine", 1.0, 0.0),
        ("poly", 0.0, 1.0),
        ("poly", 0.5, 0.5**0.9),
        ("poly", 1.0, 0.0),
        ("poly", 1.7, 0.0),  # progress is clipped: never a negative base
        ("step", 0.33, 1.0),
        ("step", 0.34, 0.1),
        ("step", 0.67, 0.01),
        ("step", 1.0, 0.01),
    ],
)
def test_schedule_values(name: str, progress: float, expected: float) -> None:
    assert schedule_factor(name, progress) == pytest.approx(expected, abs=1e-12)


def test_warmup_is_linear_then_the_schedule() -> None:
    assert [schedule_factor("none", 0.0, step, warmup_steps=4) for step in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert schedule_factor("poly", 0.5, 1, warmup_steps=4) == pytest.approx(0.5 * 0.5**0.9)


class _FakeTimer(Timer):
    def __init__(self, elapsed: float, remaining: float | None) -> None:
        super().__init__(duration=None if remaining is None else "00:00:01:00")
        self.elapsed, self.remaining = elapsed, remaining

    def time_elapsed(self, stage: Any = "train") -> float:
        return self.elapsed

    def time_remaining(self, stage: Any = "train") -> float | None:
        return self.remaining


def _trainer(step: int, estimated: float = math.inf, timer: Timer | None = None) -> Any:
    """What training_progress reads; ``estimated``: Lightning's step budget (max_steps and max_epochs)."""
    callbacks = [timer] if timer is not None else []
    return SimpleNamespace(global_step=step, estimated_stepping_batches=estimated, callbacks=callbacks)


@pytest.mark.parametrize(
    ("trainer", "expected"),
    [
        (_trainer(25, estimated=100), 0.25),
        (_trainer(10, estimated=math.inf), 0.0),  # no budget at all: the schedule stays at its start
        (_trainer(10, estimated=100, timer=_FakeTimer(30.0, 90.0)), 0.25),  # time runs out first
        (_trainer(60, estimated=100, timer=_FakeTimer(30.0, 90.0)), 0.6),  # steps run out first
        (_trainer(5, estimated=100, timer=_FakeTimer(130.0, 0.0)), 1.0),
        (_trainer(5, estimated=math.inf, timer=_FakeTimer(30.0, None)), 0.0),  # a timer without a duration
        (_trainer(150, estimated=100), 1.0),
    ],
)
def test_training_progress(trainer: Any, expected: float) -> None:
    assert training_progress(trainer) == pytest.approx(expected)


class _Regression(LightningModule):
    def __init__(self, scheduler: str, warmup_steps: int = 0) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3, 1)
        self.scheduler, self.warmup_steps = scheduler, warmup_steps

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])

    def configure_optimizers(self) -> Any:
        settings = OptimizerSettings("sgd", 0.1, scheduler=self.scheduler, warmup_steps=self.warmup_steps)
        return configure_optimizers(self.parameters(), self.trainer, settings)


class _LearningRates(Callback):
    def __init__(self) -> None:
        self.values: list[float] = []

    def on_train_batch_start(self, trainer: Trainer, *_: Any) -> None:
        self.values.append(trainer.optimizers[0].param_groups[0]["lr"])


def _fit(module: LightningModule, **trainer_args: Any) -> list[float]:
    data = TensorDataset(torch.randn(24, 3), torch.randn(24, 1))
    rates = _LearningRates()
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[rates], **trainer_args,
    )  # fmt: skip
    trainer.fit(module, DataLoader(data, batch_size=4))
    for config in trainer.lr_scheduler_configs:  # what a checkpoint stores must pickle
        torch.save(config.scheduler.state_dict(), io.BytesIO())
    return rates.values


@pytest.mark.parametrize(
    "budget",
    [{"max_steps": 12}, {"max_epochs": 2}, {"max_steps": 100, "max_epochs": 2}, {"max_steps": 12, "max_epochs": 5}],
    ids=["max_steps", "max_epochs", "epochs-first", "steps-first"],
)
def test_poly_schedule_in_a_fit_follows_the_steps(budget: dict[str, int]) -> None:
    rates = _fit(_Regression("poly", warmup_steps=3), **budget)
    assert len(rates) == 12  # 6 batches per epoch
    expected = [0.1 * schedule_factor("poly", step / 12, step, 3) for step in range(12)]
    assert rates == pytest.approx(expected, rel=1e-9)


def test_constant_without_warmup_has_no_scheduler() -> None:
    assert _fit(_Regression("none"), max_steps=5) == [0.1] * 5


def test_negative_warmup_refused() -> None:
    with pytest.raises(MedlitError, match="model.warmup_steps must be >= 0"):
        OptimizerSettings(warmup_steps=-1)
    with pytest.raises(MedlitError, match="model.warmup_steps needs a step-wise schedule"):
        OptimizerSettings(scheduler="plateau", warmup_steps=5)


def test_unknown_scheduler_names_the_choices() -> None:
    with pytest.raises(MedlitError, match="unknown model.scheduler 'linear'; choose one of: cosine, none, plateau"):
        OptimizerSettings(scheduler="linear")
    with pytest.raises(MedlitError, match="unknown model.optimizer 'lamb'; choose one of: adam, adamw, sgd"):
        OptimizerSettings(optimizer="lamb")


class _SlowRegression(_Regression):
    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        time.sleep(0.02)
        return super().training_step(batch, batch_idx)


def test_cosine_schedule_follows_max_time() -> None:
    """A time budget with no step budget: the schedule still reaches its end when the time runs out."""
    rates = _fit(_SlowRegression("cosine"), max_epochs=-1, max_time={"seconds": 1.0})
    assert len(rates) > 10
    assert rates[0] == pytest.approx(0.1)
    assert all(later <= earlier for earlier, later in itertools.pairwise(rates))
    assert rates[-1] < 0.1 * schedule_factor("cosine", 0.85)  # the last step ran near the end of the budget
