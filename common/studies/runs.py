"""Reading finished runs back from their run dirs (for comparisons and the report; nothing is recomputed).

A run dir holds ``run_info.json`` (task, report module, checkpoint monitor, parameter count), ``config.yaml``,
``history.csv`` and the test ``metrics.json``; :func:`load_run` gathers them into a :class:`RunResult`.

What a task shows (headline metrics, report sections) comes from the :class:`TaskReport` registered under the
run's task name: the contract a task's report module fulfils, written here beside the reader that uses it. A task's
report module registers itself when imported; the run records that module (``report_module`` in
``run_info.json``), so reading a run imports it when needed and this module never names a task.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import pandas as pd
import yaml

from common.contracts import check_contract
from common.errors import MedlitError
from common.rundir import RUN_INFO, read_run_info

if TYPE_CHECKING:
    from common.stats import ScoredItems

__all__ = [
    "REPORTS",
    "Block",
    "RunResult",
    "TaskReport",
    "latest_runs",
    "load_run",
    "register_report",
    "report_for",
]

Block = tuple[str, Any, Any]
"""One piece of a report: ``(kind, content, extra)`` with kind ``h1``/``h2``/``h3`` (content = text), ``p``
(Markdown-light text: ``**bold**`` and ```code```), ``table`` (content = DataFrame, extra = index header),
``img`` (content = PNG path in a run dir, extra = caption), ``plot`` (content = ``(name, draw)``: ``draw(path)``
writes a PNG of several runs, which the report keeps in its own ``figures/<name>.png``; extra = caption) or
``link`` (content = file path, extra = link text)."""


@runtime_checkable
class TaskReport(Protocol):
    """A task's part of the report and of sweep comparisons; registered with ``register_report``."""

    task: str
    """The task name the module declares."""
    title: str
    """Short title of the task, used in the report's default title."""
    headline_metrics: Sequence[str]
    """Test metrics shown in comparisons, as named in ``metrics.json`` (a number or ``{"mean": ...}``)."""
    metric_labels: Mapping[str, str]
    """Readable names of the headline metrics."""
    selection_statistics: Mapping[str, str]
    """The test statistic (a key of :meth:`scored_items`' statistics) matching each validation monitor
    (``val/dice`` -> ``dice``): what a validation choice is checked on in the test data."""

    def sections(self, runs: list[RunResult]) -> list[Block]:
        """The report blocks for this task's runs (all read from the run dirs)."""
        ...

    def scored_items(self, run: RunResult) -> ScoredItems | None:
        """The run's test items with their scores, read from its run dir, for intervals and paired tests
        (``None`` when the run has no per-item scores)."""
        ...

    def validation_units(self, run: RunResult) -> int | None:
        """How many units of independence (lesions, cases) the run's validation split holds (``None``: unknown)."""
        ...


REPORTS: dict[str, TaskReport] = {}
"""The registered task reports by task name."""


def register_report(report: TaskReport) -> TaskReport:
    """Register a task's report under ``report.task`` (called by the task's report module on import)."""
    check_contract(report, TaskReport, "task report")
    REPORTS[report.task] = report
    return report


def report_for(task: str, report_module: str | None = None) -> TaskReport:
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


@dataclass
class RunResult:
    """One finished run, read from its directory."""

    path: Path
    info: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: pd.DataFrame = field(repr=False)
    timing: dict[str, Any] = field(default_factory=dict)
    """``timing.json`` (wall seconds of fit/test, epochs run); empty for a run that has none."""

    @property
    def experiment(self) -> str:
        return str(self.info.get("experiment") or self.path.parent.name)

    @property
    def task(self) -> str:
        """The task name the run's module declared (``run_info.json``)."""
        if "task" not in self.info:
            raise MedlitError(f"{self.path / 'run_info.json'}: no 'task' key (a run from an older medlit)")
        return str(self.info["task"])

    @property
    def report(self) -> TaskReport:
        """The task's registered report (headline metrics, sections)."""
        return report_for(self.task, self.info.get("report_module"))

    @property
    def monitor(self) -> str:
        """The logged key that selected the checkpoint (the module's ``monitor``, recorded by the CLI)."""
        return str(self.info["monitor"])

    @property
    def monitor_mode(self) -> str:
        return str(self.info["monitor_mode"])

    def best_epoch(self) -> pd.Series:
        """The history row of the epoch whose checkpoint was tested: the best validation monitor, or the last
        epoch for a run that tests its last checkpoint (``run.test_checkpoint=last``)."""
        if self.monitor not in self.history or self.history[self.monitor].isna().all():
            return pd.Series(dtype=object)  # a run of test alone (an ensemble): nothing was validated
        values = self.history[self.monitor]
        if self.info.get("test_checkpoint") == "last":  # the last epoch that was validated
            return self.history.loc[values.last_valid_index() if values.notna().any() else self.history.index[-1]]
        best = values.idxmax() if self.monitor_mode == "max" else values.idxmin()
        return self.history.loc[best]

    @property
    def validation_score(self) -> float:
        """The selected checkpoint's validation monitor value (what "best" is chosen on); NaN for a run of test
        alone."""
        return float(self.best_epoch().get(self.monitor, float("nan")))

    def headline(self) -> dict[str, float]:
        """The task's headline test metrics (a per-case summary ``{"mean": ...}`` gives its mean)."""
        out = {}
        for name in self.report.headline_metrics:
            value = self.metrics.get(name)
            out[name] = (
                float(value["mean"] if isinstance(value, dict) else value) if value is not None else float("nan")
            )
        return out

    def unit(self, metric: str) -> str:
        """The unit ``metrics.json`` states for ``metric`` (its ``units`` mapping), ``""`` when none is stated."""
        return str((self.metrics.get("units") or {}).get(metric, ""))

    def cfg(self, dotted: str, default: Any = None) -> Any:
        """A value of ``config.yaml`` by dotted key (``model.loss``)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


_RUN_FILES = ("metrics.json", "history.csv", "config.yaml", RUN_INFO)
"""What a run dir holds once ``fit`` and its test have finished."""
_TEST_RUN_FILES = ("metrics.json", "config.yaml", RUN_INFO)
"""What a run dir of ``test`` alone holds (e.g. an ensemble's): no training history."""


def load_run(path: Path) -> RunResult:
    """Read a finished run (of ``fit`` and its test, or of ``test`` alone, whose history is empty); a run without
    test metrics is refused with the missing file named."""
    for name in _TEST_RUN_FILES:
        if not (path / name).is_file():
            raise MedlitError(f"{path}: not a finished run ({name} missing)")
    history = path / "history.csv"
    return RunResult(
        path=path,
        info=read_run_info(path),
        config=yaml.safe_load((path / "config.yaml").read_text()) or {},
        metrics=json.loads((path / "metrics.json").read_text()),
        history=pd.read_csv(history) if history.is_file() else pd.DataFrame(),
        timing=json.loads((path / "timing.json").read_text()) if (path / "timing.json").is_file() else {},
    )


def latest_runs(root: Path) -> dict[str, RunResult]:
    """The newest finished run of every experiment under ``root`` (``<root>/<experiment>/<timestamp>/``)."""
    runs: dict[str, RunResult] = {}
    if not root.is_dir():
        raise MedlitError(f"{root}: no such runs folder")
    for experiment in sorted(p for p in root.iterdir() if p.is_dir()):
        for run_dir in sorted((p for p in experiment.iterdir() if p.is_dir()), reverse=True):
            if all((run_dir / name).is_file() for name in _RUN_FILES):
                runs[experiment.name] = load_run(run_dir)
                break
    return runs
