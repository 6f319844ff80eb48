"""HAM10000 / ISIC 2018 Task 3 data: parsing, lesion-grouped splits, a decoded-pixel cache, the DataModule.

Layouts read:

* HAM10000: ``<root>/HAM10000_metadata.csv`` (``lesion_id,image_id,dx,...``) and ``<root>/images/`` with
  ``<image_id>.jpg`` or ``.png``.
* ISIC 2018 Task 3 ground truth: a one-hot CSV ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC`` and its image folder,
  used as an explicit test set (``data.test_csv``).
* Prediction: any folder of ``.jpg``/``.png`` images (``data.predict_dir``).

Images are decoded and resized once into a ``uint8`` array ``[N, H, W, 3]`` saved under the cache dir and
memory-mapped by every worker, so no epoch decodes a JPEG again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info
from PIL import Image, UnidentifiedImageError
from sklearn.model_selection import train_test_split
from torch import nn
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2

from common.check import DataCheck, Problem
from common.errors import MedlitError, check_choice
from common.loaders import available_cpus, default_workers, evaluation_sampler
from lesion_cls import CLASS_NAMES, DX_CODES

__all__ = [
    "AUTO_AUGMENTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGE_SUFFIXES",
    "BatchAugment",
    "HAM10000DataModule",
    "LesionImageDataset",
    "build_pixel_cache",
    "build_transforms",
    "index_images",
    "read_folder",
    "read_ham_metadata",
    "read_isic_ground_truth",
    "sampled_class_priors",
    "sampling_weights",
    "split_by_lesion",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError)
"""What PIL raises for a file it cannot decode (truncated, not an image, a broken PNG chunk)."""
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


def _decode_all(paths: Sequence[Path], check: DataCheck) -> None:
    """Open and fully decode every image; add a problem for each that fails; summarise sizes and modes."""
    sizes: dict[tuple[int, int], int] = {}
    modes: dict[str, int] = {}

    def decode(path: Path) -> tuple[tuple[int, int], str] | Problem:
        try:
            with Image.open(path) as image:
                image.load()
                return image.size, image.mode
        except _DECODE_ERRORS as err:
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


# --- pixel cache -------------------------------------------------------------------------------------------
def _load_rgb(path: str, size_hw: tuple[int, int]) -> np.ndarray:
    try:
        with Image.open(path) as image:
            rgb = image.convert("RGB").resize((size_hw[1], size_hw[0]), Image.Resampling.BILINEAR)
    except _DECODE_ERRORS as err:
        raise MedlitError(f"{path}: cannot decode image ({err})") from None
    return np.array(rgb, dtype=np.uint8)  # a writable copy (torch.from_numpy warns on read-only arrays)


def _cache_key(paths: Sequence[str], size_hw: tuple[int, int]) -> str:
    digest = hashlib.sha1(f"v1 {size_hw}".encode())
    for path in paths:
        stat = os.stat(path)
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def build_pixel_cache(
    paths: Sequence[str], size_hw: tuple[int, int], cache_dir: Path, threads: int | None = None
) -> Path:
    """Decode and resize every image once into ``<cache_dir>/pixels-<key>.npy`` (``uint8 [N, H, W, 3]``).

    The key hashes paths, sizes, modification times and the target size: an existing file is reused, a
    changed image makes a new one. Written to a temporary name and renamed, so readers never see half a file.
    Decoding runs in ``threads`` threads (default: the cores this process may use).
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    target = cache_dir / f"pixels-{_cache_key(paths, size_hw)}.npy"
    if target.exists():
        return target
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.npy")
    pixels = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), *size_hw, 3))

    def fill(i: int) -> None:
        pixels[i] = _load_rgb(paths[i], size_hw)

    rank_zero_info(f"caching {len(paths)} images at {size_hw[0]}x{size_hw[1]} in {target}")
    with ThreadPoolExecutor(max_workers=threads or available_cpus()) as pool:
        list(pool.map(fill, range(len(paths))))
    pixels.flush()
    tmp.replace(target)
    return target


