"""Paired comparisons of runs tested on the same items, Holm's correction, and each run's own interval."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from common.stats import bootstrap_intervals, holm
from common.studies.paired import (
    BOOTSTRAP_TEST,
    COMPARISON_COLUMNS,
    compare_runs,
    pair_row,
    run_interval,
    with_holm,
)
from common.studies.runs import load_run
from tests.toy_task.report import toy_items, write_toy_run


def _items(errors: list[float], ids: list[str] | None = None) -> dict:
    ids = ids or [f"s{i}" for i in range(len(errors))]
    return {"item": ids, "unit": ids, "error": errors}


def test_two_runs_on_the_same_items_get_a_bootstrap_row_and_the_exact_test(tmp_path: Path) -> None:
    """MAE 0.25 against 0.1 on four samples: the values and the difference by hand, Wilcoxon as scipy gives it,
    and no bootstrap p-value with fewer than 10 units."""
    a_errors, b_errors = [0.1, 0.2, 0.3, 0.4], [0.1, 0.1, 0.1, 0.1]
    a = load_run(write_toy_run(tmp_path / "a", 0.25, 0.3, _items(a_errors)))
    b = load_run(write_toy_run(tmp_path / "b", 0.1, 0.2, _items(b_errors)))
    table, notes = compare_runs([("A", a), ("B", b)])
    assert notes == [] and list(table.columns) == [*COMPARISON_COLUMNS, "se"]
    boot, exact = table.iloc[0], table.iloc[1]
    assert (boot["run_a"], boot["run_b"], boot["metric"], boot["test"], boot["n_units"]) == (
        "A",
        "B",
        "mae",
        BOOTSTRAP_TEST,
        4,
    )
    assert (boot["value_a"], boot["value_b"], boot["delta"]) == pytest.approx((0.25, 0.1, -0.15))
    assert boot["ci_low"] <= boot["delta"] <= boot["ci_high"] and np.isnan(boot["p_value"])  # 4 units: too few
    assert exact["test"] == "Wilcoxon signed-rank" and np.isnan(exact["ci_low"])
    assert exact["p_value"] == pytest.approx(stats.wilcoxon(b_errors, a_errors).pvalue) and exact["n_units"] == 4
    assert len(table) == 2  # rmse has no per-item statistic: not compared


def test_enough_units_give_a_bootstrap_p_value_and_holm_over_the_rows(tmp_path: Path) -> None:
    errors = np.random.default_rng(0).uniform(0, 1, 30)
    a = load_run(write_toy_run(tmp_path / "a", float(errors.mean()), 0.3, _items(list(errors))))
    b = load_run(write_toy_run(tmp_path / "b", 0.0, 0.2, _items(list(errors * 0.5))))
    table, _ = compare_runs([("A", a), ("B", b)])
    boot = table[table["test"] == BOOTSTRAP_TEST].iloc[0]
    assert 0 < boot["p_value"] < 0.05 and boot["n_units"] == 30 and boot["se"] > 0
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p_value"].to_numpy()).tolist())


def test_runs_on_other_items_or_without_items_are_not_paired(tmp_path: Path) -> None:
    a = load_run(write_toy_run(tmp_path / "a", 0.2, 0.3, _items([0.1, 0.2, 0.3])))
    other = load_run(write_toy_run(tmp_path / "o", 0.2, 0.3, _items([0.1, 0.2, 0.3], ["x", "y", "z"])))
    bare = load_run(write_toy_run(tmp_path / "n", 0.2, 0.3))
    table, notes = compare_runs([("A", a), ("O", other), ("N", bare)])
    assert table.empty and list(table.columns) == [*COMPARISON_COLUMNS, "se"]
    assert notes == [
        "A (3 samples) and O (3 samples) were tested on different items: their numbers are not paired, and no "
        "difference between them is tested.",
        "A and N are not compared item by item: N has no per-item test scores.",
        "O and N are not compared item by item: N has no per-item test scores.",
    ]


def test_chosen_pairs_are_compared_as_b_minus_a(tmp_path: Path) -> None:
    a = load_run(write_toy_run(tmp_path / "a", 0.25, 0.3, _items([0.1, 0.2, 0.3, 0.4])))
    b = load_run(write_toy_run(tmp_path / "b", 0.1, 0.2, _items([0.1, 0.1, 0.1, 0.1])))
    c = load_run(write_toy_run(tmp_path / "c", 0.1, 0.2, _items([0.0, 0.1, 0.2, 0.1])))
    table, _ = compare_runs([("A", a), ("B", b), ("C", c)], pairs=[("B", "A")], metrics=["mae"])
    assert set(zip(table["run_a"], table["run_b"], strict=True)) == {("B", "A")}
    assert table.iloc[0]["delta"] == pytest.approx(0.15)


def test_pair_row_finds_a_pair_in_either_order() -> None:
    rows = pd.DataFrame(
        {
            "run_a": ["A", "A"],
            "run_b": ["B", "B"],
            "metric": ["mae", "mae"],
            "test": [BOOTSTRAP_TEST, "Wilcoxon signed-rank"],
            "delta": [-0.15, -0.15],
        }
    )
    assert pair_row(rows, "B", "A", "mae")["test"] == BOOTSTRAP_TEST
    assert pair_row(rows, "A", "B", "mae")["test"] == BOOTSTRAP_TEST
    assert pair_row(rows, "A", "C", "mae") is None and pair_row(rows, "A", "B", "rmse") is None


def test_with_holm_adjusts_every_row_as_one_family() -> None:
    table = pd.DataFrame({"p_value": [0.01, 0.04, 0.03, np.nan]})
    # Holm by hand: sorted 0.01, 0.03, 0.04 times 3, 2, 1, kept monotone; NaN stays NaN
    assert with_holm(table)["p_holm"].tolist()[:3] == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(with_holm(table)["p_holm"].iloc[3])
    assert with_holm(pd.DataFrame({"p_value": []}))["p_holm"].tolist() == []


def test_run_interval_reads_metrics_json_and_else_bootstraps_the_items(tmp_path: Path) -> None:
    """The stored ``ci95`` first (``[null, null]``: undefined); without one, a bootstrap over the run's items (a run
    from before intervals were written); none when intervals were turned off or the run has no items."""
    items = _items([0.1, 0.2, 0.3, 0.4, 0.5])
    stored = load_run(write_toy_run(tmp_path / "s", 0.3, 0.3, items, ci95={"mae": [0.2, 0.4], "rmse": [None, None]}))
    assert run_interval(stored, "mae") == (0.2, 0.4) and run_interval(stored, "rmse") is None
    old = load_run(write_toy_run(tmp_path / "o", 0.3, 0.3, items))
    expected = bootstrap_intervals(toy_items(items["item"], items["unit"], items["error"]), 200, 3)["mae"]["ci95"]
    assert run_interval(old, "mae", n_resamples=200, seed=3) == pytest.approx(tuple(expected))
    assert run_interval(old, "rmse") is None  # no per-item statistic
    assert run_interval(old, "mae", n_resamples=0) is None
    off = load_run(write_toy_run(tmp_path / "f", 0.3, 0.3, items, ci_resamples=0))
    assert run_interval(off, "mae") is None
    assert run_interval(load_run(write_toy_run(tmp_path / "n", 0.3, 0.3)), "mae") is None
