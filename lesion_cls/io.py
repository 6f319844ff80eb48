"""HAM10000 / ISIC 2018 Task 3 files: reading and validating the CSV layouts and the images.

Layouts read:

* HAM10000: ``<root>/HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``) and ``<root>/images/`` with
  ``<image_id>.jpg`` or ``.png``.
* ISIC 2018 Task 3 ground truth: a one-hot CSV ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` (optionally a ``lesion_id``
  or ``group`` column) and its image folder, used as an explicit test set (``data.test_csv``).
* Prediction: any folder of ``.jpg``/``.png`` images (``data.predict_dir``).

Your own layouts (a labels CSV, a folder per class) and the class list are :mod:`lesion_cls.labels`; the split is
:mod:`lesion_cls.splits`, the dataset check :mod:`lesion_cls.check`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from common.check import Problem
from common.errors import MedlitError
from lesion_cls import CLASS_NAMES, DX_CODES

__all__ = [
    "DECODE_ERRORS",
    "GROUP_COLUMNS",
    "HAM_COLUMNS",
    "IMAGE_SUFFIXES",
    "MAX_IMAGE_PIXELS",
    "as_rgb",
    "group_column",
    "ham_metadata_problems",
    "index_images",
    "isic_ground_truth_problems",
    "load_rgb",
    "open_image",
    "read_csv_table",
    "read_folder",
    "read_ham_metadata",
    "read_isic_ground_truth",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError)
"""What PIL raises for a file it cannot decode (truncated, not an image, a broken PNG chunk)."""
MAX_IMAGE_PIXELS = 89_478_485
"""The largest image read (width x height, about 9,460 x 9,460): PIL's decompression-bomb threshold. The largest
ISIC 2018 images have 30 million pixels; a file beyond this is a wrong file, or a small file that decodes to
gigabytes."""
HAM_COLUMNS = ("lesion_id", "image_id", "dx")
"""The columns a HAM10000 metadata file needs."""
GROUP_COLUMNS = ("lesion_id", "group")
"""The optional group column of a test CSV (images of one lesion or patient resampled together)."""


# --- parsing --------------------------------------------------------------------------------------------
def index_images(image_dir: Path) -> dict[str, Path]:
    """Map image id (file stem) to path for every ``.jpg``/``.jpeg``/``.png`` in ``image_dir``."""
    if not image_dir.is_dir():
        raise MedlitError(f"image folder {image_dir} does not exist")
    return {p.stem: p for p in sorted(image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}


def read_csv_table(csv_path: Path, required: Sequence[str]) -> pd.DataFrame:
    """A CSV file as strings, refusing a missing file, an unreadable CSV, a missing ``required`` column or no rows."""
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


def isic_ground_truth_problems(
    table: pd.DataFrame, csv_path: Path, class_names: Sequence[str] = CLASS_NAMES
) -> list[Problem]:
    """Rows of an ISIC one-hot CSV that are not exactly one class column set to 1."""
    values = table[list(class_names)].apply(pd.to_numeric, errors="coerce").to_numpy()
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
    table = read_csv_table(csv_path, HAM_COLUMNS)
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


def read_isic_ground_truth(
    csv_path: Path, image_dir: Path | None = None, class_names: Sequence[str] = CLASS_NAMES
) -> pd.DataFrame:
    """Read an ISIC 2018 Task 3 one-hot ground-truth CSV (``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``; other class
    columns with ``class_names``), optionally with a group column (:data:`GROUP_COLUMNS`, e.g. ISIC's lesion
    groupings joined in).

    Returns:
        Columns ``image_id``, ``lesion_id`` (the group column, else the image id), ``label`` and, when
        ``image_dir`` is given, ``path``.
    """
    table = read_csv_table(csv_path, ("image", *class_names))
    problems = isic_ground_truth_problems(table, csv_path, class_names)
    if problems:
        raise MedlitError(str(problems[0]))
    onehot = table[list(class_names)].astype(float).to_numpy()
    image_ids = table["image"].str.strip()
    groups = group_column(table, csv_path)
    out = pd.DataFrame(
        {"image_id": image_ids, "lesion_id": image_ids if groups is None else groups, "label": onehot.argmax(axis=1)}
    )
    return _attach_paths(out, csv_path, image_dir) if image_dir is not None else out


def group_column(table: pd.DataFrame, csv_path: Path) -> pd.Series | None:
    """The group ids of a test CSV (its ``lesion_id`` or ``group`` column), or ``None`` when it has neither.

    Raises:
        MedlitError: an empty group id (one line naming the row).
    """
    name = next((c for c in GROUP_COLUMNS if c in table.columns), None)
    if name is None:
        return None
    groups = table[name].str.strip()
    empty = np.flatnonzero((groups == "").to_numpy())
    if len(empty):
        raise MedlitError(f"{csv_path} row {empty[0] + 2}: empty {name}")
    return groups


def read_folder(image_dir: Path) -> pd.DataFrame:
    """All images of a folder, for prediction: ``image_id``, ``lesion_id``, ``label`` (-1 = unknown), ``path``."""
    images = index_images(image_dir)
    if not images:
        raise MedlitError(f"{image_dir}: no .jpg/.png images")
    ids = list(images)
    return pd.DataFrame({"image_id": ids, "lesion_id": ids, "label": -1, "path": [str(images[i]) for i in ids]})


# --- images ----------------------------------------------------------------------------------------------
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


def load_rgb(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    """The image at ``path`` as ``uint8 [H, W, 3]`` RGB resized to ``size_hw`` (bilinear)."""
    try:
        with open_image(path) as image:
            rgb = as_rgb(image).resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    except DECODE_ERRORS as err:
        raise MedlitError(f"{path}: cannot decode image ({err})") from None
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)
