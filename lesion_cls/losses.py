"""Classification losses: ``ce``, ``focal`` and ``ce_focal`` (the seed's "cross-entropy + focal loss").

All take logits ``[N, C]`` and integer targets ``[N]`` and share PyTorch's conventions for class weights
and label smoothing, so that ``FocalLoss(gamma=0)`` equals ``nn.CrossEntropyLoss`` exactly:

* per-sample loss ``l_i = sum_c q_ic * w_c * alpha_c * (1 - p_ic)^gamma * (-log p_ic)`` with
  ``q_i = (1 - eps) * onehot(y_i) + eps / C`` (label smoothing ``eps``),
* ``reduction="mean"`` divides by ``sum_i w_{y_i}`` (by ``N`` without class weights ``w``).

They also take soft targets ``[N, C]`` (class probabilities, e.g. from mixup/cutmix, already smoothed): then
``q_i`` is the target row, and the mean divides by ``sum_i sum_c q_ic * w_c`` (``N`` without weights), which is
the hard-label definition when the rows are one-hot.

``alpha`` is the focal paper's per-class balancing factor (Lin et al., ICCV 2017); ``weight`` are the class
weights computed on the training split (``data.class_weights``, linked to ``model.loss_weights``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from common.errors import MedlitError, check_choice

__all__ = ["LOSSES", "CEFocalLoss", "CrossEntropyLoss", "FocalLoss", "build_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _as_weight(weight: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    return None if weight is None else torch.as_tensor(weight, dtype=torch.float32).detach().clone()


class _WeightedLoss(nn.Module):
    """Shared checks and the class-weight buffer (not saved: it follows the training split's configuration)."""

    def __init__(
        self,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        check_choice("reduction", reduction, _REDUCTIONS)
        if not 0.0 <= label_smoothing < 1.0:
            raise MedlitError(f"model.label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.reduction = reduction
        self.register_buffer("weight", _as_weight(weight), persistent=False)

    def _check(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        soft = target.ndim == 2 and target.shape == logits.shape
        if logits.ndim != 2 or not (target.ndim == 1 or soft) or logits.shape[0] != target.shape[0]:
            raise ValueError(
                f"expected logits [N, C] and target [N] or [N, C], got {tuple(logits.shape)} and {tuple(target.shape)}"
            )

    def _reduce(self, per_sample: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.reduction == "none":
            return per_sample
        if self.reduction == "sum":
            return per_sample.sum()
        if self.weight is None:
            return per_sample.sum() / len(target)
        weights = (target.float() @ self.weight) if target.ndim == 2 else self.weight[target]
        return per_sample.sum() / weights.sum()

    def _soft(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``q``: the smoothed one-hot rows of integer targets, or soft targets as given."""
        if target.ndim == 2:
            return target.float()
        q = F.one_hot(target, logits.shape[1]).float()
        return q * (1.0 - self.label_smoothing) + self.label_smoothing / logits.shape[1] if self.label_smoothing else q


class CrossEntropyLoss(_WeightedLoss):
    """``nn.functional.cross_entropy`` with a settable class-weight buffer."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        if target.ndim == 2:  # soft targets: the module docstring's definition (PyTorch's mean divides by N)
            factor = target.float() * self.weight if self.weight is not None else target.float()
            return self._reduce(-(factor * F.log_softmax(logits.float(), dim=1)).sum(dim=1), target)
        return F.cross_entropy(
            logits, target, weight=self.weight, label_smoothing=self.label_smoothing, reduction=self.reduction
        )


class FocalLoss(_WeightedLoss):
    """Multi-class softmax focal loss.

    Args:
        gamma: Focusing parameter (0 = cross-entropy).
        alpha: Optional per-class factors ``[C]``.
        label_smoothing: See module docstring.
        reduction: ``mean``, ``sum`` or ``none``.
        weight: Optional class weights ``[C]``.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        reduction: str = "mean",
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__(label_smoothing, reduction, weight)
        if gamma < 0:
            raise MedlitError(f"model.focal_gamma must be >= 0, got {gamma}")
        self.gamma = gamma
        self.register_buffer("alpha", None if alpha is None else torch.as_tensor(alpha, dtype=torch.float32))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        self._check(logits, target)
        num_classes = logits.shape[1]
        if self.alpha is not None and self.alpha.numel() != num_classes:
            raise ValueError(f"focal alpha has {self.alpha.numel()} entries for {num_classes} classes")
        log_p = F.log_softmax(logits.float(), dim=1)
        q = self._soft(logits, target)
        factor = q * (1.0 - log_p.exp()).pow(self.gamma) if self.gamma > 0 else q
        if self.alpha is not None:
            factor = factor * self.alpha
        if self.weight is not None:
            factor = factor * self.weight
        return self._reduce(-(factor * log_p).sum(dim=1), target)


class CEFocalLoss(nn.Module):
    """``ce_weight * CE + focal_weight * Focal``: the seed's "cross-entropy + focal loss"."""

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        ce_weight: float = 1.0,
        focal_weight: float = 1.0,
        reduction: str = "mean",
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ce = CrossEntropyLoss(label_smoothing, reduction, weight)
        self.focal = FocalLoss(gamma, alpha, label_smoothing, reduction, weight)
        self.ce_weight, self.focal_weight = ce_weight, focal_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce_weight * self.ce(logits, target) + self.focal_weight * self.focal(logits, target)


def _ce(options: dict[str, Any]) -> nn.Module:
    return CrossEntropyLoss(options["label_smoothing"], options["reduction"], options["weight"])


def _focal(options: dict[str, Any]) -> nn.Module:
    return FocalLoss(
        options["gamma"], options["alpha"], options["label_smoothing"], options["reduction"], options["weight"]
    )


def _ce_focal(options: dict[str, Any]) -> nn.Module:
    return CEFocalLoss(
        options["gamma"],
        options["alpha"],
        options["label_smoothing"],
        options["ce_weight"],
        options["focal_weight"],
        options["reduction"],
        options["weight"],
    )


LOSSES: dict[str, Callable[[dict[str, Any]], nn.Module]] = {"ce": _ce, "focal": _focal, "ce_focal": _ce_focal}
"""Loss builders by name; each takes the options of :func:`build_loss` it uses."""


def build_loss(
    name: str,
    focal_gamma: float = 2.0,
    focal_alpha: Sequence[float] | None = None,
    label_smoothing: float = 0.0,
    ce_weight: float = 1.0,
    focal_weight: float = 1.0,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    reduction: str = "mean",
) -> nn.Module:
    """The loss registered under ``name`` (``ce``, ``focal``, ``ce_focal``); other arguments where they apply."""
    check_choice("model.loss", name, LOSSES)
    options = {
        "gamma": focal_gamma,
        "alpha": focal_alpha,
        "label_smoothing": label_smoothing,
        "ce_weight": ce_weight,
        "focal_weight": focal_weight,
        "weight": class_weights,
        "reduction": reduction,
    }
    return LOSSES[name](options)
