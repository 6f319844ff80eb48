"""The sampler's draw weights and the class statistics of a training split (``lesion_cls.class_balance``)."""

from __future__ import annotations

import numpy as np
import torch

from lesion_cls.class_balance import class_statistics, sampled_class_priors, sampling_weights


def test_sampling_power_gives_the_class_probabilities() -> None:
    """Power p: class c drawn in proportion to n_c ** (1 - p); checked in closed form and by drawing."""
    labels = np.repeat(np.arange(7), [100, 400, 25, 16, 9, 4, 1])
    counts = np.bincount(labels).astype(float)
    for power in (0.0, 0.5, 1.0):
        weights = sampling_weights(labels, power)
        by_class = np.bincount(labels, weights=weights) / weights.sum()
        expected = counts ** (1 - power) / (counts ** (1 - power)).sum()
        np.testing.assert_allclose(by_class, expected, rtol=1e-12)
        np.testing.assert_allclose(sampled_class_priors(labels, power), expected, rtol=1e-12)
    np.testing.assert_allclose(
        sampled_class_priors(labels, 0.5)[:2], np.array([10, 20]) / (10 + 20 + 5 + 4 + 3 + 2 + 1)
    )
    drawn = torch.multinomial(
        torch.as_tensor(sampling_weights(labels, 0.5)),
        200_000,
        replacement=True,
        generator=torch.Generator().manual_seed(0),
    ).numpy()
    shares = np.bincount(labels[drawn], minlength=7) / len(drawn)
    np.testing.assert_allclose(shares, sampled_class_priors(labels, 0.5), atol=0.005)


def test_class_statistics_weights_priors_and_frequencies() -> None:
    """``balanced`` weights are ``n / (C * n_c)`` (1 for an absent class), ``none`` is no weights, an explicit list is
    kept; the priors follow the sampler's power; the frequencies count each class once more."""
    labels = np.array([0, 0, 0, 1, 2, 2])
    balanced = class_statistics(labels, "balanced", 0.0)
    np.testing.assert_allclose(balanced.loss_weights, [6 / 21, 6 / 7, 6 / 14, 1.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(balanced.priors, [3 / 6, 1 / 6, 2 / 6, 0, 0, 0, 0])
    np.testing.assert_allclose(balanced.frequencies, np.array([4, 2, 3, 1, 1, 1, 1]) / 13)
    assert class_statistics(labels, "none", 0.0).loss_weights is None
    explicit = class_statistics(labels, [1, 2, 3, 4, 5, 6, 7], 1.0)
    assert explicit.loss_weights == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    np.testing.assert_allclose(explicit.priors, [1 / 3, 1 / 3, 1 / 3, 0, 0, 0, 0])
