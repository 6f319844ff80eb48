"""The toy datamodule: seeded random samples split 60/20/20."""

from __future__ import annotations

import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Dataset

from common.check import DataCheck


class _Samples(Dataset):
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class ToyDataModule(LightningDataModule):
    """``n`` samples of ``features`` dimensions; ``y = x·w + 0.1·noise`` with a fixed ``w``."""

    def __init__(self, n: int = 200, features: int = 4, seed: int = 0, batch_size: int = 20) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.splits: dict[str, _Samples] = {}

    @property
    def has_test_data(self) -> bool:
        return True

    def setup(self, stage: str) -> None:
        generator = torch.Generator().manual_seed(self.hparams.seed)
        x = torch.randn(self.hparams.n, self.hparams.features, generator=generator)
        y = x @ torch.arange(1.0, self.hparams.features + 1) + 0.1 * torch.randn(self.hparams.n, generator=generator)
        cut = [0, int(0.6 * len(y)), int(0.8 * len(y)), len(y)]
        for name, start, stop in zip(("train", "val", "test"), cut, cut[1:], strict=False):
            self.splits[name] = _Samples(x[start:stop], y[start:stop])

    def check_data(self, full: bool = True) -> DataCheck:
        check = DataCheck(summary={"samples": str(self.hparams.n)})
        if self.hparams.n < 5:
            check.add("data.n", f"{self.hparams.n} samples cannot be split 60/20/20", "use at least 5")
        return check

    def split_table(self) -> pd.DataFrame:
        return pd.DataFrame(
            [(f"{name}{i}", name) for name, samples in self.splits.items() for i in range(len(samples))],
            columns=["sample", "split"],
        )

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.hparams.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["val"], batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["test"], batch_size=self.hparams.batch_size)
