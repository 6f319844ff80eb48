"""Cross-validation folds shared by the tasks: the ``data.num_folds`` / ``data.fold`` checks and folds of plain
items (e.g. cases); a task with groups or classes (lesions) makes its own with scikit-learn's splitters."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import KFold

from common.errors import MedlitError

__all__ = ["check_folds", "check_pool", "item_folds"]


def check_folds(num_folds: int, fold: int) -> None:
    """Refuse a ``data.num_folds`` of 1 or below 0, and a ``data.fold`` outside ``0 .. num_folds - 1``."""
    if num_folds == 1 or num_folds < 0:
        raise MedlitError(f"data.num_folds must be 0 (no folds) or at least 2, got {num_folds}")
    if num_folds and not 0 <= fold < num_folds:
        raise MedlitError(f"data.fold must be in 0..{num_folds - 1} for data.num_folds={num_folds}, got {fold}")
    if not num_folds and fold:
        raise MedlitError(f"data.fold={fold} needs data.num_folds (0 = no folds)")


def check_pool(num_folds: int, size: int, unit: str) -> None:
    """Refuse a pool of fewer ``unit`` (lesions, cases) than folds: some fold would validate on nothing."""
    if size < num_folds:
        raise MedlitError(f"data.num_folds={num_folds} needs at least {num_folds} {unit}, the pool has {size}")


def item_folds(items: Sequence[str], num_folds: int, seed: int) -> dict[str, int]:
    """The fold of each item: ``num_folds`` folds of (nearly) equal size, shuffled with ``seed``, the same for the
    same items in any order (they are sorted first).

    Raises:
        MedlitError: Fewer items than folds.
    """
    ordered = sorted(items)
    check_pool(num_folds, len(ordered), "cases")
    folds: dict[str, int] = {}
    splitter = KFold(n_splits=num_folds, shuffle=True, random_state=seed)
    for k, (_, held_out) in enumerate(splitter.split(np.arange(len(ordered)))):
        folds.update({ordered[i]: k for i in held_out})
    return folds
