"""Patch and whole-volume datasets on cached volumes (:mod:`volume_seg.datasets`)."""

from __future__ import annotations

import numpy as np
import torch

from volume_seg.datasets import PatchDataset, WholeVolumeDataset


def test_patch_dataset_length_defines_an_epoch() -> None:
    volumes = [{"image": torch.zeros(1, 4, 4, 4), "label": torch.zeros(1, 4, 4, 4)}] * 3
    dataset = PatchDataset(volumes, lambda d: d, patches_per_volume=5)
    assert len(dataset) == 15 and dataset[14]["image"].shape == (1, 4, 4, 4)


def test_whole_volumes_are_tensors_with_their_case_and_geometry() -> None:
    labelled = {
        "case": "a",
        "image": np.zeros((1, 2, 3, 4), np.float64),
        "label": np.ones((1, 2, 3, 4), np.uint8),
        "spacing": np.array([1.0, 1.0, 1.5]),
        "affine": np.eye(4),
    }
    unlabelled = {"case": "b", "image": np.ones((1, 2, 2, 2), np.float32), "spacing": np.full(3, np.nan)}
    dataset = WholeVolumeDataset([labelled, {**unlabelled, "affine": np.diag([2.0, 2.0, 2.0, 1.0])}])
    assert len(dataset) == 2
    item = dataset[0]
    assert item["case"] == "a" and item["image"].dtype == torch.float32 and item["image"].shape == (1, 2, 3, 4)
    assert item["label"].dtype == torch.uint8 and int(item["label"].sum()) == 24
    torch.testing.assert_close(item["spacing"], torch.tensor([1.0, 1.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(item["affine"], torch.eye(4, dtype=torch.float64))
    item = dataset[1]
    assert "label" not in item and item["case"] == "b" and torch.isnan(item["spacing"]).all()
    assert float(item["affine"][0, 0]) == 2.0
