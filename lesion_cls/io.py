"""HAM10000 / ISIC 2018 Task 3 files: reading and validating the layouts, the lesion-grouped split, the dataset check.

Layouts read:

* HAM10000: ``<root>/HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``) and ``<root>/images/`` with
  ``<image_id>.jpg`` or ``.png``.
* ISIC 2018 Task 3 ground truth: a one-hot CSV ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` and its image folder,
  used as an explicit test set (``data.test_csv``).
* Prediction: any folder of ``.jpg``/``.png`` images (``data.predict_dir``).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import StratifiedGroupKFold, train_test_split

from common.check import DataCheck, Problem
from common.errors import MedlitError
from common.folds import check_pool
from common.loaders import available_cpus
from lesion_cls import CLASS_NAMES, DX_CODES

__all__ = [
    "DECODE_ERRORS",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "as_rgb",
    "check_ham_dataset",
    "ham_metadata_problems",
    "index_images",
    "lesion_folds",
    "open_image",
    "read_folder",
    "read_ham_metadata",
    "read_isic_ground_truth",
    "read_labelled_table",
    "split_by_lesion",
    "split_summary",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError)
"""What PIL raises for a file it cannot decode (truncated, not an image, a broken PNG chunk)."""
MAX_IMAGE_PIXELS = 89_478_485
"""The largest image read (width x height, about 9,460 x 9,460): PIL's decompression-bomb threshold. The largest
ISIC 2018 images have 30 million pixels; a file beyond this is a wrong file, or a small file that decodes to
gigabytes."""
_HAM_COLUMNS = ("lesion_id", "image_id", "dx")


# --- parsing --------------------------------------------------------------------------------------------
def index_images(image_dir: Path) -> dict[str, Path]:
    """Map image id (file stem) to path for every ``.jpg``/``.jpeg``/``.png`` in ``image_dir``."""
    if not image_dir.is_dir():
        raise MedlitError(f"image folder {image_dir} does not exist")
    return {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def _read_csv(csv_path: Path, required: Sequence[str]) -> pd.DataFrame:
    if not csv_path.is_file():
        raise MedlitError(f"{csv_path}: file not found")
    try:
        table = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise MedlitError(f"{csv_path}: not a readable CSV ({err})") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise MedlitError(f"{csv_path}: missing column(s) {', '.join(missing)} (has: {', '.join(table.columns)})")
    if table.empty:
        raise MedlitError(f"{csv_path}: no rows")
    return table


def _first(mask: pd.Series | np.ndarray) -> int:
    """Position of the first True of a row mask."""
    return int(np.flatnonzero(np.asarray(mask))[0])


def _attach_paths(table: pd.DataFrame, csv_path: Path, image_dir: Path) -> pd.DataFrame:
    images = index_images(image_dir)
    paths = table["image_id"].map(images)
    if paths.isna().any():
        first = _first(paths.isna().to_numpy())
        raise MedlitError(
            f"{csv_path} row {first + 2}: image '{table['image_id'].iloc[first]}' not found in {image_dir} "
            f"(.jpg/.png); {int(paths.isna().sum())} image(s) missing in all"
        )
    return table.assign(path=paths.map(str))


def ham_metadata_problems(table: pd.DataFrame, csv_path: Path) -> list[Problem]:
    """Every row problem of a HAM10000 metadata table (unknown ``dx``, empty ids, repeated ``image_id``), in row
    order; row numbers are file lines (header = line 1)."""
    found: list[tuple[int, Problem]] = []
    dx = table["dx"].str.strip().str.lower()
    expected = ", ".join(DX_CODES)
    for i in np.flatnonzero(~dx.isin(DX_CODES).to_numpy()):
        what = f"unknown dx '{table['dx'].iloc[i]}' (expected one of {expected})"
        found.append((i, Problem(f"{csv_path} row {i + 2}", what)))
    for column in ("image_id", "lesion_id"):
        for i in np.flatnonzero((table[column].str.strip() == "").to_numpy()):
            found.append((i, Problem(f"{csv_path} row {i + 2}", f"empty {column}")))
    for i in np.flatnonzero(table["image_id"].duplicated().to_numpy()):
        found.append((i, Problem(f"{csv_path} row {i + 2}", f"image_id '{table['image_id'].iloc[i]}' appears twice")))
    return [problem for _, problem in sorted(found, key=lambda item: item[0])]


def _onehot_problems(table: pd.DataFrame, csv_path: Path) -> list[Problem]:
    """Rows of an ISIC one-hot CSV that are not exactly one class column set to 1."""
    values = table[list(CLASS_NAMES)].apply(pd.to_numeric, errors="coerce").to_numpy()
    bad = ~(np.isin(values, (0.0, 1.0)).all(axis=1) & (np.nansum(values, axis=1) == 1))
    return [
        Problem(f"{csv_path} row {i + 2}", "expected exactly one class column set to 1 (class columns are numbers 0/1)")
        for i in np.flatnonzero(bad)
    ]


def read_ham_metadata(csv_path: Path, image_dir: Path | None = None) -> pd.DataFrame:
    """Read ``HAM10000_metadata.csv``.

    Returns:
        One row per image with columns ``image_id``, ``lesion_id``, ``label`` (int, index into
        :data:`CLASS_NAMES`) and, when ``image_dir`` is given, ``path``. Row numbers in errors are file
        lines (header = line 1).
    """
    table = _read_csv(csv_path, _HAM_COLUMNS)
    problems = ham_metadata_problems(table, csv_path)
    if problems:
        raise MedlitError(str(problems[0]))
    dx = table["dx"].str.strip().str.lower()
    out = pd.DataFrame(
        {
            "image_id": table["image_id"].str.strip(),
            "lesion_id": table["lesion_id"].str.strip(),
            "label": dx.map({code: i for i, code in enumerate(DX_CODES)}).astype(int),
        }
    )
    return _attach_paths(out, csv_path, image_dir) if image_dir is not None else out


def read_isic_ground_truth(csv_path: Path, image_dir: Path | None = None) -> pd.DataFrame:
    """Read an ISIC 2018 Task 3 one-hot ground-truth CSV (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``).

    Returns:
        Columns ``image_id``, ``lesion_id`` (the image id: the test set has no lesion ids), ``label`` and,
        when ``image_dir`` is given, ``path``.
    """
    table = _read_csv(csv_path, ("image", *CLASS_NAMES))
    problems = _onehot_problems(table, csv_path)
    if problems:
        raise MedlitError(str(problems[0]))
    onehot = table[list(CLASS_NAMES)].astype(float).to_numpy()
    image_ids = table["image"].str.strip()
    out = pd.DataFrame({"image_id": image_ids, "lesion_id": image_ids, "label": onehot.argmax(axis=1)})
    return _attach_paths(out, csv_path, image_dir) if image_dir is not None else out


def read_folder(image_dir: Path) -> pd.DataFrame:
    """All images of a folder, for prediction: ``image_id``, ``lesion_id``, ``label`` (-1 = unknown), ``path``."""
    images = index_images(image_dir)
    if not images:
        raise MedlitError(f"{image_dir}: no .jpg/.png images")
    ids = list(images)
    return pd.DataFrame({"image_id": ids, "lesion_id": ids, "label": -1, "path": [str(images[i]) for i in ids]})


# --- split --------------------------------------------------------------------------------------------------
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
) -> pd.DataFrame:
    """All labelled images with their split: train/val (and test) from the metadata, or test from ``test_csv``.

    Args:
        root: Folder holding ``metadata_csv`` and ``image_dir`` (both relative to it).
        test_csv: ISIC one-hot CSV of an explicit test set (then ``test_fraction`` is not used).
        test_image_dir: Image folder of ``test_csv``.
        val_fraction: Share of lesions held out for validation; test_fraction: for testing.
        split_seed: Seed of :func:`split_by_lesion` (and of the folds).
        num_folds: Cross-validation: with ``K >= 2`` the non-test images are cut into ``K`` lesion-grouped,
            class-stratified folds (:func:`lesion_folds`) and fold ``fold`` validates (``val_fraction`` is not
            used); the test images are the same as without folds.

    Returns:
        Columns ``image_id``, ``lesion_id``, ``label``, ``path``, ``split`` (``train``/``val``/``test``) and, with
        folds, ``fold`` (-1 for test images).

    Raises:
        MedlitError: a file is broken, or a test image is also in the training metadata.
    """
    root = Path(root)
    metadata = read_ham_metadata(root / metadata_csv, root / image_dir)
    if test_csv:
        test = read_isic_ground_truth(Path(test_csv), Path(test_image_dir))
        leaked = sorted(set(test["image_id"]) & set(metadata["image_id"]))
        if leaked:
            raise MedlitError(f"{test_csv}: image '{leaked[0]}' is also in the training metadata")
        test_fraction = 0.0
    val_share = 0.0 if num_folds else val_fraction
    metadata = metadata.assign(split=split_by_lesion(metadata, val_share, test_fraction, split_seed))
    if num_folds:
        metadata = _with_folds(metadata, num_folds, fold, split_seed)
    if test_csv:
        test = test.assign(split="test", **({"fold": -1} if num_folds else {}))
        return pd.concat([metadata, test], ignore_index=True)
    return metadata


def absent_classes(table: pd.DataFrame) -> list[str]:
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
        missing = [name for i, name in enumerate(CLASS_NAMES) if i not in present]
        if present and missing:
            warnings_.append(f"the {split} split has no {', '.join(missing)} image: {effect}")
    return warnings_


def split_summary(table: pd.DataFrame) -> str:
    """One line per split of a table with ``split``, ``label``, ``lesion_id``: images, lesions, images per class."""
    counts = table.groupby(["split", "label"]).size().unstack(fill_value=0)
    counts = counts.reindex(columns=range(len(CLASS_NAMES)), fill_value=0)
    counts.columns = list(CLASS_NAMES)
    lesions = table.groupby("split")["lesion_id"].nunique()
    lines = [
        f"{split:>5}: {int(row.sum()):5d} images, {lesions[split]:5d} lesions | "
        + " ".join(f"{c} {n}" for c, n in row.items())
        for split, row in counts.iterrows()
    ]
    return "\n".join(lines)


def open_image(path: Path | str) -> Image.Image:
    """``PIL.Image.open`` (the header read, nothing decoded yet), refusing an image over :data:`MAX_IMAGE_PIXELS`
    with one line naming the file and its size."""
    with warnings.catch_warnings():  # PIL warns between its limit and twice it; the size is checked below
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(path)
        except Image.DecompressionBombError as err:  # over twice PIL's limit: PIL refuses to open it
            count = re.search(r"(\d+) pixels", str(err))
            raise MedlitError(f"{path}: {_oversized(f'{int(count[1]):,} pixels' if count else str(err))}") from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise MedlitError(f"{path}: {_oversized(f'{width}x{height} = {width * height:,} pixels')}")
    return image


def as_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB. 16-bit (and 32-bit integer) grey images are scaled (65535 -> 255, as PIL does not:
    its conversion clips every value over 255 to white); grey, palette and RGBA images are converted."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        scaled = np.clip(np.asarray(image, dtype=np.float64) / 257.0, 0, 255)
        image = Image.fromarray(np.round(scaled).astype(np.uint8))
    return image.convert("RGB")


def _oversized(size: str) -> str:
    return (
        f"image too large to decode safely ({size}; the limit is {MAX_IMAGE_PIXELS:,} pixels, PIL's "
        "decompression-bomb guard): resize it, or check that it is the right file"
    )


# --- dataset check --------------------------------------------------------------------------------------------
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
    sources = [(root / metadata_csv, root / image_dir, _HAM_COLUMNS, ham_metadata_problems)]
    if test_csv:
        sources.append((Path(test_csv), Path(test_image_dir), ("image", *CLASS_NAMES), _onehot_problems))
    ids: dict[str, set[str]] = {}
    for csv_path, images_path, columns, row_problems in sources:
        try:
            table = _read_csv(csv_path, columns)
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
