"""Comparisons between runs: paired tests on the same test items, and a sweep's configurations over seeds.

* :func:`compare_runs`: every pair of runs of one task tested on the same items (the same image or case ids,
  grouped into the same lesions or cases); runs on different test sets are never paired, and the notes say why.
  For each metric: the difference B - A with a paired-bootstrap 95% interval and p-value (each resample of the
  units applied to both runs, :func:`common.stats.paired_bootstrap`), and where the task gives per-item values
  the exact test (McNemar for accuracy, Wilcoxon signed-rank for per-case segmentation metrics). Holm's
  correction runs over every comparison of one report or one sweep (``p_holm``). The table is written as
  ``comparisons.csv`` (:data:`COMPARISON_COLUMNS`).
* :func:`compare_sweep`: a sweep dir's ``comparison.csv`` (one row per run, with each run's bootstrap interval),
  ``comparison.md`` (per configuration: mean, std and Student-t interval over seeds; each run's value with its
  interval; paired comparisons), ``comparisons.csv`` (runs of different configurations with the same seed, and
  configurations over their common seeds: paired t) and figures (each metric by configuration with intervals;
  training curves). ``python -m common.studies.compare SWEEP_DIR`` rewrites them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from common.errors import MedlitError
from common.files import atomic_path
from common.plots import save_figure, seaborn_theme
from common.stats import (
    BOOTSTRAP_RESAMPLES,
    MIN_UNITS,
    PAIRED_TESTS,
    ScoredItems,
    aligned,
    bootstrap_intervals,
    holm,
    paired_bootstrap,
    paired_t,
    t_interval,
)
from common.studies.index import finished_entries
from common.studies.runs import RunResult, load_run
from common.text import format_interval, markdown_table, signed

__all__ = [
    "COMPARISON_COLUMNS",
    "choice_on_test",
    "compare_runs",
    "compare_sweep",
    "configuration_table",
    "format_interval",
    "format_mean_std",
    "main",
    "markdown_table",
    "method_sentence",
    "metric_title",
    "pair_row",
    "readable_comparisons",
    "run_interval",
    "scored_items_of",
    "sweep_comparisons",
    "validation_noise",
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
    "p_value",
    "test",
    "n_units",
    "p_holm",
]
"""The columns of ``comparisons.csv``: ``delta`` = ``value_b - value_a``; ``ci_low``/``ci_high`` its 95% interval
(paired bootstrap, or Student-t over seeds; empty for the exact tests); ``n_units`` the units the test counts
(lesions or cases resampled, images for McNemar, case pairs for Wilcoxon, seeds for the t-test); ``p_holm``
Holm-adjusted over every row of the file."""

BOOTSTRAP_TEST = "paired bootstrap"
SEEDS_TEST = "paired t over seeds"

SEED_HINT = "seed"

_ITEMS: dict[Path, ScoredItems | None] = {}
_INTERVALS: dict[tuple[Path, int, int], dict] = {}


# --- one run, pairs of runs ---------------------------------------------------------------------------------------
def scored_items_of(run: RunResult) -> ScoredItems | None:
    """The run's test items as its task reads them from the run dir (``None`` when the task or the run has no
    per-item scores); read once per run dir."""
    key = run.path.resolve()
    if key not in _ITEMS:
        _ITEMS[key] = run.report.scored_items(run)
    return _ITEMS[key]


def run_interval(
    run: RunResult, metric: str, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> tuple[float, float] | None:
    """The 95% interval of a test metric: the one ``metrics.json`` holds (``ci95``), else a bootstrap over the
    run's items (a run from before intervals were written); ``None`` when neither exists."""
    stored = (run.metrics.get("ci95") or {}).get(metric)
    if stored is not None:  # [null, null]: undefined in every resample
        return None if None in stored else (float(stored[0]), float(stored[1]))
    items = scored_items_of(run)
    if items is None or n_resamples <= 0 or run.metrics.get("ci_resamples") == 0:  # 0: intervals turned off
        return None
    key = (run.path.resolve(), n_resamples, seed)
    if key not in _INTERVALS:
        _INTERVALS[key] = bootstrap_intervals(items, n_resamples, seed)
    found = _INTERVALS[key].get(metric)
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
            | {"ci_low": r["ci_low"], "ci_high": r["ci_high"], "p_value": p, "test": BOOTSTRAP_TEST}
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
            | {"ci_low": np.nan, "ci_high": np.nan, "p_value": result["p_value"], "test": test, "n_units": n}
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
        a, b = scored_items_of(run_a), scored_items_of(run_b)
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


