"""The classifier's test in W&B: the same curves, counts, figures and tables the run dir holds.

Logged once at the end of ``test`` (:class:`~lesion_cls.callbacks.ClassificationOutputs`, after its files):

* ``test/roc`` and ``test/confusion_matrix``: W&B's own interactive charts (its ``area-under-curve`` and
  ``confusion_matrix`` presets), drawn from :func:`~lesion_cls.metrics.roc_curves` and
  :func:`~lesion_cls.metrics.confusion_matrix`, the functions behind ``roc.png`` and ``confusion_matrix.png``: the
  panels of several runs overlay;
* ``test/figures/<name>``: every figure PNG of the test as written (``roc``, ``confusion_matrix``, ``calibration``);
* ``test/gradcam/<CLASS>``: the Grad-CAM panels of ``gradcam/<CLASS>/``, captioned with the image, its true and
  predicted class and the predicted probability;
* ``test/per_class`` (one row per class: precision, recall, F1, support, the recall's 95% interval) and
  ``test/predictions`` (one row per test image: image, lesion, truth, prediction, the class probabilities as in
  ``predictions.csv``);
* the run summary: each ``test/<name>`` of :data:`~lesion_cls.callbacks.LOGGED_METRICS` and, for those with an
  interval in ``metrics.json``, ``test/<name>_ci_low`` and ``test/<name>_ci_high``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from common.wandb_media import WandbBuild, image_files, table_of
from lesion_cls import CLASS_NAMES
from lesion_cls.metrics import confusion_matrix, roc_curves

__all__ = [
    "FIGURES",
    "GradcamPanel",
    "confusion_chart",
    "per_class_table",
    "predictions_table",
    "roc_chart",
    "wandb_test_dashboard",
]

FIGURES = ("roc", "confusion_matrix", "calibration")
"""The figure PNGs a test writes into the run dir (``<name>.png``) and logs as ``test/figures/<name>``."""
MAX_CHART_ROWS = 10_000
"""The rows of a W&B table it draws in full (``wandb.Table.MAX_ROWS``): longer ROC curves are thinned evenly."""


@dataclass(frozen=True)
class GradcamPanel:
    """One Grad-CAM PNG of a test, as written, and what its caption says."""

    path: Path
    image_id: str
    true_class: str
    predicted_class: str
    probability: float
    """The predicted class's probability."""

    @property
    def caption(self) -> str:
        return f"{self.image_id}: true {self.true_class}, predicted {self.predicted_class} (p={self.probability:.2f})"


def predictions_table(
    ids: list[str],
    lesions: list[str],
    probs: np.ndarray,
    target: np.ndarray,
    class_names: Sequence[str] = CLASS_NAMES,
) -> pd.DataFrame:
    """One row per test image: ``image_id, lesion_id, truth, prediction, p_<CLASS>...`` (``predictions.csv``'s
    probabilities)."""
    frame = pd.DataFrame({"image_id": ids, "lesion_id": lesions})
    frame["truth"] = [class_names[i] for i in target]
    frame["prediction"] = [class_names[i] for i in probs.argmax(axis=1)]
    for c, name in enumerate(class_names):
        frame[f"p_{name}"] = probs[:, c].astype(float)
    return frame


def per_class_table(metrics: dict[str, Any]) -> pd.DataFrame:
    """One row per class: precision, recall, F1, support and the recall's 95% interval (empty without one)."""
    rows = []
    for name in metrics.get("class_names", CLASS_NAMES):
        values = metrics["per_class"][name]
        low, high = values.get("recall_ci95") or (None, None)
        rows.append(
            {
                "class": name,
                **{key: values[key] for key in ("precision", "recall", "f1", "support")},
                "recall_ci_low": low,
                "recall_ci_high": high,
            }
        )
    return pd.DataFrame(rows)


def _thinned(values: np.ndarray, most: int) -> np.ndarray:
    """At most ``most`` points of a curve, evenly spaced, first and last kept."""
    if len(values) <= most:
        return values
    return values[np.unique(np.linspace(0, len(values) - 1, most).round().astype(int))]


def roc_chart(wandb: ModuleType, curves: dict[str, dict[str, Any]]) -> Any:
    """W&B's interactive ROC chart (``wandb/area-under-curve/v0``, as ``wandb.plot.roc_curve`` makes it) of
    :func:`~lesion_cls.metrics.roc_curves`' curves: each class, ``micro`` and ``macro``."""
    most = max(2, MAX_CHART_ROWS // max(1, len(curves)))
    rows = [
        [name, float(x), float(y)]
        for name, curve in curves.items()
        for x, y in zip(_thinned(curve["fpr"], most), _thinned(curve["tpr"], most), strict=True)
    ]
    return wandb.plot_table(
        "wandb/area-under-curve/v0",
        wandb.Table(columns=["class", "fpr", "tpr"], data=rows),
        {"x": "fpr", "y": "tpr", "class": "class"},
        {"title": "ROC (one vs rest)", "x-axis-title": "False positive rate", "y-axis-title": "True positive rate"},
    )


def confusion_chart(wandb: ModuleType, counts: np.ndarray, class_names: Sequence[str] = CLASS_NAMES) -> Any:
    """W&B's interactive confusion matrix (``wandb/confusion_matrix/v1``, as ``wandb.plot.confusion_matrix`` makes
    it) of the ``[true, predicted]`` counts."""
    rows = [
        [class_names[t], class_names[p], int(counts[t, p])]
        for t in range(len(class_names))
        for p in range(len(class_names))
    ]
    return wandb.plot_table(
        "wandb/confusion_matrix/v1",
        wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=rows),
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": "Confusion matrix (test)"},
    )


def wandb_test_dashboard(
    out: Path,
    ids: list[str],
    lesions: list[str],
    probs: np.ndarray,
    target: np.ndarray,
    metrics: dict[str, Any],
    figures: bool,
    panels: list[GradcamPanel],
    class_names: Sequence[str] = CLASS_NAMES,
) -> WandbBuild:
    """What :func:`common.wandb_media.log_to_wandb` logs of a test (module docstring); built only when W&B runs."""

    def build(wandb: ModuleType) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "test/predictions": table_of(wandb, predictions_table(ids, lesions, probs, target, class_names)),
            "test/per_class": table_of(wandb, per_class_table(metrics)),
        }
        if figures:  # the test drew its figures (outputs.figures)
            payload["test/roc"] = roc_chart(wandb, roc_curves(probs, target, class_names))
            counts = confusion_matrix(probs, target, len(class_names))
            payload["test/confusion_matrix"] = confusion_chart(wandb, counts, class_names)
            payload.update({f"test/figures/{name}": image_files(wandb, [out / f"{name}.png"])[0] for name in FIGURES})
        for name in class_names:
            mine = [panel for panel in panels if panel.path.parent.name == name]
            if mine:
                payload[f"test/gradcam/{name}"] = image_files(wandb, [p.path for p in mine], [p.caption for p in mine])
        return payload

    return build
