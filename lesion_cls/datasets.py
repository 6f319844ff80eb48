"""The dataset of skin-lesion images: one split's images read from the pixel cache (or decoded on every access),
transformed, with their label and id."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from lesion_cls.io import load_rgb

__all__ = ["LesionImageDataset"]


class LesionImageDataset(Dataset):
    """Images of one split as ``{"image": float [3, H, W], "label": int (-1 unknown), "image_id": str}``.

    Args:
        table: Rows with ``image_id``, ``label``, ``path``.
        image_size: ``(H, W)`` of the returned images.
        transform: Applied to the ``uint8 [3, H, W]`` tensor.
        cache_file: A pixel cache built by :func:`~lesion_cls.cache.build_pixel_cache`; ``cache_rows`` gives each
            table row's row in it. Without a cache, images are decoded on every access.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        image_size: tuple[int, int],
        transform: Callable[[torch.Tensor], torch.Tensor],
        cache_file: Path | None = None,
        cache_rows: np.ndarray | None = None,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.image_size = image_size
        self.transform = transform
        self.cache_file = cache_file
        self.cache_rows = cache_rows
        self._pixels: np.ndarray | None = None  # opened lazily: each worker maps the file itself
        self._row_of = {image_id: i for i, image_id in enumerate(self.table["image_id"])}

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()

    def index_of(self, image_id: str) -> int:
        return self._row_of[image_id]

    def display_image(self, index: int) -> np.ndarray:
        """The un-augmented ``uint8 [H, W, 3]`` image at ``image_size`` (for overlays)."""
        if self.cache_file is not None:
            if self._pixels is None:
                self._pixels = np.load(self.cache_file, mmap_mode="r")
            return np.array(self._pixels[self.cache_rows[index]])
        return load_rgb(self.table["path"].iloc[index], self.image_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = torch.from_numpy(self.display_image(index)).permute(2, 0, 1).contiguous()
        row = self.table.iloc[index]
        return {"image": self.transform(pixels), "label": int(row["label"]), "image_id": row["image_id"]}