def choice_on_test(
    best: str, other: str, rows: pd.DataFrame, metric: str, label: str, size: str, higher_is_better: bool = True
) -> str:
    """Whether the test data support a validation choice of ``best`` over ``other`` on ``metric``: the paired
    difference with its interval and p-values, in words that follow them ("no detectable difference" unless the
    Holm-adjusted p is below 0.05)."""
    row = pair_row(rows, best, other, metric)
    if row is None:
        return f"{best} vs {other}: not compared on the same test items."
    sign = 1 if row["run_b"] == best else -1  # the difference as best - other
    delta, low, high = sign * row["delta"], *sorted((sign * row["ci_low"], sign * row["ci_high"]))
    numbers = f"{best} vs {other}: test {label} {signed(delta)} ({signed(low)} to {signed(high)})"
    if not np.isfinite(row["p_value"]):
        return f"{numbers} - too few units to test the difference ({size}; a bootstrap test needs {MIN_UNITS} or more)."
    numbers += f", p = {row['p_value']:.2g} (Holm {row['p_holm']:.2g})"
    if not row["p_holm"] < 0.05:
        return f"{numbers} - no detectable difference with {size}."
    verdict = "support" if (delta > 0) == higher_is_better else "contradict"
    return f"{numbers} - the test data {verdict} the validation choice ({size}, Holm-adjusted p < 0.05)."


def validation_noise(se_test: float, n_test_units: int, n_val_units: int) -> float:
    """Half-width (1.96 standard errors) of a paired difference on the validation split, estimated from its test
    bootstrap standard error rescaled by ``sqrt(n_test_units / n_val_units)`` (validation predictions are not
    kept, and a mean over ``n`` units has a standard error proportional to ``1 / sqrt(n)``)."""
    if not (se_test > 0 and n_val_units > 0):
        return float("nan")
    return 1.96 * se_test * math.sqrt(n_test_units / n_val_units)


def _finished(sweep_dir: Path) -> list[tuple[str, dict, RunResult]]:
    """``(run_id, sweep parameters, run)`` of every finished run of the sweep dir, in index order."""
    return [(entry.run_id, entry.params, load_run(entry.run_dir)) for entry in finished_entries(sweep_dir)]


def _frame(finished: list[tuple[str, dict, RunResult]]) -> tuple[pd.DataFrame, list[str]]:
    rows: list[dict] = []
    params: dict[str, None] = {}  # ordered set
    for run_id, values, run in finished:
        params.update(dict.fromkeys(values))
        rows.append(
            {
                "run_id": run_id,
                **values,
                "validation": run.validation_score,
                "monitor": run.monitor,
                **run.headline(),
                "run_dir": str(run.path),
            }
        )
    return pd.DataFrame(rows), list(params)


def metric_title(run: RunResult, metric: str) -> str:
    """``<label> (<unit>)`` of a headline metric: the task report's label, the unit ``metrics.json`` states."""
    label = run.report.metric_labels.get(metric, metric)
    unit = run.unit(metric)
    return f"{label} ({unit})" if unit and not unit.startswith("fraction") else label


