"""The volume segmenter: a MONAI 3D U-Net, a registered loss, an optimizer by name, sliding-window evaluation."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from monai.inferers import sliding_window_inference
from monai.losses import DeepSupervisionLoss
from monai.transforms import KeepLargestConnectedComponent

from common.distributed import gather_objects
from common.ensemble import EnsembleMembers
from common.errors import MedlitError
from common.optim import OptimizerSettings, configure_optimizers
from volume_seg import TASK, default_class_names
from volume_seg.losses import build_loss
from volume_seg.metrics import mean_foreground_dice
from volume_seg.networks import build_network

__all__ = ["VolumeSegmenter", "keep_largest_components", "mirrorings"]


def mirrorings(axes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every combination of flips along the spatial ``axes`` (0, 1, 2 = X, Y, Z) as dimensions of a volume
    ``[B, C, X, Y, Z]``, the identity ``()`` first: 8 for all three axes (nnU-Net's mirroring TTA)."""
    dims = [2 + axis for axis in sorted(set(axes))]
    return [combo for size in range(len(dims) + 1) for combo in itertools.combinations(dims, size)]


def keep_largest_components(mask: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A label map ``[1, X, Y, Z]`` with only the largest connected component of each foreground class (MONAI's
    ``KeepLargestConnectedComponent``): the ``largest_component`` post-processing."""
    return KeepLargestConnectedComponent(applied_labels=list(range(1, num_classes)), is_onehot=False)(mask)


class VolumeSegmenter(LightningModule):
    """3D segmentation of single-channel volumes.

    Args:
        num_classes: Classes including background (linked from ``data.num_classes``); 2 = binary.
        net: ``unet``, ``basic_unet`` or ``dynunet``.
        channels: Feature maps per level.
        strides: Downsampling per level (one fewer than ``channels``).
        dropout: Dropout in the network.
        deep_supervision: Extra lower-resolution output heads trained with the loss (``dynunet`` only), their
            losses weighted 1, 1/2, 1/4, ... and normalised to sum 1 (MONAI ``DeepSupervisionLoss``); 0 = none.
        class_names: Names of the classes, background first (linked from ``data.class_names``; default
            :func:`default_class_names`), used in the per-case outputs.
        loss: ``bce``, ``dice``, ``dice_ce`` or ``dice_focal`` (see :mod:`volume_seg.losses`).
        optimizer, lr, weight_decay, scheduler, warmup_steps: The optimizer (the seeds': ``adam``, lr 1e-3) and its
            learning-rate schedule over the training budget: :class:`common.optim.OptimizerSettings`.
        roi_size: Sliding-window size (linked from ``data.patch_size``).
        sw_batch_size: Windows evaluated together.
        sw_overlap: Overlap of neighbouring windows.
        sw_mode: Blending of overlapping windows: ``gaussian`` or ``constant``.
        largest_component: Keep only the largest connected component of each foreground class (validation,
            test and predict).
        tta_flips: Test-time augmentation for test and predict (not validation, which selects the model and
            would pay up to 8x): average the probabilities of the volume's mirrorings along ``tta_axes``.
        tta_axes: The spatial axes (0, 1, 2) flip TTA mirrors, all combinations (:func:`mirrorings`); in ``fit``
            linked from ``data.augment`` (:data:`volume_seg.transforms.MIRROR_AXES`: only mirrorings the model was
            trained on), then kept in the checkpoint for ``test`` and ``predict``.
    """

    task = TASK
    monitor = "val/dice"
    """Checkpoint selection: mean foreground Dice over the validation volumes."""
    monitor_mode = "max"
    metric_labels = {"loss": "loss", "dice": "Dice"}
    """Axis labels of the logged metrics (``train/<name>``, ``val/<name>``)."""
    checkpoint_overrides: dict[str, Any] = {}
    """Nothing to change when the weights come from a checkpoint (no pretrained weights are downloaded)."""
    ensemble_keys = ("model.num_classes", "model.class_names", "model.roi_size", "data.normalize", "data.spacing")
    """What an ensemble's members must share: the classes, the patch (sliding window), the intensity normalisation
    and voxel spacing of their inputs (:mod:`common.ensemble`)."""

    def __init__(
        self,
        num_classes: int = 2,
        net: str = "unet",
        channels: list[int] = (16, 32, 64, 128, 256),
        strides: list[int] = (2, 2, 2, 2),
        dropout: float = 0.0,
        deep_supervision: int = 0,
        class_names: list[str] | None = None,
        loss: Literal["bce", "dice", "dice_ce", "dice_focal"] = "dice",
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        warmup_steps: int = 0,
        roi_size: list[int] = (112, 112, 80),
        sw_batch_size: int = 2,
        sw_overlap: float = 0.5,
        sw_mode: Literal["gaussian", "constant"] = "gaussian",
        largest_component: bool = False,
        tta_flips: bool = False,
        tta_axes: list[int] = (0, 1, 2),
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.optimizer_settings = OptimizerSettings(optimizer, lr, weight_decay, scheduler, warmup_steps)
        if not set(tta_axes) <= {0, 1, 2}:
            raise MedlitError(f"model.tta_axes must be spatial axes among 0, 1, 2, got {list(tta_axes)}")
        if tta_flips and not tta_axes:
            raise MedlitError(
                "model.tta_flips: no axis to mirror (model.tta_axes is empty: in training it follows data.augment, "
                "and 'none' mirrors nothing); set model.tta_flips false or train with mirroring"
            )
        if class_names is not None and len(class_names) != num_classes:
            raise MedlitError(f"data.class_names has {len(class_names)} names for {num_classes} classes")
        self.num_classes = num_classes
        self.class_names = list(class_names or default_class_names(num_classes))
        self.net = build_network(net, num_classes, channels, strides, dropout, deep_supervision)
        self.criterion = build_loss(loss, num_classes)
        self.train_criterion = self.criterion
        if deep_supervision:
            weights = [0.5**level for level in range(deep_supervision + 1)]
            self.train_criterion = DeepSupervisionLoss(self.criterion, weights=[w / sum(weights) for w in weights])
        self.members = EnsembleMembers()  # an ensemble's members (use_ensemble); empty: the module's own network
        self._val_cases: list[tuple[str, float, float]] = []  # (case, Dice, loss) of this process

    def forward(self, volume: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C, X, Y, Z]`` for volumes ``[B, 1, X, Y, Z]``."""
        return self.net(volume)

    def predict_volume(self, volume: torch.Tensor) -> torch.Tensor:
        """Sliding-window logits over a whole volume ``[B, 1, X, Y, Z]`` (MONAI inferer)."""
        return sliding_window_inference(
            volume,
            roi_size=list(self.hparams.roi_size),
            sw_batch_size=self.hparams.sw_batch_size,
            predictor=self,
            overlap=self.hparams.sw_overlap,
            mode=self.hparams.sw_mode,
        )

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid of the single channel (binary) or softmax over the class channels."""
        return torch.sigmoid(logits.float()) if self.num_classes == 2 else torch.softmax(logits.float(), dim=1)

    def use_ensemble(self, members: Sequence[VolumeSegmenter], one_at_a_time: bool = False) -> None:
        """Test and predict with the mean of the members' probabilities (each with its own ``tta_axes`` when
        ``tta_flips``); thresholding and ``largest_component`` stay this module's. ``one_at_a_time``: one member on
        the accelerator at a time (:class:`~common.ensemble.EnsembleMembers`)."""
        self.members = EnsembleMembers(members, one_at_a_time)

    def logits_of(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Logits whose probabilities are ``probabilities`` (for the loss of an ensemble's mean probabilities)."""
        tiny = torch.finfo(probabilities.dtype).eps
        if self.num_classes == 2:
            return torch.logit(probabilities, eps=tiny)
        return probabilities.clamp_min(tiny).log()

    def predict_probabilities(self, volume: torch.Tensor, flips: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities, logits)`` of a whole volume; with ``flips``, the probabilities are the mean over the
        mirrorings along ``tta_axes`` (each predicted on the mirrored volume and mirrored back), the logits the
        unmirrored ones. An ensemble (:meth:`use_ensemble`) returns the mean of its members' probabilities, and
        logits that give them."""
        if len(self.members):
            probabilities = self.members.mean(lambda member: member.predict_probabilities(volume, flips)[0], volume)
            return probabilities, self.logits_of(probabilities)
        logits = self.predict_volume(volume)
        probabilities = self.probabilities(logits)
        if flips:
            flip_sets = mirrorings(self.hparams.tta_axes)
            for dims in flip_sets[1:]:
                flipped = self.predict_volume(volume.flip(dims))
                probabilities += self.probabilities(flipped).flip(dims)
            probabilities /= len(flip_sets)
        return probabilities, logits

    def class_probabilities(self, probabilities: torch.Tensor) -> torch.Tensor:
        """``[B, num_classes, X, Y, Z]`` probabilities of every class, background first (a binary model's one
        sigmoid channel ``p`` becomes ``1 - p, p``): what ``outputs.save_probabilities`` writes."""
        return torch.cat([1 - probabilities, probabilities], dim=1) if self.num_classes == 2 else probabilities

    def to_mask(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Integer label map ``[B, 1, X, Y, Z]``: threshold 0.5 (binary) or arg-max, then optional LCC."""
        mask = (probabilities > 0.5).long() if self.num_classes == 2 else probabilities.argmax(dim=1, keepdim=True)
        if self.hparams.largest_component:
            mask = torch.stack([keep_largest_components(m, self.num_classes) for m in mask])
        return mask

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        outputs = self(batch["image"])
        if outputs.ndim == 6:  # deep supervision: the full-resolution output and the heads, on dimension 1
            outputs = list(outputs.unbind(dim=1))
        loss = self.train_criterion(outputs, batch["label"])
        batch_size = len(batch["image"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=batch_size)
        return loss

    def _evaluate(self, batch: dict[str, Any], flips: bool = False) -> dict[str, Any]:
        """Sliding-window prediction of one whole volume, its mask and its loss (evaluation batches hold one)."""
        probabilities, logits = self.predict_probabilities(batch["image"], flips)
        return {
            "mask": self.to_mask(probabilities),
            "case": batch["case"],
            "loss": float(self.criterion(logits, batch["label"])),
            "probabilities": probabilities,
        }

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        outputs = self._evaluate(batch)
        dice = mean_foreground_dice(
            outputs["mask"][0, 0].cpu().numpy(), batch["label"][0, 0].cpu().numpy(), self.num_classes
        )
        self._val_cases.append((batch["case"][0], dice, outputs["loss"]))

    def on_validation_epoch_start(self) -> None:
        self._val_cases = []

    def on_validation_epoch_end(self) -> None:
        """``val/dice`` and ``val/loss``: means over the validation cases, each case once across processes."""
        cases = {case: (dice, loss) for rows in gather_objects(self._val_cases) for case, dice, loss in rows}
        dice = np.array([d for d, _ in cases.values()], dtype=np.float64)
        loss = np.array([value for _, value in cases.values()], dtype=np.float64)
        self.log("val/dice", float(np.nanmean(dice)) if np.isfinite(dice).any() else float("nan"), prog_bar=True)
        self.log("val/loss", float(loss.mean()) if loss.size else float("nan"))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Mask and loss of one test volume; the outputs callback scores the cases once and logs ``test/*``."""
        return self._evaluate(batch, flips=self.hparams.tta_flips)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probabilities, _ = self.predict_probabilities(batch["image"], flips=self.hparams.tta_flips)
        return {"mask": self.to_mask(probabilities), "case": batch["case"], "probabilities": probabilities}

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.trainer, self.optimizer_settings)
