"""Where the classes come from: the class list of a dataset, and the two layouts of your own images besides
HAM10000.

Layouts (``data.root``; the first that is there is read):

* HAM10000: ``<root>/<metadata_csv>`` with ``lesion_id,image_id,dx`` (:mod:`lesion_cls.io`); the seven ISIC 2018
  classes in their fixed order :data:`~lesion_cls.CLASS_NAMES`; grouped by ``lesion_id``.
* A labels CSV: ``<root>/<metadata_csv>`` with the columns ``image`` (file name or stem in ``<root>/<image_dir>``),
  ``label`` (class name) and optionally ``group`` (a lesion or patient id: all images of a group go to one split,
  and intervals resample groups).
* One folder per class: ``<root>/<class>/*.jpg|png`` (no CSV); each image is its own group.

The class list: ``data.classes`` when given (that order), the ISIC order when every label is an ISIC class, else
the labels sorted. Two classes or more; a binary problem's positive class is the second one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.io import (
    GROUP_COLUMNS,
    HAM_COLUMNS,
    IMAGE_SUFFIXES,
    index_images,
    read_csv_table,
    read_ham_metadata,
    read_isic_ground_truth,
)

__all__ = [
    "LABELS_COLUMNS",
    "LabelledImages",
    "class_columns",
    "class_order",
    "detect_layout",
    "is_isic",
    "read_class_folders",
    "read_labelled_images",
    "read_labels_csv",
    "read_test_csv",
]

LABELS_COLUMNS = ("image", "label")
"""The columns a labels CSV needs (``group`` is optional)."""
_NOT_CLASSES = ("image", "image_id", "lesion_id", "group", "label", "decision")
"""Columns of a predictions or probabilities CSV that are not class probabilities."""


@dataclass(frozen=True)
class LabelledImages:
    """The labelled images of a dataset and what they mean.

    Args:
        table: One row per image: ``image_id``, ``lesion_id`` (the group; the image id when there are none),
            ``label`` (index into ``class_names``) and ``path``.
        class_names: The classes, in the order of the network's outputs.
        layout: ``ham10000``, ``labels_csv`` or ``class_folders``.
        unit: What a group is, as the intervals name what they resample: ``lesion``, ``group`` or ``image``.
        test_unit: The same for the test images (``image`` for a test CSV without groups); ``unit`` when empty.
    """

    table: pd.DataFrame
    class_names: tuple[str, ...]
    layout: str
    unit: str
    test_unit: str = ""

    @property
    def unit_of_test(self) -> str:
        """What the test intervals resample."""
        return self.test_unit or self.unit


def is_isic(class_names: Sequence[str]) -> bool:
    """Whether the classes are ISIC 2018's seven in their order (then ``predictions.csv`` is a submission file)."""
    return tuple(class_names) == CLASS_NAMES


def class_order(
    found: Iterable[str], given: Sequence[str] | None, where: str, every_class_used: bool = True
) -> tuple[str, ...]:
    """The class list of labels ``found`` in ``where``: ``given`` (every label must be in it and, with
    ``every_class_used``, every class have an image), the ISIC order when all labels are ISIC classes, else sorted.

    Raises:
        MedlitError: fewer than two classes, names that differ only in case, a label not in ``given``, a class of
            ``given`` with no image, or ``given`` naming a class twice.
    """
    labels = sorted(set(found))
    if given is not None:
        given = tuple(str(c) for c in given)
        _refuse_collisions(given, "data.classes")
        outside = [c for c in labels if c not in given]
        if outside:
            raise MedlitError(f"{where}: label '{outside[0]}' is not one of data.classes ({', '.join(given)})")
        empty = [c for c in given if c not in labels]
        if empty and every_class_used:
            raise MedlitError(f"{where}: class '{empty[0]}' of data.classes has no image")
        labels = list(given)
    _refuse_collisions(labels, where)
    if len(labels) < 2:
        shown = f"'{labels[0]}'" if labels else "none"
        raise MedlitError(f"{where}: the labels hold one class ({shown}); a classifier needs 2 or more")
    if given is None and set(labels) <= set(CLASS_NAMES):
        return tuple(c for c in CLASS_NAMES if c in labels)
    return tuple(labels)


def _refuse_collisions(names: Sequence[str], where: str) -> None:
    seen: dict[str, str] = {}
    for name in names:
        folded = name.casefold()
        if folded in seen:
            same = "appears twice" if seen[folded] == name else f"and '{seen[folded]}' differ only in case"
            raise MedlitError(f"{where}: class '{name}' {same}")
        seen[folded] = name