def format_mean_std(values: pd.Series, digits: int = 3) -> str:
    """``mean ± std [t-interval] (n)`` of the finite values over seeds (std with ddof 1; the 95% Student-t
    interval of the mean from 2 values on); ``mean ± – (1)`` for a single value."""
    summary = t_interval(values.astype(float).to_numpy())
    if summary["n"] == 0:
        return "n/a"
    if summary["n"] == 1:
        return f"{summary['mean']:.{digits}f} ± – (1)"
    low, high = summary["ci_low"], summary["ci_high"]
    return (
        f"{summary['mean']:.{digits}f} ± {summary['std']:.{digits}f} [{low:.{digits}f}-{high:.{digits}f}] "
        f"({summary['n']})"
    )


def _shown(value: object) -> object:
    """A sweep parameter as tables show it: a YAML overlay by its file name without the folder."""
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        return Path(value).stem
    return value


def _varied(runs: pd.DataFrame, params: list[str]) -> tuple[list[str], list[str]]:
    """Parameters that differ between runs, split into configuration keys and seed keys."""
    varied = [p for p in params if runs[p].astype(str).nunique() > 1]
    seeds = [p for p in varied if SEED_HINT in p.lower()]
    return [p for p in varied if p not in seeds], seeds


def configuration_table(runs: pd.DataFrame, params: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per configuration: the configuration keys, then :func:`format_mean_std` of each of ``metrics``."""
    keys, _ = _varied(runs, params)
    grouped = list(runs.groupby([runs[k].astype(str) for k in keys], sort=False)) if keys else [("all runs", runs)]
    rows = []
    for name, group in grouped:
        label = name if isinstance(name, tuple) else (name,)
        row = dict(zip(keys, label, strict=False)) if keys else {"configuration": "all runs"}
        row.update({m: format_mean_std(group[m]) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def _label(runs: pd.DataFrame, keys: list[str], named: bool = False) -> pd.Series:
    """Each run's configuration: ``ce, none`` (figures) or, ``named``, ``model.loss=ce, data.augment=none`` (what
    comparisons.csv calls it)."""
    if not keys:
        return pd.Series(["all runs"] * len(runs), index=runs.index)
    values = runs[keys].astype(str)
    if named:
        values = values.apply(lambda column: column.name + "=" + column)
    return values.agg(", ".join, axis=1)


def _with_intervals(runs: pd.DataFrame, finished: list[tuple[str, dict, RunResult]], metrics: list[str]) -> None:
    """Each run's 95% interval of each metric as ``<metric>_ci_low`` / ``<metric>_ci_high`` columns."""
    for metric in metrics:
        intervals = [run_interval(run, metric) or (np.nan, np.nan) for _, _, run in finished]
        runs[f"{metric}_ci_low"] = [i[0] for i in intervals]
        runs[f"{metric}_ci_high"] = [i[1] for i in intervals]


def _seed_labels(runs: pd.DataFrame, seeds: list[str]) -> pd.Series:
    """Each run's seed values as one label (all the same when no seed varies)."""
    return runs[seeds].astype(str).agg(",".join, axis=1) if seeds else pd.Series("", index=runs.index)


def _seed_rows(runs: pd.DataFrame, labels: pd.Series, seed_of: pd.Series, metrics: list[str]) -> list[dict]:
    """Configurations compared over the seeds both ran: the paired t over seeds of each metric."""
    rows = []
    metrics = [m for m in metrics if m in runs]  # a statistic that is not a headline metric has no column
    for config_a, config_b in itertools.combinations(labels.unique(), 2):
        a = runs[labels == config_a].set_index(seed_of[labels == config_a])
        b = runs[labels == config_b].set_index(seed_of[labels == config_b])
        common = [s for s in a.index if s in b.index]
        if len(common) < 2:
            continue
        for metric in metrics:
            va, vb = a.loc[common, metric].to_numpy(float), b.loc[common, metric].to_numpy(float)
            t = paired_t(va, vb)
            rows.append(
                {"run_a": config_a, "run_b": config_b, "metric": metric, "value_a": np.nanmean(va)}
                | {"value_b": np.nanmean(vb), "delta": t["mean"], "ci_low": t["ci_low"], "ci_high": t["ci_high"]}
                | {"p_value": t["p_value"], "test": SEEDS_TEST, "n_units": t["n"]}
            )
    return rows


