"""Bootstrap intervals and paired tests (common.stats) against scipy and hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from common.stats import (
    ScoredItems,
    aligned,
    bootstrap_intervals,
    bootstrap_p_value,
    holm,
    interval_fields,
    mcnemar_exact,
    paired_bootstrap,
    paired_t,
    resample_weights,
    t_interval,
    wilcoxon_signed_rank,
)


def _mean_items(values: np.ndarray, units: np.ndarray | None = None, name: str = "x") -> ScoredItems:
    """Items whose one statistic is the (weighted) mean of ``values``."""
    values = np.asarray(values, dtype=float)
    ids = np.array([f"item{i}" for i in range(len(values))], dtype=object)
    return ScoredItems(
        ids=ids,
        units=ids if units is None else np.asarray(units, dtype=object),
        unit_name="unit",
        item_name="item",
        statistics=lambda w: {name: w @ values / w.sum(axis=1)},
        per_item={name: values},
        item_tests={name: "Wilcoxon signed-rank"},
    )


def test_grouped_resampling_by_hand_two_lesions() -> None:
    """Lesion A has two correctly classified images, lesion B one wrong one: a resample draws two lesions, so
    its accuracy is 1 (A, A), 2/3 (A and B) or 0 (B, B); the images of A always move together."""
    correct = np.array([1.0, 1.0, 0.0])
    units = np.array(["A", "A", "B"], dtype=object)
    weights = resample_weights(units, 400, seed=3)
    assert (weights[:, 0] == weights[:, 1]).all()  # the lesion is never split
    assert set(map(tuple, weights.tolist())) == {(2.0, 2.0, 0.0), (1.0, 1.0, 1.0), (0.0, 0.0, 2.0)}
    items = _mean_items(correct, units)
    values = items.statistics(weights)["x"]
    drawn_a = weights[:, 0]  # how often lesion A was drawn (0, 1 or 2)
    hand = np.select([drawn_a == 2, drawn_a == 1], [1.0, 2 / 3], default=0.0)
    np.testing.assert_allclose(values, hand)
    # the three outcomes come with the binomial probabilities 1/4, 1/2, 1/4
    shares = [np.mean(drawn_a == k) for k in (0, 1, 2)]
    np.testing.assert_allclose(shares, [0.25, 0.5, 0.25], atol=0.07)


def test_no_unit_is_ever_split_and_each_resample_draws_every_unit_count() -> None:
    rng = np.random.default_rng(0)
    units = rng.integers(0, 40, 150).astype(str)
    weights = resample_weights(units, 300, seed=1)
    for unit in np.unique(units):
        columns = weights[:, units == unit]
        assert (columns == columns[:, :1]).all()
    first_of_unit = [np.flatnonzero(units == u)[0] for u in dict.fromkeys(units)]
    assert (weights[:, first_of_unit].sum(axis=1) == len(set(units))).all()


def test_interval_equals_scipy_percentile_bootstrap_with_the_same_resamples() -> None:
    x = np.random.default_rng(5).normal(0.7, 0.2, 40)
    ours = bootstrap_intervals(_mean_items(x), n_resamples=999, seed=7)["x"]["ci95"]
    ref = stats.bootstrap(
        (x,), np.mean, n_resamples=999, method="percentile", rng=np.random.default_rng(7), vectorized=True
    ).confidence_interval
    np.testing.assert_allclose(ours, [ref.low, ref.high], rtol=0, atol=1e-12)


def test_paired_interval_equals_scipy_paired_bootstrap() -> None:
    rng = np.random.default_rng(11)
    a = rng.normal(0.80, 0.05, 25)
    b = a + rng.normal(0.02, 0.03, 25)
    result = paired_bootstrap(_mean_items(a), _mean_items(b), n_resamples=1500, seed=2)["x"]
    ref = stats.bootstrap(
        (a, b),
        lambda x, y, axis: y.mean(axis=axis) - x.mean(axis=axis),
        paired=True,
        n_resamples=1500,
        method="percentile",
        rng=np.random.default_rng(2),
        vectorized=True,
    ).confidence_interval
    np.testing.assert_allclose([result["ci_low"], result["ci_high"]], [ref.low, ref.high], atol=1e-12)
    assert result["delta"] == pytest.approx(b.mean() - a.mean())
    assert result["p_value"] < 0.01  # a clear shift of +0.02 with little noise


def test_paired_bootstrap_of_identical_runs_is_zero_with_p_one_and_is_reproducible() -> None:
    x = np.random.default_rng(1).random(30)
    same = paired_bootstrap(_mean_items(x), _mean_items(x), 500, seed=4)["x"]
    assert (same["delta"], same["ci_low"], same["ci_high"], same["p_value"]) == (0.0, 0.0, 0.0, 1.0)
    y = x + np.random.default_rng(2).normal(0, 0.1, 30)
    first = paired_bootstrap(_mean_items(x), _mean_items(y), 500, seed=4)["x"]
    assert paired_bootstrap(_mean_items(x), _mean_items(y), 500, seed=4)["x"] == first
    assert paired_bootstrap(_mean_items(x), _mean_items(y), 500, seed=5)["x"]["ci_low"] != first["ci_low"]


def test_bootstrap_p_value_by_hand() -> None:
    # 3 of 9 resampled differences <= 0, 7 >= 0 (one is 0): p = 2 (1 + 3) / 10
    d = np.array([-0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, np.nan])
    assert bootstrap_p_value(d) == pytest.approx(0.8)


def test_pairing_refuses_other_items_and_other_groupings() -> None:
    x = np.arange(6, dtype=float)
    base = _mean_items(x, units=np.array(["l1", "l1", "l2", "l3", "l3", "l4"], dtype=object))
    other_ids = ScoredItems(
        ids=np.array([f"other{i}" for i in range(6)], dtype=object),
        units=base.units,
        unit_name="unit",
        item_name="item",
        statistics=base.statistics,
    )
    regrouped = _mean_items(x, units=np.array(["l1", "l2", "l2", "l3", "l3", "l4"], dtype=object))
    assert aligned(base, other_ids) is None
    assert aligned(base, regrouped) is None
    assert aligned(base, _mean_items(x[:5])) is None
    with pytest.raises(ValueError, match="not tested on the same items"):
        paired_bootstrap(base, other_ids, 100)
    # the same items in another order are paired item by item
    order = np.array([3, 0, 5, 1, 4, 2])
    shuffled = ScoredItems(
        ids=base.ids[order],
        units=base.units[order],
        unit_name="unit",
        item_name="item",
        statistics=lambda w: {"x": w @ x[order] / w.sum(axis=1)},
    )
    result = paired_bootstrap(base, shuffled, 300, seed=0)["x"]
    assert (result["delta"], result["ci_low"], result["ci_high"]) == pytest.approx((0.0, 0.0, 0.0), abs=1e-12)


def test_mcnemar_exact_by_hand() -> None:
    a = np.array([1] * 20 + [1] * 3 + [0] * 10 + [0] * 5, dtype=bool)
    b = np.array([1] * 20 + [0] * 3 + [1] * 10 + [0] * 5, dtype=bool)
    n = 13
    hand = min(1.0, 2 * sum(math.comb(n, k) for k in range(0, 4)) / 2**n)
    result = mcnemar_exact(a, b)
    assert (result["only_a"], result["only_b"], result["n_discordant"]) == (3, 10, 13)
    assert result["p_value"] == pytest.approx(hand, abs=1e-12)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_wilcoxon_uses_the_pairs_where_both_are_defined() -> None:
    a = np.array([0.80, 0.70, np.nan, 0.90, 0.85, 0.60, 0.75, 0.88])
    b = np.array([0.82, 0.74, 0.80, np.nan, 0.90, 0.61, 0.79, 0.95])
    result = wilcoxon_signed_rank(a, b)
    keep = [0, 1, 4, 5, 6, 7]
    assert result["n"] == 6
    assert result["p_value"] == pytest.approx(stats.wilcoxon(b[keep], a[keep]).pvalue, abs=1e-12)
    assert wilcoxon_signed_rank(a, a)["p_value"] == 1.0


def test_holm_by_hand() -> None:
    # m = 4 finite p-values; sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.03, 0.06, max(0.06, 0.04)
    adjusted = holm([0.01, 0.04, 0.03, np.nan, 0.005])
    np.testing.assert_allclose(adjusted, [0.03, 0.06, 0.06, np.nan, 0.02])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_t_intervals_equal_scipy() -> None:
    x = np.array([0.751, 0.746, 0.748, np.nan])
    ours = t_interval(x)
    ref = stats.ttest_1samp(x[:3], 0).confidence_interval()
    assert (ours["ci_low"], ours["ci_high"], ours["n"]) == (pytest.approx(ref.low), pytest.approx(ref.high), 3)
    a, b = np.array([0.56, 0.55, 0.57]), np.array([0.58, 0.56, 0.60])
    paired = paired_t(a, b)
    ref_rel = stats.ttest_rel(b, a)
    assert paired["p_value"] == pytest.approx(ref_rel.pvalue)
    ci = ref_rel.confidence_interval()
    assert (paired["ci_low"], paired["ci_high"]) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert np.isnan(t_interval([0.5])["ci_low"])


def _coverage(grouped: bool, repetitions: int = 200) -> float:
    """Share of 95% intervals that cover the true accuracy 0.7: 150 lesions of two images with the same
    outcome (a lesion is classified right or wrong as a whole)."""
    rng = np.random.default_rng(2024)
    covered = 0
    for rep in range(repetitions):
        lesion_correct = rng.random(150) < 0.7
        correct = np.repeat(lesion_correct, 2).astype(float)
        units = np.repeat(np.arange(150), 2) if grouped else None
        low, high = bootstrap_intervals(_mean_items(correct, units), 1000, seed=rep)["x"]["ci95"]
        covered += low <= 0.7 <= high
    return covered / repetitions


def test_coverage_of_the_grouped_interval_and_why_grouping_matters() -> None:
    grouped = _coverage(grouped=True)
    assert 0.90 <= grouped <= 0.99
    # resampling images as if independent makes the interval too narrow (~83% expected): lesions must move whole
    assert _coverage(grouped=False) < grouped - 0.05


def test_interval_fields_say_how_they_were_made_and_zero_resamples_turn_them_off() -> None:
    x = np.random.default_rng(0).random(20)
    items = _mean_items(x, units=np.repeat(np.arange(10), 2))
    fields = interval_fields(items, ["x"], 300, seed=9)
    assert fields["ci_unit"] == "unit" and fields["n_units"] == 10 and fields["ci_resamples"] == 300
    assert "percentile" in fields["ci_method"]
    low, high = fields["ci95"]["x"]
    assert low < x.mean() < high
    assert interval_fields(items, ["x"], 300, seed=9) == fields  # seeded: a rerun gives the same interval
    assert interval_fields(items, ["x"], 0) == {"ci_resamples": 0}


def test_undefined_values_are_left_out_as_the_point_estimate_leaves_them_out() -> None:
    values = np.array([0.9, np.nan, 0.8, np.nan])

    def defined_mean(w: np.ndarray) -> dict[str, np.ndarray]:
        keep = np.isfinite(values)
        total = w[:, keep].sum(axis=1)
        with np.errstate(invalid="ignore"):
            return {"hd": np.where(total > 0, w[:, keep] @ values[keep] / total, np.nan)}

    ids = np.array(list("abcd"), dtype=object)
    items = ScoredItems(ids=ids, units=ids, unit_name="case", item_name="case", statistics=defined_mean)
    result = bootstrap_intervals(items, 400, seed=0)["hd"]
    assert result["value"] == pytest.approx(0.85)
    # a resample of only the two undefined cases has no value: (2/4)^4 of resamples, about 25 of 400
    assert 5 <= result["n_undefined_resamples"] <= 50
    assert 0.8 <= result["ci95"][0] <= result["ci95"][1] <= 0.9
