"""Paired tests between runs tested on the same items, and each run's own 95% intervals.

:func:`compare_runs`: every pair of runs of one task tested on the same items (the same image or case ids, grouped
into the same lesions or cases); runs on different test sets are never paired, and the notes say why. For each
metric: the difference B - A with a paired-bootstrap 95% interval and p-value (each resample of the units applied
to both runs, :func:`common.stats.paired_bootstrap`), and where the task gives per-item values the exact test
(McNemar for accuracy, Wilcoxon signed-rank for per-case segmentation metrics). Holm's correction
(:func:`with_holm`) runs over every comparison of one report or one sweep. The table is written as
``comparisons.csv`` (:data:`COMPARISON_COLUMNS`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import pandas as pd

from common.intervals import minimum_detectable_difference
from common.stats import BOOTSTRAP_RESAMPLES, MIN_UNITS, PAIRED_TESTS, ScoredItems, aligned, holm, paired_bootstrap
from common.studies.runs import RunResult

__all__ = [
    "BOOTSTRAP_TEST",
    "COMPARISON_COLUMNS",
    "SEEDS_TEST",
    "compare_runs",
    "pair_row",
    "run_interval",
    "with_holm",
]

COMPARISON_COLUMNS = [
    "run_a",
    "run_b",
    "metric",
    "value_a",
    "value_b",
    "delta",
    "ci_low",
    "ci_high",
    "mdd",
    "p_value",
    "test",
    "n_units",
    "p_holm",
]
"""The columns of ``comparisons.csv``: ``delta`` = ``value_b - value_a``; ``ci_low``/``ci_high`` its 95% interval
(paired bootstrap, or Student-t over seeds; empty for the exact tests); ``mdd`` the minimum detectable difference
of a paired-bootstrap row (two-sided 5 %, 80 % power: :func:`common.intervals.minimum_detectable_difference`);
``n_units`` the units the test counts
(lesions or cases resampled, images for McNemar, case pairs for Wilcoxon, seeds for the t-test); ``p_holm``
Holm-adjusted over every row of the file."""

BOOTSTRAP_TEST = "paired bootstrap"
"""The ``test`` of a paired-bootstrap row."""
SEEDS_TEST = "paired t over seeds"
"""The ``test`` of a row comparing two configurations over their common seeds."""


def run_interval(
    run: RunResult, metric: str, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """The 95% interval of a test metric: the one ``metrics.json`` holds (``ci95``), else a bootstrap over the
    run's items (a run from before intervals were written); ``None`` when neither exists."""
    stored = (run.metrics.get("ci95") or {}).get(metric)
    if stored is not None:  # [null, null]: undefined in every resample
        return None if None in stored else (float(stored[0]), float(stored[1]))
    if run.scored_items() is None or n_resamples <= 0 or run.metrics.get("ci_resamples") == 0:  # 0: turned off
        return None
    found = run.bootstrap_intervals(n_resamples, seed).get(metric)
    return (float(found["ci95"][0]), float(found["ci95"][1])) if found else None


def _pair_rows(
    name_a: str, a: ScoredItems, name_b: str, b: ScoredItems, metrics: Sequence[str], n_resamples: int, seed: int
) -> list[dict]:
    """The rows of one pair of runs tested on the same items: a paired bootstrap per metric, then the exact
    tests of the metrics with per-item values."""
    boot = paired_bootstrap(a, b, n_resamples, seed)
    metrics = [m for m in metrics if m in boot]

    def head(metric: str) -> dict:
        values = {k: boot[metric][k] for k in ("value_a", "value_b", "delta")}
        return {"run_a": name_a, "run_b": name_b, "metric": metric, **values}

    rows = []
    for metric in metrics:
        r = boot[metric]
        p = r["p_value"] if a.n_units >= MIN_UNITS else np.nan  # a handful of units repeated: no p-value
        rows.append(
            head(metric)
            | {"ci_low": r["ci_low"], "ci_high": r["ci_high"], "mdd": minimum_detectable_difference(r["se"])}
            | {"p_value": p, "test": BOOTSTRAP_TEST}
            | {"n_units": a.n_units, "se": r["se"]}
        )
    position = aligned(a, b)
    for metric in metrics:
        test = a.item_tests.get(metric)
        if test is None or metric not in b.per_item:
            continue
        result = PAIRED_TESTS[test](a.per_item[metric], b.per_item[metric][position])
        n = a.n_items if test == "exact McNemar" else result["n"]
        rows.append(
            head(metric)
            | {"ci_low": np.nan, "ci_high": np.nan, "mdd": np.nan, "p_value": result["p_value"], "test": test}
            | {"n_units": n}
        )
    return rows


