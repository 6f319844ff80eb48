"""The dataset check as a function (``lesion_cls.check``); through the CLI: ``test_check.py``."""

from __future__ import annotations

from pathlib import Path

from lesion_cls.check import check_ham_dataset


def test_check_ham_dataset(tiny_ham: Path, tmp_path: Path) -> None:
    check = check_ham_dataset(tiny_ham, "HAM10000_metadata.csv", "images", full=True)
    assert check.ok and check.summary["HAM10000_metadata.csv: images"].startswith("240 (")
    assert "decoded images (240)" in check.summary
    broken = check_ham_dataset(tmp_path, "HAM10000_metadata.csv", "images", full=False)
    assert not broken.ok and "file not found" in broken.problems[0].what
