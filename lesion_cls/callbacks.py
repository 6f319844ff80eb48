"""Writes the classifier's test and predict outputs into the run dir.

Test: ``predictions.csv`` (``image``, a probability column per class, ``label``: ISIC's submission format when the
classes are ISIC's), ``metrics.json``, ``classification_report.csv``
and ``.md``, ``roc.png``, ``confusion_matrix.png``, ``calibration.png`` (reliability diagram, ECE) and
``gradcam/<CLASS>/`` overlays of correctly and wrongly classified images of every class.
Predict: ``predictions.csv`` (``image``, a probability column per class, ``decision``: the class decided) and, on
request, Grad-CAM by predicted class. The classes are the model's (:attr:`LesionClassifier.class_names`, from the
data it was trained on).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from common.distributed import gather_objects
from common.ensemble import tested_weights_of
from common.files import atomic_path
from common.rundir import run_dir_of
from common.scoring import check_resamples, write_metrics
from common.stats import BOOTSTRAP_RESAMPLES
from common.wandb_media import CheckpointUpload, interval_summary, log_to_wandb
from lesion_cls import CLASS_NAMES
from lesion_cls.dashboard import GradcamPanel, wandb_test_dashboard
from lesion_cls.datasets import LesionImageDataset
from lesion_cls.metrics import (
    METRIC_DEFINITIONS,
    binary_interval_metrics,
    calibration,
    classification_metrics,
    classification_report_table,
    confusion_matrix,
    report_markdown,
    roc_curves,
    scored_items,
)
from lesion_cls.viz import gradcam_maps, plot_calibration, plot_confusion, plot_gradcam, plot_roc

__all__ = [
    "INTERVAL_METRICS",
    "LOGGED_METRICS",
    "ClassificationOutputs",
    "predictions_frame",
    "summarize_predictions",
    "write_test_files",
]

LOGGED_METRICS = ("loss", "accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "ece")
"""Test metrics logged as ``test/<name>``: the same numbers as in ``metrics.json``."""

INTERVAL_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro")
"""Test metrics that get a bootstrap confidence interval in ``metrics.json`` (``ci95``), besides each class's
recall (``per_class.<CLASS>.recall_ci95``)."""


def predictions_frame(
    image_ids: list[str], probs: np.ndarray, labels: np.ndarray | None, class_names: Sequence[str] = CLASS_NAMES
) -> pd.DataFrame:
    """``image,<class>...[,label]`` (softmax probabilities, e.g. ``image,MEL,NV,BCC,AKIEC,BKL,DF,VASC``; label = the
    true class's name)."""
    frame = pd.DataFrame(probs, columns=list(class_names))
    frame.insert(0, "image", image_ids)
    if labels is not None:
        frame["label"] = [class_names[i] for i in labels]
    return frame


def _class_names(pl_module: LightningModule) -> tuple[str, ...]:
    return tuple(getattr(pl_module, "class_names", CLASS_NAMES))


class ClassificationOutputs(Callback):
    """Collects per-image probabilities during test/predict and writes the outputs on rank 0.

    Args:
        gradcam_per_class: Up to this many correctly and this many wrongly classified test images per
            class get a Grad-CAM overlay (0 = none). Correct ones are the most confident; wrong ones the
            most confidently wrong.
        gradcam_on_predict: Also write Grad-CAM overlays for ``predict`` (by predicted class).
        figures: Write ROC and confusion-matrix PNGs.
        bootstrap: Resamples of the test lesions for the 95% confidence intervals in ``metrics.json`` (0 = none).
        bootstrap_seed: Seed of those resamples (the same seed gives the same intervals).
        save_probabilities: Also write ``probabilities.csv``: each image's class probabilities after test-time flips
            and before the decision τ (``predictions.csv`` holds them after it), with its lesion and label; for
            averaging models trained elsewhere (``python -m lesion_cls.ensemble``).
        wandb_media: When the run logs to W&B, also log the test's figures and tables there
            (:mod:`lesion_cls.dashboard`; the headline numbers and their intervals go to the run summary either way).
        wandb_checkpoint: When the run logs to W&B, upload the tested checkpoint as a ``model`` artifact.
    """

    def __init__(
        self,
        gradcam_per_class: int = 3,
        gradcam_on_predict: bool = False,
        figures: bool = True,
        bootstrap: int = BOOTSTRAP_RESAMPLES,
        bootstrap_seed: int = 0,
        save_probabilities: bool = False,
        wandb_media: bool = True,
        wandb_checkpoint: bool = False,
    ) -> None:
        check_resamples(bootstrap)
        self.gradcam_per_class = gradcam_per_class
        self.gradcam_on_predict = gradcam_on_predict
        self.figures = figures
        self.bootstrap = bootstrap
        self.bootstrap_seed = bootstrap_seed
        self.save_probabilities = save_probabilities
        self.wandb_media = wandb_media
        self.wandb_checkpoint = wandb_checkpoint
        self._batches: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    # --- collection ---
    def _reset(self, *_: Any) -> None:
        self._batches = []

    on_test_epoch_start = _reset
    on_predict_epoch_start = _reset

    def _collect(self, outputs: dict[str, Any]) -> None:
        losses = outputs.get("loss")
        self._batches.append(
            (
                list(outputs["image_id"]),
                outputs["probs"].cpu().numpy(),
                outputs["target"].cpu().numpy(),
                losses.cpu().numpy() if losses is not None else np.full(len(outputs["image_id"]), np.nan),
                outputs.get("raw_probs", outputs["probs"]).cpu().numpy(),
            )
        )

    def on_test_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *_: Any) -> None:
        self._collect(outputs)

    def on_predict_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, *_: Any) -> None:
        self._collect(outputs)

    def _gathered(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """All ranks' rows (ids, probabilities, targets, losses, probabilities before the decision τ), each image
        once, in first-seen order."""
        rows: dict[str, tuple[np.ndarray, int, float, np.ndarray]] = {}
        for batches in gather_objects(self._batches):
            for batch_ids, batch_probs, batch_target, batch_loss, batch_raw in batches:
                for i, image_id in enumerate(batch_ids):
                    rows.setdefault(
                        image_id, (batch_probs[i], int(batch_target[i]), float(batch_loss[i]), batch_raw[i])
                    )
        ids = list(rows)
        probs = np.asarray([rows[i][0] for i in ids])
        target = np.asarray([rows[i][1] for i in ids], dtype=np.int64)
        losses = np.asarray([rows[i][2] for i in ids], dtype=np.float64)
        return ids, probs, target, losses, np.asarray([rows[i][3] for i in ids])

    # --- test ---
    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score the test images once: the same numbers are logged (``test/<name>``) and written."""
        ids, probs, target, losses, raw = self._gathered()
        if not ids:
            return
        checkpoint = tested_weights_of(pl_module, trainer.ckpt_path)
        names = _class_names(pl_module)
        metrics = summarize_predictions(probs, target, losses, checkpoint, names)
        if getattr(pl_module, "decision_tau", None) is not None:  # the probabilities are already shifted by it
            metrics["decision_tau"] = float(pl_module.decision_tau)
        offsets = getattr(pl_module, "hparams", {}).get("decision_offsets")  # as given, not the float32 buffer
        if offsets is not None:
            metrics["decision_offsets"] = [float(v) for v in offsets]
        for name in LOGGED_METRICS:  # every process logs the same number
            pl_module.log(f"test/{name}", metrics[name], sync_dist=False)
        if not trainer.is_global_zero:
            return
        out = run_dir_of(trainer)
        dataset = getattr(trainer.datamodule, "test_dataset", None)
        table = getattr(dataset, "table", None)
        lesion_of = dict(zip(table["image_id"], table["lesion_id"], strict=True)) if table is not None else {}
        lesions = [lesion_of.get(i, i) for i in ids]
        unit = getattr(trainer.datamodule, "test_unit", "lesion")
        resamples = (self.bootstrap, self.bootstrap_seed)
        metrics = write_test_files(out, ids, lesions, probs, target, metrics, self.figures, *resamples, names, unit)
        if self.save_probabilities:
            frame = predictions_frame(ids, raw, target, names)
            frame.insert(1, "lesion_id", lesions)
            with atomic_path(out / "probabilities.csv") as tmp:
                frame.to_csv(tmp, index=False, float_format="%.6f")
        panels: list[GradcamPanel] = []
        if self.gradcam_per_class > 0 and dataset is not None:
            panels = self._test_gradcam(pl_module, dataset, ids, probs, target, out / "gradcam")
        build = wandb_test_dashboard(out, ids, lesions, probs, target, metrics, self.figures, panels, names)
        upload = CheckpointUpload(checkpoint, {"run_dir": str(out)})
        log_to_wandb(  # after every file: W&B sees what the run dir holds
            trainer,
            interval_summary(metrics, LOGGED_METRICS),
            build if self.wandb_media else None,
            upload if self.wandb_checkpoint else None,
        )

    def _test_gradcam(
        self,
        pl_module: LightningModule,
        dataset: LesionImageDataset,
        ids: list[str],
        probs: np.ndarray,
        target: np.ndarray,
        folder: Path,
    ) -> list[GradcamPanel]:
        pred = probs.argmax(axis=1)
        confidence = probs.max(axis=1)
        panels = []
        names = _class_names(pl_module)
        for c, name in enumerate(names):
            (folder / name).mkdir(parents=True, exist_ok=True)
            for kind, mask in (("correct", (target == c) & (pred == c)), ("wrong", (target == c) & (pred != c))):
                rows = np.flatnonzero(mask)
                rows = rows[np.argsort(-confidence[rows], kind="stable")][: self.gradcam_per_class]
                for row in rows:
                    path = self._write_gradcam(
                        pl_module, dataset, ids[row], int(target[row]), int(pred[row]), probs[row], folder / name, kind
                    )
                    true_class, predicted = names[int(target[row])], names[int(pred[row])]
                    panels.append(GradcamPanel(path, ids[row], true_class, predicted, float(confidence[row])))
        return panels

    def _write_gradcam(
        self,
        pl_module: LightningModule,
        dataset: LesionImageDataset,
        image_id: str,
        true_class: int,
        pred_class: int,
        probs: np.ndarray,
        folder: Path,
        kind: str,
    ) -> Path:
        index = dataset.index_of(image_id)
        image = dataset[index]["image"].unsqueeze(0).to(pl_module.device)
        layer = pl_module.gradcam_layer()
        names = _class_names(pl_module)
        targets = [pred_class] if true_class in (pred_class, -1) else [pred_class, true_class]
        maps = {
            f"Grad-CAM for {names[c]} (p={probs[c]:.2f})": gradcam_maps(pl_module, layer, image, c)[0] for c in targets
        }
        truth = f"true {names[true_class]}, " if true_class >= 0 else ""
        title = f"{image_id}: {truth}predicted {names[pred_class]}"
        stem = f"{kind}_{image_id}" if kind != "wrong" else f"wrong_{image_id}_as_{names[pred_class]}"
        return plot_gradcam(dataset.display_image(index), maps, folder / f"{stem}.png", title)

    # --- predict ---
    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        ids, probs, *_ = self._gathered()
        if not trainer.is_global_zero or not ids:
            return
        out, names = run_dir_of(trainer), _class_names(pl_module)
        frame = predictions_frame(ids, probs, None, names)
        frame["decision"] = [names[c] for c in probs.argmax(axis=1)]  # the probabilities are already decided (τ)
        with atomic_path(out / "predictions.csv") as tmp:
            frame.to_csv(tmp, index=False, float_format="%.6f")
        dataset = getattr(trainer.datamodule, "predict_dataset", None)
        if self.gradcam_on_predict and dataset is not None:
            with torch.inference_mode(False):
                for image_id, p in zip(ids, probs, strict=True):
                    folder = out / "gradcam" / names[int(p.argmax())]
                    folder.mkdir(parents=True, exist_ok=True)
                    self._write_gradcam(pl_module, dataset, image_id, -1, int(p.argmax()), p, folder, "predicted")


def summarize_predictions(
    probs: np.ndarray,
    target: np.ndarray,
    losses: np.ndarray,
    checkpoint: str,
    class_names: Sequence[str] = CLASS_NAMES,
) -> dict[str, Any]:
    """``metrics.json`` without intervals: :func:`~lesion_cls.metrics.classification_metrics`, the mean loss,
    calibration, the class names, what was tested and the definitions."""
    metrics = classification_metrics(probs, target, class_names)
    metrics["loss"] = float(losses.mean())
    metrics["calibration"] = calibration(probs, target)
    metrics["ece"] = metrics["calibration"]["ece"]
    metrics["class_names"] = list(class_names)
    metrics["checkpoint"] = checkpoint
    metrics["definitions"] = METRIC_DEFINITIONS
    return metrics


def _place_recall(summary: dict[str, Any], name: str, interval: list[float]) -> bool:
    """A class's recall interval goes beside its recall (``per_class.<CLASS>.recall_ci95``), not into ``ci95``."""
    class_name = name.removeprefix("recall_")
    if name == class_name or class_name not in summary["per_class"]:
        return True
    summary["per_class"][class_name]["recall_ci95"] = interval
    return False


def write_test_files(
    out: Path,
    ids: list[str],
    lesions: list[str],
    probs: np.ndarray,
    target: np.ndarray,
    summary: dict[str, Any],
    figures: bool,
    n_resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    class_names: Sequence[str] = CLASS_NAMES,
    unit: str = "lesion",
) -> dict[str, Any]:
    """A test run's ``predictions.csv``, ``metrics.json`` (``summary`` with bootstrap intervals over the groups of
    ``lesions``, named ``unit``: ``ci95`` of :data:`INTERVAL_METRICS`, each class's recall interval in
    ``per_class``), classification report (CSV and markdown) and, with ``figures``, ROC, confusion-matrix and
    calibration PNGs; returns the metrics written."""
    with atomic_path(out / "predictions.csv") as tmp:
        predictions_frame(ids, probs, target, class_names).to_csv(tmp, index=False, float_format="%.6f")
    names = [*INTERVAL_METRICS, *binary_interval_metrics(class_names), *(f"recall_{c}" for c in class_names)]
    items = scored_items(ids, lesions, probs, target, class_names, unit)
    metrics = write_metrics(out, summary, items, names, n_resamples, seed, _place_recall)
    table = classification_report_table(metrics, class_names)
    with atomic_path(out / "classification_report.csv") as tmp:
        table.to_csv(tmp, float_format="%.4f")
    with atomic_path(out / "classification_report.md") as tmp:
        tmp.write_text(report_markdown(table))
    if figures:
        plot_roc(roc_curves(probs, target, class_names), out / "roc.png", class_names=class_names)
        plot_confusion(confusion_matrix(probs, target, len(class_names)), out / "confusion_matrix.png", class_names)
        plot_calibration(metrics["calibration"], out / "calibration.png")
    return metrics
