"""Comparisons in words: the validation choice on the test data, the validation noise, readable tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from common.studies.paired import BOOTSTRAP_TEST
from common.studies.runs import load_run
from common.studies.wording import (
    choice_on_test,
    format_mean_std,
    method_sentence,
    metric_title,
    readable_comparisons,
    validation_noise,
)
from tests.toy_task.report import toy_items, write_toy_run


def _rows(delta: float, low: float, high: float, p: float, p_holm: float, a: str = "A", b: str = "B") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"run_a": a, "run_b": b, "metric": "mae", "value_a": 0.3, "value_b": 0.3 + delta, "delta": delta}
            | {"ci_low": low, "ci_high": high, "mdd": 0.042, "p_value": p, "test": BOOTSTRAP_TEST, "n_units": 40}
            | {"p_holm": p_holm}
        ]
    )


def test_choice_on_test_supports_contradicts_or_finds_no_difference() -> None:
    size = "40 samples"
    supported = choice_on_test("B", "A", _rows(0.05, 0.02, 0.08, 0.001, 0.003), "mae", "MAE", size)
    assert supported == (
        "B vs A: test MAE +0.050 (+0.020 to +0.080), p = 0.001 (Holm 0.003) - the test data support the validation "
        "choice (40 samples, Holm-adjusted p < 0.05)."
    )
    lower_is_better = choice_on_test("B", "A", _rows(0.05, 0.02, 0.08, 0.001, 0.003), "mae", "MAE", size, False)
    assert "the test data contradict the validation choice" in lower_is_better
    unclear = choice_on_test("B", "A", _rows(0.01, -0.02, 0.04, 0.02, 0.2), "mae", "MAE", size)
    assert (
        unclear == "B vs A: test MAE +0.010 (-0.020 to +0.040), p = 0.02 (Holm 0.2) - no detectable difference with 40 "
        "samples; a difference of 0.042 or more would be found with 80% power."
    )


def test_choice_on_test_turns_the_difference_round_when_the_choice_is_run_a() -> None:
    """The table holds B - A; the choice of A over B reads A - B, its interval flipped and in order."""
    text = choice_on_test("A", "B", _rows(0.05, 0.02, 0.08, 0.001, 0.003), "mae", "MAE", "40 samples")
    assert text.startswith("A vs B: test MAE -0.050 (-0.080 to -0.020)") and "contradict" in text


def test_choice_on_test_without_a_pair_or_a_p_value() -> None:
    assert choice_on_test("B", "C", _rows(0.05, 0.0, 0.1, 0.01, 0.01), "mae", "MAE", "x") == (
        "B vs C: not compared on the same test items."
    )
    few = choice_on_test("B", "A", _rows(0.05, 0.0, 0.1, np.nan, np.nan), "mae", "MAE", "3 cases")
    assert few == (
        "B vs A: test MAE +0.050 (+0.000 to +0.100) - too few units to test the difference (3 cases; a bootstrap "
        "test needs 10 or more)."
    )


def test_validation_noise_rescales_the_test_standard_error() -> None:
    # 100 test units, 25 validation units: the standard error doubles; 1.96 of them
    assert validation_noise(0.01, 100, 25) == pytest.approx(1.96 * 0.01 * 2)
    assert np.isnan(validation_noise(0.0, 100, 25)) and np.isnan(validation_noise(0.01, 100, 0))


def test_format_mean_std_over_seeds_equals_scipy() -> None:
    values = pd.Series([0.20, 0.25, 0.22])
    ci = stats.ttest_1samp(values, 0).confidence_interval()
    assert format_mean_std(values) == f"0.223 ± 0.025 [{ci.low:.3f}-{ci.high:.3f}] (3)"
    assert format_mean_std(pd.Series([0.5, np.nan])) == "0.500 ± – (1)"
    assert format_mean_std(pd.Series([np.nan])) == "n/a"
    assert format_mean_std(pd.Series([1.0, 2.0]), digits=1).startswith("1.5 ± 0.7 [")


def test_method_sentence_names_the_items_units_and_exact_tests() -> None:
    items = toy_items(["a", "b"], ["u", "u"], [0.1, 0.2])
    assert method_sentence(items, {"mae": "MAE"}, n_resamples=500) == (
        "Differences B - A between runs tested on the same samples: a 95% interval and p-value from a paired "
        "bootstrap (each of 500 resamples of the units applied to both runs); Wilcoxon signed-rank on samples for "
        "MAE."
    )
    assert method_sentence(None, {}) == "The runs keep no per-item test scores: they are compared by their values only."
    assert "each of 2000 resamples" in method_sentence(items, {})


def test_readable_comparisons_write_each_row_for_a_reader() -> None:
    rows = _rows(0.05, 0.02, 0.08, 0.0012345, 0.0037)
    exact = rows.assign(test="Wilcoxon signed-rank", ci_low=np.nan, ci_high=np.nan, mdd=np.nan, n_units=12)
    exact = exact.assign(value_b=np.nan)
    shown = readable_comparisons(pd.concat([rows, exact], ignore_index=True), {"mae": "MAE"})
    assert shown.to_dict("records") == [
        {"A": "A", "B": "B", "metric": "MAE", "A value": "0.300", "B value": "0.350"}
        | {"B - A (95% CI)": "+0.050 (+0.020 to +0.080)", "detectable (80% power)": "±0.042", "test": BOOTSTRAP_TEST}
        | {"n": "40", "p": "0.00123"}
        | {"p (Holm)": "0.0037"},
        {"A": "A", "B": "B", "metric": "MAE", "A value": "0.300", "B value": "nan"}
        | {"B - A (95% CI)": "+0.050", "detectable (80% power)": "", "test": "Wilcoxon signed-rank", "n": "12"}
        | {"p": "0.00123"}
        | {"p (Holm)": "0.0037"},
    ]


def test_metric_title_adds_the_unit_metrics_json_states(tmp_path: Path) -> None:
    run = load_run(write_toy_run(tmp_path / "r", 0.2, 0.2, units={"mae": "mm", "rmse": "fraction of y"}))
    assert metric_title(run, "mae") == "MAE (mm)"
    assert metric_title(run, "rmse") == "RMSE"  # a fraction needs no unit
    assert metric_title(run, "other") == "other"
