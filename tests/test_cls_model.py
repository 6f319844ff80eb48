"""The LightningModule: steps, optimizer, test-time flips, decisions and Grad-CAM."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import MedlitError
from lesion_cls.model import FLIPS, LesionClassifier
from lesion_cls.viz import gradcam_maps


def test_module_step_and_optimizer() -> None:
    module = LesionClassifier(backbone="resnet10t", loss="ce_focal", scheduler="cosine").eval()
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 2, 6]), "image_id": list("abcd")}
    out = module.test_step(batch, 0)
    assert out["probs"].shape == (4, 7) and out["image_id"] == list("abcd")
    torch.testing.assert_close(out["probs"].sum(dim=1), torch.ones(4))
    # per-image losses: their mean is the batch criterion (no class weights)
    assert out["loss"].shape == (4,) and (out["loss"] > 0).all()
    with torch.no_grad():
        torch.testing.assert_close(out["loss"].mean(), module.criterion(module(batch["image"]), batch["label"]))
    with pytest.raises(MedlitError, match="unknown model.scheduler 'linear'"):
        LesionClassifier(backbone="resnet10t", scheduler="linear")


def test_gradcam_has_input_size_and_depends_on_class() -> None:
    torch.manual_seed(0)
    module = LesionClassifier(backbone="resnet10t").eval()
    images = torch.randn(2, 3, 48, 64)
    maps = {c: gradcam_maps(module, module.gradcam_layer(), images, c) for c in (0, 3)}
    assert maps[0].shape == (2, 48, 64)
    assert maps[0].min() >= 0.0 and maps[0].max() <= 1.0 + 1e-6
    assert abs(maps[0] - maps[3]).max() > 0.1


def test_channels_last_gives_the_same_logits() -> None:
    torch.manual_seed(0)
    plain = LesionClassifier(backbone="resnet10t").eval()
    channels_last = LesionClassifier(backbone="resnet10t", channels_last=True).eval()
    channels_last.load_state_dict(plain.state_dict())
    images = torch.randn(2, 3, 48, 64)
    weight = next(p for p in channels_last.net.parameters() if p.ndim == 4)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        torch.testing.assert_close(channels_last(images), plain(images), rtol=1e-4, atol=1e-5)


def test_flip_tta_is_the_mean_of_the_flipped_predictions() -> None:
    torch.manual_seed(0)
    module = LesionClassifier(backbone="resnet10t", tta_flips=True).eval()
    images = torch.randn(3, 3, 32, 48)
    with torch.no_grad():
        by_hand = torch.stack([module(images.flip(d) if d else images).softmax(dim=1) for d in FLIPS]).mean(dim=0)
        probs, logits = module.probabilities(images)
        out = module.test_step({"image": images, "label": torch.tensor([0, 1, 2]), "image_id": list("abc")}, 0)
        module.hparams.tta_flips = False
        plain, _ = module.probabilities(images)
    assert FLIPS == ((), (3,), (2,), (2, 3))  # none, horizontal, vertical, both
    torch.testing.assert_close(probs, by_hand)
    torch.testing.assert_close(out["probs"], by_hand)
    torch.testing.assert_close(logits.softmax(dim=1), plain)
    assert not torch.allclose(probs, plain, atol=1e-4)


def test_logit_adjusted_loss_adds_tau_log_prior() -> None:
    priors = [0.1, 0.5, 0.1, 0.1, 0.1, 0.05, 0.05]
    module = LesionClassifier(backbone="resnet10t", logit_adjustment=1.0, class_priors=priors).eval()
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 5, 6]), "image_id": list("abcd")}
    with torch.no_grad():
        logits = module(batch["image"])
        expected = F.cross_entropy(logits + torch.log(torch.tensor(priors)), batch["label"], reduction="none")
        out = module.test_step(batch, 0)
    torch.testing.assert_close(out["loss"], expected)
    torch.testing.assert_close(out["probs"], logits.softmax(dim=1))  # predictions use the plain logits
    with pytest.raises(MedlitError, match="logit_adjustment needs model.class_priors"):
        LesionClassifier(backbone="resnet10t", logit_adjustment=1.0)


def test_decision_tau_shifts_probabilities_and_travels_with_the_checkpoint() -> None:
    frequencies = [0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02]
    log_f = torch.log(torch.tensor(frequencies))
    fixed = LesionClassifier(backbone="resnet10t", decision_tau=0.5, class_frequencies=frequencies).eval()
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 5, 6]), "image_id": list("abcd")}
    with torch.no_grad():
        logits = fixed(batch["image"])
        out = fixed.test_step(batch, 0)
        unshifted = F.cross_entropy(logits, batch["label"], reduction="none")
    torch.testing.assert_close(out["probs"], (logits - 0.5 * log_f).softmax(dim=1))
    torch.testing.assert_close(out["loss"], unshifted)  # the loss is the network's, not the decision's
    # searched: 0 until a validation chooses one; the checkpoint carries the chosen one; a setting stays
    searched = LesionClassifier(
        backbone="resnet10t", decision_tau=None, class_frequencies=frequencies, selection_metric="acc_bal_mean"
    )
    assert searched.decision_tau == 0.0 and searched.monitor == "val/acc_bal_mean"
    searched.decision_tau = -0.375
    checkpoint: dict = {}
    searched.on_save_checkpoint(checkpoint)
    restored = LesionClassifier(backbone="resnet10t", decision_tau=None, class_frequencies=frequencies)
    restored.on_load_checkpoint(checkpoint)
    fixed.on_load_checkpoint(checkpoint)
    assert restored.decision_tau == -0.375 and fixed.decision_tau == 0.5
    with pytest.raises(MedlitError, match="decision_tau needs model.class_frequencies"):
        LesionClassifier(backbone="resnet10t", decision_tau=None)
    with pytest.raises(MedlitError, match="unknown model.selection_metric 'f1'"):
        LesionClassifier(backbone="resnet10t", selection_metric="f1")


def test_decision_offsets_add_to_the_shifted_logits() -> None:
    frequencies = [0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02]
    log_f = torch.log(torch.tensor(frequencies))
    offsets = [0.3, 0.0, -0.2, 0.5, 0.1, 1.5, -1.0]
    model = LesionClassifier(
        backbone="resnet10t", decision_tau=-0.25, decision_offsets=offsets, class_frequencies=frequencies
    ).eval()
    batch = {"image": torch.randn(4, 3, 32, 32), "label": torch.tensor([0, 1, 5, 6]), "image_id": list("abcd")}
    with torch.no_grad():
        logits = model(batch["image"])
        out = model.test_step(batch, 0)
    expected = (logits + 0.25 * log_f + torch.tensor(offsets)).softmax(dim=1)
    torch.testing.assert_close(out["probs"], expected)
    torch.testing.assert_close(out["raw_probs"], logits.softmax(dim=1))  # saved probabilities stay before them
    with pytest.raises(MedlitError, match="decision_offsets needs 7 numbers, got 2"):
        LesionClassifier(backbone="resnet10t", decision_offsets=[1.0, 2.0])


def test_mixup_and_cutmix_mix_images_and_labels() -> None:
    """A mixed batch: image i is lam * x_i + (1 - lam) * x_(N-1-i) (timm's batch mode) and the loss sees the same
    blend of the two one-hot labels; cutmix's labels follow the pasted area; odd batches stay unmixed."""
    module = LesionClassifier(backbone="resnet10t", mixup_alpha=0.4)
    images = torch.randn(4, 3, 8, 8)
    labels = torch.tensor([0, 1, 2, 3])
    np.random.seed(0)
    np.random.rand()  # timm draws whether to mix this batch, then lam
    lam = float(np.random.beta(0.4, 0.4))
    np.random.seed(0)
    mixed_images, target = module.mixup(images.clone(), labels)
    torch.testing.assert_close(mixed_images, lam * images + (1 - lam) * images.flip(0))
    expected = lam * F.one_hot(labels, 7).float() + (1 - lam) * F.one_hot(labels.flip(0), 7).float()
    torch.testing.assert_close(target, expected)
    cutmix = LesionClassifier(backbone="resnet10t", cutmix_alpha=1.0).mixup
    pasted, soft = cutmix(images.clone(), labels)
    own = (pasted == images).all(dim=1).float().mean(dim=(1, 2))  # share of each image left in place
    torch.testing.assert_close(soft[torch.arange(4), labels], own, atol=1e-6, rtol=0)
    assert (own < 1).all()
    odd = {"image": torch.randn(3, 3, 32, 32), "label": torch.tensor([0, 1, 2]), "image_id": list("abc")}
    assert torch.isfinite(module.training_step(odd, 0))  # an odd batch is trained on unmixed


def test_focal_alpha_reaches_the_loss_and_is_checked() -> None:
    """``model.focal_alpha`` weights each image's focal term by its class's factor (hand-computed from the softmax),
    in the training loss and the per-image test loss; a list of the wrong length is refused by name."""
    alpha = [2.0, 0.5, 1.0, 1.0, 1.0, 3.0, 1.0]
    module = LesionClassifier(backbone="resnet10t", loss="focal", focal_gamma=2.0, focal_alpha=alpha)
    logits = torch.randn(6, 7, generator=torch.Generator().manual_seed(1))
    target = torch.tensor([0, 1, 5, 2, 0, 6])
    p = logits.softmax(dim=1)[torch.arange(6), target]
    expected = -torch.tensor(alpha)[target] * (1 - p) ** 2 * p.log()
    torch.testing.assert_close(module.image_criterion(logits, target), expected)
    torch.testing.assert_close(module.criterion(logits, target), expected.mean())
    with pytest.raises(MedlitError, match="model.focal_alpha needs 7 numbers, got 2"):
        LesionClassifier(backbone="resnet10t", loss="focal", focal_alpha=[1.0, 2.0])


def test_mixup_prob_is_the_share_of_mixed_batches() -> None:
    images, labels = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    never = LesionClassifier(backbone="resnet10t", mixup_alpha=0.4, mixup_prob=0.0).mixup
    unmixed, target = never(images.clone(), labels)
    torch.testing.assert_close(unmixed, images)
    torch.testing.assert_close(target, F.one_hot(labels, 7).float())
    half = LesionClassifier(backbone="resnet10t", mixup_alpha=0.4, mixup_prob=0.5).mixup
    np.random.seed(0)
    mixed = [not torch.equal(half(images.clone(), labels)[0], images) for _ in range(400)]
    assert 0.42 < np.mean(mixed) < 0.58
    with pytest.raises(MedlitError, match="model.mixup_prob is a share of batches in"):
        LesionClassifier(backbone="resnet10t", mixup_alpha=0.4, mixup_prob=1.5)
