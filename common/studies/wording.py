"""Comparisons in words: the sentences and readable tables that the report and the sweep comparison write.

How a comparison was made (:func:`method_sentence`), whether the test data support a validation choice
(:func:`choice_on_test`), the validation noise a margin is set against (:func:`validation_noise`), the readable
comparisons table (:func:`readable_comparisons`), a metric's title (:func:`metric_title`) and a value over seeds
(:func:`format_mean_std`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from common.stats import BOOTSTRAP_RESAMPLES, MIN_UNITS, ScoredItems, t_interval
from common.studies.paired import pair_row
from common.studies.runs import RunResult
from common.text import fmt, signed, signed_interval

__all__ = [
    "choice_on_test",
    "format_mean_std",
    "method_sentence",
    "metric_title",
    "readable_comparisons",
    "validation_noise",
]


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
        mdd = row.get("mdd", np.nan)
        detectable = f"; a difference of {fmt(mdd)} or more would be found with 80% power" if np.isfinite(mdd) else ""
        return f"{numbers} - no detectable difference with {size}{detectable}."
    verdict = "support" if (delta > 0) == higher_is_better else "contradict"
    return f"{numbers} - the test data {verdict} the validation choice ({size}, Holm-adjusted p < 0.05)."


def validation_noise(se_test: float, n_test_units: int, n_val_units: int) -> float:
    """Half-width (1.96 standard errors) of a paired difference on the validation split, estimated from its test
    bootstrap standard error rescaled by ``sqrt(n_test_units / n_val_units)`` (validation predictions are not
    kept, and a mean over ``n`` units has a standard error proportional to ``1 / sqrt(n)``)."""
    if not (se_test > 0 and n_val_units > 0):
        return float("nan")
    return 1.96 * se_test * math.sqrt(n_test_units / n_val_units)


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
            # not fmt: a value undefined on the test set reads "nan" here, as comparisons have always written it
            "A value": table["value_a"].map(lambda v: f"{v:.3f}"),
            "B value": table["value_b"].map(lambda v: f"{v:.3f}"),
            "B - A (95% CI)": [
                signed_interval(d, lo, hi)
                for d, lo, hi in zip(table["delta"], table["ci_low"], table["ci_high"], strict=True)
            ],
            "detectable (80% power)": [f"±{m:.3f}" if np.isfinite(m) else "" for m in table["mdd"]],
            "test": table["test"],
            "n": table["n_units"].astype(int).astype(str),
            "p": table["p_value"].map(lambda v: f"{v:.3g}"),
            "p (Holm)": table["p_holm"].map(lambda v: f"{v:.3g}"),
        }
    )
