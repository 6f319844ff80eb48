"""The datasets of 3D segmentation on the cached volumes: random training patches (:class:`PatchDataset`) and whole
volumes for validation, test and predict (:class:`WholeVolumeDataset`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

__all__ = ["PatchDataset", "WholeVolumeDataset"]


class PatchDataset(Dataset):
    """Random patches from in-memory volumes: item ``i`` is a fresh patch of volume ``i % len(volumes)``.

    One epoch therefore draws ``patches_per_volume`` patches from every training volume. Items: ``image``
    float32 and ``label`` ``[1, *patch_size]``.
    """

    def __init__(self, volumes: Sequence[Mapping[str, Any]], transform: Callable, patches_per_volume: int) -> None:
        self.volumes = volumes
        self.transform = transform
        self.patches_per_volume = patches_per_volume

    def __len__(self) -> int:
        return len(self.volumes) * self.patches_per_volume

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        volume = self.volumes[index % len(self.volumes)]
        patch = self.transform({"image": volume["image"], "label": volume["label"]})
        if isinstance(patch, list):  # RandCropByPosNegLabeld returns a list of samples
            patch = patch[0]
        return {"image": patch["image"].float(), "label": patch["label"]}


class WholeVolumeDataset(Dataset):
    """Whole cached volumes for validation/test/predict (batch size 1: shapes differ).

    Items: ``image`` float32 ``[1, X, Y, Z]``, ``label`` ``[1, X, Y, Z]`` (when labelled), ``case``, ``spacing``
    ``[3]`` in mm (NaN when unknown) and ``affine`` ``[4, 4]``.
    """

    def __init__(self, volumes: Sequence[Mapping[str, Any]]) -> None:
        self.volumes = volumes

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume = self.volumes[index]
        item = {
            "image": torch.as_tensor(volume["image"]).float(),
            "case": volume["case"],
            "spacing": torch.as_tensor(volume["spacing"]),
            "affine": torch.as_tensor(volume["affine"]),
        }
        if "label" in volume:
            item["label"] = torch.as_tensor(volume["label"])
        return item
