"""Normalisation and augmentation (``lesion_cls.transforms``)."""

from __future__ import annotations

import torch

from lesion_cls.transforms import IMAGENET_MEAN, IMAGENET_STD, BatchAugment, build_transforms, normalization


def test_normalization_choices() -> None:
    assert normalization("imagenet") == (IMAGENET_MEAN, IMAGENET_STD)
    assert normalization("none") == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    steps = build_transforms(False, (4, 4), *normalization("none"))
    image = torch.full((3, 4, 4), 255, dtype=torch.uint8)
    torch.testing.assert_close(steps(image), torch.ones(3, 4, 4))


def test_batch_augment_warps_each_image_and_normalizes() -> None:
    """BatchAugment: identity settings give the plain normalisation; a forced flip mirrors the image; crops and
    rotations differ per image; colour jitter stays within its factors."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 12, 16), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    augment = BatchAugment(mean, std, rotation_degrees=0.0, color_jitter=0.0, crop_scale_min=1.0)
    torch.testing.assert_close(augment.normalize(images), plain)
    out = augment(images)
    for i in range(len(images)):  # no crop, no rotation: each image is itself or a mirror image of itself
        candidates = [plain[i], plain[i].flip(2), plain[i].flip(1), plain[i].flip(1, 2)]
        assert min(float((out[i] - c).abs().max()) for c in candidates) < 1e-4
    # flips alone, in matrix form: the x and y scales are +-1
    matrices = augment.warp_matrices(1000, 12, 16, torch.device("cpu"))
    assert set(matrices[:, 0, 0].round().tolist()) == {-1.0, 1.0} and matrices[:, :, 2].abs().max() == 0
    # rotations of a non-square image are rotations in pixels: D M D^-1 (D = diag(W, H)) is orthogonal
    turning = BatchAugment(mean, std, rotation_degrees=40.0, color_jitter=0.0, crop_scale_min=1.0)
    linear = turning.warp_matrices(500, 12, 16, torch.device("cpu"))[:, :, :2]
    pixels = torch.diag(torch.tensor([16.0, 12.0])) @ linear @ torch.diag(torch.tensor([1 / 16, 1 / 12]))
    torch.testing.assert_close(pixels @ pixels.transpose(1, 2), torch.eye(2).expand(500, 2, 2), atol=1e-5, rtol=0)
    assert linear[:, 0, 1].abs().max() > 0.3  # they do rotate
    strong = BatchAugment(mean, std, rotation_degrees=30.0, color_jitter=0.0, crop_scale_min=0.5)
    matrices = strong.warp_matrices(1000, 12, 16, torch.device("cpu"))
    determinant = torch.linalg.det(matrices[:, :, :2])  # area share of the crop (rotation keeps areas)
    assert determinant.abs().min() >= 0.5 - 1e-4 and determinant.abs().max() <= 1.0 + 1e-4
    assert len(set(strong(images).flatten(1).sum(1).tolist())) == len(images)
    jitter = BatchAugment(mean, std, rotation_degrees=0.0, color_jitter=0.2, crop_scale_min=1.0)
    gray = torch.full((4, 3, 8, 8), 100, dtype=torch.uint8)  # gray: contrast and saturation change nothing
    brightness = (jitter(gray) * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)) / (100 / 255)
    assert brightness.min() >= 0.8 - 1e-4 and brightness.max() <= 1.2 + 1e-4
