"""HAM10000/ISIC parsing, lesion-grouped splits, the labelled table and the dataset check (``lesion_cls.io``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.io import (
    check_ham_dataset,
    read_folder,
    read_ham_metadata,
    read_isic_ground_truth,
    read_labelled_table,
    split_by_lesion,
    split_summary,
)


def _write_metadata(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx"]).to_csv(folder / "meta.csv", index=False)
    return folder / "meta.csv"


def test_read_ham_metadata(tiny_ham: Path) -> None:
    table = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    raw = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    assert len(table) == len(raw) == 240
    assert [CLASS_NAMES[i].lower() for i in table["label"]] == raw["dx"].tolist()
    assert all(Path(p).is_file() for p in table["path"])


def test_metadata_errors_name_file_and_row(tmp_path: Path) -> None:
    csv = _write_metadata(tmp_path, [("L1", "A", "nv"), ("L2", "B", "melanoma")])
    with pytest.raises(MedlitError, match=r"meta.csv row 3: unknown dx 'melanoma'"):
        read_ham_metadata(csv)
    csv = _write_metadata(tmp_path, [("L1", "A", "nv"), ("L2", "A", "mel")])
    with pytest.raises(MedlitError, match=r"row 3: image_id 'A' appears twice"):
        read_ham_metadata(csv)
    pd.DataFrame({"image_id": ["A"], "dx": ["nv"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MedlitError, match=r"bad.csv: missing column\(s\) lesion_id"):
        read_ham_metadata(tmp_path / "bad.csv")
    csv = _write_metadata(tmp_path, [("L1", "A", "nv")])
    (tmp_path / "images").mkdir()
    with pytest.raises(MedlitError, match=r"row 2: image 'A' not found in .*images"):
        read_ham_metadata(csv, tmp_path / "images")
    with pytest.raises(MedlitError, match="file not found"):
        read_ham_metadata(tmp_path / "nope.csv")


def test_read_isic_ground_truth(tmp_path: Path) -> None:
    csv = tmp_path / "gt.csv"
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nI1,0,1,0,0,0,0,0\nI2,0.0,0.0,0.0,0.0,0.0,0.0,1.0\n")
    table = read_isic_ground_truth(csv)
    assert table["label"].tolist() == [1, 6]
    assert table["lesion_id"].tolist() == ["I1", "I2"]
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nI1,0,1,0,0,0,0,0\nI2,1,1,0,0,0,0,0\n")
    with pytest.raises(MedlitError, match="gt.csv row 3: expected exactly one class column"):
        read_isic_ground_truth(csv)
    csv.write_text("image,MEL,NV\nI1,0,1\n")
    with pytest.raises(MedlitError, match=r"missing column\(s\) BCC, AKIEC, BKL, DF, VASC"):
        read_isic_ground_truth(csv)


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


def test_predict_folder(tiny_ham: Path, tmp_path: Path) -> None:
    table = read_folder(tiny_ham / "images")
    assert len(table) == 240 and (table["label"] == -1).all()
    with pytest.raises(MedlitError, match="no .jpg/.png images"):
        read_folder(tmp_path)


def test_read_labelled_table_splits_the_metadata(tiny_ham: Path) -> None:
    table = read_labelled_table(tiny_ham, "HAM10000_metadata.csv", "images", None, None, 0.15, 0.15, 42)
    metadata = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    expected = split_by_lesion(metadata, 0.15, 0.15, 42)
    assert table.columns.tolist() == ["image_id", "lesion_id", "label", "path", "split"]
    assert (table["split"].to_numpy() == expected).all()
    lines = split_summary(table).splitlines()
    assert [line.split(":")[0].strip() for line in lines] == ["test", "train", "val"]
    assert sum(int(line.split(":")[1].split("images")[0]) for line in lines) == len(table)


def test_check_ham_dataset(tiny_ham: Path, tmp_path: Path) -> None:
    check = check_ham_dataset(tiny_ham, "HAM10000_metadata.csv", "images", full=True)
    assert check.ok and check.summary["HAM10000_metadata.csv: images"].startswith("240 (")
    assert "decoded images (240)" in check.summary
    broken = check_ham_dataset(tmp_path, "HAM10000_metadata.csv", "images", full=False)
    assert not broken.ok and "file not found" in broken.problems[0].what


def test_a_class_absent_from_a_split_is_a_warning_not_an_error() -> None:
    from lesion_cls.io import absent_classes

    labels = {"train": list(range(7)) * 2, "val": [0, 1, 2, 3, 4, 6], "test": list(range(7))}
    table = pd.DataFrame([{"split": split, "label": label} for split, values in labels.items() for label in values])
    assert absent_classes(table) == [
        "the val split has no DF image: its validation recall is undefined: balanced accuracy (torchmetrics' macro "
        "recall) leaves the class out while it is never predicted there, and counts it as 0 once it is"
    ]
    assert absent_classes(table[table["split"] != "val"]) == []  # a split that is not there is not warned about


def test_unusual_but_valid_metadata_reads_the_same(tiny_ham: Path, tmp_path: Path) -> None:
    """Columns in another order, extra columns, upper-case and padded dx codes: the same table, no error."""
    raw = pd.read_csv(tiny_ham / "HAM10000_metadata.csv", dtype=str)
    odd = raw.assign(dx=" " + raw["dx"].str.upper() + " ", site="back", age="55")
    odd = odd[["site", "dx", "age", "image_id", "lesion_id"]]
    odd.to_csv(tmp_path / "odd.csv", index=False)
    expected = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    got = read_ham_metadata(tmp_path / "odd.csv", tiny_ham / "images")
    pd.testing.assert_frame_equal(got, expected)
