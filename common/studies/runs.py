"""Reading finished runs back from their run dirs (for comparisons and the report; nothing is recomputed).

A run dir holds ``run_info.json`` (task, report module, checkpoint monitor, parameter count), ``config.yaml``,
``history.csv`` and the test ``metrics.json``; :func:`load_run` gathers them into a :class:`RunResult`.

What a task shows (headline metrics, its test items) comes from the
:class:`~common.studies.task_reports.TaskReport` registered under the run's task name; the run records the module
that registers it (``report_module`` in ``run_info.json``), so reading a run imports it when needed and this module
never names a task. A run's test items and their bootstrap intervals are read once per :class:`RunResult`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from common.errors import MedlitError
from common.rundir import RUN_INFO, read_run_info, read_timing
from common.stats import ScoredItems, bootstrap_intervals
from common.studies.task_reports import TaskReport, report_for

__all__ = ["RunResult", "latest_runs", "load_run"]


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
    _items: list[ScoredItems | None] = field(default_factory=list, init=False, repr=False, compare=False)
    """The test items once read (one element), empty before: read once per run object."""
    _intervals: dict[tuple[int, int], dict] = field(default_factory=dict, init=False, repr=False, compare=False)
    """Bootstrap intervals over the test items by ``(n_resamples, seed)``, computed once per run object."""

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
    def report(self) -> TaskReport[RunResult]:
        """The task's registered report (headline metrics, sections)."""
        return report_for(self.task, self.info.get("report_module"))

    def scored_items(self) -> ScoredItems | None:
        """The run's test items as its task reads them from the run dir (``None`` when the task or the run has no
        per-item scores); read once."""
        if not self._items:
            self._items.append(self.report.scored_items(self))
        return self._items[0]

    def bootstrap_intervals(self, n_resamples: int, seed: int) -> dict:
        """:func:`common.stats.bootstrap_intervals` of the run's test items (empty without items); computed once
        per ``(n_resamples, seed)``."""
        if (n_resamples, seed) not in self._intervals:
            items = self.scored_items()
            found = bootstrap_intervals(items, n_resamples, seed) if items is not None else {}
            self._intervals[(n_resamples, seed)] = found
        return self._intervals[(n_resamples, seed)]

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
        """The task's headline test metrics (a per-case summary ``{"mean": ...}`` gives its mean); NaN where
        ``metrics.json`` has none or ``null`` (e.g. a mean distance over no case where it is defined)."""
        out = {}
        for name in self.report.headline_metrics:
            value = self.metrics.get(name)
            value = value.get("mean") if isinstance(value, dict) else value
            out[name] = float("nan") if value is None else float(value)  # null: NaN as written by write_json
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
        timing=read_timing(path),
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