def _stem(name: str) -> str:
    """The image id of an ``image`` cell, which may hold a file name (``a.jpg``) or a stem (``a``)."""
    return name[: -len(Path(name).suffix)] if Path(name).suffix.lower() in IMAGE_SUFFIXES else name


def read_labels_csv(
    csv_path: Path, image_dir: Path | None, given: Sequence[str] | None = None, every_class_used: bool = True
) -> LabelledImages:
    """A labels CSV (``image,label[,group]``) as :class:`LabelledImages`; with ``image_dir``, each image's path;
    ``every_class_used=False`` for a test set, which may lack a class of ``given``.

    Raises:
        MedlitError: (one line naming the file and row) an empty image or label, an image listed twice, a group
            holding two labels, an image not found, or a class list :func:`class_order` refuses.
    """
    table = read_csv_table(csv_path, LABELS_COLUMNS)
    grouped = "group" in table.columns
    for column in ("image", "label", *(("group",) if grouped else ())):
        empty = np.flatnonzero((table[column].str.strip() == "").to_numpy())
        if len(empty):
            raise MedlitError(f"{csv_path} row {empty[0] + 2}: empty {column}")
    image_ids = table["image"].str.strip().map(_stem)
    twice = np.flatnonzero(image_ids.duplicated().to_numpy())
    if len(twice):
        raise MedlitError(f"{csv_path} row {twice[0] + 2}: image '{image_ids.iloc[twice[0]]}' appears twice")
    labels = table["label"].str.strip()
    groups = table["group"].str.strip() if grouped else image_ids
    if grouped:
        _refuse_mixed_groups(csv_path, groups, labels)
    class_names = class_order(labels, given, str(csv_path), every_class_used)
    index = {name: i for i, name in enumerate(class_names)}
    out = pd.DataFrame({"image_id": image_ids, "lesion_id": groups, "label": labels.map(index).astype(int)})
    if image_dir is not None:
        out = _with_paths(out, csv_path, image_dir)
    return LabelledImages(out, class_names, "labels_csv", "group" if grouped else "image")


def _refuse_mixed_groups(csv_path: Path, groups: pd.Series, labels: pd.Series) -> None:
    kinds = labels.groupby(groups.to_numpy()).nunique()
    mixed = kinds.index[kinds.to_numpy() > 1]
    if len(mixed):
        rows = np.flatnonzero((groups == mixed[0]).to_numpy())
        found = sorted(set(labels.iloc[rows]))
        raise MedlitError(
            f"{csv_path} row {rows[-1] + 2}: group '{mixed[0]}' has images labelled {' and '.join(found)}; a group "
            "(one lesion or patient) holds one class"
        )


def _with_paths(table: pd.DataFrame, csv_path: Path, image_dir: Path) -> pd.DataFrame:
    images = index_images(image_dir)
    paths = table["image_id"].map(images)
    missing = np.flatnonzero(paths.isna().to_numpy())
    if len(missing):
        raise MedlitError(
            f"{csv_path} row {missing[0] + 2}: image '{table['image_id'].iloc[missing[0]]}' not found in {image_dir} "
            f"(.jpg/.png); {len(missing)} image(s) missing in all"
        )
    return table.assign(path=paths.map(str))


def read_class_folders(root: Path, given: Sequence[str] | None = None) -> LabelledImages:
    """One folder per class under ``root`` as :class:`LabelledImages` (each image its own group).

    Raises:
        MedlitError: a file beside the class folders or a file in one that is not a .jpg/.png image, a class
            folder with no image, an image name in two folders, or a class list :func:`class_order` refuses.
    """
    if not root.is_dir():
        raise MedlitError(f"{root}: folder not found")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    stray = [p for p in entries if not p.is_dir()]
    if stray:
        raise MedlitError(f"{stray[0]}: a file beside the class folders (each class is a folder of images)")
    rows = []
    for folder in entries:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
        for path in files:
            if path.is_dir() or path.suffix.lower() not in IMAGE_SUFFIXES:
                raise MedlitError(f"{path}: not a .jpg/.png image (class folders hold images only)")
        if not files:
            raise MedlitError(f"{folder}: class folder '{folder.name}' has no image")
        rows += [(path.stem, folder.name, str(path)) for path in files]
    frame = pd.DataFrame(rows, columns=["image_id", "class", "path"])
    twice = frame["image_id"].duplicated()
    if twice.any():
        first = frame.loc[twice, "image_id"].iloc[0]
        raise MedlitError(f"{root}: image '{first}' is in two class folders")
    class_names = class_order(frame["class"], given, str(root))
    index = {name: i for i, name in enumerate(class_names)}
    table = pd.DataFrame(
        {
            "image_id": frame["image_id"],
            "lesion_id": frame["image_id"],
            "label": frame["class"].map(index).astype(int),
            "path": frame["path"],
        }
    )
    return LabelledImages(table, class_names, "class_folders", "image")


