"""The decoded-pixel cache: every image decoded and resized once into a ``uint8`` array ``[N, H, W, 3]`` saved
under the cache dir and memory-mapped by every worker, so no epoch decodes a JPEG again."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_info

from common.loaders import available_cpus
from lesion_cls.io import load_rgb

__all__ = ["build_pixel_cache"]


def _cache_key(paths: Sequence[str], size_hw: tuple[int, int]) -> str:
    digest = hashlib.sha1(f"v1 {size_hw}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_pixel_cache(
    paths: Sequence[str], size_hw: tuple[int, int], cache_dir: Path, threads: int | None = None
) -> Path:
    """Decode and resize every image once into ``<cache_dir>/pixels-<key>.npy`` (``uint8 [N, H, W, 3]``).

    The key hashes paths, sizes, modification times and the target size: an existing file is reused, a
    changed image makes a new one. Written to a temporary name and renamed, so readers never see half a file.
    Decoding runs in ``threads`` threads (default: the cores this process may use).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"pixels-{_cache_key(paths, size_hw)}.npy"
    if target.exists():
        return target
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size_hw, 3))

    def fill(i: int) -> None:
        pixels[i] = load_rgb(paths[i], size_hw)

    rank_zero_info(f"caching {len(paths)} images at {size_hw[0]}x{size_hw[1]} in {target}")
    with ThreadPoolExecutor(max_workers=threads or available_cpus()) as pool:
        list(pool.map(fill, range(len(paths))))
    pixels.flush()
    tmp.replace(target)
    return target
