"""BCa intervals over a run's test units, and the smallest difference a paired comparison could detect.

The percentile interval (:func:`common.stats.bootstrap_intervals`) drifts when a statistic is skewed or biased
under resampling: balanced accuracy over a few rare-class lesions is the typical case (a resample that misses the
only dermatofibroma lesion shifts one class recall to undefined or 0). The BCa interval (bias-corrected and
accelerated, Efron 1987; Efron & Tibshirani 1993, 14.3) moves the percentiles by

* the bias ``z0 = Φ⁻¹(share of resampled values below the estimate, ties counted half)``, and
* the acceleration ``a = Σ d³ / (6 (Σ d²)^1.5)``, with ``d`` the deviations of the leave-one-unit-out values from
  their mean: a *grouped* jackknife that leaves out one lesion (all its images) or one case at a time,

to ``α₁ = Φ(z0 + (z0 + z_α) / (1 - a (z0 + z_α)))`` and ``α₂`` likewise with ``z_{1-α}``. With one item per unit
and the same resamples it is ``scipy.stats.bootstrap(method="BCa")`` exactly (tests/test_intervals.py).

:func:`minimum_detectable_difference`: ``(z_{1-α/2} + z_{power}) · se`` with ``se`` the paired-bootstrap standard
error of the difference: the true difference a two-sided test at 5 % finds with 80 % power on these test items. A
comparison that finds "no detectable difference" says nothing about differences smaller than this.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from common.stats import BOOTSTRAP_RESAMPLES, CHUNK_CELLS, CONFIDENCE, ScoredItems, resampled, unit_codes

__all__ = ["POWER", "bca_intervals", "jackknife_values", "minimum_detectable_difference"]

POWER = 0.8
"""The power of :func:`minimum_detectable_difference`."""


def jackknife_values(items: ScoredItems) -> dict[str, np.ndarray]:
    """Every metric with one unit left out at a time: ``{metric: [K]}`` in the order of first appearance of the
    units (:func:`common.stats.unit_codes`)."""
    codes, k = unit_codes(items.units)
    chunk = max(1, CHUNK_CELLS // max(1, len(codes)))
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, k, chunk):
        left_out = np.arange(start, min(k, start + chunk))
        weights = (codes[None, :] != left_out[:, None]).astype(np.float64)
        parts.append(items.statistics(weights))
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def _acceleration(jackknifed: np.ndarray) -> float:
    finite = jackknifed[np.isfinite(jackknifed)]
    deviations = finite.mean() - finite if finite.size else finite
    spread = float((deviations**2).sum())
    return float((deviations**3).sum() / (6 * spread**1.5)) if spread > 0 else 0.0


def _bias(samples: np.ndarray, estimate: float) -> float:
    """``z0``: the standard normal quantile of the share of resampled values below the estimate (ties count half)."""
    below = (np.count_nonzero(samples < estimate) + np.count_nonzero(samples <= estimate)) / (2 * samples.size)
    return float(ndtri(below))


def _bca_percentiles(z0: float, acceleration: float, confidence: float) -> np.ndarray:
    z = ndtri(np.array([(1 - confidence) / 2, (1 + confidence) / 2]))
    return ndtr(z0 + (z0 + z) / (1 - acceleration * (z0 + z)))


def bca_intervals(
    items: ScoredItems, n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE
) -> dict[str, dict[str, Any]]:
    """``{metric: {"value", "ci95": [low, high], "acceleration", "bias_z0"}}``: the BCa interval of every metric of
    ``items`` over the same resamples as :func:`common.stats.bootstrap_intervals` (NaN resamples left out; NaNs
    when the interval is undefined, e.g. every resample equals the estimate)."""
    point = items.point()
    (samples,) = resampled([items.statistics], items.units, n_resamples, seed)
    jackknifed = jackknife_values(items)
    out: dict[str, dict[str, Any]] = {}
    for name, values in samples.items():
        finite, estimate = values[np.isfinite(values)], point[name]
        acceleration = _acceleration(jackknifed[name])
        interval = [float("nan"), float("nan")]
        z0 = float("nan")
        if finite.size and np.isfinite(estimate):
            z0 = _bias(finite, estimate)
            percentiles = _bca_percentiles(z0, acceleration, confidence)
            if np.isfinite(percentiles).all():
                interval = [float(v) for v in np.quantile(finite, percentiles)]
        out[name] = {"value": estimate, "ci95": interval, "acceleration": acceleration, "bias_z0": z0}
    return out


def minimum_detectable_difference(se: float, confidence: float = CONFIDENCE, power: float = POWER) -> float:
    """The smallest true difference a two-sided test at level ``1 - confidence`` detects with ``power``, for a
    difference whose standard error is ``se``: ``(z_{1-α/2} + z_{power}) · se`` (NaN when ``se`` is)."""
    if not np.isfinite(se):
        return float("nan")
    return float((ndtri(1 - (1 - confidence) / 2) + ndtri(power)) * se)