def detect_layout(root: Path, metadata_csv: str) -> str:
    """``ham10000`` or ``labels_csv`` (by the CSV's columns) when ``<root>/<metadata_csv>`` exists, else
    ``class_folders`` when ``root`` holds folders.

    Raises:
        MedlitError: the CSV has neither layout's columns, or ``root`` holds neither a CSV nor folders.
    """
    csv_path = root / metadata_csv
    if csv_path.is_file():
        columns = set(read_csv_table(csv_path, ()).columns)
        if set(LABELS_COLUMNS) <= columns:
            return "labels_csv"
        if columns & set(HAM_COLUMNS):  # HAM10000's reader names what it lacks
            return "ham10000"
        raise MedlitError(
            f"{csv_path}: columns {', '.join(sorted(columns))}; expected lesion_id,image_id,dx (HAM10000) or "
            "image,label[,group] (a labels CSV)"
        )
    if root.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        return "class_folders"
    raise MedlitError(
        f"{root}: no {metadata_csv} (a HAM10000 metadata file or a labels CSV image,label[,group]) and no class "
        "folders; set data.root, or data.metadata_csv to your CSV's name"
    )


def read_labelled_images(
    root: Path, metadata_csv: str, image_dir: str, given: Sequence[str] | None = None, with_paths: bool = True
) -> LabelledImages:
    """The labelled images of ``root`` in whichever layout it has (:func:`detect_layout`).

    Raises:
        MedlitError: ``data.classes`` set for HAM10000 with other classes than ISIC's, or any reader's error.
    """
    layout = detect_layout(root, metadata_csv)
    if layout == "labels_csv":
        return read_labels_csv(root / metadata_csv, root / image_dir if with_paths else None, given)
    if layout == "class_folders":
        return read_class_folders(root, given)
    if given is not None and tuple(given) != CLASS_NAMES:
        raise MedlitError(
            f"data.classes: HAM10000 ({root / metadata_csv}) has the seven ISIC classes {', '.join(CLASS_NAMES)}; "
            "leave data.classes unset"
        )
    table = read_ham_metadata(root / metadata_csv, root / image_dir if with_paths else None)
    return LabelledImages(table, CLASS_NAMES, "ham10000", "lesion")


def read_test_csv(csv_path: Path, image_dir: Path | None, class_names: Sequence[str]) -> tuple[pd.DataFrame, str]:
    """An explicit test set (``data.test_csv``): a labels CSV (``image,label[,group]``) or a one-hot CSV with a
    column per class (ISIC 2018's ground truth, optionally with a ``lesion_id`` or ``group`` column).

    Returns:
        The table (as :class:`LabelledImages`' ``table``, labels indexing ``class_names``) and what its intervals
        resample: ``lesion`` (a ``lesion_id`` column), ``group`` (a ``group`` column) or ``image`` (neither).
    """
    columns = set(read_csv_table(csv_path, ()).columns)
    if set(LABELS_COLUMNS) <= columns:
        test = read_labels_csv(csv_path, image_dir, class_names, every_class_used=False)
        return test.table, test.unit
    if "image" not in columns or not set(class_names) <= columns:
        raise MedlitError(
            f"{csv_path}: expected image,label[,group] or a one-hot CSV image,{','.join(class_names)} "
            f"(has: {', '.join(sorted(columns))})"
        )
    # the column group_column reads, named as the intervals name what they resample
    unit = next(({"lesion_id": "lesion", "group": "group"}[c] for c in GROUP_COLUMNS if c in columns), "image")
    return read_isic_ground_truth(csv_path, image_dir, class_names), unit


def class_columns(frame: pd.DataFrame, path: Path | str) -> list[str]:
    """The class-probability columns of a ``predictions.csv`` or ``probabilities.csv`` (every column but the image,
    group, label and decision ones), in file order.

    Raises:
        MedlitError: fewer than two such columns.
    """
    columns = [c for c in frame.columns if c not in _NOT_CLASSES]
    if len(columns) < 2:
        raise MedlitError(f"{path}: needs an image column and a probability column per class (found {len(columns)})")
    return columns
