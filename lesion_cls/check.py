"""The dataset check of HAM10000 / ISIC 2018 Task 3 (the ``check`` command): every problem of the metadata, the
images and the test set, and a summary."""

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

__all__ = ["check_ham_dataset"]


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
        try:
            images = index_images(images_path)
        except MedlitError as err:
            check.add_error(err, images_path)
            continue
        for i in np.flatnonzero(~found.isin(images).to_numpy()):
            check.add(f"{csv_path} row {i + 2}", f"image '{found.iloc[i]}' not found in {images_path}", ".jpg/.png")
        if full:
            _decode_all([images[i] for i in found if i in images], check)
    if len(ids) == 2:
        leaked = sorted(set.intersection(*ids.values()))
        if leaked:
            check.add(test_csv, f"{len(leaked)} test image(s) also in the training metadata: {leaked[0]}, ...")
    return check
