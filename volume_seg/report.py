"""The segmentation part of the report (registered for the task ``segmentation``).

For the segmentation runs: each configuration's parameters and test metrics (mean ± std over cases, with the
distance unit the run states), the configuration chosen on validation Dice, training curves, and the 2D overlays
and 3D views of that configuration. Everything is read from the run dirs (``metrics.json``, ``history.csv``,
``config.yaml``, ``run_info.json`` and the figures the test wrote).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from common.stats import ScoredItems
from common.studies.anchors import published_blocks
from common.studies.runs import RunResult
from common.studies.sections import (
    best_run,
    mean_std,
    no_best_run,
    table,
    tested_weights,
    training_rows,
    with_interval,
)
from common.studies.task_reports import Block, Heading, Image, Link, Paragraph, Plot, Table, register_report
from common.text import fmt
from volume_seg import TASK
from volume_seg.metrics import case_summary, scored_items
from volume_seg.viz import plot_case_boxes, plot_learning_curves

__all__ = ["PARAMETERS", "SegmentationReport"]

PARAMETERS: dict[str, str] = {
    "network": "model.net",
    "channels": "model.channels",
    "loss": "model.loss",
    "optimizer": "model.optimizer",
    "learning rate": "model.lr",
    "scheduler": "model.scheduler",
    "batch size": "data.batch_size",
    "patches per volume": "data.patches_per_volume",
    "patch size": "data.patch_size",
    "augmentation": "data.augment",
    "normalisation": "data.normalize",
    "largest component": "model.largest_component",
    "flip TTA": "model.tta_flips",
}
"""The configuration table: row label → config key (then the training budget and what the run used of it, the
trainable parameters and the seed)."""


def _parameters(run: RunResult) -> dict[str, object]:
    values = {label: run.cfg(key) for label, key in PARAMETERS.items()}
    return {
        **values,
        **training_rows(run),
        "trainable parameters": run.info["trainable_parameters"],
        "seed": run.cfg("seed_everything"),
    }


def _with_interval(run: RunResult, name: str, digits: int) -> str:
    """``mean (95% CI) ± std`` of a per-case summary."""
    return f"{with_interval(run, name, digits)} ± {fmt(run.metrics[name]['std'], digits)}"


def _test_metrics(run: RunResult, unit: str) -> dict[str, object]:
    m = run.metrics
    return {
        "tested weights": tested_weights(run),
        "validation Dice": fmt(run.validation_score),
        "test Dice": _with_interval(run, "dice", 3),
        "test Jaccard": _with_interval(run, "jaccard", 3),
        f"test HD95 ({unit})": _with_interval(run, "hd95", 2),
        f"test ASD ({unit})": _with_interval(run, "asd", 2),
        "cases with HD95 defined": f"{m['hd95']['n_defined']}/{m['n_cases']}",
        "test Dice, classes merged": mean_std(m["foreground_dice"]) if "foreground_dice" in m else "–",
        "empty predictions": m.get("n_empty_prediction", 0),
    }


def _published(runs: list[RunResult]) -> list[Block]:
    """The runs beside the published results of the protocols they follow (``common/studies/anchors.yaml``)."""
    return published_blocks(
        runs,
        _run_column,
        _published_column,
        dict(zip(_HEADLINE, ("Dice", "Jaccard", "HD95", "ASD"), strict=True)),
        "Means over the test cases; the published rows as their sources report them. ",
        sorted_sources=True,
    )


def _run_column(run: RunResult) -> dict[str, str]:
    return {
        **{name: fmt(run.metrics[name]["mean"], _DIGITS[name]) for name in _HEADLINE},
        "unit": run.metrics.get("distance_unit", "voxels"),
        # a mean over defined distances only: say how many cases it covers
        "cases with HD95 defined": f"{run.metrics['hd95']['n_defined']}/{run.metrics['n_cases']}",
    }


def _published_column(result: dict[str, Any], protocol: dict[str, Any]) -> dict[str, str]:
    values = {name: fmt(float(result[name]), _DIGITS[name]) for name in _HEADLINE}
    return values | {"unit": protocol.get("distance_unit", "voxels"), "cases with HD95 defined": "–"}


_HEADLINE = ("dice", "jaccard", "hd95", "asd")
_DIGITS = {"dice": 4, "jaccard": 4, "hd95": 2, "asd": 2}


def _case_rows(run: RunResult) -> pd.DataFrame:
    return pd.read_csv(run.path / "metrics_per_case.csv", dtype={"case": str, "class": str})


def _case_table(run: RunResult) -> pd.DataFrame:
    return case_summary(_case_rows(run)).reset_index()


def _scored_items(run: RunResult) -> ScoredItems | None:
    """The test cases of ``metrics_per_case.csv`` (each case its own unit)."""
    return scored_items(_case_rows(run)) if (run.path / "metrics_per_case.csv").is_file() else None


def _validation_cases(run: RunResult) -> int | None:
    path = run.path / "split.csv"
    if not path.is_file():
        return None
    return int((pd.read_csv(path)["split"] == "val").sum()) or None


def _spread(runs: list[RunResult]) -> list[Block]:
    """Per-case box plots and learning curves across the runs (drawn into the report's own figures)."""
    with_cases = [run for run in runs if (run.path / "metrics_per_case.csv").is_file()]
    unit = runs[0].metrics.get("distance_unit", "voxels")
    blocks: list[Block] = [Heading("Per-case spread and learning curves", 3)]
    if with_cases:
        per_case = {run.experiment: _case_table(run) for run in with_cases}
        draw_boxes = lambda path: plot_case_boxes(per_case, path, unit)  # noqa: E731
        blocks.append(Plot("segmentation_per_case", draw_boxes, "Per-case test Dice and HD95 of each run"))
    histories = {run.experiment: run.history for run in runs if len(run.history)}  # not a run of test alone
    draw_curves = lambda path: plot_learning_curves(histories, path)  # noqa: E731
    blocks.append(Plot("segmentation_learning_curves", draw_curves, "Validation Dice against training time"))
    return blocks


def _best_configuration(runs: list[RunResult], best: RunResult | None) -> str:
    if best is None:
        return no_best_run(runs, {"val/dice": "Dice"})
    score = fmt(best.validation_score)
    return f"**Best configuration: {best.experiment}**, chosen on validation Dice ({score}), not on test data" + (
        "; whether the test data support the choice is under Paired comparisons on the test set."
        if len(runs) > 1
        else "."
    )


def _figures(runs: list[RunResult], best: RunResult, which: str) -> list[Block]:
    blocks: list[Block] = [Heading("Training curves", 3)]
    blocks += [
        Image(run.path / "curves.png", f"{run.experiment}: training loss, validation loss and Dice")
        for run in runs
        if (run.path / "curves.png").is_file()  # a run of test alone (an ensemble) has no training curves
    ]
    blocks.append(Heading(f"2D overlays of {which} ({best.experiment})", 3))
    blocks += [
        Image(path, f"{path.stem}: image, ground truth, prediction, errors")
        for path in sorted((best.path / "overlays").glob("*.png"))[:4]
    ]
    blocks.append(Heading(f"3D views of {which} ({best.experiment})", 3))
    for path in sorted((best.path / "views3d").glob("*.png"))[:2]:
        blocks.append(Image(path, f"{path.stem}: ground truth, prediction, overlay (marching cubes)"))
        if path.with_suffix(".html").exists():
            blocks.append(Link(path.with_suffix(".html"), f"{path.stem}: interactive 3D view"))
    return blocks


@dataclass(frozen=True)
class SegmentationReport:
    """The :class:`~common.studies.task_reports.TaskReport` of the segmenter's runs (:data:`volume_seg.TASK`)."""

    task: str = TASK
    title: str = "3D segmentation"
    headline_metrics: tuple[str, ...] = ("dice", "jaccard", "hd95", "asd")
    metric_labels: dict[str, str] = field(
        default_factory=lambda: {"dice": "Dice", "jaccard": "Jaccard", "hd95": "HD95", "asd": "ASD"}
    )
    record_files: tuple[str, ...] = ("metrics_per_case.csv",)
    selection_statistics: dict[str, str] = field(default_factory=lambda: {"val/dice": "dice"})

    def scored_items(self, run: RunResult) -> ScoredItems | None:
        return _scored_items(run)

    def validation_units(self, run: RunResult) -> int | None:
        return _validation_cases(run)

    def sections(self, runs: list[RunResult]) -> list[Block]:
        first, best = runs[0], best_run(runs)
        unit = first.metrics.get("distance_unit", "voxels")
        intro = (
            f"Data: `{first.cfg('data.root')}`; {first.metrics.get('n_cases')} test cases, evaluated on whole "
            "volumes by sliding-window inference with the weights each run's `run.test_checkpoint` names (the best "
            'validation Dice, or the last epoch: row "tested weights"). Dice and Jaccard '
            "are fractions; HD95 (95th-percentile symmetric surface distance) and ASD (mean distance from the "
            f"predicted to the true surface) are in {unit}, as defined by medpy. "
            f"Empty masks: {first.metrics.get('empty_mask_policy', 'n/a')}."
        )
        blocks: list[Block] = [
            Heading("3D segmentation", 2),
            Paragraph(intro),
            Heading("Configurations", 3),
            Table(table({run.experiment: _parameters(run) for run in runs}), "parameter"),
            Heading("Test metrics", 3),
            Paragraph(
                "Mean over test cases (95% confidence interval: percentile bootstrap over the cases; a metric "
                "undefined for a case, e.g. HD95 of an empty prediction, is left out of the mean as in the point "
                "estimate) ± standard deviation over the cases."
            ),
            Table(table({run.experiment: _test_metrics(run, unit) for run in runs}), "metric"),
            Paragraph(_best_configuration(runs, best)),
        ]
        figures = _figures(runs, best, "the best configuration") if best else _figures(runs, first, "the first run")
        return blocks + _published(runs) + _spread(runs) + figures


REPORT = register_report(SegmentationReport())
