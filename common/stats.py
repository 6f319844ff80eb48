"""Confidence intervals and paired tests for test-set numbers, resampling the unit of independence.

A run's test items (images, cases) come as a :class:`ScoredItems`: their ids, the unit each belongs to (all images
of one lesion are resampled together; a case is its own unit), and a vectorised ``statistics(weights)`` that
returns every metric for a batch of resamples at once. A resample is a row of item weights: how many times the
item's unit was drawn (``weights`` of ones = the test set itself = the point estimate).

* :func:`bootstrap_intervals`: percentile bootstrap, ``n_resamples`` draws of the units with replacement, seeded
  (the same seed gives the same interval). The interval of a metric is the 2.5th and 97.5th percentile (numpy's
  linear quantile, as ``scipy.stats.bootstrap(method="percentile")``) of its values over the resamples where it
  is defined (e.g. a resample without a case of defined HD95 gives none; such resamples are counted).
* :func:`paired_bootstrap`: two runs on the same items, each resample applied to both; the interval of the
  difference B - A, and a two-sided p-value ``min(1, 2 (1 + min(#{d <= 0}, #{d >= 0})) / (n_resamples + 1))``.
* :func:`mcnemar_exact` (two-sided binomial test on the discordant items), :func:`wilcoxon_signed_rank`
  (``scipy.stats.wilcoxon`` on the items where both values are defined), :func:`holm` (Holm's step-down
  adjustment over a family of p-values), :func:`t_interval` and :func:`paired_t` (over seeds).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "BOOTSTRAP_RESAMPLES",
    "CHUNK_CELLS",
    "CONFIDENCE",
    "MIN_UNITS",
    "PAIRED_TESTS",
    "ScoredItems",
    "aligned",
    "bootstrap_intervals",
    "bootstrap_p_value",
    "holm",
    "interval_fields",
    "mcnemar_exact",
    "paired_bootstrap",
    "paired_t",
    "percentile_interval",
    "resample_weights",
    "resampled",
    "t_interval",
    "unit_codes",
    "wilcoxon_signed_rank",
]

BOOTSTRAP_RESAMPLES = 2000
"""Resamples of every bootstrap interval and paired test, unless a caller sets another number."""

CONFIDENCE = 0.95
"""The confidence level of every interval medlit reports."""

MIN_UNITS = 10
"""Below this many units a bootstrap repeats a handful of them: its intervals are too narrow (they are still
written, with a note) and no bootstrap p-value is reported."""

CHUNK_CELLS = 4_000_000
"""Resamples are processed in chunks of at most this many item weights (32 MB of float64)."""

Statistics = Callable[[np.ndarray], dict[str, np.ndarray]]
"""``weights [B, N] -> {metric: values [B]}``: every metric of ``B`` weighted resamples of ``N`` items."""


@dataclass(frozen=True)
class ScoredItems:
    """A run's test items as the statistics need them; built by a task (``metrics.scored_items``), read by
    :mod:`common.studies.paired`.

    Attributes:
        ids: Item ids (image or case ids), unique, in the order ``statistics`` expects its weight columns.
        units: The unit of independence of each item (lesion id, case id): resampled together.
        unit_name: What a unit is, for the reader (``lesion``, ``case``).
        item_name: What an item is (``image``, ``case``).
        statistics: Every metric of weighted resamples (:data:`Statistics`).
        per_item: Per-item values of some metrics, for the exact paired tests (e.g. ``accuracy``: 1 where the
            image is classified correctly; ``dice``: each case's Dice, NaN where undefined).
        item_tests: The exact paired test of each metric in ``per_item`` (a key of :data:`PAIRED_TESTS`).
    """

    ids: np.ndarray
    units: np.ndarray
    unit_name: str
    item_name: str
    statistics: Statistics
    per_item: Mapping[str, np.ndarray] = field(default_factory=dict)
    item_tests: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.units):
            raise ValueError(f"{len(self.ids)} item ids but {len(self.units)} units")
        if len(pd.unique(self.ids)) != len(self.ids):
            raise ValueError("item ids must be unique")

    @property
    def n_items(self) -> int:
        return len(self.ids)

    @property
    def n_units(self) -> int:
        return len(pd.unique(self.units))

    def point(self) -> dict[str, float]:
        """Every metric on the test set itself (all weights one)."""
        return {k: float(v[0]) for k, v in self.statistics(np.ones((1, self.n_items))).items()}

    def size(self) -> str:
        """``198 images / 150 lesions`` (or ``20 cases`` when each item is its own unit)."""
        items = f"{self.n_items} {self.item_name}s"
        return items if self.n_units == self.n_items else f"{items} / {self.n_units} {self.unit_name}s"


def unit_codes(units: Sequence[Any] | np.ndarray) -> tuple[np.ndarray, int]:
    """Each item's unit as an integer ``0 .. K-1`` in order of first appearance, and ``K``."""
    codes, uniques = pd.factorize(np.asarray(units, dtype=object), sort=False)
    return codes.astype(np.int64), len(uniques)


def _unit_draws(n_units: int, n_resamples: int, seed: int) -> np.ndarray:
    """``[n_resamples, n_units]`` unit indices drawn with replacement (the draws of ``scipy.stats.bootstrap``
    with ``rng=np.random.default_rng(seed)``, so that one-item units reproduce its resamples exactly)."""
    return np.random.default_rng(seed).integers(0, n_units, (n_resamples, n_units))


def _weights_of_draws(draws: np.ndarray, codes: np.ndarray, n_units: int) -> np.ndarray:
    """Item weights ``[B, N]`` of unit draws ``[B, K]``: how often each item's unit was drawn."""
    b = len(draws)
    counts = np.bincount((np.arange(b)[:, None] * n_units + draws).ravel(), minlength=b * n_units)
    return counts.reshape(b, n_units)[:, codes].astype(np.float64)


def resample_weights(units: Sequence[Any] | np.ndarray, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Item weights ``[n_resamples, N]`` of a bootstrap over the units: all items of a unit share its count."""
    codes, k = unit_codes(units)
    return _weights_of_draws(_unit_draws(k, n_resamples, seed), codes, k)


def resampled(
    statistics: Sequence[Statistics], units: np.ndarray, n_resamples: int, seed: int
) -> list[dict[str, np.ndarray]]:
    """Each of ``statistics`` over the same resamples (chunked so that memory stays bounded)."""
    codes, k = unit_codes(units)
    draws = _unit_draws(k, n_resamples, seed)
    chunk = max(1, CHUNK_CELLS // max(1, len(codes)))
    parts: list[list[dict[str, np.ndarray]]] = [[] for _ in statistics]
    for start in range(0, n_resamples, chunk):
        weights = _weights_of_draws(draws[start : start + chunk], codes, k)
        for part, statistic in zip(parts, statistics, strict=True):
            part.append(statistic(weights))
    return [{name: np.concatenate([p[name] for p in part]) for name in part[0]} for part in parts]


def percentile_interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The percentile interval of bootstrap ``samples`` (NaN samples left out; NaNs when none is finite)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_intervals(
    items: ScoredItems, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, dict[str, Any]]:
    """``{metric: {"value", "ci95": [low, high], "n_undefined_resamples"}}`` for every metric of ``items``."""
    point = items.point()
    (samples,) = resampled([items.statistics], items.units, n_resamples, seed)
    return {
        name: {
            "value": point[name],
            "ci95": list(percentile_interval(values, confidence)),
            "n_undefined_resamples": int((~np.isfinite(values)).sum()),
        }
        for name, values in samples.items()
    }


def interval_fields(
    items: ScoredItems, metrics: Sequence[str], n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """What ``metrics.json`` gains: ``ci95`` (metric → ``[low, high]``) for ``metrics`` and how it was made
    (``ci_method``, ``ci_unit``, ``n_units``, ...); only ``ci_resamples: 0`` when ``n_resamples`` is 0 (off)."""
    if n_resamples <= 0 or items.n_items == 0:
        return {"ci_resamples": 0}  # says that intervals were turned off (a reader does not bootstrap them)
    intervals = bootstrap_intervals(items, n_resamples, seed)
    few = items.n_units < MIN_UNITS
    note = (
        {"ci_note": f"only {items.size()}: a bootstrap over fewer than {MIN_UNITS} units understates the uncertainty"}
        if few
        else {}
    )
    return note | {
        "ci95": {name: intervals[name]["ci95"] for name in metrics if name in intervals},
        "ci_method": f"percentile bootstrap over {items.unit_name}s ({n_resamples} resamples, seed {seed}, "
        f"{int(CONFIDENCE * 100)}%); a resample where a metric is undefined is left out of its interval",
        "ci_unit": items.unit_name,
        "n_units": items.n_units,
        "ci_resamples": n_resamples,
        "ci_seed": seed,
        "ci_undefined_resamples": {
            name: intervals[name]["n_undefined_resamples"]
            for name in metrics
            if name in intervals and intervals[name]["n_undefined_resamples"]
        },
    }


def aligned(a: ScoredItems, b: ScoredItems) -> np.ndarray | None:
    """Position in ``b`` of each item of ``a`` when both hold the same items grouped into the same units
    (``None`` otherwise: such runs are never paired)."""
    if a.n_items != b.n_items:
        return None
    position = pd.Index(b.ids).get_indexer(a.ids)
    if (position < 0).any():
        return None
    same_units = pd.Series(a.units).groupby(pd.Series(b.units[position])).nunique().max() == 1
    return position if same_units and a.n_units == b.n_units else None


def bootstrap_p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value of ``H0: difference = 0`` from resampled differences (NaN ones left out)."""
    finite = differences[np.isfinite(differences)]
    if finite.size == 0:
        return float("nan")
    tail = min(int((finite <= 0).sum()), int((finite >= 0).sum()))
    return min(1.0, 2 * (1 + tail) / (finite.size + 1))


def paired_bootstrap(
    a: ScoredItems,
    b: ScoredItems,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> dict[str, dict[str, float]]:
    """``{metric: {"value_a", "value_b", "delta", "ci_low", "ci_high", "p_value"}}``: B - A with each resample
    of the units applied to both runs. Refuses runs on different items."""
    position = aligned(a, b)
    if position is None:
        raise ValueError("the two runs were not tested on the same items: they cannot be paired")

    def b_in_a_order(weights: np.ndarray) -> dict[str, np.ndarray]:
        reordered = np.empty_like(weights)
        reordered[:, position] = weights
        return b.statistics(reordered)

    samples_a, samples_b = resampled([a.statistics, b_in_a_order], a.units, n_resamples, seed)
    point_a, point_b = a.point(), b.point()
    out = {}
    for name in samples_a.keys() & samples_b.keys():
        differences = samples_b[name] - samples_a[name]
        low, high = percentile_interval(differences, confidence)
        out[name] = {
            "value_a": point_a[name],
            "value_b": point_b[name],
            "delta": point_b[name] - point_a[name],
            "ci_low": low,
            "ci_high": high,
            "p_value": bootstrap_p_value(differences),
            "se": float(np.nanstd(differences, ddof=1)) if np.isfinite(differences).sum() > 1 else float("nan"),
        }
    return out


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> dict[str, float]:
    """Exact McNemar test: two-sided binomial test (p = 1/2) of the items only one run got right.

    Returns ``{"p_value", "n_discordant", "only_a", "only_b"}``; p = 1 when no item is discordant.
    """
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    p = stats.binomtest(only_a, n, 0.5).pvalue if n else 1.0
    return {"p_value": float(p), "n_discordant": n, "only_a": only_a, "only_b": only_b}


def wilcoxon_signed_rank(values_a: np.ndarray, values_b: np.ndarray) -> dict[str, float]:
    """``scipy.stats.wilcoxon`` of B - A over the items where both values are defined (``n`` of them); p = 1
    when every difference is 0, NaN with no pair."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    n = int(both.sum())
    if n == 0:
        return {"p_value": float("nan"), "n": 0}
    if np.all(a[both] == b[both]):
        return {"p_value": 1.0, "n": n}
    return {"p_value": float(stats.wilcoxon(b[both], a[both]).pvalue), "n": n}


def _mcnemar(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    result = mcnemar_exact(a, b)
    return {"p_value": result["p_value"], "n": result["n_discordant"]}


PAIRED_TESTS: dict[str, Callable[[np.ndarray, np.ndarray], dict[str, float]]] = {
    "exact McNemar": _mcnemar,
    "Wilcoxon signed-rank": wilcoxon_signed_rank,
}
"""Exact paired tests by name: ``(per-item values of A, of B) -> {"p_value", "n"}`` (``n``: discordant items
for McNemar, pairs with both values defined for Wilcoxon)."""


def holm(p_values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error) of the finite ``p_values``; NaN stays NaN."""
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    finite = np.flatnonzero(np.isfinite(p))
    m = finite.size
    order = finite[np.argsort(p[finite], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean, sample std and the Student-t interval of the mean over the finite ``values`` (e.g. seeds)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = int(x.size)
    mean = float(x.mean()) if n else float("nan")
    if n < 2:
        return {"mean": mean, "std": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": n}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": n}


def paired_t(values_a: Sequence[float], values_b: Sequence[float], confidence: float = CONFIDENCE) -> dict[str, float]:
    """B - A over paired values (e.g. the same seeds): mean difference, its t-interval and the paired t-test's
    two-sided p-value (NaN with fewer than 2 pairs)."""
    a, b = np.asarray(values_a, dtype=np.float64), np.asarray(values_b, dtype=np.float64)
    both = np.isfinite(a) & np.isfinite(b)
    diff = t_interval(b[both] - a[both], confidence)
    if diff["n"] < 2:
        p = float("nan")
    elif np.all(b[both] - a[both] == (b[both] - a[both])[0]):
        p = 1.0 if (b[both] - a[both])[0] == 0 else 0.0  # no spread: t is 0 or infinite
    else:
        p = float(stats.ttest_rel(b[both], a[both]).pvalue)
    return {**diff, "p_value": p}
