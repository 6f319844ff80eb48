"""The decoded-pixel cache (``lesion_cls.cache``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from lesion_cls.cache import build_pixel_cache


def test_pixel_cache_reused_and_invalidated(tiny_ham: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_ham / "images", images)
    paths = sorted(str(p) for p in images.iterdir())[:10]
    first = build_pixel_cache(paths, (24, 32), tmp_path / "cache")
    pixels = np.load(first)
    assert pixels.shape == (10, 24, 32, 3) and pixels.dtype == np.uint8 and pixels.std() > 5
    assert build_pixel_cache(paths, (24, 32), tmp_path / "cache") == first
    Path(paths[3]).write_bytes(Path(paths[4]).read_bytes())  # an image changed on disk
    second = build_pixel_cache(paths, (24, 32), tmp_path / "cache")
    assert second != first
    np.testing.assert_array_equal(np.load(second)[3], np.load(second)[4])
