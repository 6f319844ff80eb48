"""The test-metrics writer every task shares: a test's summary, bootstrap intervals over its scored items, and
``metrics.json``.

A task gives the summary without intervals (its nested dict of numbers), the :class:`~common.stats.ScoredItems` of
the test, the names of the metrics that get an interval, and a hook that places one interval into the summary where
its readers look for it (e.g. a per-class interval beside that class's value).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from common.errors import MedlitError
from common.files import write_json
from common.stats import BOOTSTRAP_RESAMPLES, ScoredItems, interval_fields

__all__ = ["METRICS_FILE", "IntervalPlacer", "check_resamples", "write_metrics"]

METRICS_FILE = "metrics.json"
"""A test run's metrics, in its run dir."""

IntervalPlacer = Callable[[dict[str, Any], str, list[float]], bool]
"""``(summary, name, [low, high]) -> keep``: puts the interval of metric ``name`` into the task's ``summary``;
returns whether it also stays in the top-level ``ci95`` mapping."""


def check_resamples(n_resamples: int) -> None:
    """Refuse a negative number of bootstrap resamples (the ``outputs.bootstrap`` setting; 0 = no intervals)."""
    if n_resamples < 0:
        raise MedlitError(f"outputs.bootstrap must be >= 0 (0 = no intervals), got {n_resamples}")


def write_metrics(
    out: Path,
    summary: dict[str, Any],
    items: ScoredItems,
    names: Sequence[str],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    place: IntervalPlacer | None = None,
) -> dict[str, Any]:
    """Write ``metrics.json`` in ``out`` and return it: ``summary`` with the bootstrap intervals of ``names`` over
    the units of ``items`` (:func:`~common.stats.interval_fields`: ``ci95`` and how it was made), each interval also
    put into the summary by ``place`` (``summary`` is changed in place)."""
    fields = interval_fields(items, names, n_resamples, seed)
    if place is not None:
        intervals = fields.get("ci95", {})
        for name in list(intervals):
            if not place(summary, name, intervals[name]):
                del intervals[name]
    metrics = {**summary, **fields}
    write_json(out / METRICS_FILE, metrics)
    return metrics
