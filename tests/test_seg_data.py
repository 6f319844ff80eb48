"""The volume datamodule: splits, patch sampling, the epoch, its argument checks (discovery and reading:
``test_seg_io.py``; the split as a function: ``test_seg_splits.py``; transforms: ``test_seg_transforms.py``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from common.errors import MedlitError
from volume_seg.data import VolumeDataModule
from volume_seg.io import read_case_list


def test_split_with_lists_never_validates_on_test_cases(tiny_la: Path) -> None:
    dm = VolumeDataModule(
        root=str(tiny_la),
        train_list="train.list",
        test_list="test.list",
        val_fraction=0.25,
        patch_size=[16, 16, 16],
        num_workers=0,
    )
    dm.setup("fit")
    split = dm.split_table()
    test = set(read_case_list(tiny_la / "test.list"))
    assert set(split.loc[split["split"] == "test", "case"]) == test
    assert not test & set(split.loc[split["split"] != "test", "case"])
    assert (split["split"] == "val").sum() == 2 and (split["split"] == "train").sum() == 6
    assert len(dm.train_dataset) == 6 * 8


def test_split_without_lists_and_leak_check(tiny_msd: Path, tmp_path: Path) -> None:
    dm = VolumeDataModule(
        root=str(tiny_msd), num_classes=3, test_fraction=0.25, val_fraction=0.2, patch_size=[16, 16, 16], num_workers=0
    )
    dm.setup("fit")
    counts = dm.split_table()["split"].value_counts()
    assert counts["test"] == 2 and counts["val"] == 1 and counts["train"] == 5
    root = tmp_path / "la"
    shutil.copytree(tiny_msd, root)
    (root / "train.list").write_text("case_000\ncase_001\ncase_002\n")
    (root / "test.list").write_text("case_002\n")
    with pytest.raises(MedlitError, match="case 'case_002' is in both train.list and test.list"):
        VolumeDataModule(root=str(root), num_classes=3, train_list="train.list", test_list="test.list").setup("fit")
    (root / "test.list").write_text("case_999\n")
    with pytest.raises(MedlitError, match=r"test.list: 1 case\(s\) not found under .*: 'case_999'"):
        VolumeDataModule(root=str(root), num_classes=3, test_list="test.list").setup("fit")


def test_patches_padding_and_foreground_sampling(tiny_la: Path) -> None:
    dm = VolumeDataModule(
        root=str(tiny_la),
        train_list="train.list",
        test_list="test.list",
        patch_size=[40, 40, 16],
        num_workers=0,
        sampling="foreground",
        foreground_ratio=1.0,
    )
    dm.setup("fit")
    patch = dm.train_dataset[0]
    assert patch["image"].shape == (1, 40, 40, 16) and patch["label"].shape == (1, 40, 40, 16)
    assert patch["label"].sum() > 0  # centred on foreground
    uniform = VolumeDataModule(
        root=str(tiny_la), train_list="train.list", test_list="test.list", patch_size=[8, 8, 8], num_workers=0
    )
    fg = VolumeDataModule(
        root=str(tiny_la),
        train_list="train.list",
        test_list="test.list",
        patch_size=[8, 8, 8],
        num_workers=0,
        sampling="foreground",
        foreground_ratio=1.0,
    )
    uniform.setup("fit")
    fg.setup("fit")
    torch.manual_seed(0)
    share = {
        name: np.mean([float(d.train_dataset[i]["label"].float().mean()) for i in range(48)])
        for name, d in (("uniform", uniform), ("foreground", fg))
    }
    assert share["foreground"] > share["uniform"] + 0.1


def test_rotation_needs_square_patch_and_other_checks() -> None:
    with pytest.raises(MedlitError, match="equal first two sides"):
        VolumeDataModule(augment="rotflip", patch_size=[96, 112, 80])
    VolumeDataModule(augment="nnunet", patch_size=[96, 112, 80])  # mirrors, never rotates by 90 degrees
    with pytest.raises(MedlitError, match="unknown data.augment 'flip'"):
        VolumeDataModule(augment="flip")
    with pytest.raises(MedlitError, match="num_classes counts the background"):
        VolumeDataModule(num_classes=1)
