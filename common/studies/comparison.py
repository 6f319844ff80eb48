"""A sweep dir's comparison: its configurations over seeds, paired tests, tables and figures.

:func:`compare_sweep` writes ``comparison.csv`` (one row per run, with each run's bootstrap interval),
``comparison.md`` (per configuration: mean, std and Student-t interval over seeds; each run's value with its
interval; paired comparisons), ``comparisons.csv`` (runs of different configurations with the same seed, and
configurations over their common seeds: paired t) and the figures of :mod:`common.studies.figures`.
``python -m common.studies.comparison SWEEP_DIR`` rewrites them.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import MedlitError, exit_on_error
from common.files import atomic_path
from common.stats import paired_t
from common.studies.figures import plot_curves, plot_metrics
from common.studies.index import finished_entries
from common.studies.paired import COMPARISON_COLUMNS, SEEDS_TEST, compare_runs, run_interval, with_holm
from common.studies.runs import RunResult, load_run
from common.studies.wording import format_mean_std, method_sentence, metric_title, readable_comparisons
from common.text import format_interval, markdown_table

__all__ = ["compare_sweep", "configuration_table", "is_replicate_seed", "main", "sweep_comparisons"]

_Finished = list[tuple[str, dict, RunResult]]
"""``(run_id, sweep parameters, run)`` of each finished run of a sweep, in index order."""


def is_replicate_seed(parameter: str) -> bool:
    """Whether a sweep parameter only repeats a configuration with another random seed: ``seed_everything``, or a
    dotted name whose last part is ``seed`` (``model.seed``). Runs that differ only in such a parameter are
    replicates of one configuration. A seed with another name changes what is trained on (``data.split_seed``
    draws another split): runs that differ in it are different configurations."""
    return parameter == "seed_everything" or parameter.rsplit(".", 1)[-1] == "seed"


def _finished(sweep_dir: Path) -> _Finished:
    return [(entry.run_id, entry.params, load_run(entry.run_dir)) for entry in finished_entries(sweep_dir)]


def _frame(finished: _Finished) -> tuple[pd.DataFrame, list[str]]:
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


def _shown(value: object) -> object:
    """A sweep parameter as tables show it: a YAML overlay by its file name without the folder."""
    if isinstance(value, str) and value.endswith((".yaml", ".yml")):
        return Path(value).stem
    return value


def _varied(runs: pd.DataFrame, params: list[str]) -> tuple[list[str], list[str]]:
    """Parameters that differ between runs, split into configuration keys and replicate seeds."""
    varied = [p for p in params if runs[p].astype(str).nunique() > 1]
    seeds = [p for p in varied if is_replicate_seed(p)]
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


def _with_intervals(runs: pd.DataFrame, finished: _Finished, metrics: list[str]) -> None:
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
    runs: pd.DataFrame, finished: _Finished, keys: list[str], seeds: list[str]
) -> tuple[pd.DataFrame, list[str]]:
    """A sweep's ``comparisons.csv``: runs of different configurations with the same seed, item by item
    (:func:`~common.studies.paired.compare_runs`), then configurations over their common seeds (paired t); Holm
    over all rows."""
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


def _comparisons_markdown(table: pd.DataFrame, labels: dict[str, str]) -> str:
    if table.empty:
        return "No two runs were compared (no pair tested on the same items).\n"
    return markdown_table(readable_comparisons(table, labels))


def _run_table(runs: pd.DataFrame, keys: list[str], seeds: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per run: its configuration, seed, validation score and each test metric with its interval."""
    shown = runs[["run_id", *keys, *seeds]].astype(str).copy()
    shown["validation"] = runs["validation"].map(lambda v: f"{v:.3f}")  # not fmt: a NaN has always read "nan"
    for metric in metrics:
        shown[metric] = [
            format_interval(v, (lo, hi))
            for v, lo, hi in zip(runs[metric], runs[f"{metric}_ci_low"], runs[f"{metric}_ci_high"], strict=True)
        ]
    return shown


def _sweep_notes(plan: dict, runs: pd.DataFrame, keys: list[str], seeds: list[str], first: RunResult) -> list[str]:
    headline = list(first.report.headline_metrics)
    units = {m: first.unit(m) for m in headline if first.unit(m)}
    items = first.scored_items()
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


def _markdown(
    plan: dict, runs: pd.DataFrame, params: list[str], first: RunResult, comparisons: pd.DataFrame, notes: list[str]
) -> str:
    """``comparison.md``: the sweep's notes, its configurations, its runs and the paired comparisons."""
    keys, seeds = _varied(runs, params)
    headline = list(first.report.headline_metrics)
    labels = {m: first.report.metric_labels.get(m, m) for m in comparisons["metric"].unique()}
    return (
        f"# Comparison: {plan['sweep']}\n\n"
        + "\n".join(_sweep_notes(plan, runs, keys, seeds, first))
        + "\n\n"
        + markdown_table(configuration_table(runs, params, ["validation", *headline]))
        + "\n## Runs\n\nEach test metric with its 95% interval (percentile bootstrap over the test items).\n\n"
        + markdown_table(_run_table(runs, keys, seeds, headline))
        + "\n## Paired comparisons (`comparisons.csv`)\n\n"
        + "Runs of different configurations with the same seed. "
        + method_sentence(first.scored_items(), labels)
        + " Configurations over the seeds both ran: paired t. `p (Holm)`: Holm's correction over every comparison "
        "in this table. No difference is called real unless its Holm p is below 0.05. A test of two runs covers "
        "the test items only, not the training's randomness: whether one configuration beats another is the "
        "question of the rows over seeds.\n\n"
        + _comparisons_markdown(comparisons, labels)
        + "".join(f"\n{note}\n" for note in notes)
        + "\n![metrics](comparison_metrics.png)\n\n![curves](comparison_curves.png)\n"
    )


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
    path = sweep_dir / "comparison.md"
    with atomic_path(path) as tmp:
        tmp.write_text(_markdown(plan, runs, params, first, comparisons, unpaired))
    titles = {"validation": f"validation {first.monitor}"} | {m: f"test {metric_title(first, m)}" for m in headline}
    plot_metrics(runs, _label(runs, keys), sweep_dir / "comparison_metrics.png", titles)
    plot_curves(runs, _label(runs, keys), sweep_dir / "comparison_curves.png", ", ".join(keys) if keys else None)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m common.studies.comparison", description="Rewrite a sweep dir's comparison"
    )
    parser.add_argument("sweep_dir", type=Path, help="a sweep dir (holds plan.json and index.csv)")
    args = parser.parse_args(argv)
    with exit_on_error():
        if not (args.sweep_dir / "plan.json").is_file():
            raise MedlitError(f"{args.sweep_dir}: not a sweep dir (plan.json missing)")
        path = compare_sweep(args.sweep_dir)
    print(f"comparison: {path}" if path else f"{args.sweep_dir}: no finished run yet")


if __name__ == "__main__":
    main()
