"""Segmentation datasets on disk: discovering the cases of a layout, reading and validating volumes.

Layouts (``data.layout``, detected with ``auto``):

* ``la_h5``: ``<root>/<CASE>/mri_norm2.h5`` with datasets ``image`` and ``label``; list files (one case per
  line, e.g. ``train.list``/``test.list`` or ``labeled16.list``/``test20.list``) name the cases. No spacing
  is stored: distances are in voxels unless ``data.spacing`` is given.
* ``msd``: ``<root>/dataset.json`` with ``training`` entries ``{"image": ..., "label": ...}``
  (``imagesTr/``, ``labelsTr/``), read with MONAI's :func:`~monai.data.load_decathlon_datalist`.
* ``folders``: ``<root>/images/`` and ``<root>/labels/`` holding files of the same names.

NIfTI volumes keep their spacing (from the header) and affine. Labels are the integer classes
``0 .. num_classes - 1`` (float label files holding exact integers are rounded; a binary label may also be
0/255); any other value is refused (:func:`label_problem`). Every volume is checked as it is read
(:func:`load_volume`: readable, 3D, finite, label shape and affine, label values); :func:`label_values` reads a
label alone, for the check before training. The split is :mod:`volume_seg.splits`, the dataset check
:mod:`volume_seg.check`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import nibabel as nib
import numpy as np
from monai.data import load_decathlon_datalist

from common.check import Problem
from common.errors import MedlitError, check_choice

__all__ = [
    "LA_FILE",
    "discover_cases",
    "find_cases",
    "label_problem",
    "label_values",
    "load_volume",
    "predict_records",
    "read_case_list",
    "record_problems",
]

_NIFTI = (".nii.gz", ".nii")
LA_FILE = "mri_norm2.h5"
"""The file of one case in the LA h5 layout: ``<root>/<CASE>/mri_norm2.h5``."""


# --- discovery ------------------------------------------------------------------------------------------------
def read_case_list(path: Path) -> list[str]:
    """Case names, one per line (blank lines and ``#`` comments skipped; a trailing path part is dropped).

    Raises:
        MedlitError: The file is missing, names no case or names one twice.
    """
    if not path.is_file():
        raise MedlitError(f"{path}: case list not found")
    names = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.append(Path(line.removesuffix(LA_FILE).rstrip("/")).name)
    if not names:
        raise MedlitError(f"{path}: no case names")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise MedlitError(f"{path}: case '{repeated[0]}' is listed more than once ({len(repeated)} repeated name(s))")
    return names


def _nifti_name(path: Path) -> str:
    name = path.name
    for suffix in _NIFTI:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _is_nifti(path: Path) -> bool:
    return path.name.endswith(_NIFTI)


def _la_records(root: Path) -> list[dict[str, Any]]:
    return [
        {"case": d.name, "image": str(d / LA_FILE), "label": str(d / LA_FILE), "format": "h5"}
        for d in sorted(root.iterdir())
        if (d / LA_FILE).is_file()
    ]


def _msd_records(root: Path) -> list[dict[str, Any]]:
    """One record per ``training`` entry of ``<root>/dataset.json``, in its order, paths joined to ``root``
    (MONAI's :func:`~monai.data.load_decathlon_datalist`; the ``test`` entries have no labels: not cases here)."""
    path = root / "dataset.json"
    if not path.is_file():
        raise MedlitError(f"{path}: not found (data.layout msd needs dataset.json)")
    try:
        entries = load_decathlon_datalist(path, is_segmentation=True, data_list_key="training", base_dir=root)
    except (OSError, UnicodeDecodeError, ValueError, TypeError) as err:  # ValueError: no 'training', bad JSON
        raise MedlitError(f"{path}: expected JSON with a 'training' list of objects ({err})") from None
    records = []
    for i, entry in enumerate(entries):
        if "image" not in entry or "label" not in entry:
            raise MedlitError(f"{path}: training entry {i} needs 'image' and 'label'")
        image, label = Path(entry["image"]), Path(entry["label"])
        records.append({"case": _nifti_name(image), "image": str(image), "label": str(label), "format": "nifti"})
    return records


def _folder_records(root: Path) -> list[dict[str, Any]]:
    for folder in ("images", "labels"):
        if not (root / folder).is_dir():
            raise MedlitError(f"{root / folder}: not found (data.layout folders needs images/ and labels/)")
    images = {_nifti_name(p): p for p in sorted((root / "images").iterdir()) if _is_nifti(p)}
    labels = {_nifti_name(p): p for p in sorted((root / "labels").iterdir()) if _is_nifti(p)}
    unlabelled = sorted(set(images) - set(labels))
    if unlabelled:
        more = (
            f" ({len(unlabelled)} images without a label: {', '.join(unlabelled[:5])}...)"
            if len(unlabelled) > 1
            else ""
        )
        raise MedlitError(f"{root / 'images' / unlabelled[0]}: no label of the same name in {root / 'labels'}{more}")
    return [{"case": n, "image": str(p), "label": str(labels[n]), "format": "nifti"} for n, p in images.items()]


_LAYOUTS: dict[str, Callable[[Path], list[dict[str, Any]]]] = {
    "la_h5": _la_records,
    "msd": _msd_records,
    "folders": _folder_records,
}


_LAYOUT_SIGNS: dict[str, Callable[[Path], bool]] = {
    "msd": lambda root: (root / "dataset.json").is_file(),
    "folders": lambda root: (root / "images").is_dir() and (root / "labels").is_dir(),
    "la_h5": lambda root: any((d / LA_FILE).is_file() for d in root.iterdir() if d.is_dir()),
}
"""How ``layout: auto`` recognises each layout, tried in this order."""


def discover_cases(root: Path, layout: str = "auto") -> tuple[str, list[dict[str, Any]]]:
    """The layout and one record (``case``, ``image``, ``label``, ``format``) per labelled case.

    Raises:
        MedlitError: No such folder or layout, no cases, repeated case ids or missing files
            (:func:`record_problems`).
    """
    layout, records = find_cases(root, layout)
    problems = record_problems(records, root)
    if problems:
        raise MedlitError(f"{problems[0]}" + (f" ({len(problems)} problems in all)" if len(problems) > 1 else ""))
    return layout, records


def find_cases(root: Path, layout: str) -> tuple[str, list[dict[str, Any]]]:
    """The layout and the records it names (files not checked)."""
    if not root.is_dir():
        raise MedlitError(f"data.root {root} does not exist")
    if layout == "auto":
        layout = next((name for name, sign in _LAYOUT_SIGNS.items() if sign(root)), "")
        if not layout:
            raise MedlitError(
                f"{root}: no known layout (dataset.json, images/ + labels/, or <CASE>/{LA_FILE}); set data.layout"
            )
    check_choice("data.layout", layout, _LAYOUTS)
    records = _LAYOUTS[layout](root)
    if not records:
        raise MedlitError(f"{root}: no cases found for layout {layout}")
    return layout, records


def record_problems(records: Sequence[Mapping[str, Any]], root: Path) -> list[Problem]:
    """Every repeated case id and missing image or label file of the discovered records."""
    names = [r["case"] for r in records]
    problems = [
        Problem(str(root), f"case id '{n}' appears more than once", "case ids must be unique")
        for n in sorted({n for n in names if names.count(n) > 1})
    ]
    problems += [
        Problem(str(r[key]), "file not found", f"{key} of case {r['case']}")
        for r in records
        for key in ("image", "label")
        if r.get(key) and not Path(r[key]).is_file()
    ]
    return problems


def predict_records(folder: Path) -> list[dict[str, Any]]:
    """Unlabelled volumes for ``predict``: NIfTI files, ``.h5`` files or ``<CASE>/mri_norm2.h5`` folders."""
    if not folder.is_dir():
        raise MedlitError(f"data.predict_dir {folder} does not exist")
    records = []
    for path in sorted(folder.iterdir()):
        if _is_nifti(path):
            records.append({"case": _nifti_name(path), "image": str(path), "label": None, "format": "nifti"})
        elif path.suffix == ".h5":
            records.append({"case": path.stem, "image": str(path), "label": None, "format": "h5"})
        elif (path / LA_FILE).is_file():
            records.append({"case": path.name, "image": str(path / LA_FILE), "label": None, "format": "h5"})
    if not records:
        raise MedlitError(f"{folder}: no .nii/.nii.gz/.h5 volumes")
    return records


# --- reading ----------------------------------------------------------------------------------------------------
def _distinct(array: np.ndarray) -> np.ndarray:
    """The sorted distinct values of ``array`` (counted, not sorted, for small non-negative integers: fast)."""
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    if np.issubdtype(array.dtype, np.integer) and array.size and array.min() >= 0 and array.max() < 2**16:
        return np.flatnonzero(np.bincount(array.ravel()))
    return np.unique(array)


def _shown(values: np.ndarray, limit: int = 8) -> str:
    """Distinct values for a message: the first ``limit``, then how many there are."""
    shown = ", ".join(f"{v:g}" for v in values[:limit].tolist())
    return shown + (f", ... ({len(values)} values)" if len(values) > limit else "")


def label_problem(found: np.ndarray, num_classes: int) -> str:
    """What is wrong with a label holding the distinct values ``found`` ("" when they are classes of the task).

    Float files holding exact integers are fine; a binary label may be 0/1 or 0/255 (a mask's usual form).
    Not numbers, not integers (an interpolated or probability map), negative, or outside
    ``0 .. num_classes - 1``: wrong.
    """
    classes = f"0..{num_classes - 1}"
    if not np.issubdtype(found.dtype, np.number) or np.issubdtype(found.dtype, np.complexfloating):
        return f"label data type {found.dtype} is not real numbers; expected integer classes {classes}"
    if not np.isfinite(found).all():
        return "label holds NaN or Inf values; expected integer classes"
    if (np.abs(found - np.rint(found)) > 1e-3).any():
        return (
            f"label values {_shown(found)} are not integers (an interpolated or probability map?); expected classes "
            f"{classes}" + (" (or 0/255)" if num_classes == 2 else "")
        )
    if found.min(initial=0) < 0:
        return f"label values {_shown(found)} include negative values; expected {classes}"
    outside = found[np.rint(found) >= num_classes]
    if not len(outside) or (num_classes == 2 and np.isin(found, [0, 255]).all()):
        return ""
    binary = "; a binary label is 0/1 or 0/255" if num_classes == 2 else ""
    return (
        f"label values {_shown(found)} are not classes {classes} of this task (outside them: {_shown(outside)}; "
        f"data.num_classes is {num_classes}{binary})"
    )


def _labels_to_classes(label: np.ndarray, num_classes: int, path: str) -> np.ndarray:
    """Integer classes ``0 .. num_classes - 1`` from a label array, refusing what is not a label map of the task
    (:func:`label_problem`; a binary 0/255 label becomes 0/1)."""
    problem = label_problem(_distinct(label), num_classes)
    if problem:
        raise MedlitError(f"{path}: {problem}")
    if not np.issubdtype(label.dtype, np.integer):
        label = np.rint(label)
    return (label > 0 if num_classes == 2 else label).astype(np.uint8)


def label_values(record: Mapping[str, Any]) -> np.ndarray:
    """The distinct values of a case's label, its label file read alone (the dataset check before training).

    Raises:
        MedlitError: The file cannot be read, or an h5 file has no ``label`` dataset.
    """
    path = record["label"]
    try:
        if record["format"] == "h5":
            with h5py.File(path, "r") as h5:
                if "label" not in h5:
                    raise MedlitError(f"{path}: no 'label' dataset (has: {', '.join(h5.keys()) or 'nothing'})")
                label = h5["label"][()]
        else:
            label = np.asanyarray(nib.load(path).dataobj)
    except (OSError, ValueError, EOFError, KeyError, nib.filebasedimages.ImageFileError) as err:
        raise MedlitError(f"{path}: cannot read volume ({str(err)[:200]})") from None
    return _distinct(label)


def _read_h5(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    path = record["image"]
    with h5py.File(path, "r") as h5:
        if "image" not in h5:
            raise MedlitError(f"{path}: no 'image' dataset (has: {', '.join(h5.keys()) or 'nothing'})")
        if record.get("label") and "label" not in h5:
            raise MedlitError(f"{path}: no 'label' dataset (has: {', '.join(h5.keys())})")
        image = h5["image"][()]
        label = h5["label"][()] if record.get("label") else None
    return image, label, np.full(3, np.nan), np.eye(4)


def _read_nifti(record: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    nifti = nib.load(record["image"])
    image = np.asanyarray(nifti.dataobj)
    spacing = np.asarray(nifti.header.get_zooms()[:3], dtype=np.float64)
    label = None
    if record.get("label"):
        label_file = nib.load(record["label"])
        label = np.asanyarray(label_file.dataobj)
        if label.shape == image.shape and not np.allclose(label_file.affine, nifti.affine, atol=1e-3):
            raise MedlitError(
                f"{record['label']}: affine differs from its image's ({record['image']}): the label is not "
                "in the image's space"
            )
    return image, label, spacing, nifti.affine


_READERS = {"h5": _read_h5, "nifti": _read_nifti}
"""Readers by file format: ``(image, label or None, spacing (NaN when unknown), affine)``."""


def _check_image(image: np.ndarray, path: str) -> None:
    if image.ndim != 3:
        raise MedlitError(f"{path}: expected a 3D volume, got shape {image.shape}")
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise MedlitError(f"{path}: image data type {image.dtype} is not real numbers")
    bad = np.count_nonzero(~np.isfinite(image)) if np.issubdtype(image.dtype, np.floating) else 0
    if bad:
        raise MedlitError(f"{path}: image holds {bad} NaN/Inf voxel(s); fix or mask them before training")


def load_volume(record: Mapping[str, Any], num_classes: int, spacing: Sequence[float] | None = None) -> dict[str, Any]:
    """Read and check one case.

    Args:
        record: A discovery record (``case``, ``image``, ``label`` or ``None``, ``format``).
        num_classes: Classes including background; 2 = binary (0/1, or 0/255).
        spacing: Voxel spacing in mm to use instead of the file's.

    Returns:
        ``image`` float32 ``[1, X, Y, Z]``, ``label`` uint8 ``[1, X, Y, Z]`` (absent when unlabelled),
        ``spacing`` float64 ``[3]`` in mm (NaN when unknown), ``affine`` ``[4, 4]`` and ``case``.

    Raises:
        MedlitError: unreadable or partial files, missing datasets, a volume that is not 3D, NaN/Inf voxels,
            a label whose shape or affine differs from the image's, label values that are not classes.
    """
    try:
        image, label, known, affine = _READERS[record["format"]](record)
    except (OSError, ValueError, EOFError, KeyError, nib.filebasedimages.ImageFileError) as err:
        raise MedlitError(f"{record['image']}: cannot read volume ({str(err)[:200]})") from None
    _check_image(image, record["image"])
    if label is not None and label.shape != image.shape:
        raise MedlitError(f"{record['label']}: label shape {label.shape} differs from image shape {image.shape}")
    out: dict[str, Any] = {"case": record["case"], "image": image.astype(np.float32)[None]}
    if label is not None:
        out["label"] = _labels_to_classes(label, num_classes, record["label"])[None]
    out["spacing"] = np.asarray(spacing, dtype=np.float64) if spacing is not None else known
    if spacing is not None:
        affine = np.diag([*out["spacing"], 1.0])
    out["affine"] = np.asarray(affine, dtype=np.float64)
    return out
