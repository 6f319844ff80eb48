"""Normalisation and augmentation of the skin-lesion images: per-image torchvision transforms for the loader
workers, or :class:`BatchAugment` on whole batches on the device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms import v2

from common.errors import check_choice

__all__ = [
    "AUTO_AUGMENTS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "BatchAugment",
    "build_transforms",
    "normalization",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel ``(mean, std)`` of the network input for ``data.normalize``: ``none`` keeps pixels in [0, 1];
    anything else (``imagenet``, also right for training from scratch) is :data:`IMAGENET_MEAN` /
    :data:`IMAGENET_STD`."""
    if name == "none":
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return IMAGENET_MEAN, IMAGENET_STD


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
