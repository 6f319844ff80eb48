"""The skin-lesion image dataset on the pixel cache or decoding on access (``lesion_cls.datasets``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lesion_cls.cache import build_pixel_cache
from lesion_cls.datasets import LesionImageDataset
from lesion_cls.io import read_ham_metadata


def test_cached_and_decoded_items_are_the_same(tiny_ham: Path, tmp_path: Path) -> None:
    """The cache rows map each table row to its image; an item is the (transformed) image, its label and id."""
    table = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images").iloc[:6]
    size = (24, 32)
    cache = build_pixel_cache(table["path"].tolist(), size, tmp_path / "cache")
    decoded = LesionImageDataset(table, size, lambda image: image)
    cached = LesionImageDataset(table.iloc[[3, 1]], size, lambda image: image, cache, np.array([3, 1]))
    assert len(cached) == 2 and cached.labels.tolist() == table["label"].iloc[[3, 1]].tolist()
    for index, row in enumerate((3, 1)):
        image = cached.display_image(index)
        assert image.shape == (24, 32, 3) and image.dtype == np.uint8 and image.std() > 5
        np.testing.assert_array_equal(image, decoded.display_image(row))
    item = cached[1]
    torch.testing.assert_close(item["image"], torch.from_numpy(decoded.display_image(1)).permute(2, 0, 1))
    assert item["label"] == int(table["label"].iloc[1]) and item["image_id"] == table["image_id"].iloc[1]
    assert cached.index_of(table["image_id"].iloc[1]) == 1 and decoded.index_of(table["image_id"].iloc[4]) == 4
    normalised = LesionImageDataset(table, size, lambda image: image.float() / 255)
    assert normalised[0]["image"].dtype == torch.float32 and float(normalised[0]["image"].max()) <= 1.0
