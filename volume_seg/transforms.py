"""MONAI transform pipelines of the volumes: loading and normalisation (what the cache holds), then training
patches and their augmentation presets.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from monai import transforms as mt

from volume_seg.io import load_volume

__all__ = [
    "AUGMENTATIONS",
    "MIRROR_AXES",
    "NORMALIZATIONS",
    "ROT90_AUGMENTATIONS",
    "LoadVolumed",
    "loading_transform",
    "patch_transform",
]


class LoadVolumed(mt.MapTransform):
    """MONAI dictionary transform: a discovery record in, :func:`~volume_seg.io.load_volume`'s dict out."""

    def __init__(self, num_classes: int, spacing: Sequence[float] | None = None) -> None:
        super().__init__(keys=["image"])
        self.num_classes = num_classes
        self.spacing = spacing

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[str, Any]:
        return load_volume(data, self.num_classes, self.spacing)


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
model never shown a volume upside down in Z segments the Z-mirrored one badly, and averaging it in costs Dice)."""

ROT90_AUGMENTATIONS = ("rotflip", "rich")
"""The presets that rotate by 90 degrees in the first two axes (patches need equal first two sides)."""


def _plain_tensors() -> mt.Transform:
    # plain tensors (no MetaTensor bookkeeping) for the cache and the batches
    return mt.EnsureTyped(keys=["image", "label"], data_type="tensor", track_meta=False, allow_missing_keys=True)


def loading_transform(num_classes: int, spacing: Sequence[float] | None, normalize: str) -> mt.Compose:
    """Record in, loaded volume out: :class:`LoadVolumed`, the ``normalize`` preset (:data:`NORMALIZATIONS`),
    plain tensors; what the cache holds (``image`` float32 ``[1, X, Y, Z]``, ``label`` uint8 ``[1, X, Y, Z]``)."""
    return mt.Compose([LoadVolumed(num_classes, spacing), *NORMALIZATIONS[normalize](), _plain_tensors()])


def patch_transform(patch_size: Sequence[int], sampling: str, foreground_ratio: float, augment: str) -> mt.Compose:
    """Cached volume in, training patch out: zero-padding to ``patch_size`` (voxels), a random crop, the
    ``augment`` preset (:data:`AUGMENTATIONS`), plain tensors.

    Args:
        patch_size: Patch size in voxels, 3 numbers.
        sampling: ``uniform`` crops, or ``foreground``: a share ``foreground_ratio`` of the crops is centred on
            a foreground voxel (:class:`~monai.transforms.RandCropByPosNegLabeld`, which returns a list).
        foreground_ratio: See ``sampling``.
        augment: A key of :data:`AUGMENTATIONS`.
    """
    keys = ["image", "label"]
    patch = list(patch_size)
    if sampling == "foreground":
        crop = mt.RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=patch,
            pos=foreground_ratio,
            neg=1 - foreground_ratio,
            num_samples=1,
        )
    else:
        crop = mt.RandSpatialCropd(keys=keys, roi_size=patch, random_size=False)
    return mt.Compose(
        [mt.SpatialPadd(keys=keys, spatial_size=patch), crop, *AUGMENTATIONS[augment](), _plain_tensors()]
    )
