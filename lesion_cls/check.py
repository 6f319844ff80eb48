"""The dataset check of the classifier's data (the ``check`` command): every problem of the metadata (HAM10000),
or the labels CSV or class folders (your own data), of the images and the test set, and a summary."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from common.check import DataCheck, Problem
from common.errors import MedlitError
from common.loaders import available_cpus
from lesion_cls import CLASS_NAMES, DX_CODES
from lesion_cls.io import (
    DECODE_ERRORS,
    HAM_COLUMNS,
    ham_metadata_problems,
    index_images,
    isic_ground_truth_problems,
    open_image,
    read_csv_table,
)
from lesion_cls.labels import LABELS_COLUMNS, detect_layout, read_labelled_images, read_test_csv

__all__ = ["check_dataset", "check_ham_dataset"]


def _decode_all(paths: Sequence[Path], check: DataCheck) -> None:
    """Open and fully decode every image; add a problem for each that fails; summarise sizes and modes."""
    sizes: dict[tuple[int, int], int] = {}
    modes: dict[str, int] = {}

    def decode(path: Path) -> tuple[tuple[int, int], str] | Problem:
        try:
            with open_image(path) as image:
                image.load()
                return image.size, image.mode
        except MedlitError as err:
            return Problem(str(path), str(err).removeprefix(f"{path}: "))
        except DECODE_ERRORS as err:
            return Problem(str(path), f"cannot decode image ({err})", "re-export it as JPEG or PNG")

    with ThreadPoolExecutor(max_workers=available_cpus()) as pool:
        for result in pool.map(decode, paths):
            if isinstance(result, Problem):
                check.problems.append(result)
            else:
                sizes[result[0]] = sizes.get(result[0], 0) + 1
                modes[result[1]] = modes.get(result[1], 0) + 1
    if sizes:
        common = sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{w}x{h} ({n})" for (w, h), n in common)
        check.summary[f"decoded images ({len(paths)})"] = f"sizes {shown}; modes " + ", ".join(
            f"{m} ({n})" for m, n in sorted(modes.items())
        )


def _summarize(check: DataCheck, csv_path: Path, table: pd.DataFrame) -> None:
    """Image (and, for HAM10000 metadata, lesion and class) counts of one CSV into ``check.summary``."""
    if "dx" in table:
        counts = table["dx"].str.strip().str.lower().value_counts()
        check.summary[f"{csv_path.name}: images"] = f"{len(table)} ({table['lesion_id'].nunique()} lesions)"
        check.summary[f"{csv_path.name}: classes"] = ", ".join(
            f"{name} {int(counts.get(code, 0))}" for name, code in zip(CLASS_NAMES, DX_CODES, strict=True)
        )
    else:
        check.summary[f"{csv_path.name}: images"] = str(len(table))


def check_dataset(
    root: Path | str,
    metadata_csv: str,
    image_dir: str,
    test_csv: str | None = None,
    test_image_dir: str | None = None,
    full: bool = True,
    classes: Sequence[str] | None = None,
) -> DataCheck:
    """Every problem of the data in any layout of :mod:`lesion_cls.labels` and of the test set, and a summary (the
    ``check`` command): :func:`check_ham_dataset` for HAM10000, :func:`check_own_dataset` otherwise."""
    check, root = DataCheck(), Path(root)
    try:
        layout = detect_layout(root, metadata_csv)
    except MedlitError as err:
        check.add_error(err, root)
        return check
    if layout == "ham10000" and not _has_label_column(test_csv):
        return check_ham_dataset(root, metadata_csv, image_dir, test_csv, test_image_dir, full)
    return check_own_dataset(root, metadata_csv, image_dir, test_csv, test_image_dir, full, classes)


def _has_label_column(test_csv: str | None) -> bool:
    try:
        return bool(test_csv) and set(LABELS_COLUMNS) <= set(read_csv_table(Path(test_csv), ()).columns)
    except MedlitError:
        return False


def check_own_dataset(
    root: Path,
    metadata_csv: str,
    image_dir: str,
    test_csv: str | None = None,
    test_image_dir: str | None = None,
    full: bool = True,
    classes: Sequence[str] | None = None,
) -> DataCheck:
    """A labels CSV or class folders (and a test CSV): the first problem of the labels (one line: the readers stop
    there), every missing image, with ``full`` every image that does not decode; classes, groups and images per
    class in the summary."""
    check = DataCheck()
    try:
        data = read_labelled_images(root, metadata_csv, image_dir, classes, with_paths=False)
    except MedlitError as err:
        check.add_error(err, root)
        return check
    table, where = data.table, root if data.layout == "class_folders" else root / metadata_csv
    counts = np.bincount(table["label"], minlength=len(data.class_names))
    check.summary[f"{where.name}: layout"] = data.layout.replace("_", " ")
    groups = "" if data.unit == "image" else f" ({table['lesion_id'].nunique()} {data.unit}s)"  # no group column
    check.summary[f"{where.name}: images"] = f"{len(table)}{groups}"
    check.summary[f"{where.name}: classes"] = ", ".join(
        f"{name} {int(n)}" for name, n in zip(data.class_names, counts, strict=True)
    )
    if "path" in table:  # class folders
        paths = [Path(p) for p in table["path"]]
    else:
        paths = _listed_images(check, where, root / image_dir, table["image_id"])
    if test_csv:
        try:
            test, _ = read_test_csv(Path(test_csv), None, data.class_names)
        except MedlitError as err:
            check.add_error(err, test_csv)
        else:
            check.summary[f"{Path(test_csv).name}: images"] = str(len(test))
            paths += _listed_images(check, Path(test_csv), Path(test_image_dir), test["image_id"])
            leaked = sorted(set(test["image_id"]) & set(table["image_id"]))
            if leaked:
                check.add(test_csv, f"{len(leaked)} test image(s) also in the training data: {leaked[0]}, ...")
    if full:
        _decode_all(paths, check)
    return check


def _listed_images(check: DataCheck, csv_path: Path, image_dir: Path, found: pd.Series) -> list[Path]:
    """The paths of a CSV's images (``found``: its image ids, in row order); a problem for each one ``image_dir``
    lacks (or for a missing folder)."""
    try:
        images = index_images(image_dir)
    except MedlitError as err:
        check.add_error(err, image_dir)
        return []
    for i in np.flatnonzero(~found.isin(images).to_numpy()):
        check.add(f"{csv_path} row {i + 2}", f"image '{found.iloc[i]}' not found in {image_dir}", ".jpg/.png")
    return [images[i] for i in found if i in images]


def check_ham_dataset(
    root: Path | str,
    metadata_csv: str,
    image_dir: str,
    test_csv: str | None = None,
    test_image_dir: str | None = None,
    full: bool = True,
) -> DataCheck:
    """Every problem of the metadata, the images and the test set, and a summary (the ``check`` command).

    Args:
        root: Folder holding ``metadata_csv`` and ``image_dir`` (both relative to it).
        test_csv: Optional ISIC one-hot CSV of the test set; test_image_dir: its image folder.
        full: Also open and decode every image (the cheap check reads the CSV files and lists the folders).
    """
    check, root = DataCheck(), Path(root)
    sources = [(root / metadata_csv, root / image_dir, HAM_COLUMNS, ham_metadata_problems)]
    if test_csv:
        sources.append((Path(test_csv), Path(test_image_dir), ("image", *CLASS_NAMES), isic_ground_truth_problems))
    ids: dict[str, set[str]] = {}
    for csv_path, images_path, columns, row_problems in sources:
        try:
            table = read_csv_table(csv_path, columns)
        except MedlitError as err:
            check.add_error(err, csv_path)
            continue
        check.extend(row_problems(table, csv_path))
        _summarize(check, csv_path, table)
        found = table["image_id" if "image_id" in table else "image"].str.strip()
        ids[str(csv_path)] = set(found)
        paths = _listed_images(check, csv_path, images_path, found)
        if full:
            _decode_all(paths, check)
    if len(ids) == 2:
        leaked = sorted(set.intersection(*ids.values()))
        if leaked:
            check.add(test_csv, f"{len(leaked)} test image(s) also in the training metadata: {leaked[0]}, ...")
    return check
