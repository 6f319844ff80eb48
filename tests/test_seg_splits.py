"""The split of the cases and the cross-validation folds of the training pool (:mod:`volume_seg.splits`)."""

from __future__ import annotations

from pathlib import Path

from common.folds import item_folds
from volume_seg.data import VolumeDataModule
from volume_seg.splits import split_cases


def test_split_as_a_function_matches_the_datamodule(tiny_la: Path) -> None:
    dm = VolumeDataModule(root=str(tiny_la), train_list="train.list", test_list="test.list", val_fraction=0.25)
    split, records = split_cases(tiny_la, "auto", "train.list", "test.list", 0.25, 0.2, 42)
    assert list(split.columns) == ["case", "split", "image"] and set(records) == set(split["case"])
    assert list(split["split"]) == ["train"] * 6 + ["val"] * 2 + ["test"] * 3
    dm.setup("fit")
    assert dm.split_table().equals(split)


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
