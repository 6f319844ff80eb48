"""Cross-validation folds (``data.num_folds`` / ``data.fold``): the setting checks (:mod:`common.folds`) and the
fold each DataModule records in ``split.csv`` (the folds themselves: ``test_cls_splits.py``, ``test_seg_splits.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import MedlitError
from common.folds import check_folds


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
