"""Your own classes (``lesion_cls.labels``): the layouts, the class list and its order, and each bad input as one
line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.labels import (
    class_columns,
    class_order,
    detect_layout,
    read_class_folders,
    read_labelled_images,
    read_labels_csv,
    read_test_csv,
)
from lesion_cls.splits import read_labelled_table
from lesion_cls.synthetic import generate_own_classes


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), 128, np.uint8)).save(path)


GROUPED = ("image", "label", "group")


def _csv_dataset(root: Path, rows: list[tuple[str, ...]], columns: tuple[str, ...] = GROUPED) -> Path:
    for row in rows:
        _image(root / "images" / (row[0] if "." in row[0] else f"{row[0]}.png"))
    pd.DataFrame(rows, columns=list(columns)).to_csv(root / "labels.csv", index=False)
    return root


def test_class_order_given_isic_or_sorted() -> None:
    assert class_order(["b", "a", "c", "a"], None, "x") == ("a", "b", "c")
    assert class_order(["NV", "MEL", "BCC"], None, "x") == ("MEL", "NV", "BCC")  # ISIC's order, not sorted
    assert class_order(list(CLASS_NAMES), None, "x") == CLASS_NAMES
    assert class_order(["yes", "no"], ["no", "yes"], "x") == ("no", "yes")  # the positive class is the second
    assert class_order(["no"], ["no", "yes"], "x", every_class_used=False) == ("no", "yes")  # a test set may lack one


@pytest.mark.parametrize(
    ("found", "given", "message"),
    [
        (["a", "a"], None, "x: the labels hold one class ('a'); a classifier needs 2 or more"),
        (["a", "b"], ["a", "b", "c"], "x: class 'c' of data.classes has no image"),
        (["a", "d"], ["a", "b"], "x: label 'd' is not one of data.classes (a, b)"),
        (["Mel", "mel", "nv"], None, "x: class 'mel' and 'Mel' differ only in case"),
        (["a", "b"], ["a", "b", "a"], "data.classes: class 'a' appears twice"),
    ],
)
def test_class_order_refuses(found: list[str], given: list[str] | None, message: str) -> None:
    with pytest.raises(MedlitError) as err:
        class_order(found, given, "x")
    assert str(err.value) == message


def test_labels_csv_with_groups_file_names_and_stems(tmp_path: Path) -> None:
    rows = [("a1.png", "cat", "g1"), ("a2", "cat", "g1"), ("b1", "dog", "g2"), ("c1", "emu", "g3")]
    data = read_labels_csv(_csv_dataset(tmp_path, rows) / "labels.csv", tmp_path / "images")
    assert data.class_names == ("cat", "dog", "emu") and (data.layout, data.unit) == ("labels_csv", "group")
    assert data.table["image_id"].tolist() == ["a1", "a2", "b1", "c1"]
    assert data.table["lesion_id"].tolist() == ["g1", "g1", "g2", "g3"]
    assert data.table["label"].tolist() == [0, 0, 1, 2]
    assert Path(data.table["path"].iloc[0]) == tmp_path / "images" / "a1.png"


def test_labels_csv_without_groups_resamples_images(tmp_path: Path) -> None:
    root = _csv_dataset(tmp_path, [("a", "x"), ("b", "y")], ("image", "label"))
    data = read_labels_csv(root / "labels.csv", None)
    assert data.unit == "image" and data.table["lesion_id"].tolist() == ["a", "b"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("a", "x", "g1"), ("b", "y", "g1")], "row 3: group 'g1' has images labelled x and y"),
        ([("a", "x", "g1"), ("a", "y", "g2")], "row 3: image 'a' appears twice"),
        ([("a", "x", "g1"), ("b", "", "g2")], "row 3: empty label"),
        ([("a", "x", "g1"), ("b", "x", "g2")], "the labels hold one class ('x')"),
        ([("a", "Benign", "g1"), ("b", "benign", "g2")], "class 'benign' and 'Benign' differ only in case"),
    ],
)
def test_labels_csv_bad_rows_are_one_line(tmp_path: Path, rows: list[tuple[str, ...]], message: str) -> None:
    root = _csv_dataset(tmp_path, rows)
    with pytest.raises(MedlitError) as err:
        read_labels_csv(root / "labels.csv", root / "images")
    assert str(err.value).startswith(str(root / "labels.csv")) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_labels_csv_names_a_missing_image(tmp_path: Path) -> None:
    root = _csv_dataset(tmp_path, [("a", "x", "g1"), ("b", "y", "g2")])
    (root / "images" / "b.png").unlink()
    with pytest.raises(MedlitError, match=r"labels.csv row 3: image 'b' not found in .*images"):
        read_labels_csv(root / "labels.csv", root / "images")


def test_class_folders(tmp_path: Path) -> None:
    for name, n in (("zebra", 2), ("ant", 3)):
        for i in range(n):
            _image(tmp_path / name / f"{name}{i}.jpg")
    data = read_class_folders(tmp_path)
    assert data.class_names == ("ant", "zebra") and (data.layout, data.unit) == ("class_folders", "image")
    assert data.table.groupby("label").size().tolist() == [3, 2]
    assert (data.table["lesion_id"] == data.table["image_id"]).all()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: (root / "notes.txt").write_text("x"), "notes.txt: a file beside the class folders"),
        (lambda root: (root / "a" / "x.txt").write_text("x"), "x.txt: not a .jpg/.png image"),
        (lambda root: (root / "c").mkdir(), "c: class folder 'c' has no image"),
        (lambda root: _image(root / "b" / "a0.jpg"), "image 'a0' is in two class folders"),
        (lambda root: _image(root / "A" / "z.jpg"), "class 'a' and 'A' differ only in case"),
    ],
)
def test_class_folders_bad_input_is_one_line(tmp_path: Path, make: object, message: str) -> None:
    _image(tmp_path / "a" / "a0.jpg")
    _image(tmp_path / "b" / "b0.jpg")
    make(tmp_path)  # type: ignore[operator]
    with pytest.raises(MedlitError) as err:
        read_class_folders(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_detect_layout(tiny_ham: Path, tmp_path: Path) -> None:
    assert detect_layout(tiny_ham, "HAM10000_metadata.csv") == "ham10000"
    _csv_dataset(tmp_path / "csv", [("a", "x"), ("b", "y")], ("image", "label"))
    assert detect_layout(tmp_path / "csv", "labels.csv") == "labels_csv"
    _image(tmp_path / "folders" / "x" / "a.png")
    assert detect_layout(tmp_path / "folders", "HAM10000_metadata.csv") == "class_folders"
    pd.DataFrame({"file": ["a"], "class": ["x"]}).to_csv(tmp_path / "odd.csv", index=False)
    with pytest.raises(MedlitError, match=r"odd.csv: columns class, file; expected lesion_id,image_id,dx"):
        detect_layout(tmp_path, "odd.csv")
    with pytest.raises(MedlitError, match=r"no HAM10000_metadata.csv .* and no class folders"):
        detect_layout(tmp_path / "csv" / "images", "HAM10000_metadata.csv")


def test_ham10000_keeps_the_isic_classes(tiny_ham: Path) -> None:
    data = read_labelled_images(tiny_ham, "HAM10000_metadata.csv", "images")
    assert (data.class_names, data.unit) == (CLASS_NAMES, "lesion")
    with pytest.raises(MedlitError, match="HAM10000 .* has the seven ISIC classes"):
        read_labelled_images(tiny_ham, "HAM10000_metadata.csv", "images", ["a", "b"])


@pytest.mark.parametrize("layout", ["csv", "folders"])
def test_no_group_in_two_splits_and_folds(tmp_path: Path, layout: str) -> None:
    classes = [f"class{k}" for k in range(8)]
    root = generate_own_classes(tmp_path / layout, classes, layout, n_images=160, size_hw=(12, 16), seed=1)
    csv = "labels.csv" if layout == "csv" else "none.csv"
    data = read_labelled_table(root, csv, "images", None, None, 0.2, 0.2, 7)
    assert data.class_names == tuple(classes)
    assert data.table.groupby("lesion_id")["split"].nunique().max() == 1
    assert set(data.table["split"]) == {"train", "val", "test"}
    if layout == "csv":
        assert data.table["lesion_id"].nunique() < len(data.table)  # groups of several images were kept together
    folds = read_labelled_table(root, csv, "images", None, None, 0.2, 0.2, 7, num_folds=3, fold=1).table
    pool = folds[folds["split"] != "test"]
    assert pool.groupby("lesion_id")["fold"].nunique().max() == 1 and set(pool["fold"]) == {0, 1, 2}


def test_test_csv_in_either_format_with_groups(tmp_path: Path) -> None:
    names = ("no", "yes")
    labels = _csv_dataset(tmp_path / "a", [("t1", "yes", "L1"), ("t2", "yes", "L1")])
    table, unit = read_test_csv(labels / "labels.csv", labels / "images", names)
    assert unit == "group" and table["label"].tolist() == [1, 1]  # a test set may lack a class
    onehot = pd.DataFrame({"image": ["t1", "t2"], "no": [1.0, 0.0], "yes": [0.0, 1.0], "lesion_id": ["L1", "L2"]})
    onehot.to_csv(tmp_path / "onehot.csv", index=False)
    table, unit = read_test_csv(tmp_path / "onehot.csv", None, names)
    assert unit == "lesion" and table["lesion_id"].tolist() == ["L1", "L2"] and table["label"].tolist() == [0, 1]
    onehot.rename(columns={"lesion_id": "group"}).to_csv(tmp_path / "onehot_group.csv", index=False)
    assert read_test_csv(tmp_path / "onehot_group.csv", None, names)[1] == "group"
    onehot.drop(columns=["lesion_id"]).to_csv(tmp_path / "onehot_plain.csv", index=False)
    assert read_test_csv(tmp_path / "onehot_plain.csv", None, names)[1] == "image"
    onehot.drop(columns=["yes"]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MedlitError, match=r"bad.csv: expected image,label\[,group\] or a one-hot CSV image,no,yes"):
        read_test_csv(tmp_path / "bad.csv", None, names)


def test_class_columns_of_predictions() -> None:
    frame = pd.DataFrame(columns=["image", "lesion_id", "a", "b", "label", "decision"])
    assert class_columns(frame, "p.csv") == ["a", "b"]
    with pytest.raises(MedlitError, match="p.csv: needs an image column and a probability column per class"):
        class_columns(frame[["image", "a", "label"]], "p.csv")


def test_a_grouped_test_csv_resamples_its_groups_whatever_the_training_layout(tmp_path: Path) -> None:
    """Class folders (each image its own unit) with a labels test CSV that has groups: the test intervals resample
    the test CSV's groups, and say so."""
    for name in ("no", "yes"):
        for i in range(10):
            _image(tmp_path / "train" / name / f"{name}{i}.png")
    test = _csv_dataset(tmp_path / "test", [("t1", "yes", "L1"), ("t2", "yes", "L1"), ("t3", "no", "L2")])
    data = read_labelled_table(
        tmp_path / "train", "labels.csv", "images", test / "labels.csv", test / "images", 0.2, 0.2, 7
    )
    assert data.unit == "image" and data.unit_of_test == "group"
    assert data.table.query("split == 'test'")["lesion_id"].tolist() == ["L1", "L1", "L2"]
