"""Writing files so that a reader (another process, a report, a resumed run) never sees half of one."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "unwritable_reason", "write_json"]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path (same suffixes) renamed to ``path`` on success: readers and other processes writing
    the same file never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{''.join(path.suffixes)}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def unwritable_reason(folder: Path) -> str | None:
    """Why ``folder`` cannot be made or written to (``None`` when it can): the nearest existing part of the path is
    a file, or is not writable (permissions, a read-only filesystem)."""
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK):
        return f"{existing} is not writable (permissions or a read-only filesystem)"
    return None


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (NaN written as null), so a reader never sees half a file."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_nan_to_none(data), indent=2, sort_keys=False) + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value
