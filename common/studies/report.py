"""The seed document, generated: ``report.md`` and ``report.html`` from finished run dirs.

``python -m common.studies.report --root runs/demo --out runs/demo/report`` takes the newest finished run of each
experiment under the root (or ``--runs DIR ...``), groups the runs by task, and asks each task's registered
report (:class:`~common.studies.runs.TaskReport`, in the task package's ``report.py``) for its sections: tables,
text and figures as :data:`~common.studies.runs.Block` s. This module knows no task; it only renders.

"Better" and "best" are chosen on the validation metric that selected each run's checkpoint (:func:`best_run`),
never on test data. Every number is read from the runs' files; nothing is recomputed. The Markdown links
figures copied beside it (``figures/``); the HTML embeds them, so it is one file.

The helpers :func:`fmt`, :func:`show`, :func:`mean_std`, :func:`table`, :func:`best_run` (with :func:`no_best_run`
when the runs were selected on different metrics), :func:`tested_weights`
and :func:`published_protocols` (published results from ``common/studies/anchors.yaml``, package data) are for the tasks'
sections, so that every task formats numbers and reads anchors the same way.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from common.errors import MedlitError
from common.files import unwritable_reason
from common.stats import MIN_UNITS
from common.studies.compare import (
    COMPARISON_COLUMNS,
    choice_on_test,
    compare_runs,
    method_sentence,
    pair_row,
    readable_comparisons,
    scored_items_of,
    validation_noise,
    with_holm,
)
from common.studies.runs import Block, RunResult, latest_runs, load_run
from common.text import fmt, show

__all__ = [
    "ANCHORS",
    "Block",
    "best_run",
    "build_report",
    "comparison_blocks",
    "default_title",
    "fmt",
    "main",
    "mean_std",
    "no_best_run",
    "published_protocols",
    "show",
    "table",
    "tested_weights",
]


def mean_std(summary: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std`` of a per-case summary (``{"mean": ..., "std": ...}``)."""
    return f"{fmt(summary.get('mean'), digits)} ± {fmt(summary.get('std'), digits)}"


