"""The dataset check as a function (``lesion_cls.check``); through the CLI: ``test_check.py``."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lesion_cls.check import check_ham_dataset


def test_check_ham_dataset(tiny_ham: Path, tmp_path: Path) -> None:
    check = check_ham_dataset(tiny_ham, "HAM10000_metadata.csv", "images", full=True)
    assert check.ok and check.summary["HAM10000_metadata.csv: images"].startswith("240 (")
    assert "decoded images (240)" in check.summary
    broken = check_ham_dataset(tmp_path, "HAM10000_metadata.csv", "images", full=False)
    assert not broken.ok and "file not found" in broken.problems[0].what


def test_own_layouts_count_groups_only_where_there_are_groups(tmp_path: Path) -> None:
    from lesion_cls.check import check_own_dataset
    from lesion_cls.synthetic import generate_own_classes

    generate_own_classes(tmp_path / "folders", ["a", "b"], "folders", n_images=20, size_hw=(16, 16))
    generate_own_classes(tmp_path / "csv", ["a", "b"], "csv", n_images=20, size_hw=(16, 16))
    folders = check_own_dataset(tmp_path / "folders", "labels.csv", "images", full=False)
    assert folders.ok and folders.summary["folders: images"] == "20"  # each image its own unit: no count repeated
    table = pd.read_csv(tmp_path / "csv" / "labels.csv")
    with_groups = check_own_dataset(tmp_path / "csv", "labels.csv", "images", full=False)
    assert with_groups.summary["labels.csv: images"] == f"{len(table)} ({table['group'].nunique()} groups)"
