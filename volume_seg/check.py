"""The dataset check of segmentation volumes (the ``check`` command): every problem of the cases and the case
lists, and a summary.

The cheap check (``full=False``, what ``fit`` runs before training) also reads every label file alone, so that a
label value outside the task's classes stops ``fit`` before a run dir is made; the full check reads every volume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from common.check import DataCheck, Problem
from common.errors import MedlitError
from volume_seg.io import find_cases, label_problem, label_values, load_volume, read_case_list, record_problems

__all__ = ["check_volume_dataset"]


def check_volume_dataset(
    root: Path,
    layout: str,
    train_list: str | None,
    test_list: str | None,
    num_classes: int,
    spacing: Sequence[float] | None,
    full: bool = True,
) -> DataCheck:
    """Every problem of the cases and the case lists, and a summary (the ``check`` command).

    Args:
        root: Dataset folder.
        layout: ``auto``, ``la_h5``, ``msd`` or ``folders``.
        train_list: Case list relative to ``root``, or ``None``.
        test_list: Case list relative to ``root``, or ``None``.
        num_classes: Classes including background.
        spacing: Voxel spacing in mm instead of the files', or ``None``.
        full: Read and check every volume (the cheap check lists the files, reads the lists and the label files).
    """
    check = DataCheck()
    try:
        layout, records = find_cases(root, layout)
    except MedlitError as err:
        check.add_error(err, root)
        return check
    check.extend(record_problems(records, root))
    known = {r["case"] for r in records}
    for list_name in (train_list, test_list):
        if list_name:
            _check_list(check, root / list_name, known)
    check.summary["cases"] = f"{len(records)} ({layout} layout)"
    if full:  # load_volume checks the label values too
        _check_volumes(check, [r for r in records if Path(r["image"]).is_file()], num_classes, spacing)
    else:
        _check_label_values(check, [r for r in records if Path(r["label"]).is_file()], num_classes)
    return check


def _check_list(check: DataCheck, path: Path, known: set[str]) -> None:
    """Problems of one case list into ``check``: unreadable, or naming cases that do not exist."""
    try:
        names = read_case_list(path)
    except MedlitError as err:
        check.add_error(err, path)
        return
    check.extend(
        Problem(str(path), f"case '{n}' not found", "no such case folder or file") for n in names if n not in known
    )


def _check_label_values(check: DataCheck, records: Sequence[Mapping[str, Any]], num_classes: int) -> None:
    """Problems of the label values into ``check``: each label file read alone, its values against the classes."""
    for record in records:
        try:
            problem = label_problem(label_values(record), num_classes)
        except MedlitError as err:
            check.add_error(err, record["label"])
            continue
        if problem:
            check.add(record["label"], problem)


def _check_volumes(
    check: DataCheck, records: Sequence[Mapping[str, Any]], num_classes: int, spacing: Sequence[float] | None
) -> None:
    """Read every volume (one at a time: memory stays flat); problems and a summary into ``check``."""
    shapes, spacings, lows, highs, values, empty = [], set(), [], [], set(), []
    for record in records:
        try:
            volume = load_volume(record, num_classes, spacing)
        except MedlitError as err:
            check.add_error(err, record["image"])
            continue
        image = volume["image"][0]
        shapes.append(image.shape)
        known = volume["spacing"]
        spacings.add("none stored (voxels)" if np.isnan(known).any() else str(np.round(known, 4).tolist()))
        lows.append(float(image.min()))
        highs.append(float(image.max()))
        if "label" in volume:
            values.update(np.unique(volume["label"]).tolist())
            if not volume["label"].any():
                empty.append(record["case"])
    if shapes:
        sizes = np.array(shapes)
        check.summary["shapes"] = " x ".join(f"{lo}..{hi}" for lo, hi in zip(sizes.min(0), sizes.max(0), strict=True))
        check.summary["spacings"] = ", ".join(sorted(spacings)[:4]) + (" ..." if len(spacings) > 4 else "")
        check.summary["intensity"] = (
            f"minima {min(lows):.4g}..{max(lows):.4g}, maxima {min(highs):.4g}..{max(highs):.4g}"
        )
        check.summary["label values"] = ", ".join(str(v) for v in sorted(values)) + f" (as classes of {num_classes})"
        check.summary["empty labels"] = f"{len(empty)} case(s)" + (f": {', '.join(empty[:5])}" if empty else "")
