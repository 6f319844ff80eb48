"""The datamodules the throughput benchmarks share: real data from ``../shared/data`` when present, else
generated data of the same layout and size."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule


def ham_datamodule(shared: Path, tmp: Path, **overrides: Any) -> LightningDataModule:
    """HAM10000 at 150x200 (as stored), batch 32, the datamodule's defaults otherwise (``overrides`` win)."""
    from lesion_cls.data import HAM10000DataModule
    from lesion_cls.synthetic import generate_ham10000

    root = shared / "ham10000_200x150"
    if not (root / "HAM10000_metadata.csv").is_file():
        root = generate_ham10000(tmp / "ham", n_images=800, size_hw=(150, 200))
    settings = {"image_size": [150, 200], "batch_size": 32, "cache_dir": str(tmp / "cache")} | overrides
    return HAM10000DataModule(root=str(root), **settings)


def la_datamodule(shared: Path, tmp: Path, **overrides: Any) -> LightningDataModule:
    """LA patches 96x96x64, batch 2, two thirds centred on the atrium, rotate/flip (the LA training setting);
    ``overrides`` win."""
    from volume_seg.data import VolumeDataModule
    from volume_seg.synthetic import generate_la_h5

    root, lists = shared / "la_uamt_h5", {"train_list": "labeled16.list", "test_list": "test20.list"}
    if not (root / "labeled16.list").is_file():
        root, lists = generate_la_h5(tmp / "la", n_train=8, n_test=2, shape=(128, 128, 80)), {}
    settings = {
        "layout": "la_h5",
        "patch_size": [96, 96, 64],
        "batch_size": 2,
        "sampling": "foreground",
        "foreground_ratio": 0.67,
        "augment": "rotflip",
        "patches_per_volume": 64,
        **lists,
    }
    return VolumeDataModule(root=str(root), **(settings | overrides))
