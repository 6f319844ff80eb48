"""Classification losses against PyTorch's cross-entropy, MONAI's focal loss and a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.losses import FocalLoss as MonaiFocalLoss

from common.errors import MedlitError
from lesion_cls.losses import CEFocalLoss, CrossEntropyLoss, FocalLoss, build_loss


@pytest.fixture
def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(13, 7, generator=generator) * 3, torch.randint(0, 7, (13,), generator=generator)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_focal_with_gamma_0_equals_cross_entropy(batch, label_smoothing, weighted, reduction) -> None:
    logits, target = batch
    weight = torch.linspace(0.5, 2.0, 7) if weighted else None
    focal = FocalLoss(gamma=0.0, label_smoothing=label_smoothing, reduction=reduction, weight=weight)
    expected = F.cross_entropy(logits, target, weight=weight, label_smoothing=label_smoothing, reduction=reduction)
    torch.testing.assert_close(focal(logits, target), expected)


def test_focal_alpha_of_ones_changes_nothing(batch) -> None:
    logits, target = batch
    torch.testing.assert_close(FocalLoss(0.0, alpha=[1.0] * 7)(logits, target), F.cross_entropy(logits, target))
    torch.testing.assert_close(FocalLoss(2.0, alpha=[1.0] * 7)(logits, target), FocalLoss(2.0)(logits, target))


def test_focal_hand_computed_case() -> None:
    # two samples, three classes; p = softmax(logits)
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    target = torch.tensor([0, 1])
    alpha = [0.25, 0.5, 1.0]
    p0 = math.exp(2) / (math.exp(2) + 2)
    p1 = math.exp(1) / (1 + math.exp(1) + math.exp(3))
    per_sample = [-0.25 * (1 - p0) ** 2 * math.log(p0), -0.5 * (1 - p1) ** 2 * math.log(p1)]
    loss = FocalLoss(gamma=2.0, alpha=alpha, reduction="none")(logits, target)
    torch.testing.assert_close(loss, torch.tensor(per_sample))
    assert FocalLoss(gamma=2.0, alpha=alpha)(logits, target).item() == pytest.approx(sum(per_sample) / 2)


def test_focal_matches_monai_softmax_focal(batch) -> None:
    logits, target = batch
    ours = FocalLoss(gamma=2.0, alpha=[0.3, 0.5, 0.7, 0.2, 0.9, 1.0, 0.4], reduction="none")(logits, target)
    # MONAI keeps one term per class (zero except the true class): summing over classes gives ours
    monai = MonaiFocalLoss(
        gamma=2.0, alpha=[0.3, 0.5, 0.7, 0.2, 0.9, 1.0, 0.4], use_softmax=True, to_onehot_y=True, reduction="none"
    )(logits, target[:, None])
    torch.testing.assert_close(ours, monai.sum(dim=1).reshape(-1))


def test_focal_down_weights_easy_examples() -> None:
    target = torch.tensor([0])
    easy, hard = torch.tensor([[5.0, 0.0, 0.0]]), torch.tensor([[0.5, 0.0, 0.0]])
    ratio_focal = FocalLoss(2.0)(easy, target) / FocalLoss(2.0)(hard, target)
    ratio_ce = F.cross_entropy(easy, target) / F.cross_entropy(hard, target)
    assert ratio_focal < ratio_ce / 10


def test_ce_focal_is_the_weighted_sum(batch) -> None:
    logits, target = batch
    combined = CEFocalLoss(gamma=2.0, ce_weight=0.3, focal_weight=2.0)
    expected = 0.3 * F.cross_entropy(logits, target) + 2.0 * FocalLoss(2.0)(logits, target)
    torch.testing.assert_close(combined(logits, target), expected)


def test_class_weights_reach_both_terms(batch) -> None:
    logits, target = batch
    weight = torch.linspace(0.1, 3.0, 7)
    combined = build_loss("ce_focal", focal_gamma=0.0, class_weights=weight)
    torch.testing.assert_close(combined(logits, target), 2 * F.cross_entropy(logits, target, weight=weight))


def test_registry_and_checks(batch) -> None:
    logits, target = batch
    assert isinstance(build_loss("ce"), CrossEntropyLoss)
    with pytest.raises(MedlitError, match="unknown model.loss 'dice'.*ce, ce_focal, focal"):
        build_loss("dice")
    with pytest.raises(MedlitError, match="reduction"):
        FocalLoss(reduction="avg")
    with pytest.raises(ValueError, match=r"logits \[N, C\]"):
        FocalLoss()(logits[None], target)
    with pytest.raises(ValueError, match="alpha has 3 entries for 7 classes"):
        FocalLoss(alpha=[1.0, 1.0, 1.0])(logits, target)


@pytest.mark.parametrize("weighted", [False, True])
def test_soft_targets_equal_hard_ones_when_one_hot(batch, weighted: bool) -> None:
    """One-hot soft targets give the integer-target losses (with weights: divided by the sum of the targets'
    weights, PyTorch's mean); a soft row is the mix of the losses of its classes (unweighted)."""
    logits, target = batch
    weight = torch.linspace(0.5, 2.0, 7) if weighted else None
    onehot = F.one_hot(target, 7).float()
    for loss in (CrossEntropyLoss(weight=weight), FocalLoss(gamma=2.0, weight=weight), CEFocalLoss(weight=weight)):
        torch.testing.assert_close(loss(logits, onehot), loss(logits, target))
    other = (target + 3) % 7
    mixed = 0.3 * onehot + 0.7 * F.one_hot(other, 7).float()
    ce = CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(ce(logits, mixed), 0.3 * ce(logits, target) + 0.7 * ce(logits, other))
    with pytest.raises(ValueError, match=r"target \[N\] or \[N, C\]"):
        CrossEntropyLoss()(logits, onehot[:, :3])
