"""The datamodule of 3D segmentation: the split, the volumes cached once, random training patches, whole volumes
for validation, test and predict, the loaders.

Discovery and reading are :mod:`volume_seg.io`, the split :mod:`volume_seg.splits`, the dataset check
:mod:`volume_seg.check`, the volume cache :mod:`volume_seg.cache`, the datasets :mod:`volume_seg.datasets`, the
transform pipelines :mod:`volume_seg.transforms`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from monai.data import DataLoader
from torch.utils.data import Dataset

from common.check import DataCheck
from common.errors import MedlitError, check_choice
from common.folds import check_folds
from common.loaders import evaluation_loader, loader_workers, training_loader
from volume_seg.cache import cache_volumes
from volume_seg.check import check_volume_dataset
from volume_seg.datasets import PatchDataset, WholeVolumeDataset
from volume_seg.io import predict_records
from volume_seg.splits import split_cases
from volume_seg.transforms import (
    AUGMENTATIONS,
    NORMALIZATIONS,
    ROT90_AUGMENTATIONS,
    loading_transform,
    patch_transform,
)

__all__ = ["VolumeDataModule"]


class VolumeDataModule(LightningDataModule):
    """Volumes for 3D segmentation: split, cached in memory, random training patches, whole-volume evaluation.

    Args:
        root: Dataset folder.
        layout: ``auto``, ``la_h5``, ``msd`` or ``folders`` (see :mod:`volume_seg.io`).
        train_list: Case list (relative to ``root``) of the labelled training pool; default: every case not
            in ``test_list``.
        test_list: Case list of the test set; without it, ``test_fraction`` of the pool is held out.
        val_fraction: Fraction of the training pool used for validation (model selection); never a test case.
        test_fraction: Fraction held out for testing when there is no ``test_list``.
        split_seed: Seed of the validation/test split and of the folds.
        num_folds: Cross-validation: ``K >= 2`` cuts the training pool into ``K`` folds of cases and fold ``fold``
            validates (``val_fraction`` is then not used); the test cases do not change with the fold. 0 = no folds.
        fold: The fold that validates, ``0 .. num_folds - 1``.
        test_split: The cases ``test`` evaluates: ``test`` (the test set) or ``val`` (the validation cases; with folds,
            the out-of-fold predictions of cross-validation, :mod:`common.studies.cv`).
        num_classes: Classes including background; 2 = binary (labels 0/1 or 0/255); other label values are refused.
        class_names: Names of the classes, background first (linked to ``model.class_names``, which checks the count;
            default ``background``, ``foreground`` / ``class_1``...).
        spacing: Voxel spacing in mm to use instead of the file's (LA h5 files store none).
        normalize: ``zscore``, ``minmax``, ``percentile`` or ``none``, per volume.
        patch_size: Training patch (and sliding-window ROI) size; volumes smaller than it are zero-padded.
        patches_per_volume: Patches drawn from each training volume per epoch (defines an epoch).
        sampling: ``uniform`` random crops, or ``foreground``: a share ``foreground_ratio`` of the patches is
            centred on a foreground voxel.
        foreground_ratio: See ``sampling``.
        augment: ``none``, ``rotflip``, ``rich``, ``nnunet`` or ``nnunet_elastic``
            (:data:`~volume_seg.transforms.AUGMENTATIONS`).
        batch_size: Training patches per batch (per device); evaluation uses one whole volume per batch.
        num_workers: DataLoader worker processes for training patches; default: :func:`common.loaders.default_workers`
            (the cores shared among the machine's training processes, at most 8).
        predict_dir: Folder of volumes for ``predict``.
        empty_labels: What to do with a training or validation case whose label has no foreground: ``warn``
            (train on it, say which) or ``error`` (refuse).
    """

    def __init__(
        self,
        root: str = "data/LA",
        layout: Literal["auto", "la_h5", "msd", "folders"] = "auto",
        train_list: str | None = None,
        test_list: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 42,
        num_folds: int = 0,
        fold: int = 0,
        test_split: Literal["test", "val"] = "test",
        num_classes: int = 2,
        class_names: list[str] | None = None,
        spacing: list[float] | None = None,
        normalize: str = "zscore",
        patch_size: list[int] = (112, 112, 80),
        patches_per_volume: int = 8,
        sampling: Literal["uniform", "foreground"] = "uniform",
        foreground_ratio: float = 0.5,
        augment: str = "none",
        batch_size: int = 4,
        num_workers: int | None = None,
        predict_dir: str | None = None,
        empty_labels: str = "warn",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_choice("data.empty_labels", empty_labels, ("warn", "error"))
        check_folds(num_folds, fold)
        check_choice("data.test_split", test_split, ("test", "val"))
        check_choice("data.normalize", normalize, NORMALIZATIONS)
        check_choice("data.augment", augment, AUGMENTATIONS)
        if num_classes < 2:
            raise MedlitError(f"data.num_classes counts the background and must be >= 2, got {num_classes}")
        if len(patch_size) != 3:
            raise MedlitError(f"data.patch_size needs 3 numbers, got {list(patch_size)}")
        if augment in ROT90_AUGMENTATIONS and patch_size[0] != patch_size[1]:
            raise MedlitError(
                f"data.augment={augment} rotates in the first two axes, so data.patch_size must have equal first "
                f"two sides, got {list(patch_size)}"
            )
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1:
            raise MedlitError("data.val_fraction must be in (0, 1) and data.test_fraction in [0, 1)")
        self.split: pd.DataFrame | None = None
        self.train_dataset: PatchDataset | None = None
        self.val_dataset: WholeVolumeDataset | None = None
        self.test_dataset: WholeVolumeDataset | None = None
        self.predict_dataset: WholeVolumeDataset | None = None

    @property
    def has_test_data(self) -> bool:
        """Whether ``test`` has cases (a test list, a held-out fraction, or the validation cases)."""
        hp = self.hparams
        return bool(hp.test_list) or hp.test_fraction > 0 or hp.test_split == "val"

    def check_data(self, full: bool = True) -> DataCheck:
        """Every problem of the cases and the case lists, and a summary (``check`` command).

        Args:
            full: Also read and check every volume (the cheap check lists the files and reads the lists).
        """
        hp = self.hparams
        return check_volume_dataset(
            Path(hp.root), hp.layout, hp.train_list, hp.test_list, hp.num_classes, hp.spacing, full=full
        )

    def split_table(self) -> pd.DataFrame:
        """One row per case: ``case, split, image`` and, with folds, ``fold`` (-1: test) (saved as ``split.csv``)."""
        assert self.split is not None, "call setup() first"
        return self.split[["case", "split", "image", *(["fold"] if "fold" in self.split else [])]].copy()

    def cases_of(self, split: Literal["train", "val", "test"]) -> WholeVolumeDataset:
        """The whole volumes of one split alone, loaded now as ``test`` loads them (to score saved predictions:
        :mod:`volume_seg.ensemble`)."""
        hp = self.hparams
        table, records = split_cases(
            Path(hp.root), hp.layout, hp.train_list, hp.test_list, hp.val_fraction, hp.test_fraction, hp.split_seed,
            hp.num_folds, hp.fold,
        )  # fmt: skip
        return WholeVolumeDataset(self._cache([records[c] for c in table.loc[table["split"] == split, "case"]]))

    # -- lifecycle --
    def _cache(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        hp = self.hparams
        return cache_volumes(records, loading_transform(hp.num_classes, hp.spacing, hp.normalize))

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "predict":
            if self.predict_dataset is None:
                if not hp.predict_dir:
                    raise MedlitError("predict needs data.predict_dir: a folder of volumes")
                self.predict_dataset = WholeVolumeDataset(self._cache(predict_records(Path(hp.predict_dir))))
            return
        if self.split is not None:
            return
        split, records = split_cases(
            Path(hp.root), hp.layout, hp.train_list, hp.test_list, hp.val_fraction, hp.test_fraction, hp.split_seed,
            hp.num_folds, hp.fold,
        )  # fmt: skip
        cache = self._cache([records[c] for c in split["case"]])
        volumes = {case: cache[i] for i, case in enumerate(split["case"])}
        for name in ("val", "test"):
            cases = split.loc[split["split"] == name, "case"]
            setattr(self, f"{name}_dataset", WholeVolumeDataset([volumes[c] for c in cases]))
        if hp.test_split == "val":
            self.test_dataset = self.val_dataset
        self._check_foreground(split, volumes)
        train = [volumes[c] for c in split.loc[split["split"] == "train", "case"]]
        transform = patch_transform(hp.patch_size, hp.sampling, hp.foreground_ratio, hp.augment)
        self.train_dataset = PatchDataset(train, transform, hp.patches_per_volume)
        self.split = split
        counts = split["split"].value_counts()
        rank_zero_info(
            "volume split: "
            + ", ".join(f"{s} {counts.get(s, 0)} cases" for s in ("train", "val", "test"))
            + f"; epoch = {len(self.train_dataset)} patches of {list(hp.patch_size)}"
        )

    def _check_foreground(self, split: pd.DataFrame, volumes: dict[str, Mapping[str, Any]]) -> None:
        """Warn about (or refuse) training and validation cases without any foreground voxel."""
        fitting = split.loc[split["split"].isin(["train", "val"]), "case"]
        empty = [c for c in fitting if not bool(torch.as_tensor(volumes[c]["label"]).any())]
        if not empty:
            return
        message = f"{len(empty)} training/validation case(s) have an empty label: {', '.join(empty[:5])}"
        if self.hparams.empty_labels == "error":
            raise MedlitError(f"{message} (data.empty_labels=error; set warn to train on them)")
        rank_zero_warn(message + " (set data.empty_labels=error to refuse them)")

    # -- loaders --
    # MONAI's DataLoader class: it seeds MONAI's random transforms (patch crops, augmentation) from torch's
    # generator, in every worker too; with torch's own loader a seeded run would not repeat its patches
    def train_dataloader(self) -> DataLoader:
        workers = loader_workers(self.hparams.num_workers, self.trainer)
        drop_last = len(self.train_dataset) > self.hparams.batch_size
        return training_loader(self.train_dataset, self.hparams.batch_size, workers, None, drop_last, DataLoader)

    @staticmethod
    def _whole_volumes(dataset: Dataset | None) -> DataLoader:
        """One whole volume per batch, every volume once, also across processes (metrics count each once)."""
        return evaluation_loader(dataset, batch_size=1, workers=0, loader_class=DataLoader)

    def val_dataloader(self) -> DataLoader:
        return self._whole_volumes(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._whole_volumes(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._whole_volumes(self.predict_dataset)
