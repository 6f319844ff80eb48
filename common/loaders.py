"""How much CPU parallelism a run may use: derived from the cores this process may run on, not fixed numbers."""

from __future__ import annotations

import os

__all__ = ["available_cpus"]


def available_cpus() -> int:
    """CPU cores this process may use (its affinity mask, e.g. a SLURM or container allocation), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no affinity masks (macOS, Windows)
        return max(1, os.cpu_count() or 1)
