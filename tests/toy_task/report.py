"""The toy task's report section, registered under its task name."""

from __future__ import annotations

from dataclasses import dataclass, field

from common.studies.report import best_run, fmt, table
from common.studies.runs import Block, RunResult, register_report
from tests.toy_task import TASK


@dataclass(frozen=True)
class ToyReport:
    task: str = TASK
    title: str = "toy regression"
    headline_metrics: tuple[str, ...] = ("mae", "rmse")
    metric_labels: dict[str, str] = field(default_factory=lambda: {"mae": "MAE", "rmse": "RMSE"})
    selection_statistics: dict[str, str] = field(default_factory=dict)

    def scored_items(self, run: RunResult) -> None:
        return None  # the toy task keeps no per-item scores: its runs are never paired

    def validation_units(self, run: RunResult) -> None:
        return None

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
            ("h2", "Toy regression", None),
            ("table", table(rows), "quantity"),
            (
                "p",
                f"**Best toy run: {best.experiment}**, chosen on validation MAE ({fmt(best.validation_score)}).",
                None,
            ),
            ("img", best.path / "curves.png", f"{best.experiment}: curves"),
        ]


REPORT = register_report(ToyReport())
