"""The shared test-metrics writer: intervals over the units by hand, a task hook that places them, metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.errors import MedlitError
from common.scoring import check_resamples, write_metrics
from common.stats import ScoredItems, resample_weights

VALUES = np.array([0.2, 0.4, 0.9, 0.7, 0.1, 0.3, 0.8, 0.6, 0.5, 0.5, 0.0, 1.0])
PART = np.array([1.0, 3.0, 2.0, 5.0, 4.0, 4.0, 0.0, 2.0, 6.0, 1.0, 3.0, 3.0])
UNITS = np.repeat([f"u{k}" for k in range(6)], 2)  # two items per unit, drawn together


def _items(values: np.ndarray = VALUES) -> ScoredItems:
    """``score``: the weighted mean of ``values``; ``part/score``: that of :data:`PART` (a nested summary's)."""

    def statistics(weights: np.ndarray) -> dict[str, np.ndarray]:
        total = weights.sum(axis=1)
        return {"score": weights @ values / total, "part/score": weights @ PART / total}

    ids = np.array([f"item{i}" for i in range(len(values))], dtype=object)
    return ScoredItems(ids=ids, units=UNITS, unit_name="unit", item_name="item", statistics=statistics)


def _summary() -> dict[str, Any]:
    return {"score": {"mean": float(VALUES.mean())}, "parts": {"part": {"score": {"mean": float(PART.mean())}}}}


def _place(summary: dict[str, Any], name: str, interval: list[float]) -> bool:
    """A toy task's hook: ``part/<metric>`` goes to ``parts.part.<metric>.ci95`` only; the rest also stays in ci95."""
    group, _, metric = name.rpartition("/")
    (summary["parts"][group] if group else summary)[metric]["ci95"] = interval
    return not group


def _reference(values: np.ndarray, n_resamples: int, seed: int) -> list[float]:
    """The percentile interval by hand: the weighted means of the unit resamples, their 2.5th and 97.5th percentile."""
    weights = resample_weights(UNITS, n_resamples, seed)
    means = weights @ values / weights.sum(axis=1)
    return [float(q) for q in np.quantile(means, [0.025, 0.975])]


def test_intervals_are_the_percentiles_of_the_unit_resamples_and_the_hook_places_them(tmp_path: Path) -> None:
    summary = _summary()
    metrics = write_metrics(tmp_path, summary, _items(), ["score", "part/score"], n_resamples=300, seed=3, place=_place)
    assert metrics["ci95"] == {"score": pytest.approx(_reference(VALUES, 300, 3), abs=1e-12)}
    assert metrics["score"]["ci95"] == metrics["ci95"]["score"]  # placed, and kept in ci95
    assert metrics["parts"]["part"]["score"]["ci95"] == pytest.approx(_reference(PART, 300, 3), abs=1e-12)
    assert "part/score" not in metrics["ci95"]  # placed only
    assert summary["score"]["ci95"] == metrics["score"]["ci95"]  # the summary is changed in place
    assert list(metrics)[:4] == ["score", "parts", "ci_note", "ci95"]  # the summary first, then the intervals
    assert metrics["ci_method"] == (
        "percentile bootstrap over units (300 resamples, seed 3, 95%); a resample where a metric is undefined is "
        "left out of its interval"
    )
    assert (metrics["ci_unit"], metrics["n_units"], metrics["ci_resamples"], metrics["ci_seed"]) == ("unit", 6, 300, 3)
    assert "6 units" in metrics["ci_note"]  # fewer than 10 units: the intervals say they are too narrow
    lo, hi = metrics["ci95"]["score"]
    assert lo < VALUES.mean() < hi


def test_metrics_json_holds_what_is_returned(tmp_path: Path) -> None:
    metrics = write_metrics(tmp_path, _summary(), _items(), ["score", "part/score"], 100, 2, _place)
    text = (tmp_path / "metrics.json").read_text()
    assert json.loads(text) == metrics and text.startswith('{\n  "score": {') and text.endswith("}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]  # written atomically, nothing else


def test_a_value_every_item_shares_has_a_zero_width_interval(tmp_path: Path) -> None:
    metrics = write_metrics(tmp_path, {"score": {}}, _items(np.full(12, 0.25)), ["score"], 50, 0, _place)
    assert metrics["ci95"]["score"] == pytest.approx([0.25, 0.25], abs=1e-15)
    assert metrics["score"]["ci95"] == metrics["ci95"]["score"]


def test_no_resamples_no_intervals_and_no_hook_call(tmp_path: Path) -> None:
    def refuse(*_: Any) -> bool:
        raise AssertionError("the hook was called without intervals")

    off = write_metrics(tmp_path, _summary(), _items(), ["score"], 0, 0, refuse)
    assert off == {**_summary(), "ci_resamples": 0} == json.loads((tmp_path / "metrics.json").read_text())
    unplaced = write_metrics(tmp_path, _summary(), _items(), ["score", "part/score"], 40, 1)  # no hook: all in ci95
    assert set(unplaced["ci95"]) == {"score", "part/score"} and "ci95" not in unplaced["score"]


def test_check_resamples_refuses_a_negative_number() -> None:
    check_resamples(0)
    check_resamples(2000)
    with pytest.raises(MedlitError, match=r"^outputs.bootstrap must be >= 0 \(0 = no intervals\), got -1$"):
        check_resamples(-1)
