"""The lesion classifier: a timm backbone, a registered loss, an optimizer by name, torchmetrics per stage."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from timm.data import Mixup
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score, MulticlassRecall

from common.ensemble import EnsembleMembers
from common.errors import MedlitError, check_choice
from common.optim import OptimizerSettings, configure_optimizers
from lesion_cls import CLASS_NAMES, TASK
from lesion_cls.decisions import (
    SELECTION_METRICS,
    DecisionSettings,
    decision_settings,
    shift_decisions,
    shifted_probabilities,
)
from lesion_cls.losses import build_loss
from lesion_cls.networks import create_backbone

__all__ = ["FLIPS", "LesionClassifier", "logit_offset", "training_metrics"]

FLIPS: tuple[tuple[int, ...], ...] = ((), (3,), (2,), (2, 3))
"""Flip TTA's mirrorings of images ``[N, 3, H, W]``: none, horizontal, vertical, both."""


def training_metrics(num_classes: int) -> MetricCollection:
    """Accuracy, balanced accuracy (macro recall) and macro F1 of the training batches, logged ``train/<name>``."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "bal_acc": MulticlassRecall(num_classes, average="macro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix="train/",
    )


def logit_offset(tau: float, class_priors: Sequence[float] | None, num_classes: int) -> torch.Tensor | None:
    """``tau * log(prior)``, what the logit-adjusted loss adds to the logits (``None`` when ``tau`` is 0)."""
    if not tau:
        return None
    if class_priors is None or len(class_priors) != num_classes:
        raise MedlitError(
            f"model.logit_adjustment needs model.class_priors ({num_classes} numbers; linked from the data)"
        )
    priors = torch.as_tensor(class_priors, dtype=torch.float32).clamp_min(1e-8)
    return tau * torch.log(priors / priors.sum())


def _checked_class_names(class_names: Sequence[str] | None, **per_class: Sequence[float] | None) -> tuple[str, ...]:
    """The class names (HAM10000's by default), with each per-class setting of ``per_class`` one number per class."""
    names = tuple(str(c) for c in class_names) if class_names is not None else CLASS_NAMES
    if len(names) < 2 or len(set(names)) != len(names):
        raise MedlitError(f"model.class_names needs 2 or more different names, got {list(names)}")
    for key, values in per_class.items():
        if values is not None and len(values) != len(names):
            raise MedlitError(f"model.{key} needs {len(names)} numbers, got {len(values)}")
    return names


class LesionClassifier(LightningModule):
    """Image classifier for the 7 ISIC 2018 classes.

    Args:
        class_names: The classes, in the order of the network's outputs; linked from the data
            (``data.classes``, or the data's own labels; ``null``: HAM10000's seven, :data:`~lesion_cls.CLASS_NAMES`).
            Saved in every checkpoint, so that ``predict`` names its columns and a test on other classes is refused.
        backbone: Any timm model name (seed: ``resnet50``).
        pretrained: Start from the hub's ImageNet weights.
        pretrained_file: Local weights file instead of the hub.
        drop_rate: Dropout before the classifier.
        channels_last: Keep the network's weights and inputs in channels-last memory layout (faster convolutions
            on GPUs with tensor cores, notably with bf16; same numbers).
        loss: ``ce``, ``focal`` or ``ce_focal`` (see :mod:`lesion_cls.losses`).
        focal_gamma: Focal focusing parameter.
        focal_alpha: Optional per-class focal factors (one per class, in the order of ``class_names``).
        ce_weight: Weight of the CE term in ``ce_focal``.
        focal_weight: Weight of the focal term in ``ce_focal``.
        label_smoothing: Label smoothing of every loss.
        loss_weights: Per-class weights of the loss (in the order of ``class_names``); linked from the datamodule's
            ``data.class_weights`` setting, computed on the training split.
        optimizer, lr, weight_decay, scheduler, warmup_steps: The optimizer (the seeds': ``adam``, lr 1e-3) and its
            learning-rate schedule over the training budget: :class:`common.optim.OptimizerSettings`.
        mixup_alpha: Mixup's Beta(alpha, alpha) for blending pairs of training images and their labels (timm
            ``Mixup``; 0 = off). Training metrics then compare with the unmixed labels.
        cutmix_alpha: CutMix's Beta parameter (pasting a box of one image into another; 0 = off). With both,
            each batch uses one of them, chosen with equal odds.
        mixup_prob: Share of training batches that are mixed (a batch of odd size is never mixed).
        logit_adjustment: ``tau`` of the logit-adjusted loss (Menon et al., ICLR 2021): training and validation
            losses see ``logits + tau * log(prior)``, predictions use the plain logits, which shifts decisions
            towards rare classes (1 = the balanced-error optimum; 0 = off).
        class_priors: The class frequencies of the training images as sampled, linked from the datamodule
            (``data.class_balance`` taken into account).
        tta_flips: Test and predict average the probabilities of the image and its horizontal, vertical and
            double flips (the training augmentation flips both ways).
        decision_tau: Post-hoc logit adjustment: decisions and probabilities (validation, test, predict) come from
            ``log p - decision_tau * log f``, ``f`` the training split's class frequencies (``class_frequencies``):
            ``> 0`` towards rare classes, ``< 0`` towards common ones, 0 = the network as it is. ``null``: chosen
            after every validation epoch among :data:`~lesion_cls.decisions.DECISION_TAUS` (-1 to 1) to maximise
            ``selection_metric`` on the validation images; each checkpoint keeps the τ of its epoch. Cheap to tune
            (no retraining, no test image): it moves the trade-off between common and rare classes that a balanced
            sampler or a logit-adjusted loss left to where validation says the chosen metric is best.
        decision_offsets: Per-class numbers ``b`` (one per class, in the order of ``class_names``) added to the
            decision logits after the τ shift: ``log p - decision_tau * log f + b``; ``null`` = none. Seven such
            numbers need more images than a validation split holds: :mod:`common.studies.cv` fits them on the
            out-of-fold predictions and uses them only where they also do better on folds they were not fitted on.
        selection_metric: The validation metric that selects the checkpoint (and ``decision_tau`` when searched):
            ``bal_acc`` (balanced accuracy, the ISIC 2018 ranking metric), ``acc`` or ``acc_bal_mean`` (their mean).
        class_frequencies: The class frequencies of the training split as in the data, linked from the
            datamodule (for ``decision_tau``).
    """

    task = TASK
    monitor = "val/bal_acc"
    """Checkpoint selection: ``val/<selection_metric>``, by default balanced accuracy (macro recall) on validation
    data, the ISIC 2018 ranking metric."""
    monitor_mode = "max"
    checkpoint_overrides = {"pretrained": False, "pretrained_file": None}
    """Init arguments the CLI sets when weights come from a checkpoint (no hub download for test/predict)."""
    ensemble_keys = ("data.image_size", "data.normalize")
    """What an ensemble's members must share: the size and normalisation of their input images
    (:mod:`common.ensemble`)."""
    metric_labels = {
        "loss": "loss",
        "acc": "accuracy",
        "bal_acc": "balanced accuracy (macro recall)",
        "f1_macro": "macro F1",
        "acc_bal_mean": "mean of accuracy and balanced accuracy",
        "decision_tau": "decision τ (chosen on validation)",
    }
    """Axis labels of the logged metrics (``train/<name>``, ``val/<name>``)."""

    def __init__(
        self,
        class_names: Sequence[str] | None = None,
        backbone: str = "resnet50",
        pretrained: bool = False,
        pretrained_file: str | None = None,
        drop_rate: float = 0.0,
        channels_last: bool = False,
        loss: Literal["ce", "focal", "ce_focal"] = "ce",
        focal_gamma: float = 2.0,
        focal_alpha: Sequence[float] | None = None,
        ce_weight: float = 1.0,
        focal_weight: float = 1.0,
        label_smoothing: float = 0.0,
        loss_weights: Sequence[float] | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        scheduler: str = "none",
        warmup_steps: int = 0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_prob: float = 1.0,
        logit_adjustment: float = 0.0,
        class_priors: Sequence[float] | None = None,
        tta_flips: bool = False,
        decision_tau: float | None = 0.0,
        decision_offsets: Sequence[float] | None = None,
        selection_metric: Literal["bal_acc", "acc", "acc_bal_mean"] = "bal_acc",
        class_frequencies: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.optimizer_settings = OptimizerSettings(optimizer, lr, weight_decay, scheduler, warmup_steps)
        check_choice("model.selection_metric", selection_metric, SELECTION_METRICS)
        self.class_names = _checked_class_names(class_names, loss_weights=loss_weights, focal_alpha=focal_alpha)
        num_classes = len(self.class_names)
        if not 0.0 <= mixup_prob <= 1.0:
            raise MedlitError(f"model.mixup_prob is a share of batches in [0, 1], got {mixup_prob}")
        self.net = create_backbone(backbone, num_classes, pretrained, pretrained_file, drop_rate)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = self.net.to(memory_format=self.memory_format)
        self.criterion = build_loss(
            loss, focal_gamma, focal_alpha, label_smoothing, ce_weight, focal_weight, loss_weights
        )
        # the test loss: each image's criterion without class weights (weights only weight a batch mean)
        self.image_criterion = build_loss(
            loss, focal_gamma, focal_alpha, label_smoothing, ce_weight, focal_weight, reduction="none"
        )
        self.train_metrics = training_metrics(num_classes)
        mixes = mixup_alpha > 0 or cutmix_alpha > 0  # timm's Mixup smooths the mixed labels itself
        mixup = {"prob": mixup_prob, "label_smoothing": label_smoothing, "num_classes": num_classes}
        self.mixup = Mixup(mixup_alpha, cutmix_alpha, **mixup) if mixes else None
        self.register_buffer("logit_offset", logit_offset(logit_adjustment, class_priors, num_classes), False)
        self.val_loss = MeanMetric()
        decisions = decision_settings(decision_tau, decision_offsets, selection_metric, class_frequencies, num_classes)
        self._set_up_decisions(decisions, selection_metric)
        self.members = EnsembleMembers()  # an ensemble's members (use_ensemble); empty: the module's own network

    def _set_up_decisions(self, decisions: DecisionSettings, selection_metric: str) -> None:
        """The decision τ, its validation search (every τ of ``DECISION_TAUS`` when ``decision_tau`` is null), the
        class offsets and the checkpoint monitor ``val/<selection_metric>``."""
        self.register_buffer("decision_offsets", decisions.offsets, False)
        self.monitor = f"val/{selection_metric}"
        self.register_buffer("log_frequencies", decisions.log_frequencies, False)
        self.decision_tau = decisions.tau
        """The τ decisions use now: ``decision_tau``, or the one chosen on the last validation (0 before it)."""
        # validation: val_decisions (the same three metrics, scored once per epoch at the decision τ)
        self.val_decisions = decisions.search

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` for images ``[N, 3, H, W]``."""
        return self.net(images.contiguous(memory_format=self.memory_format))

    def gradcam_layer(self) -> str:
        """Name of the last feature stage of the backbone, for Grad-CAM."""
        return f"net.{self.net.feature_info[-1]['module']}"

    def loss_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits the loss sees: shifted by ``tau * log(prior)`` with ``logit_adjustment``, else as they are."""
        return logits if self.logit_offset is None else logits + self.logit_offset

    def decision_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The logits decisions are taken from: shifted by ``-decision_tau * log(f)`` and the class offsets (as they
        are for τ 0 and no offsets)."""
        return shift_decisions(logits, self.decision_tau, self.log_frequencies, self.decision_offsets)

    def use_ensemble(self, members: Sequence[LesionClassifier], one_at_a_time: bool = False) -> None:
        """Test and predict with the mean of the members' probabilities (each with the flips when ``tta_flips``),
        then this module's decision τ, which must be a number: each member chose its own on its own validation
        images. ``one_at_a_time``: one member on the accelerator at a time
        (:class:`~common.ensemble.EnsembleMembers`)."""
        if self.hparams.decision_tau is None:
            raise MedlitError(
                "model.decision_tau: an ensemble needs one decision τ (the members searched theirs on their own "
                "validation images); pass --model.decision_tau (python -m common.studies.cv chooses it on out-of-fold "
                "predictions)"
            )
        for member in members:
            if tuple(member.class_names) != self.class_names:
                raise MedlitError(
                    f"ensemble: a member has classes {', '.join(member.class_names)}, the first "
                    f"{', '.join(self.class_names)}; members need the same classes"
                )
        self.members = EnsembleMembers(members, one_at_a_time)

    def flip_probabilities(self, images: torch.Tensor, flips: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities, logits)`` of the network: softmax, averaged over :data:`FLIPS` with ``flips`` (the
        logits unflipped)."""
        logits = self(images)
        probs = logits.detach().float().softmax(dim=1)
        if flips:
            for dims in FLIPS[1:]:
                probs = probs + self(images.flip(dims)).detach().float().softmax(dim=1)
            probs = probs / len(FLIPS)
        return probs, logits

    def raw_probabilities(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities, logits)`` before the decision τ: the network's (:meth:`flip_probabilities` with
        ``tta_flips``), or an ensemble's mean with logits that give it."""
        flips = bool(self.hparams.tta_flips)
        if not len(self.members):
            return self.flip_probabilities(images, flips)
        probs = self.members.mean(lambda member: member.flip_probabilities(images, flips)[0], images)
        return probs, probs.clamp_min(torch.finfo(probs.dtype).tiny).log()

    def decided(self, probs: torch.Tensor) -> torch.Tensor:
        """Probabilities shifted by the decision τ and the class offsets (as they are for τ 0 and no offsets)."""
        return shifted_probabilities(probs, self.decision_tau, self.log_frequencies, self.decision_offsets)

    def probabilities(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(probabilities, logits)``: :meth:`raw_probabilities` shifted by the decision τ (logits unflipped and
        unshifted)."""
        probs, logits = self.raw_probabilities(images)
        return self.decided(probs), logits

    def _step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        """Loss of a training or validation batch, with the stage's metrics updated and logged."""
        images, target = batch["image"], batch["label"]
        loss_target = target
        if stage == "train" and self.mixup is not None and len(target) % 2 == 0:
            images, loss_target = self.mixup(images, target)
        logits = self(images)
        loss = self.criterion(self.loss_logits(logits), loss_target)
        batch_size = len(target)
        if stage == "train":
            self.train_metrics.update(self.decision_logits(logits.detach()), target)
            self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, batch_size=batch_size)
            self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=batch_size)
        else:  # a torchmetrics mean: synced as sum and count, exact when processes hold different numbers
            self.val_loss.update(loss.detach(), weight=batch_size)
            self.log("val/loss", self.val_loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=batch_size)
            # scored once per epoch, over every process's images, each τ searched on top of the class offsets
            self.val_decisions.update(shift_decisions(logits, 0.0, None, self.decision_offsets), target)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        """Score the epoch's decisions (choosing the decision τ when searched) and log ``val/<metric>``."""
        if not self.val_decisions.update_called:  # no validation batch in this process
            return
        scores = self.val_decisions.compute()
        self.val_decisions.reset()
        if not self.trainer.sanity_checking:  # a few sanity batches choose nothing
            self.decision_tau = scores["decision_tau"]
        names = ["acc", "bal_acc", "f1_macro"]
        names += [name for name in ("acc_bal_mean",) if self.hparams.selection_metric == name]
        names += ["decision_tau"] if self.hparams.decision_tau is None else []
        # every process computed the same numbers from all processes' logits; sync_dist averages equal values
        self.log_dict({f"val/{name}": scores[name] for name in names}, prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["decision_tau"] = self.decision_tau

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = tuple(checkpoint.get("hyper_parameters", {}).get("class_names") or CLASS_NAMES)
        if saved != self.class_names:  # before the weights: a head of another size would fail without a word why
            raise MedlitError(
                f"the checkpoint's classes ({', '.join(saved)}) are not this data's ({', '.join(self.class_names)})"
            )
        # a searched τ belongs to the weights it was chosen for; a τ given as a setting stays
        if self.hparams.decision_tau is None and "decision_tau" in checkpoint:
            self.decision_tau = float(checkpoint["decision_tau"])

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Probabilities and per-image losses; the outputs callback scores each image once and logs ``test/*``."""
        raw, logits = self.raw_probabilities(batch["image"])
        target = batch["label"]
        losses = self.image_criterion(self.loss_logits(logits), target)
        return {
            "probs": self.decided(raw),
            "raw_probs": raw,
            "target": target,
            "image_id": batch["image_id"],
            "loss": losses.detach().float(),
        }

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        probs, _ = self.probabilities(batch["image"])
        return {"probs": probs, "target": batch["label"], "image_id": batch["image_id"]}

    def configure_optimizers(self) -> Any:
        return configure_optimizers(self.parameters(), self.trainer, self.optimizer_settings)
