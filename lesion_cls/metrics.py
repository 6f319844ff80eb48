"""Test-set classification metrics, the per-class report, ROC curves and calibration, computed with torchmetrics.

Definitions (also written into ``metrics.json``):

* ``accuracy``: fraction of images whose arg-max class is the true class.
* ``balanced_accuracy``: mean per-class recall (= macro recall), the ISIC 2018 Task 3 ranking metric.
* per class: precision ``tp / (tp + fp)``, recall ``tp / (tp + fn)``, F1, support = number of true images;
  0 where the denominator is 0; AUC one-vs-rest from the softmax probability, ``null`` when the class has no
  positive or no negative image.
* ``macro``: unweighted mean over the classes present in the ground truth or the predictions (sklearn's
  default labels); ``weighted``: mean weighted by support.
* two classes: ``binary`` holds the positive (second) class, ``sensitivity`` (its recall), ``specificity`` (the
  negative class's recall) and the positive class's AUC; the ROC curve is the positive class's.
* ``decision_tau``: the probabilities scored are ``softmax(log p - tau * log f)`` (post-hoc logit adjustment;
  ``f``: the training split's class frequencies); 0 = the network's own. ``decision_offsets``: per-class numbers
  ``b`` added after the τ shift, ``softmax(log p - tau * log f + b)``. How both are chosen: :mod:`lesion_cls.decisions`.

:func:`bootstrap_statistics` and :func:`scored_items` give the same metrics over resamples of the lesions (or the
groups of your own data, or the images when there are none), for the
confidence intervals and paired comparisons of :mod:`common.stats`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torchmetrics.functional.classification import (
    binary_auroc,
    binary_roc,
    multiclass_accuracy,
    multiclass_auroc,
    multiclass_calibration_error,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_precision,
    multiclass_recall,
    multiclass_roc,
)

from common.stats import ScoredItems
from lesion_cls import CLASS_NAMES

__all__ = [
    "BOOTSTRAP_METRICS",
    "METRIC_DEFINITIONS",
    "binary_interval_metrics",
    "bootstrap_statistics",
    "calibration",
    "classification_metrics",
    "classification_report_table",
    "confusion_matrix",
    "report_markdown",
    "roc_curves",
    "scored_items",
]

METRIC_DEFINITIONS = {
    "accuracy": "fraction of images whose arg-max class is the true class",
    "balanced_accuracy": "mean per-class recall (macro recall); the ISIC 2018 Task 3 ranking metric",
    "precision/recall/f1": "per class from arg-max predictions; 0 where the denominator is 0",
    "macro": "unweighted mean over classes present in ground truth or predictions",
    "weighted": "mean weighted by support (number of true images per class)",
    "auc": "one-vs-rest ROC AUC of the softmax probability; null when a class has no positive or no negative",
    "loss": "mean over test images of each image's training criterion without class weights",
    "decision_tau": "post-hoc logit adjustment: the probabilities (and so every metric) are softmax(log p - tau * "
    "log f), p the network's (flip-averaged) softmax, f the training split's class frequencies; tau 0 = none",
    "decision_offsets": "per-class offsets b added after the decision tau: softmax(log p - tau * log f + b), in the "
    "class order of the report; chosen on out-of-fold predictions; absent = none",
    "sensitivity/specificity": "two classes only: recall of the positive (second) class / of the negative (first) "
    "class",
    "ece": "expected calibration error: sum over 15 equal-width confidence bins of (bin share) x |accuracy - mean "
    "confidence|, confidence = highest softmax probability",
}


def _tensors(probs: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p = torch.as_tensor(np.asarray(probs), dtype=torch.float64)
    t = torch.as_tensor(np.asarray(target), dtype=torch.long)
    if p.ndim != 2 or t.ndim != 1 or len(p) != len(t):
        raise ValueError(f"expected probs [N, C] and target [N], got {tuple(p.shape)} and {tuple(t.shape)}")
    return p, t


def _per_class_auc(p: torch.Tensor, t: torch.Tensor) -> list[float]:
    num_classes = p.shape[1]
    with warnings.catch_warnings():  # classes without positives are reported as NaN below
        warnings.simplefilter("ignore", UserWarning)
        aucs = multiclass_auroc(p, t, num_classes, average=None).tolist()
    counts = torch.bincount(t, minlength=num_classes)
    return [auc if 0 < n < len(t) else float("nan") for auc, n in zip(aucs, counts.tolist(), strict=True)]


def classification_metrics(probs: Any, target: Any, class_names: Sequence[str] = CLASS_NAMES) -> dict[str, Any]:
    """Overall and per-class metrics of softmax ``probs [N, C]`` against integer ``target [N]``."""
    p, t = _tensors(probs, target)
    c = len(class_names)
    per_class = {
        "precision": multiclass_precision(p, t, c, average=None).tolist(),
        "recall": multiclass_recall(p, t, c, average=None).tolist(),
        "f1": multiclass_f1_score(p, t, c, average=None).tolist(),
        "support": torch.bincount(t, minlength=c).tolist(),
        "auc": _per_class_auc(p, t),
    }
    aucs = [a for a in per_class["auc"] if a == a]
    out: dict[str, Any] = {
        "n_images": len(t),
        "accuracy": multiclass_accuracy(p, t, c, average="micro").item(),
        "balanced_accuracy": multiclass_recall(p, t, c, average="macro").item(),
    }
    for average in ("macro", "weighted"):
        out[f"precision_{average}"] = multiclass_precision(p, t, c, average=average).item()
        out[f"recall_{average}"] = multiclass_recall(p, t, c, average=average).item()
        out[f"f1_{average}"] = multiclass_f1_score(p, t, c, average=average).item()
    out["auc_macro"] = float(np.mean(aucs)) if aucs else float("nan")
    out["per_class"] = {
        name: {key: values[i] for key, values in per_class.items()} for i, name in enumerate(class_names)
    }
    if c == 2:
        out |= {"sensitivity": per_class["recall"][1], "specificity": per_class["recall"][0]}
        out["binary"] = {"positive_class": class_names[1], "negative_class": class_names[0], "auc": per_class["auc"][1]}
    return out


def binary_interval_metrics(class_names: Sequence[str]) -> tuple[str, ...]:
    """The binary metrics that get intervals: sensitivity and specificity for two classes, none otherwise."""
    return ("sensitivity", "specificity") if len(class_names) == 2 else ()


def classification_report_table(metrics: dict[str, Any], class_names: Sequence[str] = CLASS_NAMES) -> pd.DataFrame:
    """The seed's report: one row per class, then accuracy, macro avg, weighted avg (sklearn's layout)."""
    rows = {
        name: [metrics["per_class"][name][k] for k in ("precision", "recall", "f1")]
        + [metrics["per_class"][name]["support"]]
        for name in class_names
    }
    n = metrics["n_images"]
    rows["accuracy"] = [np.nan, np.nan, metrics["accuracy"], n]
    for average in ("macro", "weighted"):
        rows[f"{average} avg"] = [metrics[f"{k}_{average}"] for k in ("precision", "recall", "f1")] + [n]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=["precision", "recall", "f1-score", "support"])
    table["support"] = table["support"].astype(int)
    table.index.name = "class"
    return table


def report_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """The report table as a Markdown table (blank cells where sklearn leaves them blank)."""
    header = "| class | precision | recall | f1-score | support |\n|---|---:|---:|---:|---:|\n"
    lines = []
    for name, row in table.iterrows():
        cells = ["" if pd.isna(row[k]) else f"{row[k]:.{digits}f}" for k in ("precision", "recall", "f1-score")]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {int(row['support'])} |")
    return header + "\n".join(lines) + "\n"


def confusion_matrix(probs: Any, target: Any, num_classes: int = len(CLASS_NAMES)) -> np.ndarray:
    """Counts ``[true, predicted]``."""
    p, t = _tensors(probs, target)
    return multiclass_confusion_matrix(p, t, num_classes).numpy()


def roc_curves(probs: Any, target: Any, class_names: Sequence[str] = CLASS_NAMES) -> dict[str, dict[str, Any]]:
    """One-vs-rest ROC per class plus ``micro`` (all class decisions pooled) and ``macro`` averages; for two classes
    the positive (second) class's curve alone.

    The macro curve averages the per-class TPR on the union of their FPR points (as in sklearn's
    example); classes without positives or negatives are left out.

    Returns:
        ``{name: {"fpr": array, "tpr": array, "auc": float}}``.
    """
    p, t = _tensors(probs, target)
    c = len(class_names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        fprs, tprs, _ = multiclass_roc(p, t, c)
    aucs = _per_class_auc(p, t)
    curves: dict[str, dict[str, Any]] = {}
    if c == 2:
        if aucs[1] == aucs[1]:
            curves[class_names[1]] = {"fpr": fprs[1].numpy(), "tpr": tprs[1].numpy(), "auc": aucs[1]}
        return curves
    for i, name in enumerate(class_names):
        if aucs[i] == aucs[i]:
            curves[name] = {"fpr": fprs[i].numpy(), "tpr": tprs[i].numpy(), "auc": aucs[i]}
    onehot = torch.nn.functional.one_hot(t, c).flatten()
    fpr, tpr, _ = binary_roc(p.flatten(), onehot)
    curves["micro"] = {"fpr": fpr.numpy(), "tpr": tpr.numpy(), "auc": binary_auroc(p.flatten(), onehot).item()}
    defined = [curves[name] for name in class_names if name in curves]
    if defined:
        grid = np.unique(np.concatenate([d["fpr"] for d in defined]))
        mean_tpr = np.mean([np.interp(grid, d["fpr"], d["tpr"]) for d in defined], axis=0)
        curves["macro"] = {"fpr": grid, "tpr": mean_tpr, "auc": float(np.trapezoid(mean_tpr, grid))}
    return curves


def calibration(probs: Any, target: Any, n_bins: int = 15) -> dict[str, Any]:
    """Expected calibration error (torchmetrics, L1) and the reliability-diagram bins behind it.

    Returns:
        ``{"ece": float, "n_bins": int, "bins": [{"lower", "upper", "count", "confidence", "accuracy"}]}``;
        empty bins have ``null`` confidence and accuracy.
    """
    p, t = _tensors(probs, target)
    ece = multiclass_calibration_error(p, t, p.shape[1], n_bins=n_bins, norm="l1").item()
    confidence, predicted = p.max(dim=1)
    correct = (predicted == t).double()
    edges = torch.linspace(0, 1, n_bins + 1, dtype=torch.float64)
    # bin b holds confidences in (edges[b], edges[b + 1]], as torchmetrics bins them
    which = torch.bucketize(confidence, edges[1:-1], right=False)
    bins = []
    for b in range(n_bins):
        inside = which == b
        count = int(inside.sum())
        bins.append(
            {
                "lower": float(edges[b]),
                "upper": float(edges[b + 1]),
                "count": count,
                "confidence": float(confidence[inside].mean()) if count else float("nan"),
                "accuracy": float(correct[inside].mean()) if count else float("nan"),
            }
        )
    return {"ece": ece, "n_bins": n_bins, "bins": bins}


# --- resampled metrics (confidence intervals, paired comparisons) ---------------------------------------------------
BOOTSTRAP_METRICS = ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "acc_bal_mean")
"""The metrics :func:`bootstrap_statistics` resamples (and ``recall_<CLASS>`` for each class)."""


def _weighted_confusion(cells: np.ndarray, weights: np.ndarray, num_classes: int) -> np.ndarray:
    """``[B, C, C]`` confusion matrices (true, predicted) of ``B`` weighted resamples, one ``bincount``."""
    b, cc = len(weights), num_classes * num_classes
    flat = (np.arange(b)[:, None] * cc + cells[None, :]).ravel()
    return np.bincount(flat, weights=weights.ravel(), minlength=b * cc).reshape(b, num_classes, num_classes)


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """One-vs-rest ROC AUC of each weighted resample (Mann-Whitney, ties count 1/2: the trapezoidal AUC);
    NaN where a resample has no positive or no negative item."""
    values, inverse = np.unique(scores, return_inverse=True)
    b, u = len(weights), len(values)
    rows = np.arange(b)[:, None] * u

    def by_value(mask: np.ndarray) -> np.ndarray:  # [B, U]: weight of the masked items at each score value
        flat = (rows + inverse[None, mask]).ravel()
        return np.bincount(flat, weights=weights[:, mask].ravel(), minlength=b * u).reshape(b, u)

    pos, neg = by_value(positive), by_value(~positive)
    below = np.cumsum(neg, axis=1) - neg  # negative weight strictly below each score value
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def bootstrap_statistics(probs: Any, target: Any, class_names: Sequence[str] = CLASS_NAMES) -> Any:
    """``weights [B, N] -> {metric: [B]}`` for :data:`BOOTSTRAP_METRICS` and each class's recall, with the
    definitions of :func:`classification_metrics` (macro over the classes present in the resample's ground truth
    or predictions; AUC averaged over the classes with positives and negatives)."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(target, dtype=np.int64)
    c = len(class_names)
    cells = t * c + p.argmax(axis=1)

    def statistics(weights: np.ndarray) -> dict[str, np.ndarray]:
        confusion = _weighted_confusion(cells, weights, c)
        tp = np.einsum("bii->bi", confusion)
        support, predicted = confusion.sum(axis=2), confusion.sum(axis=1)
        present = (support + predicted) > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(support > 0, tp / support, 0.0)
            f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
            accuracy = tp.sum(axis=1) / support.sum(axis=1)
            balanced = (recall * present).sum(axis=1) / present.sum(axis=1)
            aucs = np.stack([_weighted_auc(p[:, k], t == k, weights) for k in range(c)], axis=1)
            defined = np.isfinite(aucs)
            auc_macro = np.where(defined.any(axis=1), np.nansum(aucs, axis=1) / defined.sum(axis=1), np.nan)
        out = {
            "accuracy": accuracy,
            "balanced_accuracy": balanced,
            "f1_macro": (f1 * present).sum(axis=1) / present.sum(axis=1),
            "auc_macro": auc_macro,
            "acc_bal_mean": (accuracy + balanced) / 2,
        }
        if c == 2:
            out |= {"sensitivity": np.where(support[:, 1] > 0, recall[:, 1], np.nan)}
            out |= {"specificity": np.where(support[:, 0] > 0, recall[:, 0], np.nan)}
        for k, name in enumerate(class_names):
            out[f"recall_{name}"] = np.where(support[:, k] > 0, recall[:, k], np.nan)
        return out

    return statistics


def scored_items(
    image_ids: Sequence[str],
    lesion_ids: Sequence[str],
    probs: Any,
    target: Any,
    class_names: Sequence[str] = CLASS_NAMES,
    unit: str = "lesion",
) -> ScoredItems:
    """The test images as :mod:`common.stats` resamples them: grouped by lesion (all images of one lesion, or of
    one ``group``, drawn together; ``unit`` names it, ``image`` when each image is its own), per-image correctness
    for the exact McNemar test of accuracy."""
    p, t = np.asarray(probs, dtype=np.float64), np.asarray(target, dtype=np.int64)
    return ScoredItems(
        ids=np.asarray(image_ids, dtype=object),
        units=np.asarray(lesion_ids, dtype=object),
        unit_name=unit,
        item_name="image",
        statistics=bootstrap_statistics(p, t, class_names),
        per_item={"accuracy": (p.argmax(axis=1) == t).astype(np.float64)},
        item_tests={"accuracy": "exact McNemar"},
    )
