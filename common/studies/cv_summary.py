"""The summary of a cross-validation dir: ``folds.csv`` (each fold's out-of-fold and test numbers), ``summary.md``
(the folds, the pooled out-of-fold estimate and the fold ensemble on test with intervals) and
``ensemble_comparisons.csv`` (the ensemble against each fold model on the same test items, paired tests from
:func:`common.studies.paired.compare_runs`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from common.files import atomic_path
from common.studies.paired import compare_runs
from common.studies.runs import RunResult, load_run
from common.studies.sections import with_interval
from common.studies.wording import metric_title, readable_comparisons
from common.text import markdown_table

__all__ = ["write_summary"]


def _fold_table(fold_dirs: list[Path], oof_dirs: list[Path]) -> pd.DataFrame:
    """``folds.csv``: one row per fold, its split sizes, its out-of-fold and its test headline metrics."""
    rows = []
    for fold_dir, oof_dir in zip(fold_dirs, oof_dirs, strict=True):
        fold, oof = load_run(fold_dir).headline(), load_run(oof_dir).headline()
        split = pd.read_csv(fold_dir / "split.csv")
        row: dict[str, Any] = {"fold": fold_dir.name, "train_items": int((split["split"] == "train").sum())}
        row["val_items"] = int((split["split"] == "val").sum())
        row |= {f"oof_{m}": value for m, value in oof.items()}
        row |= {f"test_{m}": value for m, value in fold.items()}
        row["run_dir"] = str(fold_dir)
        rows.append(row)
    return pd.DataFrame(rows)


def _numbers(table: pd.DataFrame, pooled: RunResult, ensemble: RunResult, metrics: list[str]) -> list[str]:
    """The summary's table: each fold (out of fold / test), the folds' mean on test, the pool, the ensemble."""
    titles = [metric_title(ensemble, m) for m in metrics]
    lines = ["| | " + " | ".join(titles) + " |", "|---" * (len(metrics) + 1) + "|"]
    for _, row in table.iterrows():
        cells = [f"{row[f'oof_{m}']:.3f} / {row[f'test_{m}']:.3f}" for m in metrics]
        lines.append(f"| {row['fold']}: out-of-fold ({row['val_items']} items) / test | " + " | ".join(cells) + " |")
    cells = [f"{table[f'test_{m}'].mean():.3f} ({table[f'test_{m}'].std(ddof=1):.3f})" for m in metrics]
    lines.append("| mean of the fold models on test (std) | " + " | ".join(cells) + " |")
    cells = [with_interval(pooled, m) for m in metrics]
    lines.append("| out-of-fold, pooled (95% CI) | " + " | ".join(cells) + " |")
    cells = [with_interval(ensemble, m) for m in metrics]
    return [*lines, "| **fold ensemble on test** (95% CI) | " + " | ".join(cells) + " |"]


def write_summary(
    cv_dir: Path, fold_dirs: list[Path], oof_dirs: list[Path], ensemble_dir: Path, decisions: dict[str, Any]
) -> Path:
    """Write ``folds.csv``, ``ensemble_comparisons.csv`` and ``summary.md`` into ``cv_dir``; returns ``summary.md``."""
    ensemble = load_run(ensemble_dir)
    metrics = list(ensemble.report.headline_metrics)
    table = _fold_table(fold_dirs, oof_dirs)
    with atomic_path(cv_dir / "folds.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    lines = [f"# Cross-validation: {cv_dir.name} ({len(fold_dirs)} folds)", ""]
    lines += _numbers(table, load_run(cv_dir / "oof"), ensemble, metrics)
    lines += ["", f"Decisions: {decisions['chosen_on']}: " + json.dumps(decisions["values"]) + ".", ""]
    lines += [
        "Per fold: the fold model on the items it did not train on, before any decision rule or post-processing "
        "(out-of-fold), and on the test set as it was trained and selected (test). The pooled out-of-fold row applies "
        "the decisions chosen on that same pool (slightly optimistic for them); the ensemble applies them to the test "
        "set. No test item took part in any choice.",
        "",
    ]
    runs = [(d.name, load_run(d)) for d in fold_dirs] + [("ensemble", ensemble)]
    rows, notes = compare_runs(runs, pairs=[(d.name, "ensemble") for d in fold_dirs], metrics=metrics)
    if len(rows):
        with atomic_path(cv_dir / "ensemble_comparisons.csv") as tmp:
            rows.to_csv(tmp, index=False, float_format="%.6f")
        lines += ["## The ensemble against each fold model, on the same test items", ""]
        lines += [markdown_table(readable_comparisons(rows, {n: n for n, _ in runs}))]
    path = cv_dir / "summary.md"
    path.write_text("\n".join([*lines, *notes]) + "\n")
    return path
