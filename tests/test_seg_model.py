"""Losses against references, sliding-window inference, post-processing."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from common.errors import MedlitError
from volume_seg.losses import build_loss
from volume_seg.model import VolumeSegmenter


def test_binary_losses_against_references() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, 8)
    label = (torch.rand(2, 1, 8, 8, 8) > 0.7).long()
    bce = build_loss("bce", 2)(logits, label)
    torch.testing.assert_close(bce, F.binary_cross_entropy_with_logits(logits, label.float()))
    p = logits.sigmoid()
    soft_dice = 1 - (2 * (p * label).sum() + 1e-5) / (p.sum() + label.sum() + 1e-5)  # over the whole batch
    torch.testing.assert_close(build_loss("dice", 2)(logits, label.float()), soft_dice)
    torch.testing.assert_close(build_loss("dice_ce", 2)(logits, label.float()), soft_dice + bce)


def test_multiclass_losses_against_references() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, 8)
    label = torch.randint(0, 3, (2, 1, 8, 8, 8))
    torch.testing.assert_close(build_loss("bce", 3)(logits, label), F.cross_entropy(logits, label[:, 0]))
    p = logits.softmax(dim=1)[:, 1:]
    onehot = F.one_hot(label[:, 0], 3).movedim(-1, 1)[:, 1:].float()
    dims = (0, 2, 3, 4)
    per_class = 1 - (2 * (p * onehot).sum(dims) + 1e-5) / (p.sum(dims) + onehot.sum(dims) + 1e-5)
    torch.testing.assert_close(build_loss("dice", 3)(logits, label.float()), per_class.mean())
    assert build_loss("dice_focal", 3)(logits, label.float()) > per_class.mean()


@pytest.mark.parametrize("mode", ["constant", "gaussian"])
def test_sliding_window_equals_whole_volume_forward_when_roi_covers_it(mode: str) -> None:
    torch.manual_seed(2)
    model = VolumeSegmenter(channels=[4, 8, 16], strides=[2, 2], roi_size=[32, 24, 16], sw_mode=mode).eval()
    volume = torch.randn(1, 1, 32, 24, 16)
    with torch.no_grad():
        torch.testing.assert_close(model.predict_volume(volume), model(volume), atol=1e-5, rtol=1e-5)
        # a smaller ROI tiles the volume: same shape, not the same numbers
        model.hparams.roi_size = [16, 16, 16]
        tiled = model.predict_volume(volume)
    assert tiled.shape == volume.shape and not torch.allclose(tiled, model(volume))


def test_largest_component_post_processing() -> None:
    model = VolumeSegmenter(channels=[4, 8], strides=[2], largest_component=True)
    logits = -torch.ones(1, 1, 16, 16, 16)
    logits[..., 2:8, 2:8, 2:8] = 1
    logits[..., 12:14, 12:14, 12:14] = 1
    mask = model.to_mask(model.probabilities(logits))
    assert mask.sum() == 6**3 and mask[0, 0, 13, 13, 13] == 0
    model.hparams.largest_component = False
    assert model.to_mask(model.probabilities(logits)).sum() == 6**3 + 2**3


@pytest.mark.parametrize(
    ("num_classes", "axes", "mirrored"),
    [
        (2, [0, 1, 2], [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]),
        (3, [0, 1, 2], [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]),
        (2, [0, 1], [(), (2,), (3,), (2, 3)]),  # rotflip trains on X/Y mirrorings only: no Z flip at test time
    ],
)
def test_flip_tta_is_the_mean_of_the_mirrored_predictions(
    num_classes: int, axes: list[int], mirrored: list[tuple[int, ...]]
) -> None:
    torch.manual_seed(3)
    model = VolumeSegmenter(
        num_classes=num_classes, channels=[4, 8, 16], strides=[2, 2], roi_size=[16, 16, 16], tta_axes=axes
    )
    model.eval()
    volume = torch.randn(1, 1, 20, 16, 12)
    with torch.no_grad():
        by_hand = []
        for dims in mirrored:
            logits = model.predict_volume(volume.flip(dims) if dims else volume)
            probabilities = logits.sigmoid() if num_classes == 2 else logits.softmax(dim=1)
            by_hand.append(probabilities.flip(dims) if dims else probabilities)
        expected = torch.stack(by_hand).mean(dim=0)
        tta, logits = model.predict_probabilities(volume, flips=True)
        plain, _ = model.predict_probabilities(volume)
    torch.testing.assert_close(tta, expected, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(logits, model.predict_volume(volume))  # the loss sees the unmirrored logits
    assert not torch.allclose(tta, plain, atol=1e-3)  # the mirrorings changed something


def test_tta_axes_follow_the_training_augmentation() -> None:
    """The CLI links ``model.tta_axes`` to the mirrorings of ``data.augment``; other axes are refused."""
    from volume_seg.__main__ import LINKS
    from volume_seg.transforms import AUGMENTATIONS, MIRROR_AXES

    (link,) = [link for link in LINKS if link.target == "model.tta_axes"]
    assert link.compute("rotflip") == [0, 1] and link.compute("nnunet") == [0, 1, 2] and link.compute("none") == []
    assert set(MIRROR_AXES) == set(AUGMENTATIONS)  # every preset says what it mirrors
    assert link.subcommands == ("fit", "validate")  # test and predict keep the checkpoint's axes
    with pytest.raises(MedlitError, match="tta_axes"):
        VolumeSegmenter(tta_axes=[3])
    with pytest.raises(MedlitError, match="no axis to mirror"):
        VolumeSegmenter(tta_flips=True, tta_axes=[])


def test_deep_supervision_loss_weights_the_heads() -> None:
    torch.manual_seed(4)
    model = VolumeSegmenter(net="dynunet", channels=[4, 8, 16], strides=[2, 2], deep_supervision=1, loss="dice_ce")
    batch = {"image": torch.randn(2, 1, 16, 16, 16), "label": torch.randint(0, 2, (2, 1, 16, 16, 16))}
    model.train()
    model.log = lambda *args, **kwargs: None
    outputs = model(batch["image"])
    assert outputs.shape == (2, 2, 1, 16, 16, 16)  # the full-resolution output and one head, upsampled
    expected = model.criterion(outputs[:, 0], batch["label"]) + 0.5 * model.criterion(outputs[:, 1], batch["label"])
    torch.manual_seed(4)
    torch.testing.assert_close(model.training_step(batch, 0), expected / 1.5)
    model.eval()
    with torch.no_grad():
        assert model(batch["image"]).shape == (2, 1, 16, 16, 16)  # one output outside training


def test_deep_supervision_needs_dynunet() -> None:
    with pytest.raises(MedlitError, match="model.deep_supervision needs model.net=dynunet, got model.net=unet"):
        VolumeSegmenter(net="unet", deep_supervision=1)
    with pytest.raises(MedlitError, match=r"model.deep_supervision must be in 0..1, got 2"):
        VolumeSegmenter(net="dynunet", channels=[4, 8, 16], strides=[2, 2], deep_supervision=2)


@pytest.mark.parametrize("net", ["unet", "basic_unet", "dynunet"])
def test_dropout_reaches_the_network_and_acts_in_training_only(net: str) -> None:
    """``model.dropout``: dropout layers with that rate inside each network; random in training, off in evaluation."""
    torch.manual_seed(0)
    plain = VolumeSegmenter(net=net, channels=[4, 8, 16], strides=[2, 2], roi_size=[16, 16, 16]).net
    dropped = VolumeSegmenter(net=net, channels=[4, 8, 16], strides=[2, 2], roi_size=[16, 16, 16], dropout=0.3).net
    rates = [m.p for m in dropped.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
    assert rates and set(rates) == {0.3}
    assert not [m for m in plain.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0]
    volume = torch.randn(1, 1, 32, 32, 32)  # BasicUNet pools 4 times
    dropped.train()
    assert not torch.equal(dropped(volume), dropped(volume))
    dropped.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(volume), dropped(volume), rtol=0, atol=0)
