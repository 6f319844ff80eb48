"""Transform pipelines (:mod:`volume_seg.transforms`): per-volume normalisation, training patches, augmentation."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from volume_seg.data import VolumeDataModule
from volume_seg.io import discover_cases
from volume_seg.transforms import AUGMENTATIONS, loading_transform, patch_transform


def test_zscore_normalisation_per_volume(tiny_msd: Path) -> None:
    dm = VolumeDataModule(root=str(tiny_msd), num_classes=3, patch_size=[16, 16, 16], num_workers=0)
    dm.setup("fit")
    for item in (dm.val_dataset[0], dm.test_dataset[0]):
        # the generator scales raw intensities by up to 5e4; normalised volumes have mean 0, std 1
        assert abs(float(item["image"].mean())) < 1e-3 and abs(float(item["image"].std()) - 1) < 1e-2


@pytest.mark.parametrize("augment", ["rotflip", "rich", "nnunet", "nnunet_elastic"])
def test_augmentation_keeps_image_and_label_aligned(tmp_path: Path, augment: str) -> None:
    rng = np.random.default_rng(0)
    label = np.zeros((24, 24, 16), np.uint8)
    label[4:14, 6:20, 3:12] = 1
    image = label * 10.0 + rng.normal(0, 0.1, label.shape)
    (tmp_path / "C1").mkdir()
    (tmp_path / "C2").mkdir()
    for case in ("C1", "C2"):
        with h5py.File(tmp_path / case / "mri_norm2.h5", "w") as h5:
            h5["image"], h5["label"] = image.astype(np.float32), label
    dm = VolumeDataModule(
        root=str(tmp_path),
        normalize="none",
        augment=augment,
        patch_size=[24, 24, 16],
        val_fraction=0.5,
        test_fraction=0.0,
        num_workers=0,
    )
    dm.setup("fit")
    cached = dm.train_dataset.volumes[0]["image"].clone()
    changed = False
    for i in range(12):
        patch = dm.train_dataset[i]
        bright = patch["image"][0] > 5
        agreement = (bright == (patch["label"][0] > 0)).float().mean()
        assert agreement > 0.97, agreement  # interpolation may blur the boundary a little
        changed |= not torch.equal(patch["label"][0], torch.as_tensor(label))
    assert changed
    torch.testing.assert_close(dm.train_dataset.volumes[0]["image"], cached)  # the cache is never modified


def test_loading_then_patch_transform(tiny_msd: Path) -> None:
    _, records = discover_cases(tiny_msd)
    volume = loading_transform(3, None, "zscore")(dict(records[0]))
    assert volume["image"].shape == (1, 24, 28, 20) and type(volume["image"]) is torch.Tensor  # no MetaTensor
    assert abs(float(volume["image"].mean())) < 1e-3
    patch = patch_transform([32, 16, 16], "foreground", 1.0, "none")(
        {"image": volume["image"], "label": volume["label"]}
    )
    patch = patch[0]  # RandCropByPosNegLabeld returns a list of samples
    assert patch["image"].shape == (1, 32, 16, 16) and patch["label"].shape == (1, 32, 16, 16)
    assert set(AUGMENTATIONS) == {"none", "rotflip", "rich", "nnunet", "nnunet_elastic"}
