"""What a task gives the report and the sweep comparisons: the :class:`TaskReport` contract, its registry, and the
typed blocks a task's report sections are made of.

A task's report module builds a :class:`TaskReport` and registers it under its task name (:func:`register_report`)
when imported; :func:`report_for` finds it for a run (``run_info.json`` names the module). The sections are lists
of :data:`Block`: :class:`Heading`, :class:`Paragraph`, :class:`Table`, :class:`Image`, :class:`Plot` and
:class:`Link`, which :mod:`common.studies.render` writes as Markdown and HTML.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from common.contracts import check_contract
from common.errors import MedlitError

if TYPE_CHECKING:
    import pandas as pd

    from common.stats import ScoredItems

__all__ = [
    "REPORTS",
    "Block",
    "Heading",
    "Image",
    "Link",
    "Paragraph",
    "Plot",
    "Table",
    "TaskReport",
    "register_report",
    "report_for",
]


@dataclass(frozen=True)
class Heading:
    """A heading: ``level`` 1 (the report's title), 2 (a task) or 3 (a section)."""

    text: str
    level: int


@dataclass(frozen=True)
class Paragraph:
    """Markdown-light text: ``**bold**`` and ```code```."""

    text: str


@dataclass(frozen=True, eq=False)
class Table:
    """A table of text cells; its row index is written as the first column, under ``index_header``."""

    frame: pd.DataFrame
    index_header: str


@dataclass(frozen=True)
class Image:
    """A PNG of one run (a path inside its run dir), copied beside the report."""

    path: Path
    caption: str


@dataclass(frozen=True, eq=False)
class Plot:
    """A figure of several runs: ``draw(path)`` writes it as a PNG, which the report keeps as its own
    ``figures/<name>.png``."""

    name: str
    draw: Callable[[Path], Any]
    caption: str


@dataclass(frozen=True)
class Link:
    """A link to a file of one run (an interactive view), copied beside the report."""

    path: Path
    text: str


Block = Heading | Paragraph | Table | Image | Plot | Link
"""One piece of a report."""

Run = TypeVar("Run", contravariant=True)
"""The run a report reads (:class:`common.studies.runs.RunResult`; a type parameter, so that this contract and the
reader of run dirs, which looks reports up here, do not import each other)."""


@runtime_checkable
class TaskReport(Protocol[Run]):
    """A task's part of the report and of sweep comparisons; registered with :func:`register_report`."""

    task: str
    """The task name the module declares."""
    title: str
    """Short title of the task, used in the report's default title."""
    headline_metrics: Sequence[str]
    """Test metrics shown in comparisons, as named in ``metrics.json`` (a number or ``{"mean": ...}``)."""
    metric_labels: Mapping[str, str]
    """Readable names of the headline metrics."""
    record_files: Sequence[str]
    """The run-dir files that hold the per-item test scores :meth:`scored_items` reads (besides ``split.csv``):
    what a results record keeps for pairing (:mod:`common.studies.records`)."""
    selection_statistics: Mapping[str, str]
    """The test statistic (a key of :meth:`scored_items`' statistics) matching each validation monitor
    (``val/dice`` -> ``dice``): what a validation choice is checked on in the test data."""

    def sections(self, runs: list[Run]) -> list[Block]:
        """The report blocks for this task's runs (all read from the run dirs)."""
        ...

    def scored_items(self, run: Run) -> ScoredItems | None:
        """The run's test items with their scores, read from its run dir, for intervals and paired tests
        (``None`` when the run has no per-item scores)."""
        ...

    def validation_units(self, run: Run) -> int | None:
        """How many units of independence (lesions, cases) the run's validation split holds (``None``: unknown)."""
        ...


REPORTS: dict[str, TaskReport[Any]] = {}
"""The registered task reports by task name."""


def register_report(report: TaskReport[Any]) -> TaskReport[Any]:
    """Register a task's report under ``report.task`` (called by the task's report module on import)."""
    check_contract(report, TaskReport, "task report")
    REPORTS[report.task] = report
    return report


def report_for(task: str, report_module: str | None = None) -> TaskReport[Any]:
    """The report registered for ``task``, importing ``report_module`` first when it is not registered yet."""
    if task not in REPORTS and report_module:
        try:
            importlib.import_module(report_module)
        except ImportError as err:
            raise MedlitError(f"report module '{report_module}' of task '{task}' cannot be imported ({err})") from None
    if task not in REPORTS:
        known = ", ".join(sorted(REPORTS)) or "none"
        raise MedlitError(f"no report registered for task '{task}' (registered: {known})")
    return REPORTS[task]
