"""The datamodule: the split read once, datasets and loaders, class sampling, batch augmentation, its argument
checks (``lesion_cls.data``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.class_balance import sampled_class_priors, sampling_weights
from lesion_cls.data import HAM10000DataModule
from lesion_cls.transforms import build_transforms


def test_datamodule_splits_datasets_and_weights(tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham),
        image_size=32,
        batch_size=8,
        num_workers=0,
        class_weights="balanced",
        cache_dir=str(tmp_path),
    )
    dm.prepare_data()
    dm.setup("fit")
    sizes = {s: len(getattr(dm, f"{s}_dataset")) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 240 and min(sizes.values()) > 20
    split = dm.split_table()
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    counts = np.bincount(dm.train_dataset.labels, minlength=7)
    expected = len(dm.train_dataset) / (7 * counts)
    np.testing.assert_allclose(dm.training_class_statistics.loss_weights, expected, rtol=1e-5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert -3 < batch["image"].mean() < 3 and len(batch["image_id"]) == 8
    val = next(iter(dm.val_dataloader()))
    again = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(val["image"], again["image"])  # no augmentation outside training


def test_full_class_balance_evens_out_classes(tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham),
        image_size=16,
        batch_size=64,
        num_workers=0,
        class_balance=1.0,
        augment=False,
        cache_dir=str(tmp_path),
    )
    dm.setup("fit")
    torch.manual_seed(0)
    drawn = np.concatenate([b["label"].numpy() for _ in range(8) for b in dm.train_dataloader()])
    shares = np.bincount(drawn, minlength=7) / len(drawn)
    natural = np.bincount(dm.train_dataset.labels, minlength=7) / len(dm.train_dataset)
    present = natural > 0
    assert shares[1] < natural[1] / 2  # NV no longer dominates
    assert np.all(np.abs(shares[present] - 1 / present.sum()) < 0.07)


def test_datamodule_sampling_power_and_priors(tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham), image_size=16, num_workers=0, class_balance=0.5, cache_dir=str(tmp_path)
    )
    dm.setup("fit")
    labels = dm.train_dataset.labels
    np.testing.assert_allclose(dm.training_class_statistics.priors, sampled_class_priors(labels, 0.5))
    # the decision tau's frequencies: as in the data, not as sampled, each class counted once more
    counts = np.array([(labels == c).sum() for c in range(7)])
    np.testing.assert_allclose(dm.training_class_statistics.frequencies, (counts + 1) / (len(labels) + 7))
    sampler = dm.train_dataloader().sampler
    np.testing.assert_allclose(sampler.weights.numpy(), sampling_weights(labels, 0.5))
    assert dm.training_class_statistics.loss_weights is None  # data.class_weights=none
    with pytest.raises(MedlitError, match="data.class_balance must be a power in"):
        HAM10000DataModule(root=str(tiny_ham), class_balance=1.5)


def test_batch_augment_in_the_datamodule(tiny_ham: Path, tmp_path: Path) -> None:
    """With data.batch_augment the training loader yields uint8 images and the transfer hook augments them in
    training only; evaluation images are normalised floats as before."""
    dm = HAM10000DataModule(
        root=str(tiny_ham),
        image_size=16,
        num_workers=0,
        batch_augment=True,
        auto_augment="trivial",
        cache_dir=str(tmp_path),
        batch_size=8,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 3, 16, 16)
    assert dm.val_dataset[0]["image"].dtype == torch.float32

    class Training:
        training = True

    dm.trainer = Training()  # the hook asks the trainer whether it trains
    out = dm.on_after_batch_transfer({"image": batch["image"].clone(), "label": batch["label"]}, 0)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (8, 3, 16, 16)
    Training.training = False
    assert dm.on_after_batch_transfer({"image": batch["image"]}, 0)["image"].dtype == torch.uint8
    steps = build_transforms(True, (16, 16), (0, 0, 0), (1, 1, 1), auto_augment="randaugment", batch_augment=True)
    assert steps(batch["image"][0]).dtype == torch.uint8


def test_explicit_test_csv(tiny_ham: Path, tmp_path: Path) -> None:
    meta = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    held = meta.iloc[:40]
    (tmp_path / "train").mkdir()
    meta.iloc[40:].to_csv(tmp_path / "train" / "HAM10000_metadata.csv", index=False)
    shutil.copytree(tiny_ham / "images", tmp_path / "train" / "images")
    onehot = pd.get_dummies(held["dx"].str.upper()).reindex(columns=CLASS_NAMES, fill_value=0).astype(float)
    onehot.insert(0, "image", held["image_id"].to_numpy())
    onehot.to_csv(tmp_path / "gt.csv", index=False)
    dm = HAM10000DataModule(
        root=str(tmp_path / "train"),
        test_csv=str(tmp_path / "gt.csv"),
        test_image_dir=str(tiny_ham / "images"),
        image_size=16,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.setup("fit")
    assert sorted(dm.test_dataset.table["image_id"]) == sorted(held["image_id"])
    assert len(dm.train_dataset) + len(dm.val_dataset) == 200
    # the same images in training metadata and test CSV are refused
    leaky = HAM10000DataModule(
        root=str(tiny_ham),
        test_csv=str(tmp_path / "gt.csv"),
        test_image_dir=str(tiny_ham / "images"),
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(MedlitError, match="also in the training data"):
        leaky.setup("fit")
    # a test CSV without groups: each test image is its own unit of the intervals; with ISIC's lesion column, lesions
    assert dm.test_unit == "image"
    onehot.insert(1, "lesion_id", held["lesion_id"].to_numpy())
    onehot.to_csv(tmp_path / "gt_grouped.csv", index=False)
    grouped = HAM10000DataModule(
        root=str(tmp_path / "train"), test_csv=str(tmp_path / "gt_grouped.csv"), test_image_dir=str(tiny_ham / "images")
    )
    assert grouped.test_unit == "lesion"
    assert grouped._labelled_table().query("split == 'test'")["lesion_id"].tolist() == held["lesion_id"].tolist()


def test_bad_datamodule_arguments(tiny_ham: Path) -> None:
    with pytest.raises(MedlitError, match="val_fraction"):
        HAM10000DataModule(val_fraction=0.0)
    with pytest.raises(MedlitError, match=r"class_weights needs 7 numbers \(one per class\), got 2"):
        _ = HAM10000DataModule(root=str(tiny_ham), class_weights=[1.0, 2.0]).training_class_statistics
    with pytest.raises(MedlitError, match="test_image_dir"):
        HAM10000DataModule(test_csv="x.csv")
