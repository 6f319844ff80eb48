"""Segmentation losses by name, from MONAI and torch: ``bce``, ``dice``, ``dice_ce``, ``dice_focal``.

Every loss built here takes logits ``[B, C, X, Y, Z]`` and an integer label map ``[B, 1, X, Y, Z]`` (any dtype
holding class indices; shapes are checked). Binary problems (2 classes) use one output channel and a sigmoid;
multi-class problems use ``num_classes`` channels and a softmax, with labels one-hot encoded inside the loss.
Dice terms are computed over the whole batch (MONAI ``batch=True``), which keeps patches without foreground
from dominating.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.losses import DiceCELoss, DiceFocalLoss, DiceLoss
from torch import nn

from common.errors import check_choice

__all__ = ["LOSSES", "BinaryOrCategoricalCE", "LabelMapLoss", "build_loss", "output_channels"]


def output_channels(num_classes: int) -> int:
    """1 for binary problems (sigmoid), else one channel per class (softmax)."""
    return 1 if num_classes == 2 else num_classes


def _check_shapes(logits: torch.Tensor, label: torch.Tensor) -> None:
    if logits.ndim != 5 or label.ndim != 5 or label.shape[1] != 1 or logits.shape[2:] != label.shape[2:]:
        raise ValueError(
            f"expected logits [B, C, X, Y, Z] and label [B, 1, X, Y, Z], got {tuple(logits.shape)} and "
            f"{tuple(label.shape)}"
        )


class BinaryOrCategoricalCE(nn.Module):
    """``bce``: binary cross-entropy on the single logit channel; for several classes, its generalisation,
    categorical cross-entropy over the class channels."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.binary = num_classes == 2

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, label)
        if self.binary:
            return nn.functional.binary_cross_entropy_with_logits(logits, label.float())
        return nn.functional.cross_entropy(logits, label[:, 0].long())


class LabelMapLoss(nn.Module):
    """A MONAI loss that takes the integer label map: shapes checked, labels passed as float (MONAI's sigmoid
    losses compare them with probabilities; its one-hot encoding casts them back to indices)."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        _check_shapes(logits, label)
        return self.loss(logits, label.float())


def _monai_kwargs(num_classes: int) -> dict:
    if num_classes == 2:
        return {"sigmoid": True}
    return {"softmax": True, "to_onehot_y": True, "include_background": False}


def _dice(num_classes: int) -> nn.Module:
    return LabelMapLoss(DiceLoss(batch=True, **_monai_kwargs(num_classes)))


def _dice_ce(num_classes: int) -> nn.Module:
    return LabelMapLoss(DiceCELoss(batch=True, **_monai_kwargs(num_classes)))


def _dice_focal(num_classes: int) -> nn.Module:
    return LabelMapLoss(DiceFocalLoss(batch=True, gamma=2.0, **_monai_kwargs(num_classes)))


LOSSES: dict[str, Callable[[int], nn.Module]] = {
    "bce": BinaryOrCategoricalCE,
    "dice": _dice,
    "dice_ce": _dice_ce,
    "dice_focal": _dice_focal,
}


def build_loss(name: str, num_classes: int) -> nn.Module:
    """The loss registered under ``name`` for ``num_classes`` classes (background included)."""
    check_choice("model.loss", name, LOSSES)
    return LOSSES[name](num_classes)
