"""``common.callbacks.EMAWeights``: the averaged weights follow the EMA formula, step by step."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from common.callbacks import EMAWeights


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
