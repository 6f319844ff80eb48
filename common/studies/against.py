"""A run paired with a recorded reference (:mod:`common.studies.records`) on the same test items.

:func:`pair_with_reference` refuses, with one line, a reference of another task, another class list, other metric
units, or other test items (the same ids grouped into the same units: :func:`common.stats.aligned`); otherwise it
runs the paired tests of :func:`common.studies.paired.compare_runs` with the reference as A and the run as B, so that
every difference reads run - reference, each with its minimum detectable difference. :func:`pair_over_seeds` pairs
several runs with as many references (a run dir or a record each: the same seeds in the same order), then tests the
differences over the seeds (paired t). :func:`matching_references` finds the records a run can be paired with (the
report's "against the reference" rows).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from common.errors import MedlitError
from common.stats import BOOTSTRAP_RESAMPLES, aligned, paired_t
from common.studies.paired import BOOTSTRAP_TEST, COMPARISON_COLUMNS, SEEDS_TEST, compare_runs, with_holm
from common.studies.records import Record
from common.studies.runs import RunResult
from common.studies.task_reports import Block, Heading, Paragraph, Table
from common.studies.wording import readable_comparisons

__all__ = ["matching_references", "pair_over_seeds", "pair_with_reference", "pairing_refusal", "reference_blocks"]


def _classes(run: RunResult) -> list[str] | None:
    names = run.metrics.get("class_names") or run.cfg("data.class_names")
    return list(names) if names else None


def pairing_refusal(run: RunResult, name: str, reference: Record) -> str | None:
    """Why ``run`` cannot be paired with ``reference`` (one line), ``None`` when it can."""
    return _refusal(run, name, reference.run, reference.label)


def _refusal(run: RunResult, name: str, ref: RunResult, label: str) -> str | None:
    if run.task != ref.task:
        return f"{name} is a {run.task} run and {label} a {ref.task} one: nothing to pair"
    if _classes(run) != _classes(ref):
        return f"{name} has the classes {_classes(run)} and {label} {_classes(ref)}: not the same task"
    for metric in run.report.headline_metrics:
        if run.unit(metric) != ref.unit(metric):
            return (
                f"{name} gives {metric} in {run.unit(metric) or 'no stated unit'} and {label} in "
                f"{ref.unit(metric) or 'no stated unit'}: not comparable"
            )
    items, ref_items = run.scored_items(), ref.scored_items()
    if items is None or ref_items is None:
        missing = name if items is None else label
        return f"{missing} keeps no per-item test scores: nothing to pair"
    if aligned(ref_items, items) is None:
        common = len(set(ref_items.ids) & set(items.ids))
        return (
            f"{name} ({items.size()}) and {label} ({ref_items.size()}) were not tested on the same items "
            f"({common} in common): they cannot be paired"
        )
    return None


def pair_with_reference(
    run: RunResult, name: str, reference: Record, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """The paired comparison table (``comparisons.csv``'s columns), reference as A, ``run`` as B.

    Raises:
        MedlitError: the two cannot be paired (:func:`pairing_refusal`'s line).
    """
    refusal = pairing_refusal(run, name, reference)
    if refusal:
        raise MedlitError(refusal)
    table, _ = compare_runs([(reference.label, reference.run), (name, run)], n_resamples=n_resamples, seed=seed)
    return table


def pair_over_seeds(
    pairs: Sequence[tuple[tuple[str, RunResult], tuple[str, RunResult]]],
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> pd.DataFrame:
    """Each ``((name, run), (label, reference))`` paired on its test items (reference as A), then, with two pairs or
    more, each metric's paired t over the pairs (the seeds: the mean of B - A over seeds, its t-interval and
    p-value; ``n_units`` the number of seeds). Holm over every row.

    Raises:
        MedlitError: a pair cannot be paired (:func:`pairing_refusal`'s line).
    """
    tables = []
    for (name, run), (label, reference) in pairs:
        refusal = _refusal(run, name, reference, label)
        if refusal:
            raise MedlitError(refusal)
        table, _ = compare_runs([(label, reference), (name, run)], n_resamples=n_resamples, seed=seed)
        tables.append(table.drop(columns="se"))
    per_pair = pd.concat(tables, ignore_index=True)
    boot = per_pair[per_pair["test"] == BOOTSTRAP_TEST]
    rows = []
    for metric in dict.fromkeys(boot["metric"]) if len(pairs) >= 2 else []:
        values = boot[boot["metric"] == metric]
        t = paired_t(values["value_a"].to_numpy(float), values["value_b"].to_numpy(float))
        rows.append(
            {"run_a": f"the {len(pairs)} references", "run_b": f"the {len(pairs)} runs", "metric": metric}
            | {"value_a": values["value_a"].mean(), "value_b": values["value_b"].mean(), "delta": t["mean"]}
            | {"ci_low": t["ci_low"], "ci_high": t["ci_high"], "p_value": t["p_value"], "test": SEEDS_TEST}
            | {"n_units": t["n"]}
        )
    over_seeds = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    both = pd.concat([per_pair, over_seeds], ignore_index=True) if rows else per_pair
    return with_holm(both.reindex(columns=COMPARISON_COLUMNS))


def matching_references(run: RunResult, records: Sequence[Record]) -> list[Record]:
    """The records ``run`` can be paired with (same task, classes, units and test items)."""
    return [record for record in records if pairing_refusal(run, run.experiment, record) is None]


def reference_blocks(runs: Sequence[RunResult], records: Sequence[Record]) -> list[Block]:
    """The report's rows "against the reference": each run paired with every record it matches (none: no block)."""
    tables = [
        pair_with_reference(run, run.experiment, record) for run in runs for record in matching_references(run, records)
    ]
    if not tables:
        return []
    table = with_holm(pd.concat(tables, ignore_index=True))
    labels = dict(runs[0].report.metric_labels)
    return [
        Heading("Against the recorded references", 3),
        Paragraph(
            "Each run paired with the records in `results/` that were tested on the same items (A: the record, B: "
            "the run; B - A with its paired-bootstrap interval and the difference these items detect with 80% "
            "power). `p (Holm)`: Holm's correction over this table."
        ),
        Table(readable_comparisons(table, labels).set_index("A"), "A"),
    ]
