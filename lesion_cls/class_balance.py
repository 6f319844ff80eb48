"""The class balance of a training split: the sampler's per-image draw weights and the class statistics the model
takes (loss weights, sampled priors, smoothed frequencies)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lesion_cls import CLASS_NAMES

__all__ = ["ClassStatistics", "class_statistics", "sampled_class_priors", "sampling_weights"]


def sampling_weights(labels: np.ndarray, power: float, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Per-image weights ``n_c ** -power`` (``n_c``: images of the image's class): class ``c`` is then drawn with
    probability proportional to ``n_c ** (1 - power)``: 0 = as in the data, 1 = every class equally often,
    0.5 = by the square root of the class sizes."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return counts[labels] ** -float(power)


def sampled_class_priors(labels: np.ndarray, power: float, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """The class frequencies the model sees when training images are drawn with :func:`sampling_weights`."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    mass = np.where(counts > 0, counts ** (1.0 - float(power)), 0.0)
    return mass / mass.sum()


@dataclass(frozen=True)
class ClassStatistics:
    """The class statistics of a training split that the model takes (through CLI links)."""

    loss_weights: list[float] | None
    """The loss's class weights (``model.loss_weights``; ``None`` for ``data.class_weights=none``)."""
    priors: list[float]
    """The class frequencies as the sampler draws them, for logit-adjusted losses (``model.class_priors``)."""
    frequencies: list[float]
    """As in the data, ``(n_c + 1) / (n + C)``, for the decision τ (``model.class_frequencies``)."""


def class_statistics(
    labels: np.ndarray, class_weights: str | Sequence[float], balance: float, num_classes: int = len(CLASS_NAMES)
) -> ClassStatistics:
    """:class:`ClassStatistics` of the training labels ``[N]`` (class indices) for ``data.class_weights``
    (``none``, ``balanced`` = ``n / (C * n_c)`` with 1 for an absent class, or the weights) and ``data.class_balance``
    (the sampler's power, :func:`sampling_weights`)."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    if isinstance(class_weights, str):
        balanced = np.where(counts > 0, len(labels) / (num_classes * np.maximum(counts, 1)), 1.0)
        weights = None if class_weights == "none" else [float(w) for w in balanced]
    else:
        weights = [float(w) for w in class_weights]
    smoothed = (counts + 1.0) / (counts + 1.0).sum()
    priors = [float(p) for p in sampled_class_priors(labels, float(balance), num_classes)]
    return ClassStatistics(weights, priors, [float(f) for f in smoothed])
