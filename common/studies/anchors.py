"""Published results beside a task's runs: the protocols of ``anchors.yaml`` (package data of
:mod:`common.studies`, found the same way in a clone and in an installed wheel) and the report table that sets a
run's test metrics beside them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from common.studies.runs import RunResult
from common.studies.sections import table
from common.studies.task_reports import Block, Heading, Paragraph, Table

__all__ = ["ANCHORS", "published_blocks", "published_protocols"]

ANCHORS: Traversable = resources.files("common.studies") / "anchors.yaml"
"""Published results by protocol (each with its task, the configuration it applies to and its sources)."""


def _matches(run: RunResult, match: dict[str, Any]) -> bool:
    """Whether the run's configuration has every value of ``match`` (list and CSV files compared by name; ``null``
    matches a key the run leaves unset)."""
    return all(
        run.cfg(key) is None
        if value is None
        else run.cfg(key) is not None and Path(str(run.cfg(key))).name == Path(str(value)).name
        for key, value in match.items()
    )


def _in_ranges(run: RunResult, ranges: dict[str, list[float]]) -> bool:
    """Whether each named ``metrics.json`` value (e.g. the number of test images) lies in its ``[low, high]``."""
    return all(
        isinstance(run.metrics.get(name), int | float) and low <= run.metrics[name] <= high
        for name, (low, high) in ranges.items()
    )


def published_protocols(
    runs: Sequence[RunResult], path: Traversable | Path = ANCHORS
) -> list[tuple[dict[str, Any], list[RunResult]]]:
    """The protocols of ``path`` for the runs' task that some of ``runs`` follow, with those runs."""
    if not path.is_file() or not runs:
        return []
    protocols = yaml.safe_load(path.read_text()) or {}
    task = runs[0].task
    found = [
        (p, [r for r in runs if _matches(r, p.get("match", {})) and _in_ranges(r, p.get("match_metrics", {}))])
        for p in protocols.values()
        if p.get("task", task) == task
    ]
    return [(protocol, matching) for protocol, matching in found if matching]


def published_blocks(
    runs: Sequence[RunResult],
    run_row: Callable[[RunResult], dict[str, Any]],
    result_row: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]],
    row_labels: dict[str, str],
    note: str,
    sorted_sources: bool = False,
    path: Traversable | Path = ANCHORS,
) -> list[Block]:
    """For each protocol some of ``runs`` follow: a heading, ``note`` with the sources, and a table whose columns
    are those runs (``medlit <experiment>``) and then the published results.

    Args:
        runs: One task's runs.
        run_row: A run's column (row name -> cell).
        result_row: A published result's column, from the result and its protocol.
        row_labels: Readable names of the rows (metric -> label).
        note: The paragraph before the sources.
        sorted_sources: List each distinct source once, sorted (else every result's, in the file's order).
        path: The published results (default: :data:`ANCHORS`).
    """
    blocks: list[Block] = []
    for protocol, matching in published_protocols(runs, path):
        rows = {f"medlit {run.experiment}": run_row(run) for run in matching}
        rows |= {result["method"]: result_row(result, protocol) for result in protocol["results"]}
        sources = [f"{r['method']}: {r['source']}" for r in protocol["results"]]
        blocks += [
            Heading(f"Against published results: {protocol['title']}", 3),
            Paragraph(note + "; ".join(sorted(set(sources)) if sorted_sources else sources)),
            Table(table(rows).rename(index=row_labels), "metric"),
        ]
    return blocks
