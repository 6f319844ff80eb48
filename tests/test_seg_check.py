"""The dataset check as a function (:mod:`volume_seg.check`); through the CLI: ``test_check.py``."""

from __future__ import annotations

from pathlib import Path

from volume_seg.check import check_volume_dataset
from volume_seg.data import VolumeDataModule


def test_check_as_a_function_matches_the_datamodule(tiny_la: Path, tmp_path: Path) -> None:
    dm = VolumeDataModule(root=str(tiny_la), train_list="train.list", test_list="test.list", val_fraction=0.25)
    check = check_volume_dataset(tiny_la, "auto", "train.list", "test.list", 2, None, full=True)
    assert check.ok and check.summary["cases"] == "11 (la_h5 layout)" and "label values" in check.summary
    assert dm.check_data(full=True).render() == check.render()
    (tmp_path / "bad.list").write_text("nope\n")
    cheap = check_volume_dataset(tiny_la, "la_h5", None, str(tmp_path / "bad.list"), 2, None, full=False)
    assert [p.what for p in cheap.problems] == ["case 'nope' not found"] and "label values" not in cheap.summary
