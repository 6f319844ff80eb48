"""The split of the cases into train, val and test: the case lists, a held-out fraction, or the cross-validation
folds of the training pool."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.model_selection import train_test_split

from common.errors import MedlitError
from common.folds import item_folds
from volume_seg.io import discover_cases, read_case_list

__all__ = ["split_cases"]


def _listed_cases(root: Path, list_name: str, known: Mapping[str, Any]) -> list[str]:
    """The cases of the list file ``root / list_name``, refusing names that are not cases."""
    names = read_case_list(root / list_name)
    missing = [n for n in names if n not in known]
    if missing:
        shown = ", ".join(f"'{n}'" for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise MedlitError(f"{root / list_name}: {len(missing)} case(s) not found under {root}: {shown}")
    return names


def split_cases(
    root: Path,
    layout: str,
    train_list: str | None,
    test_list: str | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    num_folds: int = 0,
    fold: int = 0,
) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """Cases into ``train``, ``val`` and ``test``: test from ``test_list`` (or a ``test_fraction`` held out),
    validation a ``val_fraction`` of the training pool (``train_list``, default every other case), or with
    ``num_folds >= 2`` fold ``fold`` of the pool's cross-validation folds (:func:`common.folds.item_folds`; the
    test cases do not change with the fold).

    Returns:
        The case table (``case, split, image``, and ``fold`` with folds, -1 for test; train, val, test, each sorted
        by case) and the discovery record of every case by name.

    Raises:
        MedlitError: Discovery problems, listed cases that do not exist, a case in both lists, fewer than 2
            training cases.
    """
    _, records = discover_cases(root, layout)
    by_case = {r["case"]: r for r in records}
    test = _listed_cases(root, test_list, by_case) if test_list else []
    pool = _listed_cases(root, train_list, by_case) if train_list else [c for c in by_case if c not in set(test)]
    leaked = sorted(set(pool) & set(test))
    if leaked:
        raise MedlitError(f"case '{leaked[0]}' is in both {train_list} and {test_list}")
    if not test and test_fraction > 0:
        pool, test = train_test_split(pool, test_size=test_fraction, random_state=split_seed)
    if len(pool) < 2:
        raise MedlitError(f"{root}: need at least 2 training cases to hold one out for validation")
    if num_folds:
        folds = item_folds(pool, num_folds, split_seed)
        train, val = [c for c in pool if folds[c] != fold], [c for c in pool if folds[c] == fold]
    else:
        n_val = max(1, round(val_fraction * len(pool)))
        train, val = train_test_split(sorted(pool), test_size=n_val, random_state=split_seed)
    rows = [(c, s) for s, cases in (("train", train), ("val", val), ("test", test)) for c in sorted(cases)]
    split = pd.DataFrame(rows, columns=["case", "split"])
    split["image"] = [by_case[c]["image"] for c in split["case"]]
    if num_folds:
        split["fold"] = [folds.get(c, -1) for c in split["case"]]
    return split, by_case
