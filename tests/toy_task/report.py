"""The toy task's report section, registered under its task name.

A toy run keeps no per-item scores, unless a test put an ``items.csv`` in its run dir (columns ``item``, ``unit``,
``error``): then its test items are those rows, with the MAE as statistic and the Wilcoxon signed-rank test of the
absolute errors, so that the paired comparisons can be tested on numbers worked out by hand.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image as PILImage

from common.stats import ScoredItems
from common.studies.runs import RunResult
from common.studies.sections import best_run, table
from common.studies.task_reports import Block, Heading, Image, Paragraph, Table, register_report
from common.text import fmt
from tests.toy_task import TASK


def toy_items(ids: list[str], units: list[str], errors: list[float]) -> ScoredItems:
    """Test items whose statistic is the mean absolute error (weighted by how often each item was drawn)."""
    absolute = np.abs(np.asarray(errors, dtype=float))
    return ScoredItems(
        ids=np.asarray(ids),
        units=np.asarray(units),
        unit_name="unit",
        item_name="sample",
        statistics=lambda weights: {"mae": weights @ absolute / weights.sum(axis=1)},
        per_item={"mae": absolute},
        item_tests={"mae": "Wilcoxon signed-rank"},
    )


def write_toy_run(
    run_dir: Path,
    mae: float,
    validation: float | None = None,
    items: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    **metrics: Any,
) -> Path:
    """A finished toy run dir as a test needs it: test ``mae`` (and ``rmse`` = 1.5 × mae unless given), the
    validation MAE of its one epoch and its curves (``validation``; none: a run of test alone), ``items``
    (``items.csv`` columns), ``run_info.json`` updated with ``info``."""
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("model: {optimizer: sgd}\nseed_everything: 1\n")
    run_info = {"task": TASK, "report_module": __name__, "monitor": "val/mae", "monitor_mode": "min"}
    (run_dir / "run_info.json").write_text(json.dumps(run_info | (info or {})))
    if validation is not None:  # a fit: its history and curves
        (run_dir / "history.csv").write_text(f"epoch,step,train/loss,val/mae\n0,10,1.0,{validation!r}\n")
        PILImage.new("RGB", (4, 4), (30, 60, 90)).save(run_dir / "curves.png")
    (run_dir / "metrics.json").write_text(json.dumps({"mae": mae, "rmse": mae * 1.5} | metrics))
    if items is not None:
        pd.DataFrame(items).to_csv(run_dir / "items.csv", index=False)
    return run_dir


@dataclass(frozen=True)
class ToyReport:
    task: str = TASK
    title: str = "toy regression"
    headline_metrics: tuple[str, ...] = ("mae", "rmse")
    metric_labels: dict[str, str] = field(default_factory=lambda: {"mae": "MAE", "rmse": "RMSE"})
    record_files: tuple[str, ...] = ("items.csv",)
    selection_statistics: dict[str, str] = field(default_factory=lambda: {"val/mae": "mae"})

    def scored_items(self, run: RunResult) -> ScoredItems | None:
        path = run.path / "items.csv"
        if not path.is_file():
            return None  # a toy run keeps no per-item scores: its runs are never paired
        items = pd.read_csv(path, dtype={"item": str, "unit": str})
        return toy_items(items["item"].tolist(), items["unit"].tolist(), items["error"].tolist())

    def validation_units(self, run: RunResult) -> int | None:
        return run.metrics.get("n_val_units")

    def sections(self, runs: list[RunResult]) -> list[Block]:
        rows = {
            run.experiment: {
                "optimizer": run.cfg("model.optimizer"),
                **{m: fmt(run.metrics[m]) for m in ("mae", "rmse")},
            }
            for run in runs
        }
        best = best_run(runs) or runs[0]  # the toy runs share one monitor
        return [
            Heading("Toy regression", 2),
            Table(table(rows), "quantity"),
            Paragraph(f"**Best toy run: {best.experiment}**, chosen on validation MAE ({fmt(best.validation_score)})."),
            Image(best.path / "curves.png", f"{best.experiment}: curves"),
        ]


REPORT = register_report(ToyReport())
