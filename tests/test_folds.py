"""Cross-validation folds (``data.num_folds`` / ``data.fold``): disjoint, covering, lesion-grouped, stable for a
seed, and the test set the same for every fold and as without folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.errors import MedlitError
from common.folds import check_folds, item_folds
from lesion_cls.io import lesion_folds, read_labelled_table
from volume_seg.io import split_cases


def _ham_table(root: Path, **kwargs: object) -> pd.DataFrame:
    return read_labelled_table(root, "HAM10000_metadata.csv", "images", None, None, 0.15, 0.15, 42, **kwargs)


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


def test_volume_folds_cover_the_pool_once_and_keep_the_test_set(tiny_la: Path) -> None:
    args = (tiny_la, "la_h5", "train.list", "test.list", 0.2, 0.2, 42)
    plain, _ = split_cases(*args)
    splits = [split_cases(*args, num_folds=4, fold=k)[0] for k in range(4)]
    pool = set(plain.loc[plain["split"] != "test", "case"])
    validated = []
    for k, split in enumerate(splits):
        assert list(split.loc[split["split"] == "test", "case"]) == list(plain.loc[plain["split"] == "test", "case"])
        val = split.loc[split["split"] == "val"]
        assert (val["fold"] == k).all() and len(val) == 2  # 8 training cases in 4 folds
        validated += val["case"].tolist()
    assert sorted(validated) == sorted(pool)
    assert item_folds(sorted(pool), 4, 42) == item_folds(sorted(pool, reverse=True), 4, 42)  # order does not matter


@pytest.mark.parametrize(
    ("num_folds", "fold", "message"),
    [
        (1, 0, "data.num_folds must be 0 \\(no folds\\) or at least 2, got 1"),
        (-3, 0, "data.num_folds must be 0"),
        (5, 5, "data.fold must be in 0..4 for data.num_folds=5, got 5"),
        (5, -1, "data.fold must be in 0..4"),
        (0, 2, "data.fold=2 needs data.num_folds"),
    ],
)
def test_bad_fold_settings_are_one_line(num_folds: int, fold: int, message: str) -> None:
    with pytest.raises(MedlitError, match=message):
        check_folds(num_folds, fold)


def test_split_csv_records_the_fold(tiny_ham: Path, tiny_la: Path, tmp_path: Path) -> None:
    from lesion_cls.data import HAM10000DataModule
    from volume_seg.data import VolumeDataModule

    ham = HAM10000DataModule(root=str(tiny_ham), image_size=16, num_folds=3, fold=2, cache_dir=str(tmp_path))
    ham.setup("fit")
    table = ham.split_table()
    assert list(table.columns) == ["image_id", "lesion_id", "label", "class", "split", "fold"]
    assert set(table.loc[table["split"] == "val", "fold"]) == {2}
    la = VolumeDataModule(root=str(tiny_la), train_list="train.list", test_list="test.list", num_folds=4, fold=1)
    la.setup("fit")
    cases = la.split_table()
    assert list(cases.columns) == ["case", "split", "image", "fold"] and len(la.val_dataset) == 2
    with pytest.raises(MedlitError, match="data.fold must be in 0..3"):
        VolumeDataModule(root=str(tiny_la), num_folds=4, fold=4)
