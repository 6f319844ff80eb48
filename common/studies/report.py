"""The seed document, generated: ``report.md`` and ``report.html`` from finished run dirs.

``python -m common.studies.report --root runs/demo --out runs/demo/report`` takes the newest finished run of each
experiment under the root (or ``--runs DIR ...``), groups the runs by task, and asks each task's registered
report (:class:`~common.studies.task_reports.TaskReport`, in the task package's ``report.py``) for its sections:
tables, text and figures as typed blocks. This module knows no task: it adds the paired comparisons of each task's
runs, pairs each run with the results records it was tested like (``--results``, default ``results/``:
:func:`common.studies.against.reference_blocks`) and renders (:mod:`common.studies.render`).

"Better" and "best" are chosen on the validation metric that selected each run's checkpoint
(:func:`~common.studies.sections.best_run`), never on test data. Every number is read from the runs' files;
nothing is recomputed. The Markdown links figures copied beside it (``figures/``); the HTML embeds them, so it is
one file.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from common.errors import MedlitError, exit_on_error
from common.files import unwritable_reason
from common.stats import MIN_UNITS
from common.studies.against import reference_blocks
from common.studies.paired import COMPARISON_COLUMNS, compare_runs, pair_row, with_holm
from common.studies.records import Record, find_records
from common.studies.render import render_html, render_markdown
from common.studies.runs import RunResult, latest_runs, load_run
from common.studies.sections import best_run
from common.studies.task_reports import Block, Heading, Paragraph, Table
from common.studies.wording import choice_on_test, method_sentence, readable_comparisons, validation_noise
from common.text import fmt

__all__ = ["build_report", "comparison_blocks", "default_title", "main"]


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
    items, n_val = better.scored_items(), better.report.validation_units(better)
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


def _validation_choice(runs: list[RunResult], names: dict[int, str], rows: pd.DataFrame) -> list[Block]:
    """Whether the test data support the validation choice, and whether it is inside the validation noise."""
    better = best_run(runs)
    statistic = better.report.selection_statistics.get(better.monitor) if better else None
    items = better.scored_items() if better else None
    if better is None or not statistic or items is None or rows.empty:
        return []
    label = better.report.metric_labels.get(statistic, statistic)
    higher = better.monitor_mode == "max"
    sentences = [
        choice_on_test(names[id(better)], names[id(run)], rows, statistic, label, items.size(), higher)
        for run in runs
        if run is not better
    ]
    blocks: list[Block] = [Paragraph(f"**The validation choice on the test data.** {' '.join(sentences)}")]
    margin = _validation_margin(runs, names, better, rows)
    return [*blocks, Paragraph(margin)] if margin else blocks


def comparison_blocks(runs: list[RunResult], rows: pd.DataFrame, notes: list[str]) -> list[Block]:
    """The report's paired comparisons of one task's runs: whether the test data support the validation choice,
    whether that choice is inside the validation noise, and the table (``rows``: their ``comparisons.csv`` rows)."""
    if len(runs) < 2:
        return []
    names = dict(zip(map(id, runs), _names(runs), strict=True))
    blocks: list[Block] = [
        Heading("Paired comparisons on the test set", 3),
        Paragraph(
            method_sentence(runs[0].scored_items(), dict(runs[0].report.metric_labels))
            + " `p (Holm)`: Holm's correction over every comparison in this report (`comparisons.csv`). A "
            "difference is called detectable only when its Holm p is below 0.05."
        ),
        *_validation_choice(runs, names, rows),
    ]
    if not rows.empty:
        labels = dict(runs[0].report.metric_labels)
        blocks.append(Table(readable_comparisons(rows, labels).set_index("A"), "A"))
    return blocks + [Paragraph(note) for note in notes]


def _task_comparisons(groups: dict[str, list[RunResult]]) -> dict[str, tuple[pd.DataFrame, list[str]]]:
    """Each task's paired comparisons, with Holm's correction over all of them (one family per report)."""
    found = {}
    for task, task_runs in groups.items():
        rows, notes = compare_runs(list(zip(_names(task_runs), task_runs, strict=True)))
        found[task] = (rows.assign(task=task), notes)
    every = with_holm(pd.concat([rows for rows, _ in found.values()], ignore_index=True))
    return {task: (every[every["task"] == task], notes) for task, (_, notes) in found.items()}


def build_report(
    runs: Sequence[RunResult], out: Path, title: str | None = None, references: Sequence[Record] = ()
) -> tuple[Path, Path]:
    """Write ``report.md``, ``report.html`` and ``comparisons.csv`` into ``out``; returns the first two paths.

    Args:
        runs: Finished runs, of any registered tasks.
        out: Output folder (figures are copied into ``out/figures``).
        title: The report's title (default: :func:`default_title`).
        references: Results records; each run tested on the items of one is paired with it ("against the
            recorded references").
    """
    if not runs:
        raise MedlitError("no finished runs to report on")
    reason = unwritable_reason(out)
    if reason:
        raise MedlitError(f"--out {out}: {reason}; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    title = title or default_title(runs)
    blocks: list[Block] = [
        Heading(title, 1),
        Paragraph(
            f"Generated on {time.strftime('%Y-%m-%d %H:%M')} from {len(runs)} run(s): "
            + ", ".join(f"`{r.path}`" for r in runs)
            + ". Every number below is read from these runs' files."
        ),
    ]
    groups = _by_task(runs)
    comparisons = _task_comparisons(groups)
    for task, task_runs in groups.items():
        blocks += task_runs[0].report.sections(task_runs)
        blocks += comparison_blocks(task_runs, *comparisons[task])
        blocks += reference_blocks(task_runs, references)
    every = pd.concat([rows for rows, _ in comparisons.values()], ignore_index=True)
    every.reindex(columns=COMPARISON_COLUMNS).to_csv(out / "comparisons.csv", index=False)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(render_markdown(blocks, out))
    html_path.write_text(render_html(blocks, out, title))
    return md_path, html_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m common.studies.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=Path("runs/demo"), help="newest run of each experiment")
    parser.add_argument("--runs", type=Path, nargs="*", default=None, help="explicit run dirs instead of --root")
    parser.add_argument("--out", type=Path, default=None, help="default: <root>/report")
    parser.add_argument("--title", default=None, help="default: medlit: <the runs' task titles>")
    parser.add_argument("--results", type=Path, default=Path("results"), help="records to pair runs with")
    args = parser.parse_args(argv)
    with exit_on_error():
        runs = [load_run(p) for p in args.runs] if args.runs else list(latest_runs(args.root).values())
        references = find_records(args.results)
        md_path, html_path = build_report(runs, args.out or args.root / "report", args.title, references)
    print(f"report: {md_path}\nreport: {html_path}")


if __name__ == "__main__":
    main()
