"""HAM10000 / ISIC 2018 Task 3, or your own images and classes, for Lightning: the DataModule (the split read once,
the datasets on the pixel cache, the loaders).

Reading the files is :mod:`lesion_cls.io`, the layouts and the class list :mod:`lesion_cls.labels`, the split
:mod:`lesion_cls.splits`, the pixel cache
:mod:`lesion_cls.cache`, the datasets :mod:`lesion_cls.datasets`, the class balance :mod:`lesion_cls.class_balance`,
normalisation and augmentation :mod:`lesion_cls.transforms`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from common.check import DataCheck
from common.errors import MedlitError, check_choice
from common.folds import check_folds
from common.loaders import evaluation_loader, loader_workers, training_loader
from lesion_cls.cache import build_pixel_cache
from lesion_cls.check import check_dataset
from lesion_cls.class_balance import ClassStatistics, class_statistics, sampling_weights
from lesion_cls.datasets import LesionImageDataset
from lesion_cls.io import read_folder
from lesion_cls.labels import LabelledImages
from lesion_cls.splits import absent_classes, read_labelled_table, split_summary
from lesion_cls.transforms import AUTO_AUGMENTS, BatchAugment, build_transforms, normalization

__all__ = ["HAM10000DataModule"]


def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    if len(image_size) != 2:
        raise MedlitError(f"data.image_size must be an int or [height, width], got {list(image_size)}")
    return (int(image_size[0]), int(image_size[1]))


class HAM10000DataModule(LightningDataModule):
    """HAM10000 (and optionally the ISIC 2018 test set), or your own labelled images, for training, validation,
    test and prediction.

    Args:
        root: The data folder, in one of the layouts of :mod:`lesion_cls.labels`: HAM10000 (``metadata_csv`` and
            ``image_dir``), a labels CSV ``image,label[,group]`` (``metadata_csv``) and ``image_dir``, or one
            folder of images per class.
        metadata_csv: HAM10000 metadata file or labels CSV, relative to ``root``.
        image_dir: Image folder, relative to ``root``.
        classes: The class list and its order (your own data; each label must be one of them, each have an
            image); default: from the data (:func:`~lesion_cls.labels.class_order`). A binary problem's positive
            class is the second.
        test_csv: Optional test set: a labels CSV or a one-hot CSV with a column per class (e.g. the official ISIC
            2018 test labels), each optionally with a group column; then ``test_fraction`` is ignored and all of
            ``root`` is train + val.
        test_image_dir: Image folder of ``test_csv``.
        predict_dir: Folder of images for ``predict``.
        val_fraction: Fraction of lesions held out for validation (model selection).
        test_fraction: Fraction of lesions held out for testing (when there is no ``test_csv``).
        split_seed: Seed of the lesion split and of the folds (separate from the training seed).
        num_folds: Cross-validation: ``K >= 2`` cuts the non-test lesions into ``K`` class-stratified folds and
            fold ``fold`` validates (``val_fraction`` is then not used); the test images do not change with the fold.
            0 = no folds.
        fold: The fold that validates, ``0 .. num_folds - 1``.
        test_split: The images ``test`` evaluates: ``test`` (the test set) or ``val`` (the validation images; with
            folds, the out-of-fold predictions of cross-validation, :mod:`common.studies.cv`).
        image_size: Side (or ``[height, width]``) images are resized to.
        normalize: ``imagenet`` mean/std (also right for training from scratch) or ``none`` (pixels in [0, 1]).
        augment: Random resized crop, flips, rotation, colour jitter during training.
        rotation_degrees: Maximum rotation (0 = off).
        color_jitter: Brightness/contrast/saturation jitter strength (0 = off).
        crop_scale_min: Smallest crop area of the random resized crop (1 = off).
        auto_augment: ``none``, ``trivial`` (TrivialAugmentWide) or ``randaugment`` before the rest
            (:data:`~lesion_cls.transforms.AUTO_AUGMENTS`).
        batch_augment: Crop, flips, rotation and colour jitter on whole batches after they reach the device
            (:class:`~lesion_cls.transforms.BatchAugment`, the GPU when there is one) instead of per image in the
            loader workers.
        class_balance: How strongly training draws balance the classes, a power ``p`` in [0, 1]: class ``c`` is
            drawn in proportion to ``n_c ** (1 - p)``; 0 = each image once per epoch (as in the data), 1 = every
            class equally often, 0.5 = by the square root of the class sizes
            (:func:`~lesion_cls.class_balance.sampling_weights`).
        class_weights: ``none``, ``balanced`` (``n / (C * n_c)`` on the training split) or an explicit list
            of one weight per class; :attr:`training_class_statistics` gives them to the model through a CLI link.
        batch_size: Images per batch (per device).
        num_workers: DataLoader worker processes; default: :func:`common.loaders.default_workers`
            (the cores shared among the machine's training processes, at most 8).
        cache_dir: Where decoded pixels are cached (default ``$MEDLIT_CACHE`` or ``~/.cache/medlit``).
    """

    def __init__(
        self,
        root: str = "data/HAM10000",
        metadata_csv: str = "HAM10000_metadata.csv",
        image_dir: str = "images",
        classes: list[str] | None = None,
        test_csv: str | None = None,
        test_image_dir: str | None = None,
        predict_dir: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 42,
        num_folds: int = 0,
        fold: int = 0,
        test_split: Literal["test", "val"] = "test",
        image_size: int | list[int] = 224,
        normalize: Literal["imagenet", "none"] = "imagenet",
        augment: bool = True,
        rotation_degrees: float = 20.0,
        color_jitter: float = 0.1,
        crop_scale_min: float = 0.75,
        auto_augment: Literal["none", "trivial", "randaugment"] = "none",
        batch_augment: bool = False,
        class_balance: float = 0.0,
        class_weights: str | list[float] = "none",
        batch_size: int = 32,
        num_workers: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_size = _as_size(image_size)
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise MedlitError(
                f"data.val_fraction ({val_fraction}) must be in (0, 1), data.test_fraction ({test_fraction}) "
                "in [0, 1), and their sum below 1"
            )
        if isinstance(class_weights, str):
            check_choice("data.class_weights", class_weights, ("none", "balanced"))
        if not 0.0 <= class_balance <= 1.0:
            raise MedlitError(f"data.class_balance must be a power in [0, 1], got {class_balance}")
        check_choice("data.auto_augment", auto_augment, AUTO_AUGMENTS)
        check_folds(num_folds, fold)
        check_choice("data.test_split", test_split, ("test", "val"))
        if test_csv and not test_image_dir:
            raise MedlitError("data.test_csv is set but data.test_image_dir is not: the test images are needed")
        self.table: pd.DataFrame | None = None
        self._labelled: LabelledImages | None = None
        self.train_dataset: LesionImageDataset | None = None
        self.val_dataset: LesionImageDataset | None = None
        self.test_dataset: LesionImageDataset | None = None
        self.predict_dataset: LesionImageDataset | None = None
        self.mean, self.std = normalization("imagenet")
        self.batch_augmenter: BatchAugment | None = None

    @property
    def has_test_data(self) -> bool:
        """Whether ``test`` has images (``data.test_csv``, a ``data.test_fraction`` above 0, or the validation
        images)."""
        hp = self.hparams
        return bool(hp.test_csv) or hp.test_fraction > 0 or hp.test_split == "val"

    @property
    def cache_dir(self) -> Path:
        """Where the pixel cache lies: ``data.cache_dir``, else ``$MEDLIT_CACHE`` or ``~/.cache/medlit``."""
        default = Path(os.environ.get("MEDLIT_CACHE", Path.home() / ".cache" / "medlit"))
        return Path(self.hparams.cache_dir) if self.hparams.cache_dir else default

    # -- lifecycle --
    def _labelled_images(self) -> LabelledImages:
        """All labelled images with their split and the class list (:func:`lesion_cls.splits.read_labelled_table`),
        read once."""
        if self._labelled is None:
            hp = self.hparams
            files = (hp.root, hp.metadata_csv, hp.image_dir, hp.test_csv, hp.test_image_dir)
            split = (hp.val_fraction, hp.test_fraction, hp.split_seed, hp.num_folds, hp.fold)
            self._labelled = read_labelled_table(*files, *split, hp.classes)
        return self._labelled

    def _labelled_table(self) -> pd.DataFrame:
        return self._labelled_images().table

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes in the order of the network's outputs, from the data (linked to ``model.class_names``)."""
        return self._labelled_images().class_names

    @property
    def test_unit(self) -> str:
        """What the test intervals resample: ``lesion`` (HAM10000), ``group`` (a labels CSV with groups) or
        ``image`` (no groups: each image its own unit)."""
        data = self._labelled_images()
        return data.unit if self.hparams.test_split == "val" else data.unit_of_test

    @cached_property
    def training_class_statistics(self) -> ClassStatistics:
        """What the model needs from the training split's labels (:func:`~lesion_cls.class_balance.class_statistics`);
        read once, when a CLI link first asks, after the CLI's dataset check (the metadata is read, no image is
        decoded)."""
        table, classes = self._labelled_table(), len(self.class_names)
        weights = self.hparams.class_weights
        if not isinstance(weights, str) and len(weights) != classes:
            raise MedlitError(f"data.class_weights needs {classes} numbers (one per class), got {len(weights)}")
        labels = table.loc[table["split"] == "train", "label"].to_numpy()
        return class_statistics(labels, weights, self.hparams.class_balance, classes)

    def check_data(self, full: bool = True) -> DataCheck:
        """Every problem of the metadata, the images and the test set, and a summary (``check`` command;
        :func:`lesion_cls.check.check_dataset`).

        Args:
            full: Also open and decode every image (the cheap check reads the CSV files and lists the folder).
        """
        hp = self.hparams
        files = (hp.root, hp.metadata_csv, hp.image_dir, hp.test_csv, hp.test_image_dir)
        return check_dataset(*files, full, hp.classes)

    def prepare_data(self) -> None:
        """Check the files and build the pixel cache (once per node); ``predict`` reads only its own folder."""
        if self.trainer is not None and self.trainer.predicting:
            return
        table = self._labelled_table()
        build_pixel_cache(table["path"].tolist(), self.image_size, self.cache_dir)

    def setup(self, stage: str) -> None:
        """The train/val/test datasets on the pixel cache (read once), or the ``predict`` folder's images."""
        if stage == "predict":
            self._setup_predict()
            return
        if self.table is not None:
            return
        table = self._labelled_table()
        cache_file = build_pixel_cache(table["path"].tolist(), self.image_size, self.cache_dir)
        self.table = table
        hp = self.hparams
        self.mean, self.std = normalization(hp.normalize)
        keys = ("augment", "rotation_degrees", "color_jitter", "crop_scale_min", "auto_augment", "batch_augment")
        augment = {k: hp[k] for k in keys}
        for split in ("train", "val", "test"):
            rows = np.flatnonzero(table["split"].to_numpy() == split)
            transform = build_transforms(split == "train", self.image_size, self.mean, self.std, **augment)
            dataset = LesionImageDataset(table.iloc[rows], self.image_size, transform, cache_file, rows)
            setattr(self, f"{split}_dataset", dataset)
        if hp.test_split == "val":
            self.test_dataset = self.val_dataset
        if hp.batch_augment and hp.augment:
            self.batch_augmenter = BatchAugment(
                self.mean, self.std, hp.rotation_degrees, hp.color_jitter, hp.crop_scale_min
            )
        data = self._labelled_images()
        grouping = {"lesion": "grouped by lesion_id", "group": "grouped by group", "image": "no groups"}[data.unit]
        title = "HAM10000" if data.layout == "ham10000" else f"{data.layout} ({len(data.class_names)} classes)"
        rank_zero_info(f"{title} split ({grouping}):\n" + split_summary(table, data.class_names, data.unit))
        for warning in absent_classes(table, data.class_names):
            rank_zero_warn(warning)

    def _setup_predict(self) -> None:
        if self.predict_dataset is not None:
            return
        if not self.hparams.predict_dir:
            raise MedlitError("predict needs data.predict_dir: a folder of .jpg/.png images")
        table = read_folder(Path(self.hparams.predict_dir))
        self.mean, self.std = normalization(self.hparams.normalize)
        transform = build_transforms(False, self.image_size, self.mean, self.std)
        self.predict_dataset = LesionImageDataset(table, self.image_size, transform)

    def split_table(self) -> pd.DataFrame:
        """One row per image: ``image_id, lesion_id, label, class, split`` and, with folds, ``fold`` (-1: test)
        (saved as ``split.csv``)."""
        assert self.table is not None, "call setup() first"
        columns = ["image_id", "lesion_id", "label", "split", *(["fold"] if "fold" in self.table else [])]
        table = self.table[columns].copy()
        table.insert(3, "class", [self.class_names[i] for i in table["label"]])
        return table

    # -- loaders --
    def train_dataloader(self) -> DataLoader:
        """Training images shuffled, or drawn by class (``data.class_balance``,
        :func:`~lesion_cls.class_balance.sampling_weights`)."""
        if self.train_dataset is None:
            raise MedlitError("the datamodule has not been set up for this stage")
        sampler = None
        power = float(self.hparams.class_balance)
        if power > 0:
            labels = self.train_dataset.labels
            weights = sampling_weights(labels, power, len(self.class_names))
            weights = torch.as_tensor(weights, dtype=torch.double)
            sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True)
        workers = loader_workers(self.hparams.num_workers, self.trainer)
        return training_loader(self.train_dataset, self.hparams.batch_size, workers, sampler)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """``data.batch_augment``: the training batch (still ``uint8``) is augmented where it now lies."""
        training = self.trainer is not None and self.trainer.training
        if self.batch_augmenter is not None and training and batch["image"].dtype == torch.uint8:
            batch["image"] = self.batch_augmenter.to(batch["image"].device)(batch["image"])
        return batch

    def val_dataloader(self) -> DataLoader:
        """Every validation image once, in order (also across processes)."""
        return self._evaluation_loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        """Every test image once, in order (also across processes)."""
        return self._evaluation_loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        """Every image of ``data.predict_dir`` once, in order."""
        return self._evaluation_loader(self.predict_dataset)

    def _evaluation_loader(self, dataset: Dataset | None) -> DataLoader:
        workers = loader_workers(self.hparams.num_workers, self.trainer)
        return evaluation_loader(dataset, self.hparams.batch_size, workers)