def _unpaired_reason(name_a: str, a: ScoredItems | None, name_b: str, b: ScoredItems | None) -> str | None:
    """Why two runs are not compared item by item (``None`` when they are)."""
    if a is None or b is None:
        missing = name_a if a is None else name_b
        return f"{name_a} and {name_b} are not compared item by item: {missing} has no per-item test scores."
    if aligned(a, b) is None:
        return (
            f"{name_a} ({a.size()}) and {name_b} ({b.size()}) were tested on different items: their numbers are "
            "not paired, and no difference between them is tested."
        )
    return None


def compare_runs(
    runs: Sequence[tuple[str, RunResult]],
    pairs: Sequence[tuple[str, str]] | None = None,
    metrics: Sequence[str] | None = None,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, list[str]]:
    """Paired comparisons of named runs (of one task): every pair, or ``pairs`` (names ``(a, b)``, B - A).

    Args:
        runs: ``(name, run)``; the name is what ``comparisons.csv`` calls the run.
        pairs: Which pairs to compare (default: every pair, in the order of ``runs``).
        metrics: The metrics compared (default: the task's headline metrics and the statistic the checkpoints
            were selected on).
        n_resamples: Bootstrap resamples (the same units for both runs of a pair).
        seed: Seed of the resamples.

    Returns:
        The :data:`COMPARISON_COLUMNS` table (``p_holm`` over its own rows, plus ``se``: the bootstrap standard
        error of the difference) and one note per pair that could not be paired.
    """
    by_name = dict(runs)
    pairs = pairs if pairs is not None else list(itertools.combinations([n for n, _ in runs], 2))
    rows: list[dict] = []
    notes: list[str] = []
    for name_a, name_b in pairs:
        run_a, run_b = by_name[name_a], by_name[name_b]
        a, b = run_a.scored_items(), run_b.scored_items()
        reason = _unpaired_reason(name_a, a, name_b, b)
        if reason:
            notes.append(reason)
            continue
        chosen = metrics or _compared_metrics(run_a)
        rows += _pair_rows(name_a, a, name_b, b, chosen, n_resamples, seed)
    return with_holm(pd.DataFrame(rows, columns=[*COMPARISON_COLUMNS, "se"])), notes


def _compared_metrics(run: RunResult) -> list[str]:
    """The task's headline metrics, then the statistic the checkpoint was selected on when it is another."""
    selection = run.report.selection_statistics.get(run.monitor)
    return list(dict.fromkeys([*run.report.headline_metrics, *([selection] if selection else [])]))


def with_holm(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``p_holm``: Holm's adjustment over all its rows' p-values (one family)."""
    return table.assign(p_holm=holm(table["p_value"].to_numpy(dtype=float)) if len(table) else [])


def pair_row(rows: pd.DataFrame, name_a: str, name_b: str, metric: str) -> pd.Series | None:
    """The paired-bootstrap row of two runs (in either order) for ``metric``; ``None`` when they were not paired."""
    found = rows[
        (rows["metric"] == metric)
        & (rows["test"] == BOOTSTRAP_TEST)
        & (
            ((rows["run_a"] == name_a) & (rows["run_b"] == name_b))
            | ((rows["run_a"] == name_b) & (rows["run_b"] == name_a))
        )
    ]
    return None if found.empty else found.iloc[0]
