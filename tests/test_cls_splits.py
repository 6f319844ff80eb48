"""The lesion-grouped split, the cross-validation folds and the labelled table (``lesion_cls.splits``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.io import read_ham_metadata
from lesion_cls.splits import absent_classes, lesion_folds, read_labelled_table, split_by_lesion, split_summary


def _lesion_table(n_lesions: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for lesion in range(n_lesions):
        label = int(rng.choice(7, p=[0.11, 0.67, 0.05, 0.03, 0.11, 0.015, 0.015]))
        for view in range(int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))):
            rows.append({"image_id": f"I{lesion}_{view}", "lesion_id": f"L{lesion}", "label": label})
    return pd.DataFrame(rows)


def test_split_groups_lesions_and_stratifies() -> None:
    table = _lesion_table()
    split = split_by_lesion(table, val_fraction=0.15, test_fraction=0.2, seed=1)
    assert set(split) == {"train", "val", "test"}
    per_lesion = pd.Series(split).groupby(table["lesion_id"]).nunique()
    assert (per_lesion == 1).all(), "a lesion has images in two splits"
    lesion_split = pd.Series(split, index=table["lesion_id"]).groupby(level=0).first()
    n = len(lesion_split)
    assert (lesion_split == "test").sum() == pytest.approx(0.2 * n, abs=2)
    assert (lesion_split == "val").sum() == pytest.approx(0.15 * n, abs=2)
    overall = table["label"].value_counts(normalize=True)
    for name in ("train", "test"):
        share = table.loc[split == name, "label"].value_counts(normalize=True)
        assert abs(share[1] - overall[1]) < 0.04  # NV share kept


def test_split_is_seeded() -> None:
    table = _lesion_table()
    a = split_by_lesion(table, 0.15, 0.15, seed=7)
    assert (a == split_by_lesion(table, 0.15, 0.15, seed=7)).all()
    assert (a != split_by_lesion(table, 0.15, 0.15, seed=8)).any()


def test_read_labelled_table_splits_the_metadata(tiny_ham: Path) -> None:
    data = read_labelled_table(tiny_ham, "HAM10000_metadata.csv", "images", None, None, 0.15, 0.15, 42)
    table = data.table
    assert (data.layout, data.unit, data.class_names) == ("ham10000", "lesion", CLASS_NAMES)
    metadata = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    expected = split_by_lesion(metadata, 0.15, 0.15, 42)
    assert table.columns.tolist() == ["image_id", "lesion_id", "label", "path", "split"]
    assert (table["split"].to_numpy() == expected).all()
    lines = split_summary(table).splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["test", "train", "val"]
    assert sum(int(line.split(":")[1].split("images")[0]) for line in lines) == len(table)


def test_a_class_absent_from_a_split_is_a_warning_not_an_error() -> None:
    labels = {"train": list(range(7)) * 2, "val": [0, 1, 2, 3, 4, 6], "test": list(range(7))}
    table = pd.DataFrame([{"split": split, "label": label} for split, values in labels.items() for label in values])
    assert absent_classes(table) == [
        "the val split has no DF image: its validation recall is undefined: balanced accuracy (torchmetrics' macro "
        "recall) leaves the class out while it is never predicted there, and counts it as 0 once it is"
    ]
    assert absent_classes(table[table["split"] != "val"]) == []  # a split that is not there is not warned about


def _ham_table(root: Path, **kwargs: object) -> pd.DataFrame:
    return read_labelled_table(root, "HAM10000_metadata.csv", "images", None, None, 0.15, 0.15, 42, **kwargs).table


def test_lesion_folds_are_grouped_stratified_and_seeded() -> None:
    rng = np.random.default_rng(0)
    lesions = [f"L{i}" for i in range(300)]
    label_of = {lesion: int(rng.choice(7, p=[0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02])) for lesion in lesions}
    rows = [(lesion, label_of[lesion]) for lesion in lesions for _ in range(int(rng.integers(1, 4)))]
    table = pd.DataFrame(rows, columns=["lesion_id", "label"])
    folds = lesion_folds(table, 5, seed=7)
    assert set(folds) == {0, 1, 2, 3, 4}
    assert (table.assign(fold=folds).groupby("lesion_id")["fold"].nunique() == 1).all()  # a lesion never split
    share_nv = [float((table["label"][folds == k] == 1).mean()) for k in range(5)]
    assert max(share_nv) - min(share_nv) < 0.1  # stratified: NV about as common in every fold
    np.testing.assert_array_equal(folds, lesion_folds(table, 5, seed=7))
    assert not np.array_equal(folds, lesion_folds(table, 5, seed=8))
    with pytest.raises(MedlitError, match="data.num_folds=5 needs at least 5 lesions, the pool has 3"):
        lesion_folds(table[table["lesion_id"].isin(lesions[:3])], 5, seed=0)


def test_ham_folds_cover_the_pool_once_and_keep_the_test_set(tiny_ham: Path) -> None:
    plain = _ham_table(tiny_ham)
    tables = [_ham_table(tiny_ham, num_folds=4, fold=k) for k in range(4)]
    test = set(plain.loc[plain["split"] == "test", "image_id"])
    validated: list[str] = []
    for k, table in enumerate(tables):
        assert set(table.loc[table["split"] == "test", "image_id"]) == test  # the test set never moves
        assert (table.loc[table["split"] == "test", "fold"] == -1).all()
        val = table.loc[table["split"] == "val"]
        assert (val["fold"] == k).all() and not (table.loc[table["split"] == "train", "fold"] == k).any()
        validated += val["image_id"].tolist()
        pd.testing.assert_series_equal(table["fold"], tables[0]["fold"])  # one assignment, whichever fold runs
    assert sorted(validated) == sorted(set(plain["image_id"]) - test)  # every non-test image validated once
    assert "fold" not in plain