def sweep_comparisons(
    runs: pd.DataFrame, finished: list[tuple[str, dict, RunResult]], keys: list[str], seeds: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's ``comparisons.csv``: runs of different configurations with the same seed, item by item
    (:func:`compare_runs`), then configurations over their common seeds (paired t); Holm over all rows."""
    labels = _label(runs, keys, named=True)
    named = [(run_id, run) for run_id, _, run in finished]
    seed_of = _seed_labels(runs, seeds)
    pairs = [
        (runs.loc[i, "run_id"], runs.loc[j, "run_id"])
        for i, j in itertools.combinations(runs.index, 2)
        if seed_of[i] == seed_of[j] and labels[i] != labels[j]
    ]
    table, notes = compare_runs(named, pairs)
    metrics = list(dict.fromkeys(table["metric"])) if len(table) else list(finished[0][2].report.headline_metrics)
    seed_table = pd.DataFrame(_seed_rows(runs, labels, seed_of, metrics), columns=COMPARISON_COLUMNS)
    both = pd.concat([table.drop(columns="se"), seed_table], ignore_index=True) if len(seed_table) else table
    return with_holm(both.reindex(columns=COMPARISON_COLUMNS)), notes


def method_sentence(items: ScoredItems | None, labels: dict[str, str], n_resamples: int = BOOTSTRAP_RESAMPLES) -> str:
    """How the paired comparisons were made, in the words of the runs' own items and tests."""
    if items is None:
        return "The runs keep no per-item test scores: they are compared by their values only."
    by_test: dict[str, list[str]] = {}
    for metric, test in items.item_tests.items():
        by_test.setdefault(test, []).append(labels.get(metric, metric))
    exact = "".join(f"; {test} on {items.item_name}s for {', '.join(names)}" for test, names in by_test.items())
    return (
        f"Differences B - A between runs tested on the same {items.item_name}s: a 95% interval and p-value from a "
        f"paired bootstrap (each of {n_resamples} resamples of the {items.unit_name}s applied to both runs){exact}."
    )


def readable_comparisons(table: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """The comparisons table as a reader sees it: values, difference with its interval, test, n, p, Holm p."""
    return pd.DataFrame(
        {
            "A": table["run_a"],
            "B": table["run_b"],
            "metric": [labels.get(m, m) for m in table["metric"]],
            "A value": table["value_a"].map(lambda v: f"{v:.3f}"),
            "B value": table["value_b"].map(lambda v: f"{v:.3f}"),
            "B - A (95% CI)": [
                signed(d) + (f" ({signed(lo)} to {signed(hi)})" if np.isfinite(lo) else "")
                for d, lo, hi in zip(table["delta"], table["ci_low"], table["ci_high"], strict=True)
            ],
            "test": table["test"],
            "n": table["n_units"].astype(int).astype(str),
            "p": table["p_value"].map(lambda v: f"{v:.3g}"),
            "p (Holm)": table["p_holm"].map(lambda v: f"{v:.3g}"),
        }
    )


def _comparisons_markdown(table: pd.DataFrame, labels: dict[str, str]) -> str:
    if table.empty:
        return "No two runs were compared (no pair tested on the same items).\n"
    return markdown_table(readable_comparisons(table, labels))


def _run_table(runs: pd.DataFrame, keys: list[str], seeds: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per run: its configuration, seed, validation score and each test metric with its interval."""
    shown = runs[["run_id", *keys, *seeds]].astype(str).copy()
    shown["validation"] = runs["validation"].map(lambda v: f"{v:.3f}")
    for metric in metrics:
        shown[metric] = [
            format_interval(v, (lo, hi))
            for v, lo, hi in zip(runs[metric], runs[f"{metric}_ci_low"], runs[f"{metric}_ci_high"], strict=True)
        ]
    return shown


@seaborn_theme("whitegrid")
def _plot_metrics(runs: pd.DataFrame, keys: list[str], path: Path, titles: dict[str, str]) -> Path:
    """One panel per metric of ``titles`` (metric → panel title): each run as a dot with its bootstrap interval
    over test items (thin bar; none for the validation metric), each configuration's mean with its Student-t
    interval over seeds (thick black bar)."""
    metrics = list(titles)
    labels = _label(runs, keys)
    configurations = list(labels.unique())
    palette = dict(zip(configurations, sns.color_palette("tab10", len(configurations)), strict=False))
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 4.4), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        for x, configuration in enumerate(configurations):
            group = runs[labels == configuration]
            offsets = np.linspace(-0.3, 0.05, len(group)) if len(group) > 1 else np.full(1, -0.12)  # mean: +0.25
            for offset, (_, run) in zip(offsets, group.iterrows(), strict=True):
                low, high = run.get(f"{metric}_ci_low", np.nan), run.get(f"{metric}_ci_high", np.nan)
                # a percentile interval may leave out its own point (float rounding, a degenerate model): no bar side
                below, above = max(run[metric] - low, 0.0), max(high - run[metric], 0.0)
                yerr = [[below], [above]] if np.isfinite(low) else None
                ax.errorbar(x + offset, run[metric], yerr=yerr, fmt="o", ms=4, lw=1, color=palette[configuration])
            summary = t_interval(group[metric].to_numpy(float))
            if np.isfinite(summary["ci_low"]):
                ax.errorbar(
                    x + 0.25,
                    summary["mean"],
                    yerr=[[summary["mean"] - summary["ci_low"]], [summary["ci_high"] - summary["mean"]]],
                    fmt="_",
                    ms=18,
                    lw=2.5,
                    color="black",
                    capsize=5,
                    zorder=3,
                )
            elif np.isfinite(summary["mean"]):
                ax.plot([x + 0.15, x + 0.35], [summary["mean"]] * 2, color="black", lw=2)
        ax.set_xticks(range(len(configurations)), configurations, rotation=30, ha="right", fontsize=8)
        ax.set_title(titles[metric], fontsize=10)
    fig.suptitle(
        "by configuration: dots = runs with their 95% bootstrap interval over test items; black = mean over seeds "
        "with its 95% t-interval",
        fontsize=10,
    )
    fig.tight_layout()
    return save_figure(fig, path)


@seaborn_theme("whitegrid")
def _plot_curves(runs: pd.DataFrame, keys: list[str], path: Path) -> Path:
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.4))
    labels = _label(runs, keys)
    palette = dict(zip(labels.unique(), sns.color_palette("tab10", labels.nunique()), strict=False))
    shown: set[str] = set()
    for (_, run), label in zip(runs.iterrows(), labels, strict=True):
        history = pd.read_csv(Path(run["run_dir"]) / "history.csv")
        epochs = history["epoch"] + 1
        kwargs = {"color": palette[label], "alpha": 0.8, "lw": 1.4, "label": None if label in shown else label}
        shown.add(label)
        axes[0].plot(epochs, history["train/loss"], **kwargs)
        if run["monitor"] in history:
            axes[1].plot(epochs, history[run["monitor"]], **{**kwargs, "label": None})
    axes[0].set(xlabel="epoch", ylabel="training loss", title="training loss (each run's own loss function)")
    for ax in axes:
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[1].set(xlabel="epoch", ylabel=runs["monitor"].iloc[0], title=f"validation {runs['monitor'].iloc[0]}")
    axes[0].legend(fontsize=8, title=", ".join(keys) if keys else None, title_fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def _sweep_notes(plan: dict, runs: pd.DataFrame, keys: list[str], seeds: list[str], first: RunResult) -> list[str]:
    headline = list(first.report.headline_metrics)
    units = {m: first.unit(m) for m in headline if first.unit(m)}
    items = scored_items_of(first)
    return [
        f"Sweep `{plan['sweep']}` ({plan['method']}), {len(runs)} finished run(s); "
        f"configurations differ in {', '.join(f'`{k}`' for k in keys) or 'nothing'}"
        + (f", repeated over {', '.join(f'`{s}`' for s in seeds)}" if seeds else "")
        + ".",
        f"Per configuration: mean ± std over seeds [95% Student-t interval of the mean] (number of runs). "
        f"`validation` is each run's best `{runs['monitor'].iloc[0]}` on the validation split (the checkpoint that "
        "was tested); the other columns are test-set metrics"
        + (" (units: " + ", ".join(f"{m} {u}" for m, u in units.items()) + ")" if units else "")
        + ". The t-interval covers the spread between seeds only; each run's own interval over test items is in "
        "the table of runs" + (f" (percentile bootstrap over {items.size()})" if items is not None else "") + ".",
    ]


def compare_sweep(sweep_dir: Path) -> Path | None:
    """Write the comparison files of a sweep dir; returns ``comparison.md`` (``None`` before any run finished)."""
    finished = _finished(sweep_dir)
    if not finished:
        return None
    runs, params = _frame(finished)
    plan = json.loads((sweep_dir / "plan.json").read_text())
    keys, seeds = _varied(runs, params)
    first = finished[0][2]
    headline = list(first.report.headline_metrics)
    _with_intervals(runs, finished, headline)
    with atomic_path(sweep_dir / "comparison.csv") as tmp:  # workers rewrite these while others read them
        runs.to_csv(tmp, index=False)
    runs = runs.assign(**{p: runs[p].map(_shown) for p in params})  # an overlay file by its name
    comparisons, unpaired = sweep_comparisons(runs, finished, keys, seeds)
    with atomic_path(sweep_dir / "comparisons.csv") as tmp:
        comparisons.to_csv(tmp, index=False)
    labels = {m: first.report.metric_labels.get(m, m) for m in comparisons["metric"].unique()}
    text = (
        f"# Comparison: {plan['sweep']}\n\n"
        + "\n".join(_sweep_notes(plan, runs, keys, seeds, first))
        + "\n\n"
        + markdown_table(configuration_table(runs, params, ["validation", *headline]))
        + "\n## Runs\n\nEach test metric with its 95% interval (percentile bootstrap over the test items).\n\n"
        + markdown_table(_run_table(runs, keys, seeds, headline))
        + "\n## Paired comparisons (`comparisons.csv`)\n\n"
        + "Runs of different configurations with the same seed. "
        + method_sentence(scored_items_of(first), labels)
        + " Configurations over the seeds both ran: paired t. `p (Holm)`: Holm's correction over every comparison "
        "in this table. No difference is called real unless its Holm p is below 0.05. A test of two runs covers "
        "the test items only, not the training's randomness: whether one configuration beats another is the "
        "question of the rows over seeds.\n\n"
        + _comparisons_markdown(comparisons, labels)
        + "".join(f"\n{note}\n" for note in unpaired)
        + "\n![metrics](comparison_metrics.png)\n\n![curves](comparison_curves.png)\n"
    )
    path = sweep_dir / "comparison.md"
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    titles = {"validation": f"validation {first.monitor}"} | {m: f"test {metric_title(first, m)}" for m in headline}
    _plot_metrics(runs, keys, sweep_dir / "comparison_metrics.png", titles)
    _plot_curves(runs, keys, sweep_dir / "comparison_curves.png")
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m common.studies.compare", description="Rewrite a sweep dir's comparison"
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir (holds plan.json and index.csv)")
    args = parser.parse_args(argv)
    try:
        if not (args.sweep_dir / "plan.json").is_file():
            raise MedlitError(f"{args.sweep_dir}: not a sweep dir (plan.json missing)")
        path = compare_sweep(args.sweep_dir)
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"comparison: {path}" if path else f"{args.sweep_dir}: no finished run yet")


if __name__ == "__main__":
    main()