# --- dataset and transforms --------------------------------------------------------------------------------
AUTO_AUGMENTS: dict[str, Callable[[], list[Callable[..., Any]]]] = {
    "none": lambda: [],
    "trivial": lambda: [v2.TrivialAugmentWide()],
    "randaugment": lambda: [v2.RandAugment(num_ops=2, magnitude=9)],
}
"""Policy augmentation on ``uint8`` images (torchvision): TrivialAugment (one random operation at a random
strength) or RandAugment (2 operations at magnitude 9 of 31)."""


def build_transforms(
    train: bool,
    image_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    augment: bool = True,
    rotation_degrees: float = 20.0,
    color_jitter: float = 0.1,
    crop_scale_min: float = 0.75,
    auto_augment: str = "none",
    batch_augment: bool = False,
) -> v2.Compose:
    """Transforms for ``uint8 [3, H, W]`` tensors already at ``image_size``.

    Training with ``augment``: random resized crop (area in ``[crop_scale_min, 1]``), horizontal and
    vertical flips (dermoscopy has no canonical orientation), rotation in ``±rotation_degrees``, colour
    jitter of strength ``color_jitter`` (hue at a fifth of it). Each part is off at 1.0 / 0 respectively.
    ``auto_augment`` (:data:`AUTO_AUGMENTS`) comes first. With ``batch_augment`` a training image stays ``uint8``
    after ``auto_augment``: :class:`BatchAugment` does the rest on the whole batch.
    """
    check_choice("data.auto_augment", auto_augment, AUTO_AUGMENTS)
    steps: list[Callable[..., Any]] = []
    if train and augment:
        steps += AUTO_AUGMENTS[auto_augment]()
        if batch_augment:
            return v2.Compose(steps or [v2.Identity()])
        if crop_scale_min < 1.0:
            steps.append(v2.RandomResizedCrop(image_size, scale=(crop_scale_min, 1.0), antialias=True))
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
        if rotation_degrees > 0:
            steps.append(v2.RandomRotation(rotation_degrees))
        if color_jitter > 0:
            steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, color_jitter / 5))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(steps)


