"""A sweep's comparison: configuration → test metrics (mean ± std over seeds), as Markdown, CSV and figures.

Reads the sweep dir's ``index.csv`` and each finished run's files (:mod:`common.results`); writes
``comparison.csv`` (one row per run), ``comparison.md`` (one row per configuration), ``comparison_metrics.png``
(each headline metric by configuration, seeds as points) and ``comparison_curves.png`` (validation monitor
and training loss of every run, coloured by configuration).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from common.plots import save_figure, seaborn_theme
from common.results import RunResult, load_run

__all__ = ["compare_sweep", "configuration_table", "format_mean_std", "metric_title", "sweep_runs"]

SEED_HINT = "seed"


def _finished(sweep_dir: Path) -> list[tuple[str, dict, RunResult]]:
    """``(run_id, sweep parameters, run)`` of every finished run of the sweep dir, in index order."""
    index_path = sweep_dir / "index.csv"
    if not index_path.exists():
        return []
    index = pd.read_csv(index_path, dtype=str)
    return [
        (entry.run_id, json.loads(entry.params), load_run(Path(entry.run_dir)))
        for entry in index[index["status"] == "finished"].itertuples()
    ]


def sweep_runs(sweep_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """One row per finished run (``run_id``, the sweep parameters, the validation score, the task's headline
    metrics), and the names of the sweep parameters in file order."""
    return _frame(_finished(sweep_dir))


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
    """``mean ± std (n)`` of the finite values; std over seeds (ddof 1), ``–`` for a single value."""
    finite = values.astype(float).dropna()
    if finite.empty:
        return "n/a"
    std = f"{finite.std(ddof=1):.{digits}f}" if len(finite) > 1 else "–"
    return f"{finite.mean():.{digits}f} ± {std} ({len(finite)})"


def _varied(runs: pd.DataFrame, params: list[str]) -> tuple[list[str], list[str]]:
    """Parameters that differ between runs, split into configuration keys and seed keys."""
    varied = [p for p in params if runs[p].astype(str).nunique() > 1]
    seeds = [p for p in varied if SEED_HINT in p.lower()]
    return [p for p in varied if p not in seeds], seeds


def configuration_table(runs: pd.DataFrame, params: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per configuration: the configuration keys, then ``mean ± std (n)`` of each of ``metrics``."""
    keys, _ = _varied(runs, params)
    grouped = list(runs.groupby([runs[k].astype(str) for k in keys], sort=False)) if keys else [("all runs", runs)]
    rows = []
    for name, group in grouped:
        label = name if isinstance(name, tuple) else (name,)
        row = dict(zip(keys, label, strict=False)) if keys else {"configuration": "all runs"}
        row.update({m: format_mean_std(group[m]) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def _markdown(table: pd.DataFrame, title: str, notes: list[str]) -> str:
    header = "| " + " | ".join(table.columns) + " |\n|" + "---|" * len(table.columns) + "\n"
    body = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False))
    return f"# {title}\n\n" + "\n".join(notes) + "\n\n" + header + body + "\n"


def _label(runs: pd.DataFrame, keys: list[str]) -> pd.Series:
    if not keys:
        return pd.Series(["all runs"] * len(runs), index=runs.index)
    return runs[keys].astype(str).agg(", ".join, axis=1)


@seaborn_theme("whitegrid")
def _plot_metrics(runs: pd.DataFrame, keys: list[str], path: Path, titles: dict[str, str]) -> Path:
    """One panel per metric of ``titles`` (metric → panel title), configurations on x, seeds as points."""
    metrics = list(titles)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.6 * len(metrics), 4.2), squeeze=False)
    x = keys[0] if keys else "configuration"
    hue = keys[1] if len(keys) > 1 else None
    data = runs.assign(**{k: runs[k].astype(str) for k in keys}, configuration="all runs")
    for ax, metric in zip(axes[0], metrics, strict=True):
        sns.barplot(data=data, x=x, y=metric, hue=hue, errorbar="sd", ax=ax, alpha=0.75, legend=ax is axes[0][-1])
        sns.stripplot(
            data=data,
            x=x,
            y=metric,
            hue=hue,
            dodge=hue is not None,
            palette="dark:black" if hue else None,
            color=None if hue else "black",
            size=3,
            ax=ax,
            legend=False,
        )
        ax.set_title(titles[metric], fontsize=10)
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    fig.suptitle(
        "by configuration: the validation metric that selected each checkpoint, then test metrics "
        "(bars: mean ± sd over seeds; dots: runs)",
        fontsize=11,
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


def compare_sweep(sweep_dir: Path) -> Path | None:
    """Write the comparison files of a sweep dir; returns ``comparison.md`` (``None`` before any run finished)."""
    finished = _finished(sweep_dir)
    if not finished:
        return None
    runs, params = _frame(finished)
    plan = json.loads((sweep_dir / "plan.json").read_text())
    keys, seeds = _varied(runs, params)
    runs.to_csv(sweep_dir / "comparison.csv", index=False)
    first = finished[0][2]
    headline = list(first.report.headline_metrics)
    table = configuration_table(runs, params, ["validation", *headline])
    units = {m: first.unit(m) for m in headline if first.unit(m)}
    notes = [
        f"Sweep `{plan['sweep']}` ({plan['method']}), {len(runs)} finished run(s); "
        f"configurations differ in {', '.join(f'`{k}`' for k in keys) or 'nothing'}"
        + (f", repeated over {', '.join(f'`{s}`' for s in seeds)}" if seeds else "")
        + ".",
        f"Cells are mean ± std (number of runs) over seeds. `validation` is each run's best `{runs['monitor'].iloc[0]}`"
        " on the validation split (the checkpoint that was tested); the other columns are test-set metrics"
        + (" (units: " + ", ".join(f"{m} {u}" for m, u in units.items()) + ")" if units else "")
        + ".",
    ]
    path = sweep_dir / "comparison.md"
    path.write_text(
        _markdown(table, f"Comparison: {plan['sweep']}", notes)
        + "\n![metrics](comparison_metrics.png)\n\n![curves](comparison_curves.png)\n"
    )
    titles = {"validation": f"validation {first.monitor}"} | {m: f"test {metric_title(first, m)}" for m in headline}
    _plot_metrics(runs, keys, sweep_dir / "comparison_metrics.png", titles)
    _plot_curves(runs, keys, sweep_dir / "comparison_curves.png")
    return path
