"""The volume cache: every volume loaded and normalised once and kept in memory (HDF5 read in the calling thread,
NIfTI decoded in threads)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common.loaders import available_cpus

__all__ = ["cache_volumes"]


def cache_volumes(
    records: Sequence[Mapping[str, Any]], transform: Callable, threads: int | None = None
) -> list[dict[str, Any]]:
    """``transform`` (loading and normalisation) applied once to every record, kept in memory, in order.

    What MONAI's ``CacheDataset`` does, with one difference that matters for bad input: HDF5 files are read one
    at a time in the calling thread (h5py is not thread-safe; reading from several threads aborted or hung on
    truncated files). NIfTI files decode in ``threads`` threads (default: the cores this process may use). An
    error is re-raised as the transform raised it (MONAI's ``Compose`` wraps a :class:`MedlitError` in
    ``RuntimeError`` from it; the CLI finds it with :func:`common.errors.find_medlit_error`).
    """
    if not records:
        return []
    serial = any(r.get("format") == "h5" for r in records)
    workers = 1 if serial else min(len(records), threads or available_cpus())
    if workers == 1:
        return [transform(dict(r)) for r in records]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(transform, dict(r)) for r in records]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise
