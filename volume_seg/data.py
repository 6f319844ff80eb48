"""3D volumes for segmentation: LA h5 (UA-MT layout) and MSD-style NIfTI, patch sampling, the DataModule.

Layouts (``data.layout``, detected with ``auto``):

* ``la_h5``: ``<root>/<CASE>/mri_norm2.h5`` with datasets ``image`` and ``label``; list files (one case per
  line, e.g. ``train.list``/``test.list`` or ``labeled16.list``/``test20.list``) name the cases. No spacing
  is stored: distances are in voxels unless ``data.spacing`` is given.
* ``msd``: ``<root>/dataset.json`` with ``training`` entries ``{"image": ..., "label": ...}``
  (``imagesTr/``, ``labelsTr/``).
* ``folders``: ``<root>/images/`` and ``<root>/labels/`` holding files of the same names.

NIfTI volumes keep their spacing (from the header) and affine. Labels are binary (``label > 0``) when
``data.num_classes`` is 2 and integer classes ``0 .. num_classes - 1`` otherwise (float label files are
rounded). Every volume is checked as it is read (:func:`load_volume`: readable, 3D, finite, label shape and
affine, label values), then loaded and normalised once and kept in memory (:func:`cache_volumes`); training
draws random patches from them, validation and test use whole volumes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from monai import transforms as mt
from monai.data import DataLoader
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from common.check import DataCheck, Problem
from common.errors import MedlitError, check_choice
from common.loaders import available_cpus, default_workers, evaluation_sampler

__all__ = [
    "AUGMENTATIONS",
    "NORMALIZATIONS",
    "LoadVolumed",
    "PatchDataset",
    "VolumeDataModule",
    "cache_volumes",
    "discover_cases",
    "load_volume",
    "read_case_list",
]

_NIFTI = (".nii.gz", ".nii")
LA_FILE = "mri_norm2.h5"


# --- discovery and reading --------------------------------------------------------------------------------
def read_case_list(path: Path) -> list[str]:
    """Case names, one per line (blank lines and ``#`` comments skipped; a trailing path part is dropped)."""
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
    path = root / "dataset.json"
    if not path.is_file():
        raise MedlitError(f"{path}: not found (data.layout msd needs dataset.json)")
    try:
        entries = json.loads(path.read_text())["training"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise MedlitError(f"{path}: expected JSON with a 'training' list ({err})") from None
    records = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry or "label" not in entry:
            raise MedlitError(f"{path}: training entry {i} needs 'image' and 'label'")
        image, label = root / entry["image"], root / entry["label"]
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
    """The layout and one record (``case``, ``image``, ``label``, ``format``) per labelled case; refuses
    repeated case ids and missing files (:func:`record_problems`)."""
    layout, records = _find_cases(root, layout)
    problems = record_problems(records, root)
    if problems:
        raise MedlitError(f"{problems[0]}" + (f" ({len(problems)} problems in all)" if len(problems) > 1 else ""))
    return layout, records


def _find_cases(root: Path, layout: str) -> tuple[str, list[dict[str, Any]]]:
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


def _values(array: np.ndarray, limit: int = 8) -> str:
    found = np.unique(array)
    shown = ", ".join(f"{v:g}" for v in found[:limit].tolist())
    return shown + (f", ... ({len(found)} values)" if len(found) > limit else "")


def _labels_to_classes(label: np.ndarray, num_classes: int, path: str) -> np.ndarray:
    """Integer classes ``0 .. num_classes - 1`` from a label array, refusing what is not a label map.

    Float files holding exact integers are fine. Binary tasks take ``label > 0`` (so 0/1, 0/255 and
    multi-class maps collapsed to foreground all work); values that are not integers (an interpolated or
    probability map) or negative are refused, naming the values found and those expected.
    """
    if not np.issubdtype(label.dtype, np.integer):
        if not np.isfinite(label).all():
            raise MedlitError(f"{path}: label holds NaN or Inf values; expected integer classes")
        if (np.abs(label - np.rint(label)) > 1e-3).any():
            raise MedlitError(
                f"{path}: label values {_values(label)} are not integers (an interpolated or probability map?); "
                f"expected classes 0..{num_classes - 1}" + (" (or 0/255)" if num_classes == 2 else "")
            )
        label = np.rint(label)
    if label.min(initial=0) < 0:
        raise MedlitError(
            f"{path}: label values {_values(label)} include negative values; expected 0..{num_classes - 1}"
        )
    if num_classes == 2:
        return (label > 0).astype(np.uint8)
    if label.max(initial=0) >= num_classes:
        raise MedlitError(
            f"{path}: label values {_values(label)} are not classes 0..{num_classes - 1} (data.num_classes is "
            f"{num_classes})"
        )
    return label.astype(np.uint8)


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

    Returns:
        ``image`` float32 ``[1, X, Y, Z]``, ``label`` uint8 ``[1, X, Y, Z]`` (absent when unlabelled),
        ``spacing`` float64 ``[3]`` (NaN when unknown), ``affine`` ``[4, 4]`` and ``case``.

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


def cache_volumes(records: Sequence[Mapping[str, Any]], transform: Callable, threads: int | None = None) -> list:
    """``transform`` (loading and normalisation) applied once to every record, kept in memory.

    What MONAI's ``CacheDataset`` does, with one difference that matters for bad input: HDF5 files are read one
    at a time in the calling thread (h5py is not thread-safe; reading from several threads aborted or hung on
    truncated files). NIfTI files decode in ``threads`` threads (default: the cores this process may use). An
    error is re-raised as the transform raised it (MONAI's ``Compose`` wraps a :class:`MedlitError` in
    ``RuntimeError`` from it; the CLI finds it with :func:`common.errors.find_medlit_error`).
    """
    if not records:
        return []
    serial = any(r.get("format") == "h5" for r in records)
    workers = 1 if serial else min(len(records), threads or available_cpus())
    if workers == 1:
        return [transform(dict(r)) for r in records]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(transform, dict(r)) for r in records]
        try:
            return [f.result() for f in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


class LoadVolumed(mt.MapTransform):
    """MONAI dictionary transform: a discovery record in, :func:`load_volume`'s dict out."""

    def __init__(self, num_classes: int, spacing: Sequence[float] | None = None) -> None:
        super().__init__(keys=["image"])
        self.num_classes = num_classes
        self.spacing = spacing

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        return load_volume(data, self.num_classes, self.spacing)


# --- transforms --------------------------------------------------------------------------------------------
NORMALIZATIONS: dict[str, Callable[[], list[mt.Transform]]] = {
    "zscore": lambda: [mt.NormalizeIntensityd(keys="image")],
    "minmax": lambda: [mt.ScaleIntensityd(keys="image", minv=0.0, maxv=1.0)],
    "percentile": lambda: [
        mt.ScaleIntensityRangePercentilesd(keys="image", lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True)
    ],
    "none": lambda: [],
}
"""Per-volume intensity normalisation by name (``zscore``: mean 0, std 1 over the whole volume)."""


def _rotflip() -> list[mt.Transform]:
    # UA-MT's RandomRotFlip: k * 90 degrees in the axial plane (k uniform in 0..3), then a random flip
    return [
        mt.RandRotate90d(keys=["image", "label"], prob=0.75, max_k=3, spatial_axes=(0, 1)),
        mt.RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
        mt.RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
    ]


def _elastic(
    prob: float, sigma_range: tuple[float, float], magnitude_range: tuple[float, float], padding_mode: str
) -> mt.Transform:
    return mt.Rand3DElasticd(
        keys=["image", "label"],
        prob=prob,
        sigma_range=sigma_range,
        magnitude_range=magnitude_range,
        mode=("bilinear", "nearest"),
        padding_mode=padding_mode,
    )


def _rich() -> list[mt.Transform]:
    return [
        *_rotflip(),
        mt.RandAffined(
            keys=["image", "label"],
            prob=0.3,
            scale_range=(0.1, 0.1, 0.1),
            rotate_range=(0, 0, 0.26),
            mode=("bilinear", "nearest"),
            padding_mode="border",
        ),
        _elastic(prob=0.15, sigma_range=(5, 8), magnitude_range=(40, 120), padding_mode="border"),
        mt.RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        mt.RandShiftIntensityd(keys="image", offsets=0.1, prob=0.5),
        mt.RandAdjustContrastd(keys="image", gamma=(0.8, 1.25), prob=0.3),
        mt.RandGaussianNoised(keys="image", std=0.05, prob=0.3),
    ]


def _nnunet(elastic: bool = False) -> list[mt.Transform]:
    # nnU-Net-like 3D augmentation with MONAI transforms (no rot90: any patch); milder rotation out of plane
    # (+-15 degrees) and no low-resolution simulation, for short CPU budgets
    spatial = [
        mt.RandAffined(
            keys=["image", "label"],
            prob=0.2,
            rotate_range=(0.26, 0.26, 0.52),  # +-15 degrees out of plane, +-30 degrees in plane
            scale_range=(0.3, 0.3, 0.3),  # x0.7 .. x1.3
            mode=("bilinear", "nearest"),
            padding_mode="zeros",
        )
    ]
    if elastic:
        spatial.append(_elastic(prob=0.2, sigma_range=(9, 13), magnitude_range=(0, 200), padding_mode="zeros"))
    return [
        *spatial,
        mt.RandGaussianNoised(keys="image", std=0.1, prob=0.1),
        mt.RandGaussianSmoothd(keys="image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.2),
        mt.RandScaleIntensityd(keys="image", factors=0.25, prob=0.15),  # brightness
        mt.RandAdjustContrastd(keys="image", gamma=(0.7, 1.5), prob=0.3),
        *(mt.RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=axis) for axis in range(3)),
    ]


AUGMENTATIONS: dict[str, Callable[[], list[mt.Transform]]] = {
    "none": lambda: [],
    "rotflip": _rotflip,
    "rich": _rich,
    "nnunet": _nnunet,
    "nnunet_elastic": lambda: _nnunet(elastic=True),
}
"""Training augmentation presets: ``none`` (seed configs 1-2), ``rotflip`` (seed config 3), ``rich``
(rotflip + scaling/rotation, elastic deformation, intensity scale/shift/gamma, noise), ``nnunet`` (nnU-Net-like:
rotation and scaling, noise, blur, brightness, gamma, mirroring on every axis) and ``nnunet_elastic``
(the same with elastic deformation)."""

MIRROR_AXES: dict[str, tuple[int, ...]] = {
    "none": (),
    "rotflip": (0, 1),
    "rich": (0, 1),
    "nnunet": (0, 1, 2),
    "nnunet_elastic": (0, 1, 2),
}
"""The spatial axes each preset mirrors in training: the only mirrorings flip test-time augmentation may use (a
model never shown a volume upside down in Z segments the Z-mirrored one badly; averaging it in cost the LA recipe
12 Dice points at 10 minutes)."""

ROT90_AUGMENTATIONS = ("rotflip", "rich")
"""The presets that rotate by 90 degrees in the first two axes (patches need equal first two sides)."""


def _plain_tensors() -> mt.Transform:
    # plain tensors (no MetaTensor bookkeeping) for the cache and the batches
    return mt.EnsureTyped(keys=["image", "label"], data_type="tensor", track_meta=False, allow_missing_keys=True)


class PatchDataset(Dataset):
    """Random patches from in-memory volumes: item ``i`` is a fresh patch of volume ``i % len(volumes)``.

    One epoch therefore draws ``patches_per_volume`` patches from every training volume.
    """

    def __init__(self, volumes: Sequence[Mapping[str, Any]], transform: Callable, patches_per_volume: int) -> None:
        self.volumes = volumes
        self.transform = transform
        self.patches_per_volume = patches_per_volume

    def __len__(self) -> int:
        return len(self.volumes) * self.patches_per_volume

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        volume = self.volumes[index % len(self.volumes)]
        patch = self.transform({"image": volume["image"], "label": volume["label"]})
        if isinstance(patch, list):  # RandCropByPosNegLabeld returns a list of samples
            patch = patch[0]
        return {"image": patch["image"].float(), "label": patch["label"]}


class _Volumes(Dataset):
    """Whole cached volumes for validation/test/predict (batch size 1: shapes differ)."""

    def __init__(self, volumes: Sequence[Mapping[str, Any]]) -> None:
        self.volumes = volumes

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, index: int) -> dict[str, Any]:
        volume = self.volumes[index]
        item = {
            "image": torch.as_tensor(volume["image"]).float(),
            "case": volume["case"],
            "spacing": torch.as_tensor(volume["spacing"]),
            "affine": torch.as_tensor(volume["affine"]),
        }
        if "label" in volume:
            item["label"] = torch.as_tensor(volume["label"])
        return item


# --- datamodule ---------------------------------------------------------------------------------------------
class VolumeDataModule(LightningDataModule):
    """Volumes for 3D segmentation: split, cached in memory, random training patches, whole-volume evaluation.

    Args:
        root: Dataset folder.
        layout: ``auto``, ``la_h5``, ``msd`` or ``folders`` (see module docstring).
        train_list: Case list (relative to ``root``) of the labelled training pool; default: every case not
            in ``test_list``.
        test_list: Case list of the test set; without it, ``test_fraction`` of the pool is held out.
        val_fraction: Fraction of the training pool used for validation (model selection); never a test case.
        test_fraction: Fraction held out for testing when there is no ``test_list``.
        split_seed: Seed of the validation/test split.
        num_classes: Classes including background; 2 = binary (``label > 0``).
        class_names: Names of the classes, background first (linked to ``model.class_names``, which checks the count;
            default ``background``, ``foreground`` / ``class_1``...).
        spacing: Voxel spacing in mm to use instead of the file's (LA h5 files store none).
        normalize: ``zscore``, ``minmax``, ``percentile`` or ``none``, per volume.
        patch_size: Training patch (and sliding-window ROI) size; volumes smaller than it are zero-padded.
        patches_per_volume: Patches drawn from each training volume per epoch (defines an epoch).
        sampling: ``uniform`` random crops, or ``foreground``: a share ``foreground_ratio`` of the patches is
            centred on a foreground voxel.
        foreground_ratio: See ``sampling``.
        augment: ``none``, ``rotflip``, ``rich``, ``nnunet`` or ``nnunet_elastic`` (:data:`AUGMENTATIONS`).
        batch_size: Training patches per batch (per device); evaluation uses one whole volume per batch.
        num_workers: DataLoader worker processes for training patches; default: :func:`common.loaders.default_workers`
            (the cores shared among the machine's training processes, at most 8).
        predict_dir: Folder of volumes for ``predict``.
        empty_labels: What to do with a training or validation case whose label has no foreground: ``warn``
            (train on it, say which) or ``error`` (refuse).
    """

    def __init__(
        self,
        root: str = "data/LA",
        layout: Literal["auto", "la_h5", "msd", "folders"] = "auto",
        train_list: str | None = None,
        test_list: str | None = None,
        val_fraction: float = 0.2,
        test_fraction: float = 0.2,
        split_seed: int = 42,
        num_classes: int = 2,
        class_names: list[str] | None = None,
        spacing: list[float] | None = None,
        normalize: str = "zscore",
        patch_size: list[int] = (112, 112, 80),
        patches_per_volume: int = 8,
        sampling: Literal["uniform", "foreground"] = "uniform",
        foreground_ratio: float = 0.5,
        augment: str = "none",
        batch_size: int = 4,
        num_workers: int | None = None,
        predict_dir: str | None = None,
        empty_labels: str = "warn",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_choice("data.empty_labels", empty_labels, ("warn", "error"))
        check_choice("data.normalize", normalize, NORMALIZATIONS)
        check_choice("data.augment", augment, AUGMENTATIONS)
        if num_classes < 2:
            raise MedlitError(f"data.num_classes counts the background and must be >= 2, got {num_classes}")
        if len(patch_size) != 3:
            raise MedlitError(f"data.patch_size needs 3 numbers, got {list(patch_size)}")
        if augment in ROT90_AUGMENTATIONS and patch_size[0] != patch_size[1]:
            raise MedlitError(
                f"data.augment={augment} rotates in the first two axes, so data.patch_size must have equal first "
                f"two sides, got {list(patch_size)}"
            )
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1:
            raise MedlitError("data.val_fraction must be in (0, 1) and data.test_fraction in [0, 1)")
        self.split: pd.DataFrame | None = None
        self.train_dataset: PatchDataset | None = None
        self.val_dataset: _Volumes | None = None
        self.test_dataset: _Volumes | None = None
        self.predict_dataset: _Volumes | None = None

    @property
    def has_test_data(self) -> bool:
        return bool(self.hparams.test_list) or self.hparams.test_fraction > 0

    # -- split --
    def _split(self) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
        """The case table (``case, split, image``) and the discovery record of every case."""
        hp = self.hparams
        root = Path(hp.root)
        _, records = discover_cases(root, hp.layout)
        by_case = {r["case"]: r for r in records}

        def named(list_name: str) -> list[str]:
            names = read_case_list(root / list_name)
            missing = [n for n in names if n not in by_case]
            if missing:
                shown = ", ".join(f"'{n}'" for n in missing[:5]) + (", ..." if len(missing) > 5 else "")
                raise MedlitError(f"{root / list_name}: {len(missing)} case(s) not found under {root}: {shown}")
            return names

        test = named(hp.test_list) if hp.test_list else []
        pool = named(hp.train_list) if hp.train_list else [c for c in by_case if c not in set(test)]
        leaked = sorted(set(pool) & set(test))
        if leaked:
            raise MedlitError(f"case '{leaked[0]}' is in both {hp.train_list} and {hp.test_list}")
        if not test and hp.test_fraction > 0:
            pool, test = train_test_split(pool, test_size=hp.test_fraction, random_state=hp.split_seed)
        if len(pool) < 2:
            raise MedlitError(f"{root}: need at least 2 training cases to hold one out for validation")
        n_val = max(1, round(hp.val_fraction * len(pool)))
        train, val = train_test_split(sorted(pool), test_size=n_val, random_state=hp.split_seed)
        rows = [(c, s) for s, cases in (("train", train), ("val", val), ("test", test)) for c in sorted(cases)]
        split = pd.DataFrame(rows, columns=["case", "split"])
        split["image"] = [by_case[c]["image"] for c in split["case"]]
        return split, by_case

    # -- dataset check --
    def check_data(self, full: bool = True) -> DataCheck:
        """Every problem of the cases and the case lists, and a summary (``check`` command).

        Args:
            full: Also read and check every volume (the cheap check lists the files and reads the lists).
        """
        check, hp, root = DataCheck(), self.hparams, Path(self.hparams.root)
        try:
            layout, records = _find_cases(root, hp.layout)
        except MedlitError as err:
            check.add_error(err, root)
            return check
        check.extend(record_problems(records, root))
        known = {r["case"] for r in records}
        for list_name in (hp.train_list, hp.test_list):
            if list_name:
                self._check_list(check, root / list_name, known)
        check.summary["cases"] = f"{len(records)} ({layout} layout)"
        if full:
            _check_volumes(check, [r for r in records if Path(r["image"]).is_file()], hp.num_classes, hp.spacing)
        return check

    @staticmethod
    def _check_list(check: DataCheck, path: Path, known: set[str]) -> None:
        try:
            names = read_case_list(path)
        except MedlitError as err:
            check.add_error(err, path)
            return
        check.extend(
            Problem(str(path), f"case '{n}' not found", "no such case folder or file") for n in names if n not in known
        )

    def split_table(self) -> pd.DataFrame:
        """One row per case: ``case, split, image`` (saved as ``split.csv``)."""
        assert self.split is not None, "call setup() first"
        return self.split[["case", "split", "image"]].copy()

    # -- lifecycle --
    def _deterministic(self) -> mt.Compose:
        hp = self.hparams
        return mt.Compose([LoadVolumed(hp.num_classes, hp.spacing), *NORMALIZATIONS[hp.normalize](), _plain_tensors()])

    def _cache(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return cache_volumes(records, self._deterministic())

    def _training_transform(self) -> mt.Compose:
        hp = self.hparams
        keys = ["image", "label"]
        patch = list(hp.patch_size)
        if hp.sampling == "foreground":
            crop = mt.RandCropByPosNegLabeld(
                keys=keys,
                label_key="label",
                spatial_size=patch,
                pos=hp.foreground_ratio,
                neg=1 - hp.foreground_ratio,
                num_samples=1,
            )
        else:
            crop = mt.RandSpatialCropd(keys=keys, roi_size=patch, random_size=False)
        return mt.Compose(
            [mt.SpatialPadd(keys=keys, spatial_size=patch), crop, *AUGMENTATIONS[hp.augment](), _plain_tensors()]
        )

    def setup(self, stage: str) -> None:
        if stage == "predict":
            if self.predict_dataset is None:
                if not self.hparams.predict_dir:
                    raise MedlitError("predict needs data.predict_dir: a folder of volumes")
                self.predict_dataset = _Volumes(self._cache(predict_records(Path(self.hparams.predict_dir))))
            return
        if self.split is not None:
            return
        split, records = self._split()
        cache = self._cache([records[c] for c in split["case"]])
        volumes = {case: cache[i] for i, case in enumerate(split["case"])}
        for name in ("val", "test"):
            cases = split.loc[split["split"] == name, "case"]
            setattr(self, f"{name}_dataset", _Volumes([volumes[c] for c in cases]))
        self._check_foreground(split, volumes)
        train = [volumes[c] for c in split.loc[split["split"] == "train", "case"]]
        self.train_dataset = PatchDataset(train, self._training_transform(), self.hparams.patches_per_volume)
        self.split = split
        counts = split["split"].value_counts()
        rank_zero_info(
            "volume split: "
            + ", ".join(f"{s} {counts.get(s, 0)} cases" for s in ("train", "val", "test"))
            + f"; epoch = {len(self.train_dataset)} patches of {list(self.hparams.patch_size)}"
        )

    def _check_foreground(self, split: pd.DataFrame, volumes: dict[str, Mapping[str, Any]]) -> None:
        """Warn about (or refuse) training and validation cases without any foreground voxel."""
        fitting = split.loc[split["split"].isin(["train", "val"]), "case"]
        empty = [c for c in fitting if not bool(torch.as_tensor(volumes[c]["label"]).any())]
        if not empty:
            return
        message = f"{len(empty)} training/validation case(s) have an empty label: {', '.join(empty[:5])}"
        if self.hparams.empty_labels == "error":
            raise MedlitError(f"{message} (data.empty_labels=error; set warn to train on them)")
        rank_zero_warn(message + " (set data.empty_labels=error to refuse them)")

    # -- loaders --
    def _workers(self) -> int:
        """``data.num_workers``, or the default derived from the cores and the training processes."""
        if self.hparams.num_workers is not None:
            return int(self.hparams.num_workers)
        processes = self.trainer.num_devices if self.trainer is not None else 1
        return default_workers(processes)

    def train_dataloader(self) -> DataLoader:
        workers = self._workers()
        return DataLoader(
            self.train_dataset,
            batch_size=self.hparams.batch_size,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            drop_last=len(self.train_dataset) > self.hparams.batch_size,
        )

    def _whole_volumes(self, dataset: Dataset | None) -> DataLoader:
        """One whole volume per batch, every volume once, also across processes (metrics count each once)."""
        if dataset is None:
            raise MedlitError("the datamodule has not been set up for this stage")
        return DataLoader(dataset, batch_size=1, shuffle=False, sampler=evaluation_sampler(dataset), num_workers=0)

    def val_dataloader(self) -> DataLoader:
        return self._whole_volumes(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._whole_volumes(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._whole_volumes(self.predict_dataset)