class BatchAugment(nn.Module):
    """The training augmentation of :func:`build_transforms` done on a whole ``uint8 [N, 3, H, W]`` batch where it
    lies (the GPU when there is one), then normalisation: one affine warp per image (``grid_sample``) holds the
    random resized crop (area in ``[crop_scale_min, 1]``, aspect ratio in [3/4, 4/3]), the horizontal and vertical
    flips and the rotation in ``±rotation_degrees``; brightness, contrast and saturation jitter of strength
    ``color_jitter`` follow (no hue). Per-image PIL/torchvision work is what starves a CPU training loop; here
    the loader only copies ``uint8`` pixels.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        rotation_degrees: float = 20.0,
        color_jitter: float = 0.1,
        crop_scale_min: float = 0.75,
    ) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.rotation = float(np.deg2rad(rotation_degrees))
        self.color_jitter = color_jitter
        self.crop_scale_min = crop_scale_min

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``uint8`` (or [0, 1] float) images to the network's normalised float input."""
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (images - self.mean) / self.std

    def warp_matrices(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        """``[n, 2, 3]`` matrices from output to input coordinates (``affine_grid``'s normalised [-1, 1])."""

        def uniform(low: float, high: float) -> torch.Tensor:
            return torch.empty(n, device=device).uniform_(low, high)

        area = uniform(self.crop_scale_min, 1.0)
        ratio = torch.ones(n, device=device)  # crop_scale_min 1: no crop at all, as in build_transforms
        if self.crop_scale_min < 1.0:
            ratio = torch.exp(uniform(float(np.log(3 / 4)), float(np.log(4 / 3))))
        crop_w = torch.sqrt(area * ratio).clamp(max=1.0)  # crop sides as shares of the image's sides
        crop_h = torch.sqrt(area / ratio).clamp(max=1.0)
        flip_x = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
        flip_y = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
        angle = uniform(-self.rotation, self.rotation)
        cos, sin = torch.cos(angle), torch.sin(angle)
        aspect = height / width  # a rotation in pixels, written in normalised coordinates
        matrices = torch.zeros(n, 2, 3, device=device)
        matrices[:, 0, 0] = cos * crop_w * flip_x
        matrices[:, 0, 1] = -sin * aspect * crop_h * flip_y
        matrices[:, 1, 0] = sin / aspect * crop_w * flip_x
        matrices[:, 1, 1] = cos * crop_h * flip_y
        matrices[:, 0, 2] = (torch.rand(n, device=device) * 2 - 1) * (1 - crop_w)  # the crop stays inside
        matrices[:, 1, 2] = (torch.rand(n, device=device) * 2 - 1) * (1 - crop_h)
        return matrices

    def jitter(self, images: torch.Tensor) -> torch.Tensor:
        """Brightness, contrast and saturation factors in ``[1 - j, 1 + j]`` per image, on [0, 1] images."""
        n, j = images.shape[0], self.color_jitter
        factors = torch.empty(3, n, 1, 1, 1, device=images.device).uniform_(1 - j, 1 + j)
        images = images * factors[0]
        mean_gray = _luminance(images).mean(dim=(2, 3), keepdim=True)  # contrast pivots on the mean grey
        images = (images - mean_gray) * factors[1] + mean_gray
        gray = _luminance(images)  # saturation blends each pixel with its own grey
        return ((images - gray) * factors[2] + gray).clamp(0.0, 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Augmented, normalised float images ``[N, 3, H, W]`` from ``uint8`` ones."""
        images = images.float() / 255.0
        n, _, height, width = images.shape
        grid = F.affine_grid(self.warp_matrices(n, height, width, images.device), list(images.shape), False)
        images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if self.color_jitter > 0:
            images = self.jitter(images)
        return (images - self.mean) / self.std


def _luminance(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 grey ``[N, 1, H, W]`` of RGB images (torchvision's ``rgb_to_grayscale`` rounds red to 0.2989)."""
    return (images * images.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(dim=1, keepdim=True)


def sampling_weights(labels: np.ndarray, power: float, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Per-image weights ``n_c ** -power`` (``n_c``: images of the image's class): class ``c`` is then drawn with
    probability proportional to ``n_c ** (1 - power)``: 0 = as in the data, 1 = every class equally often,
    0.5 = by the square root of the class sizes."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return counts[labels] ** -float(power)


def sampled_class_priors(labels: np.ndarray, power: float, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """The class frequencies the model sees when training images are drawn with :func:`sampling_weights`."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    mass = np.where(counts > 0, counts ** (1.0 - float(power)), 0.0)
    return mass / mass.sum()


class LesionImageDataset(Dataset):
    """Images of one split as ``{"image": float [3, H, W], "label": int (-1 unknown), "image_id": str}``.

    Args:
        table: Rows with ``image_id``, ``label``, ``path``.
        image_size: ``(H, W)`` of the returned images.
        transform: Applied to the ``uint8 [3, H, W]`` tensor.
        cache_file: A pixel cache built by :func:`build_pixel_cache`; ``cache_rows`` gives each table row's
            row in it. Without a cache, images are decoded on every access.
    """

    def __init__(
        self,
        table: pd.DataFrame,
        image_size: tuple[int, int],
        transform: Callable[[torch.Tensor], torch.Tensor],
        cache_file: Path | None = None,
        cache_rows: np.ndarray | None = None,
    ) -> None:
        self.table = table.reset_index(drop=True)
        self.image_size = image_size
        self.transform = transform
        self.cache_file = cache_file
        self.cache_rows = cache_rows
        self._pixels: np.ndarray | None = None  # opened lazily: each worker maps the file itself
        self._row_of = {image_id: i for i, image_id in enumerate(self.table["image_id"])}

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labels(self) -> np.ndarray:
        return self.table["label"].to_numpy()

    def index_of(self, image_id: str) -> int:
        return self._row_of[image_id]

    def display_image(self, index: int) -> np.ndarray:
        """The un-augmented ``uint8 [H, W, 3]`` image at ``image_size`` (for overlays)."""
        if self.cache_file is not None:
            if self._pixels is None:
                self._pixels = np.load(self.cache_file, mmap_mode="r")
            return np.array(self._pixels[self.cache_rows[index]])
        return _load_rgb(self.table["path"].iloc[index], self.image_size)

    def __getitem__(self, index: int) -> dict[str, Any]:
        pixels = torch.from_numpy(self.display_image(index)).permute(2, 0, 1).contiguous()
        row = self.table.iloc[index]
        return {"image": self.transform(pixels), "label": int(row["label"]), "image_id": row["image_id"]}


# --- datamodule -----------------------------------------------------------------------------------------------
def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        return (image_size, image_size)
    if len(image_size) != 2:
        raise MedlitError(f"data.image_size must be an int or [height, width], got {list(image_size)}")
    return (int(image_size[0]), int(image_size[1]))


class HAM10000DataModule(LightningDataModule):
    """HAM10000 (and optionally the ISIC 2018 test set) for training, validation, test and prediction.

    Args:
        root: Folder holding ``metadata_csv`` and ``image_dir``.
        metadata_csv: HAM10000 metadata file, relative to ``root``.
        image_dir: Image folder, relative to ``root``.
        test_csv: Optional ISIC-format one-hot CSV used as the test set (e.g. the official ISIC 2018 test
            labels); then ``test_fraction`` is ignored and all of ``root`` is train + val.
        test_image_dir: Image folder of ``test_csv``.
        predict_dir: Folder of images for ``predict``.
        val_fraction: Fraction of lesions held out for validation (model selection).
        test_fraction: Fraction of lesions held out for testing (when there is no ``test_csv``).
        split_seed: Seed of the lesion split (separate from the training seed).
        image_size: Side (or ``[height, width]``) images are resized to.
        normalize: ``imagenet`` mean/std (also right for training from scratch) or ``none`` (pixels in [0, 1]).
        augment: Random resized crop, flips, rotation, colour jitter during training.
        rotation_degrees: Maximum rotation (0 = off).
        color_jitter: Brightness/contrast/saturation jitter strength (0 = off).
        crop_scale_min: Smallest crop area of the random resized crop (1 = off).
        auto_augment: ``none``, ``trivial`` (TrivialAugmentWide) or ``randaugment`` before the rest
            (:data:`AUTO_AUGMENTS`).
        batch_augment: Crop, flips, rotation and colour jitter on whole batches after they reach the device
            (:class:`BatchAugment`, the GPU when there is one) instead of per image in the loader workers.
        balanced_sampler: How training images are drawn: ``false`` (each image once per epoch), ``true`` (every
            class equally often) or a power ``p`` between: class ``c`` drawn in proportion to ``n_c ** (1 - p)``
            (0.5: by the square root of the class sizes; :func:`sampling_weights`).
        class_weights: ``none``, ``balanced`` (``n / (C * n_c)`` on the training split) or an explicit list
            of 7 weights; :meth:`loss_class_weights` gives them to the model through a CLI link.
        batch_size: Images per batch (per device).
        num_workers: DataLoader worker processes; default: :func:`common.loaders.default_workers`
            (the cores shared among the machine's training processes, at most 8).
        cache_dir: Where decoded pixels are cached (default ``$MEDLIT_CACHE`` or ``~/.cache/medlit``).
    """

    def __init__(
        self,
        root: str = "data/HAM10000",
        metadata_csv: str = "HAM10000_metadata.csv",
        image_dir: str = "images",
        test_csv: str | None = None,
        test_image_dir: str | None = None,
        predict_dir: str | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        split_seed: int = 42,
        image_size: int | list[int] = 224,
        normalize: Literal["imagenet", "none"] = "imagenet",
        augment: bool = True,
        rotation_degrees: float = 20.0,
        color_jitter: float = 0.1,
        crop_scale_min: float = 0.75,
        auto_augment: Literal["none", "trivial", "randaugment"] = "none",
        batch_augment: bool = False,
        balanced_sampler: bool | float = False,
        class_weights: str | list[float] = "none",
        batch_size: int = 32,
        num_workers: int | None = None,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.image_size = _as_size(image_size)
        if not 0 < val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
            raise MedlitError(
                f"data.val_fraction ({val_fraction}) must be in (0, 1), data.test_fraction ({test_fraction}) "
                "in [0, 1), and their sum below 1"
            )
        if isinstance(class_weights, str):
            check_choice("data.class_weights", class_weights, ("none", "balanced"))
        elif len(class_weights) != len(CLASS_NAMES):
            raise MedlitError(f"data.class_weights needs {len(CLASS_NAMES)} numbers, got {len(class_weights)}")
        if not 0.0 <= float(balanced_sampler) <= 1.0:
            raise MedlitError(f"data.balanced_sampler must be true, false or a power in [0, 1], got {balanced_sampler}")
        check_choice("data.auto_augment", auto_augment, AUTO_AUGMENTS)
        if test_csv and not test_image_dir:
            raise MedlitError("data.test_csv is set but data.test_image_dir is not: the test images are needed")
        self.table: pd.DataFrame | None = None
        self._labelled: pd.DataFrame | None = None
        self.train_dataset: LesionImageDataset | None = None
        self.val_dataset: LesionImageDataset | None = None
        self.test_dataset: LesionImageDataset | None = None
        self.predict_dataset: LesionImageDataset | None = None
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        self.batch_augmenter: BatchAugment | None = None

    @property
    def has_test_data(self) -> bool:
        return bool(self.hparams.test_csv) or self.hparams.test_fraction > 0

    @property
    def cache_dir(self) -> Path:
        default = Path(os.environ.get("MEDLIT_CACHE", Path.home() / ".cache" / "medlit"))
        return Path(self.hparams.cache_dir) if self.hparams.cache_dir else default

    # -- lifecycle --
    def _read_table(self) -> pd.DataFrame:
        """All labelled images with their split: train/val from the metadata, test from it or test_csv."""
        hp = self.hparams
        root = Path(hp.root)
        metadata = read_ham_metadata(root / hp.metadata_csv, root / hp.image_dir)
        if hp.test_csv:
            test = read_isic_ground_truth(Path(hp.test_csv), Path(hp.test_image_dir))
            leaked = sorted(set(test["image_id"]) & set(metadata["image_id"]))
            if leaked:
                raise MedlitError(f"{hp.test_csv}: image '{leaked[0]}' is also in the training metadata")
            metadata = metadata.assign(split=split_by_lesion(metadata, hp.val_fraction, 0.0, hp.split_seed))
            return pd.concat([metadata, test.assign(split="test")], ignore_index=True)
        return metadata.assign(split=split_by_lesion(metadata, hp.val_fraction, hp.test_fraction, hp.split_seed))

    def _labelled_table(self) -> pd.DataFrame:
        """:meth:`_read_table`, read once."""
        if self._labelled is None:
            self._labelled = self._read_table()
        return self._labelled

    def _training_labels(self) -> np.ndarray:
        """The class indices of the training split (from the metadata; no image is decoded)."""
        table = self._labelled_table()
        return table.loc[table["split"] == "train", "label"].to_numpy()

    def training_class_priors(self) -> list[float]:
        """The class frequencies of the training images as the sampler draws them (:func:`sampled_class_priors`),
        for logit-adjusted losses (linked to ``model.class_priors``)."""
        labels = self._training_labels()
        return [float(p) for p in sampled_class_priors(labels, float(self.hparams.balanced_sampler))]

    def training_class_frequencies(self) -> list[float]:
        """The class frequencies of the training split as in the data, ``(n_c + 1) / (n + 7)`` (a class without
        training images counts as one), for the decision τ (linked to ``model.class_frequencies``)."""
        counts = np.bincount(self._training_labels(), minlength=len(CLASS_NAMES)) + 1.0
        return [float(f) for f in counts / counts.sum()]

    def loss_class_weights(self) -> list[float] | None:
        """The loss's class weights from ``data.class_weights`` (``None`` for ``none``).

        ``balanced`` is ``n / (C * n_c)`` over the training split's labels (read from the metadata; no image is
        decoded), 1 for a class absent from it.
        """
        setting = self.hparams.class_weights
        if not isinstance(setting, str):
            return [float(w) for w in setting]
        if setting == "none":
            return None
        labels = self._training_labels()
        counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (len(CLASS_NAMES) * np.maximum(counts, 1)), 1.0)
        return [float(w) for w in weights]

    # -- dataset check --
    def check_data(self, full: bool = True) -> DataCheck:
        """Every problem of the metadata, the images and the test set, and a summary (``check`` command).

        Args:
            full: Also open and decode every image (the cheap check reads the CSV files and lists the folder).
        """
        check, hp = DataCheck(), self.hparams
        root = Path(hp.root)
        sources = [(root / hp.metadata_csv, root / hp.image_dir, _HAM_COLUMNS, ham_metadata_problems)]
        if hp.test_csv:
            sources.append((Path(hp.test_csv), Path(hp.test_image_dir), ("image", *CLASS_NAMES), _onehot_problems))
        ids: dict[str, set[str]] = {}
        for csv_path, image_dir, columns, row_problems in sources:
            try:
                table = _read_csv(csv_path, columns)
            except MedlitError as err:
                check.add_error(err, csv_path)
                continue
            check.extend(row_problems(table, csv_path))
            self._summarize(check, csv_path, table)
            found = table["image_id" if "image_id" in table else "image"].str.strip()
            ids[str(csv_path)] = set(found)
            try:
                images = index_images(image_dir)
            except MedlitError as err:
                check.add_error(err, image_dir)
                continue
            for i in np.flatnonzero(~found.isin(images).to_numpy()):
                check.add(f"{csv_path} row {i + 2}", f"image '{found.iloc[i]}' not found in {image_dir}", ".jpg/.png")
            if full:
                _decode_all([images[i] for i in found if i in images], check)
        if len(ids) == 2:
            leaked = sorted(set.intersection(*ids.values()))
            if leaked:
                check.add(hp.test_csv, f"{len(leaked)} test image(s) also in the training metadata: {leaked[0]}, ...")
        return check

    @staticmethod
    def _summarize(check: DataCheck, csv_path: Path, table: pd.DataFrame) -> None:
        if "dx" in table:
            counts = table["dx"].str.strip().str.lower().value_counts()
            check.summary[f"{csv_path.name}: images"] = f"{len(table)} ({table['lesion_id'].nunique()} lesions)"
            check.summary[f"{csv_path.name}: classes"] = ", ".join(
                f"{name} {int(counts.get(code, 0))}" for name, code in zip(CLASS_NAMES, DX_CODES, strict=True)
            )
        else:
            check.summary[f"{csv_path.name}: images"] = str(len(table))

    def prepare_data(self) -> None:
        """Check the files and build the pixel cache (once per node); ``predict`` reads only its own folder."""
        if self.trainer is not None and self.trainer.predicting:
            return
        table = self._labelled_table()
        build_pixel_cache(table["path"].tolist(), self.image_size, self.cache_dir)

    def setup(self, stage: str) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        if self.table is not None:
            return
        table = self._labelled_table()
        cache_file = build_pixel_cache(table["path"].tolist(), self.image_size, self.cache_dir)
        self.table = table
        hp = self.hparams
        self.mean, self.std = self._mean_std()
        keys = ("augment", "rotation_degrees", "color_jitter", "crop_scale_min", "auto_augment", "batch_augment")
        augment = {k: hp[k] for k in keys}
        for split in ("train", "val", "test"):
            rows = np.flatnonzero(table["split"].to_numpy() == split)
            transform = build_transforms(split == "train", self.image_size, self.mean, self.std, **augment)
            dataset = LesionImageDataset(table.iloc[rows], self.image_size, transform, cache_file, rows)
            setattr(self, f"{split}_dataset", dataset)
        if hp.batch_augment and hp.augment:
            self.batch_augmenter = BatchAugment(
                self.mean, self.std, hp.rotation_degrees, hp.color_jitter, hp.crop_scale_min
            )
        self._log_summary()

    def _setup_predict(self) -> None:
        if self.predict_dataset is not None:
            return
        if not self.hparams.predict_dir:
            raise MedlitError("predict needs data.predict_dir: a folder of .jpg/.png images")
        table = read_folder(Path(self.hparams.predict_dir))
        self.mean, self.std = self._mean_std()
        transform = build_transforms(False, self.image_size, self.mean, self.std)
        self.predict_dataset = LesionImageDataset(table, self.image_size, transform)

    def _mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if self.hparams.normalize == "none":
            return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        return IMAGENET_MEAN, IMAGENET_STD

    def _log_summary(self) -> None:
        assert self.table is not None
        counts = self.table.groupby(["split", "label"]).size().unstack(fill_value=0)
        counts = counts.reindex(columns=range(len(CLASS_NAMES)), fill_value=0)
        counts.columns = list(CLASS_NAMES)
        lesions = self.table.groupby("split")["lesion_id"].nunique()
        lines = [
            f"{split:>5}: {int(row.sum()):5d} images, {lesions[split]:5d} lesions | "
            + " ".join(f"{c} {n}" for c, n in row.items())
            for split, row in counts.iterrows()
        ]
        rank_zero_info("HAM10000 split (grouped by lesion_id):\n" + "\n".join(lines))

    def split_table(self) -> pd.DataFrame:
        """One row per image: ``image_id, lesion_id, label, class, split`` (saved as ``split.csv``)."""
        assert self.table is not None, "call setup() first"
        table = self.table[["image_id", "lesion_id", "label", "split"]].copy()
        table.insert(3, "class", [CLASS_NAMES[i] for i in table["label"]])
        return table

    # -- loaders --
    def _loader(self, dataset: Dataset | None, shuffle: bool = False, sampler: Any = None) -> DataLoader:
        """A loader of ``dataset``; evaluation loaders (no shuffle, no sampler) see every image once, also
        across processes (:func:`~common.loaders.evaluation_sampler`), so metrics count each image once."""
        if dataset is None:
            raise MedlitError("the datamodule has not been set up for this stage")
        if not shuffle and sampler is None:
            sampler = evaluation_sampler(dataset)
        workers = self._workers()
        return DataLoader(
            dataset,
            batch_size=self.hparams.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def _workers(self) -> int:
        """``data.num_workers``, or the default derived from the cores and the training processes."""
        if self.hparams.num_workers is not None:
            return int(self.hparams.num_workers)
        processes = self.trainer.num_devices if self.trainer is not None else 1
        return default_workers(processes)

    def train_dataloader(self) -> DataLoader:
        sampler = None
        power = float(self.hparams.balanced_sampler)
        if power > 0:
            labels = self.train_dataset.labels
            weights = torch.as_tensor(sampling_weights(labels, power), dtype=torch.double)
            sampler = WeightedRandomSampler(weights, num_samples=len(labels), replacement=True)
        return self._loader(self.train_dataset, shuffle=True, sampler=sampler)

    def on_after_batch_transfer(self, batch: dict[str, Any], dataloader_idx: int) -> dict[str, Any]:
        """``data.batch_augment``: the training batch (still ``uint8``) is augmented where it now lies."""
        training = self.trainer is not None and self.trainer.training
        if self.batch_augmenter is not None and training and batch["image"].dtype == torch.uint8:
            batch["image"] = self.batch_augmenter.to(batch["image"].device)(batch["image"])
        return batch

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset)
