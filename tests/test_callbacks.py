"""``common.callbacks``: the history, timing and EMA callbacks."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.callbacks import EMAWeights, MetricHistory, RunTimer
from tests.helpers import assert_png


def _history_trainer(root: Path, epoch: int, metrics: dict[str, float], **overrides: Any) -> SimpleNamespace:
    fields = {
        "default_root_dir": str(root),
        "is_global_zero": True,
        "sanity_checking": False,
        "fast_dev_run": False,
        "current_epoch": epoch,
        "global_step": 10 * (epoch + 1),
        "callback_metrics": {k: torch.tensor(v) for k, v in metrics.items()},
    }
    return SimpleNamespace(**(fields | overrides))


def _epoch(callback: MetricHistory, trainer: SimpleNamespace) -> None:
    callback.on_train_epoch_start(trainer, None)
    callback.on_train_epoch_end(trainer, None)


def test_metric_history_rows(tmp_path: Path) -> None:
    callback = MetricHistory({"loss": "loss"})
    logged = {"train/loss_step": 9.0, "test/loss": 7.0, "lr-AdamW": 0.1, "train/acc_epoch": 0.5}
    _epoch(callback, _history_trainer(tmp_path, 0, {"train/loss": 1.0, "val/loss": 1.5, **logged}))
    _epoch(callback, _history_trainer(tmp_path, 0, {"train/loss": 1.0}, sanity_checking=True))  # ignored
    _epoch(callback, _history_trainer(tmp_path, 1, {"train/loss": 0.75, "val/loss": 1.25, **logged}))
    _epoch(callback, _history_trainer(tmp_path, 1, {"train/loss": 0.5, "val/loss": 1.0, **logged}))  # replaces epoch 1
    _epoch(callback, _history_trainer(tmp_path, 2, {"train/loss": 0.1}, fast_dev_run=True))  # ignored
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == ["epoch", "step", "train/loss", "val/loss", "train/acc", "epoch_time_s"]
    assert history["epoch"].tolist() == [0, 1]
    assert history["step"].tolist() == [10, 20]
    assert history["train/loss"].tolist() == [1.0, 0.5]
    assert history["val/loss"].tolist() == [1.5, 1.0]
    assert (history["epoch_time_s"] >= 0).all() and (history["epoch_time_s"] < 5).all()

    restored = MetricHistory()
    restored.load_state_dict(json.loads(json.dumps(callback.state_dict())))
    assert restored.rows == callback.rows
    assert restored.rows is not callback.state_dict()["rows"]
    _epoch(restored, _history_trainer(tmp_path, 2, {"train/loss": 0.25, "val/loss": 0.9}))
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [0, 1, 2]  # resumed run keeps earlier epochs
    MetricHistory().load_state_dict({})  # an old checkpoint without the history


def test_metric_history_curves_and_other_ranks(tmp_path: Path) -> None:
    callback = MetricHistory()
    _epoch(callback, _history_trainer(tmp_path, 0, {"train/loss": 1.0}, is_global_zero=False))
    callback.on_fit_end(_history_trainer(tmp_path, 0, {}, is_global_zero=False), None)
    assert list(tmp_path.iterdir()) == []  # only rank 0 writes, though every rank keeps the rows
    assert len(callback.rows) == 1
    root = tmp_path / "exp" / "run"
    root.mkdir(parents=True)
    callback.on_fit_end(_history_trainer(root, 0, {}), None)
    assert_png(root / "curves.png")


def test_run_timer(tmp_path: Path) -> None:
    class FakeAccelerator:
        pass

    trainer = SimpleNamespace(
        default_root_dir=str(tmp_path),
        is_global_zero=True,
        current_epoch=3,
        num_devices=2,
        accelerator=FakeAccelerator(),
    )
    timer = RunTimer()
    timer.on_test_end(trainer, None)  # never started: nothing written
    assert not (tmp_path / "timing.json").exists()
    timer.on_fit_start(trainer, None)
    timer.on_fit_end(trainer, None)
    timer.on_test_start(trainer, None)
    timer.on_test_end(trainer, None)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert set(timing) == {"fit_s", "test_s", "epochs", "devices", "accelerator"}
    assert 0 <= timing["fit_s"] < 5 and 0 <= timing["test_s"] < 5
    assert (timing["epochs"], timing["devices"], timing["accelerator"]) == (3, 2, "FakeAccelerator")
    timer.on_predict_start(trainer, None)
    timer.on_predict_end(SimpleNamespace(**(vars(trainer) | {"is_global_zero": False})), None)
    assert "predict_s" not in json.loads((tmp_path / "timing.json").read_text())


# --- EMAWeights ---


class _Linear(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class _RawWeights(Callback):
    """The raw weights after every optimizer step (before the EMA callback, which runs after it, reads them)."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, *args: object) -> None:
        self.seen.append(pl_module.layer.weight.detach().clone())


def test_ema_is_the_decayed_average_of_the_raw_weights(tmp_path: Path) -> None:
    """First update copies the weights, then ``ema = d * ema + (1 - d) * w`` after every step; validation (here:
    the module after fit) sees the average."""
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 3), torch.randn(8, 1))
    raw, ema = _RawWeights(), EMAWeights(decay=0.6)
    module = _Linear()
    trainer = Trainer(
        max_steps=4,
        callbacks=[raw, ema],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(module, DataLoader(data, batch_size=2))
    expected = raw.seen[0]
    for weights in raw.seen[1:]:
        expected = 0.6 * expected + 0.4 * weights
    assert len(raw.seen) == 4 and not torch.allclose(raw.seen[-1], expected)
    torch.testing.assert_close(module.layer.weight.detach(), expected)  # fit ends with the average swapped in