def table(rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Columns = runs, rows = quantities (the seed's layout); cells not yet text are configuration values."""
    return pd.DataFrame(rows).map(lambda v: v if isinstance(v, str) else show(v))


def best_run(runs: Sequence[RunResult]) -> RunResult | None:
    """The run whose checkpoint has the best validation monitor (never a test metric); ``None`` when the runs'
    checkpoints were selected on different metrics, whose values are on different scales (see :func:`no_best_run`)."""
    runs = [run for run in runs if math.isfinite(run.validation_score)]  # a run of test alone was not validated
    if not runs or len({(run.monitor, run.monitor_mode) for run in runs}) > 1:
        return None
    return max(runs, key=lambda r: r.validation_score if r.monitor_mode == "max" else -r.validation_score)


def no_best_run(runs: Sequence[RunResult], labels: dict[str, str]) -> str:
    """What a report says when :func:`best_run` names no run: each run's selection metric (``labels`` names the
    monitors, e.g. ``val/bal_acc`` -> ``balanced accuracy``)."""
    chosen = ", ".join(f"{run.experiment} on {labels.get(run.monitor, run.monitor)}" for run in runs)
    return (
        f"No run is named better: their checkpoints were selected on different validation metrics ({chosen}), "
        "whose values do not compare."
    )


ANCHORS = Path(str(resources.files("common.studies") / "anchors.yaml"))
"""Published results by protocol (each with its task, the configuration it applies to and its sources)."""


def _matches(run: RunResult, match: dict[str, Any]) -> bool:
    """Whether the run's configuration has every value of ``match`` (list and CSV files compared by name; ``null``
    matches a key the run leaves unset)."""
    return all(
        run.cfg(key) is None
        if value is None
        else run.cfg(key) is not None and Path(str(run.cfg(key))).name == Path(str(value)).name
        for key, value in match.items()
    )


def _in_ranges(run: RunResult, ranges: dict[str, list[float]]) -> bool:
    """Whether each named ``metrics.json`` value (e.g. the number of test images) lies in its ``[low, high]``."""
    return all(
        isinstance(run.metrics.get(name), int | float) and low <= run.metrics[name] <= high
        for name, (low, high) in ranges.items()
    )


def published_protocols(
    runs: Sequence[RunResult], path: Path = ANCHORS
) -> list[tuple[dict[str, Any], list[RunResult]]]:
    """The protocols of ``path`` for the runs' task that some of ``runs`` follow, with those runs."""
    if not path.is_file() or not runs:
        return []
    protocols = yaml.safe_load(path.read_text()) or {}
    task = runs[0].task
    found = [
        (p, [r for r in runs if _matches(r, p.get("match", {})) and _in_ranges(r, p.get("match_metrics", {}))])
        for p in protocols.values()
        if p.get("task", task) == task
    ]
    return [(protocol, matching) for protocol, matching in found if matching]


def tested_weights(run: RunResult) -> str:
    """Which weights the run's test used: ``best epoch N`` (on validation), ``last epoch N``, or an ensemble's
    members."""
    if run.info.get("ensemble"):
        return f"ensemble of {len(run.info['ensemble'])} members (run_info.json)"
    best = run.best_epoch()
    if "epoch" not in best:
        return str(run.metrics.get("checkpoint", "–"))
    epoch = int(best["epoch"]) + 1
    return f"last epoch {epoch}" if run.info.get("test_checkpoint") == "last" else f"best epoch {epoch} (validation)"


def _duration(value: Any) -> str:
    """Lightning's ``max_time`` (``"DD:HH:MM:SS"`` or a mapping of ``timedelta`` fields) in minutes."""
    try:
        if isinstance(value, dict):
            units = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
            seconds = sum(float(value.get(name, 0)) * factor for name, factor in units)
        else:
            days, hours, minutes, secs = (float(part) for part in str(value).split(":"))
            seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    except (TypeError, ValueError):
        return str(value)
    return f"{seconds / 60:g} min"


def training_rows(run: RunResult) -> dict[str, str]:
    """The training budget the configuration set (steps, epochs, time: whichever ends first) and what the run
    used of it: epochs and optimizer steps (``history.csv``), fit wall time (``timing.json``), precision."""
    limits = []
    if run.cfg("trainer.max_steps") not in (None, -1):
        limits.append(f"{run.cfg('trainer.max_steps')} steps")
    if run.cfg("trainer.max_epochs") is not None:
        limits.append(f"{run.cfg('trainer.max_epochs')} epochs")
    if run.cfg("trainer.max_time"):
        limits.append(_duration(run.cfg("trainer.max_time")))
    budget = " or ".join(limits) + (" (whichever ends first)" if len(limits) > 1 else "")
    done = []
    epochs = run.timing.get("epochs", int(run.history["epoch"].max()) + 1 if len(run.history) else None)
    if epochs is not None:
        done.append(f"{epochs} epochs")
    if "step" in run.history and run.history["step"].notna().any():
        done.append(f"{int(run.history['step'].max())} steps")
    if "fit_s" in run.timing:
        done.append(f"{float(run.timing['fit_s']) / 60:.1f} min")
    return {
        "training budget": budget or "–",
        "trained": ", ".join(done) or "–",
        "precision": show(run.cfg("trainer.precision") or "32-true"),  # Lightning's default when unset
    }


# --- rendering -----------------------------------------------------------------------------------------------------
def _copy(path: Path, out: Path) -> str:
    """Copy a run's file to ``out/figures/<experiment>/<run>/...``; return its link relative to ``out``."""
    run_dir = next(p for p in path.parents if (p / "config.yaml").exists())
    relative = Path("figures") / run_dir.parent.name / run_dir.name / path.relative_to(run_dir)
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(path, target)
    if path.suffix == ".html" and (path.parent / "plotly.min.js").exists():
        shutil.copy2(path.parent / "plotly.min.js", target.parent / "plotly.min.js")
    return relative.as_posix()


def _md_heading(kind: str, content: Any, extra: Any, out: Path) -> list[str]:
    return ["#" * int(kind[1]) + " " + content, ""]


def _md_paragraph(kind: str, content: Any, extra: Any, out: Path) -> list[str]:
    return [content, ""]


def _md_table(kind: str, content: Any, extra: Any, out: Path) -> list[str]:
    columns = [extra, *map(str, content.columns)]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join([str(name), *map(str, row)]) + " |" for name, row in content.iterrows()]
    return [*lines, ""]


def _md_image(kind: str, content: Any, extra: Any, out: Path) -> list[str]:
    return [f"![{extra}]({_copy(content, out)})", f"*{extra}*", ""]


def _md_link(kind: str, content: Any, extra: Any, out: Path) -> list[str]:
    return [f"[{extra}]({_copy(content, out)})", ""]


def _draw(content: tuple[str, Callable[[Path], Any]], out: Path) -> Path:
    """A ``plot`` block's figure, drawn at ``out/figures/<name>.png`` (figures across runs belong to the report)."""
    name, draw = content
    path = out / "figures" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    draw(path)
    return path


def _md_plot(kind: str, content: Any, extra: Any, out: Path) -> list[str]:
    return [f"![{extra}]({_draw(content, out).relative_to(out).as_posix()})", f"*{extra}*", ""]


_MARKDOWN = {
    "h1": _md_heading,
    "h2": _md_heading,
    "h3": _md_heading,
    "p": _md_paragraph,
    "table": _md_table,
    "img": _md_image,
    "link": _md_link,
    "plot": _md_plot,
}
"""Markdown renderer of each block kind."""


def _markdown(blocks: list[Block], out: Path) -> str:
    return "\n".join(line for kind, content, extra in blocks for line in _MARKDOWN[kind](kind, content, extra, out))


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1150px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
table{border-collapse:collapse;margin:0.6em 0 1.2em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f0f3f7}figure{margin:0.8em 0 1.6em}img{max-width:100%;border:1px solid #eee}
figcaption{font-size:0.85em;color:#555}h2{border-bottom:2px solid #4c72b0;padding-bottom:0.2em;margin-top:2em}
code{background:#f4f4f4;padding:0 0.2em}
"""


def _inline(text: str) -> str:
    escaped = html.escape(text)
    parts = escaped.split("**")
    escaped = "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))
    parts = escaped.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _html_heading(kind: str, content: Any, extra: Any, out: Path) -> str:
    return f"<{kind}>{html.escape(content)}</{kind}>"


def _html_paragraph(kind: str, content: Any, extra: Any, out: Path) -> str:
    return f"<p>{_inline(content)}</p>"


def _html_table(kind: str, content: Any, extra: Any, out: Path) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [extra, *content.columns])
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in [name, *row]) + "</tr>"
        for name, row in content.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _html_image(kind: str, content: Any, extra: Any, out: Path) -> str:
    data = base64.b64encode(Path(content).read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(extra)}">'
        f"<figcaption>{html.escape(extra)}</figcaption></figure>"
    )


def _html_plot(kind: str, content: Any, extra: Any, out: Path) -> str:
    return _html_image(kind, _draw(content, out), extra, out)


def _html_link(kind: str, content: Any, extra: Any, out: Path) -> str:
    return f'<p><a href="{_copy(content, out)}">{html.escape(extra)}</a> (opens beside this report)</p>'


_HTML = {
    "h1": _html_heading,
    "h2": _html_heading,
    "h3": _html_heading,
    "p": _html_paragraph,
    "table": _html_table,
    "img": _html_image,
    "link": _html_link,
    "plot": _html_plot,
}
"""HTML renderer of each block kind."""


def _html(blocks: list[Block], out: Path, title: str) -> str:
    body = "".join(_HTML[kind](kind, content, extra, out) for kind, content, extra in blocks)
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head><body>{body}</body></html>\n"
    )


def _by_task(runs: Sequence[RunResult]) -> dict[str, list[RunResult]]:
    """Runs grouped by task, tasks in the order of their first run."""
    groups: dict[str, list[RunResult]] = {}
    for run in runs:
        groups.setdefault(run.task, []).append(run)
    return groups


def default_title(runs: Sequence[RunResult]) -> str:
    """``medlit: <task title> and <task title>`` for the tasks of ``runs``."""
    titles = [group[0].report.title for group in _by_task(runs).values()]
    return "medlit: " + " and ".join(titles) if titles else "medlit report"


def _names(runs: Sequence[RunResult]) -> list[str]:
    """What the comparisons call each run: its experiment, with the run dir's name where experiments repeat."""
    experiments = [run.experiment for run in runs]
    return [
        e if experiments.count(e) == 1 else f"{e}/{run.path.name}" for e, run in zip(experiments, runs, strict=True)
    ]


def _validation_margin(runs: list[RunResult], names: dict[int, str], better: RunResult, rows: pd.DataFrame) -> str:
    """Whether the validation margin of ``better`` over the runner-up exceeds the validation noise."""
    others = [run for run in runs if run is not better and math.isfinite(run.validation_score)]
    if not others:
        return ""
    sign = 1 if better.monitor_mode == "max" else -1
    runner_up = max(others, key=lambda r: sign * r.validation_score)
    margin = abs(better.validation_score - runner_up.validation_score)
    statistic = better.report.selection_statistics.get(better.monitor)
    best_name, runner_name = names[id(better)], names[id(runner_up)]
    pair = pair_row(rows, best_name, runner_name, statistic)
    items, n_val = scored_items_of(better), better.report.validation_units(better)
    if pair is None or items is None or not n_val:
        return ""
    if min(n_val, items.n_units) < MIN_UNITS:
        few = f"{n_val} validation" if n_val < MIN_UNITS else f"{items.n_units} test"
        return (
            f"The validation margin of {best_name} over {runner_name} ({fmt(margin)}) cannot be set against the "
            f"validation noise: {few} {items.unit_name}s are too few to estimate it."
        )
    noise = validation_noise(float(pair["se"]), items.n_units, n_val)
    if not math.isfinite(noise):
        return ""
    where = "inside" if margin < noise else "outside"
    flag = " The choice could as well have gone the other way." if margin < noise else ""
    return (
        f"The validation margin of {best_name} over {runner_name} ({fmt(margin)}) is {where} the validation noise "
        f"(±{fmt(noise)}: 1.96 × the paired test-bootstrap standard error of the difference, rescaled to the "
        f"{n_val} validation {items.unit_name}s; validation predictions are not kept).{flag}"
    )


def comparison_blocks(runs: list[RunResult], rows: pd.DataFrame, notes: list[str]) -> list[Block]:
    """The report's paired comparisons of one task's runs: whether the test data support the validation choice,
    whether that choice is inside the validation noise, and the table (``rows``: their ``comparisons.csv`` rows)."""
    if len(runs) < 2:
        return []
    names = dict(zip(map(id, runs), _names(runs), strict=True))
    blocks: list[Block] = [
        ("h3", "Paired comparisons on the test set", None),
        (
            "p",
            method_sentence(scored_items_of(runs[0]), dict(runs[0].report.metric_labels))
            + " `p (Holm)`: Holm's correction over every comparison in this report (`comparisons.csv`). A "
            "difference is called detectable only when its Holm p is below 0.05.",
            None,
        ),
    ]
    better = best_run(runs)
    statistic = better.report.selection_statistics.get(better.monitor) if better else None
    items = scored_items_of(better) if better else None
    if better is not None and statistic and items is not None and not rows.empty:
        label = better.report.metric_labels.get(statistic, statistic)
        higher = better.monitor_mode == "max"
        sentences = [
            choice_on_test(names[id(better)], names[id(run)], rows, statistic, label, items.size(), higher)
            for run in runs
            if run is not better
        ]
        blocks.append(("p", f"**The validation choice on the test data.** {' '.join(sentences)}", None))
        margin = _validation_margin(runs, names, better, rows)
        if margin:
            blocks.append(("p", margin, None))
    if not rows.empty:
        labels = dict(runs[0].report.metric_labels)
        blocks.append(("table", readable_comparisons(rows, labels).set_index("A"), "A"))
    blocks += [("p", note, None) for note in notes]
    return blocks


def _task_comparisons(groups: dict[str, list[RunResult]]) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Each task's paired comparisons, with Holm's correction over all of them (one family per report)."""
    found = {}
    for task, task_runs in groups.items():
        rows, notes = compare_runs(list(zip(_names(task_runs), task_runs, strict=True)))
        found[task] = (rows.assign(task=task), notes)
    every = with_holm(pd.concat([rows for rows, _ in found.values()], ignore_index=True))
    return {task: (every[every["task"] == task], notes) for task, (_, notes) in found.items()}


def build_report(runs: Sequence[RunResult], out: Path, title: str | None = None) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``comparisons.csv`` into ``out``; returns the first two paths.

    Args:
        runs: Finished runs, of any registered tasks.
        out: Output folder (figures are copied into ``out/figures``).
        title: The report's title (default: :func:`default_title`).
    """
    if not runs:
        raise MedlitError("no finished runs to report on")
    reason = unwritable_reason(out)
    if reason:
        raise MedlitError(f"--out {out}: {reason}; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    title = title or default_title(runs)
    blocks: list[Block] = [
        ("h1", title, None),
        (
            "p",
            f"Generated on {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run(s): "
            + ", ".join(f"`{r.path}`" for r in runs)
            + ". Every number below is read from these runs' files.",
            None,
        ),
    ]
    groups = _by_task(runs)
    comparisons = _task_comparisons(groups)
    for task, task_runs in groups.items():
        blocks += task_runs[0].report.sections(task_runs)
        blocks += comparison_blocks(task_runs, *comparisons[task])
    every = pd.concat([rows for rows, _ in comparisons.values()], ignore_index=True)
    every.reindex(columns=COMPARISON_COLUMNS).to_csv(out / "comparisons.csv", index=False)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(_markdown(blocks, out))
    html_path.write_text(_html(blocks, out, title))
    return md_path, html_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.studies.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/demo"), help="newest run of each experiment")
    parser.add_argument("--runs", type=Path, nargs="*", default=None, help="explicit run dirs instead of --root")
    parser.add_argument("--out", type=Path, default=None, help="default: <root>/report")
    parser.add_argument("--title", default=None, help="default: medlit: <the runs' task titles>")
    args = parser.parse_args(argv)
    try:
        runs = [load_run(p) for p in args.runs] if args.runs else list(latest_runs(args.root).values())
        md_path, html_path = build_report(runs, args.out or args.root / "report", args.title)
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"report: {md_path}\nreport: {html_path}")


if __name__ == "__main__":
    main()
