"""The lesion-grouped split of the labelled images: train/val/test, the cross-validation folds, and what a split
holds (a summary line per split, a warning for each class a split lacks)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from common.errors import MedlitError
from common.folds import check_pool
from lesion_cls import CLASS_NAMES
from lesion_cls.labels import LabelledImages, read_labelled_images, read_test_csv

__all__ = ["absent_classes", "lesion_folds", "read_labelled_table", "split_by_lesion", "split_summary"]


def split_by_lesion(table: pd.DataFrame, val_fraction: float, test_fraction: float, seed: int) -> np.ndarray:
    """Assign each image to ``train``/``val``/``test`` so that all images of a lesion share one split.

    Lesions (not images) are split, stratified by the lesion's class, so the fractions are of lesions and
    the class proportions match across splits as closely as the lesion counts allow.

    Returns:
        Array of split names aligned with ``table``'s rows.
    """
    lesion_label = table.groupby("lesion_id", sort=True)["label"].agg(lambda s: s.mode().iloc[0])
    lesions = lesion_label.index.to_numpy()
    split = pd.Series("train", index=lesions, dtype=object)
    rest = lesions
    for name, fraction in (("test", test_fraction), ("val", val_fraction)):
        if fraction <= 0:
            continue
        # the val fraction is of all lesions, not of what is left after the test split
        share = fraction / (1.0 - (test_fraction if name == "val" else 0.0))
        try:
            rest, picked = train_test_split(
                rest, test_size=share, random_state=seed, stratify=lesion_label.loc[rest].to_numpy()
            )
        except ValueError:  # a class with a single lesion cannot be stratified
            rest, picked = train_test_split(rest, test_size=share, random_state=seed)
        split.loc[picked] = name
    return table["lesion_id"].map(split).to_numpy()


def lesion_folds(table: pd.DataFrame, num_folds: int, seed: int) -> np.ndarray:
    """The cross-validation fold (0 .. ``num_folds - 1``) of each image: all images of a lesion in one fold, the
    folds stratified by class (scikit-learn's ``StratifiedGroupKFold``, shuffled with ``seed``).

    Raises:
        MedlitError: Fewer lesions than folds.
    """
    check_pool(num_folds, table["lesion_id"].nunique(), "lesions")
    folds = np.full(len(table), -1, dtype=int)
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer lesions than folds: stratified as far as it goes
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for k, (_, held_out) in enumerate(splitter.split(table, table["label"], groups=table["lesion_id"])):
            folds[held_out] = k
    return folds


def _with_folds(metadata: pd.DataFrame, num_folds: int, fold: int, seed: int) -> pd.DataFrame:
    """``split`` train/val from the cross-validation folds of the non-test images (fold ``fold`` validates)."""
    pool = metadata["split"].to_numpy() != "test"
    folds = np.full(len(metadata), -1, dtype=int)
    folds[pool] = lesion_folds(metadata.loc[pool], num_folds, seed)
    split = np.where(pool, np.where(folds == fold, "val", "train"), metadata["split"].to_numpy())
    return metadata.assign(split=split, fold=folds)


def read_labelled_table(
    root: Path | str,
    metadata_csv: str,
    image_dir: str,
    test_csv: str | None,
    test_image_dir: str | None,
    val_fraction: float,
    test_fraction: float,
    split_seed: int,
    num_folds: int = 0,
    fold: int = 0,
    classes: Sequence[str] | None = None,
) -> LabelledImages:
    """All labelled images with their split: train/val (and test) from ``root``, or test from ``test_csv``.

    Args:
        root: Folder holding the data in one of :mod:`lesion_cls.labels`' layouts (``metadata_csv`` and
            ``image_dir`` relative to it).
        test_csv: CSV of an explicit test set (:func:`~lesion_cls.labels.read_test_csv`; then ``test_fraction`` is
            not used); test_image_dir: its image folder.
        val_fraction: Share of groups held out for validation; test_fraction: for testing.
        split_seed: Seed of :func:`split_by_lesion` (and of the folds).
        num_folds: Cross-validation: with ``K >= 2`` the non-test images are cut into ``K`` group-kept,
            class-stratified folds (:func:`lesion_folds`) and fold ``fold`` validates (``val_fraction`` is not
            used); the test images are the same as without folds.
        classes: ``data.classes``: the class list and its order (:func:`~lesion_cls.labels.class_order`).

    Returns:
        :class:`~lesion_cls.labels.LabelledImages` whose table has the columns ``image_id``, ``lesion_id``,
        ``label``, ``path``, ``split`` (``train``/``val``/``test``) and, with folds, ``fold`` (-1 for test images).

    Raises:
        MedlitError: a file is broken, or a test image is also in the training data.
    """
    root = Path(root)
    data = read_labelled_images(root, metadata_csv, image_dir, classes)
    metadata = data.table
    if test_csv:
        test, test_unit = read_test_csv(Path(test_csv), Path(test_image_dir), data.class_names)
        leaked = sorted(set(test["image_id"]) & set(metadata["image_id"]))
        if leaked:
            raise MedlitError(f"{test_csv}: image '{leaked[0]}' is also in the training data")
        test_fraction = 0.0
    val_share = 0.0 if num_folds else val_fraction
    metadata = metadata.assign(split=split_by_lesion(metadata, val_share, test_fraction, split_seed))
    if num_folds:
        metadata = _with_folds(metadata, num_folds, fold, split_seed)
    if not test_csv:
        return replace(data, table=metadata)
    test = test.assign(split="test", **({"fold": -1} if num_folds else {}))
    table = pd.concat([metadata, test], ignore_index=True)
    return replace(data, table=table, test_unit=test_unit)


def absent_classes(table: pd.DataFrame, class_names: Sequence[str] = CLASS_NAMES) -> list[str]:
    """A warning for each split that lacks a class: unusual (small or custom data) but not an error. Training
    without a class cannot learn it; validation or test without one leaves its recall undefined there."""
    undefined = (
        "its {} recall is undefined: balanced accuracy (torchmetrics' macro recall) leaves the class out while it is "
        "never predicted there, and counts it as 0 once it is"
    )
    effects = {"train": "the model cannot learn it", "val": undefined.format("validation")}
    effects["test"] = undefined.format("test")
    warnings_ = []
    for split, effect in effects.items():
        present = set(table.loc[table["split"] == split, "label"])
        missing = [name for i, name in enumerate(class_names) if i not in present]
        if present and missing:
            warnings_.append(f"the {split} split has no {', '.join(missing)} image: {effect}")
    return warnings_


def split_summary(table: pd.DataFrame, class_names: Sequence[str] = CLASS_NAMES, unit: str = "lesion") -> str:
    """One line per split of a table with ``split``, ``label``, ``lesion_id``: images, groups (``unit``s), images
    per class."""
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=range(len(class_names)), fill_value=0)
    counts.columns = list(class_names)
    lesions = table.groupby("split")["lesion_id"].nunique()
    lines = [
        f"{split:>5}: {int(row.sum()):5d} images, {lesions[split]:5d} {unit}s | "
        + " ".join(f"{c} {n}" for c, n in row.items())
        for split, row in counts.iterrows()
    ]
    return "\n".join(lines)
