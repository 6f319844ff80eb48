"""Reading finished runs back from their run dirs (for comparisons and the report; nothing is recomputed).

A run dir holds ``run_info.json`` (task, checkpoint monitor, parameter count), ``config.yaml``,
``history.csv`` and the test ``metrics.json``; :func:`load_run` gathers them into a :class:`RunResult`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from common.errors import MedlitError

__all__ = ["HEADLINE_METRICS", "RunResult", "latest_runs", "load_run"]

HEADLINE_METRICS = {
    "classification": ["accuracy", "balanced_accuracy", "f1_macro", "auc_macro"],
    "segmentation": ["dice", "jaccard", "hd95", "asd"],
}
"""Test metrics shown for each task, as named in ``metrics.json``."""


@dataclass
class RunResult:
    """One finished run, read from its directory."""

    path: Path
    info: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: pd.DataFrame = field(repr=False)

    @property
    def experiment(self) -> str:
        return str(self.info.get("experiment") or self.path.parent.name)

    @property
    def task(self) -> str:
        return "classification" if "balanced_accuracy" in self.metrics else "segmentation"

    @property
    def monitor(self) -> str:
        """The logged key that selected the checkpoint (the module's ``monitor``, recorded by the CLI)."""
        return str(self.info["monitor"])

    @property
    def monitor_mode(self) -> str:
        return str(self.info["monitor_mode"])

    def best_epoch(self) -> pd.Series:
        """The history row of the epoch whose checkpoint was selected (best validation monitor)."""
        values = self.history[self.monitor]
        best = values.idxmax() if self.monitor_mode == "max" else values.idxmin()
        return self.history.loc[best]

    @property
    def validation_score(self) -> float:
        """The selected checkpoint's validation monitor value (what "best" is chosen on)."""
        return float(self.best_epoch()[self.monitor])

    def headline(self) -> dict[str, float]:
        """The task's headline test metrics (segmentation: means over cases)."""
        out = {}
        for name in HEADLINE_METRICS[self.task]:
            value = self.metrics.get(name)
            out[name] = (
                float(value["mean"] if isinstance(value, dict) else value) if value is not None else float("nan")
            )
        return out

    def cfg(self, dotted: str, default: Any = None) -> Any:
        """A value of ``config.yaml`` by dotted key (``model.loss``)."""
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node


_RUN_FILES = ("metrics.json", "history.csv", "config.yaml", "run_info.json")
"""What a run dir holds once ``fit`` and its test have finished."""


def load_run(path: Path) -> RunResult:
    """Read a finished run; a run without test metrics or history is refused with the missing file named."""
    for name in _RUN_FILES:
        if not (path / name).is_file():
            raise MedlitError(f"{path}: not a finished run ({name} missing)")
    return RunResult(
        path=path,
        info=json.loads((path / "run_info.json").read_text()),
        config=yaml.safe_load((path / "config.yaml").read_text()) or {},
        metrics=json.loads((path / "metrics.json").read_text()),
        history=pd.read_csv(path / "history.csv"),
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
