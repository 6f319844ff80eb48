"""Figures of the classifier: ROC curves, confusion matrices, Grad-CAM overlays (MONAI's GradCAM)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
import torch
from monai.visualize import GradCAM
from torch import nn

from common.plots import save_figure, seaborn_theme
from lesion_cls import CLASS_NAMES

__all__ = ["gradcam_maps", "plot_calibration", "plot_confusion", "plot_gradcam", "plot_roc"]


@seaborn_theme("whitegrid")
def plot_roc(
    curves: dict[str, dict[str, Any]],
    path: Path,
    title: str | None = None,
    class_names: Sequence[str] = CLASS_NAMES,
) -> Path:
    """Per-class ROC curves with AUC in the legend, plus micro and macro averages (dashed); for two classes the
    positive (second) class's curve."""
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    palette = sns.color_palette("tab10" if len(class_names) <= 10 else "husl", len(class_names))
    for i, name in enumerate(class_names):
        if name in curves:
            c = curves[name]
            ax.plot(c["fpr"], c["tpr"], color=palette[i], lw=1.6, label=f"{name} (AUC {c['auc']:.3f})")
    for name, style in (("micro", ":"), ("macro", "--")):
        if name in curves:
            c = curves[name]
            ax.plot(c["fpr"], c["tpr"], style, color="black", lw=2, label=f"{name}-average (AUC {c['auc']:.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, alpha=0.6)
    if title is None:
        binary = len(class_names) == 2
        title = f"ROC curve ({class_names[1]} vs {class_names[0]})" if binary else "ROC curves (one-vs-rest)"
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate", ylabel="true positive rate", title=title)
    ax.legend(loc="lower right", fontsize=8, frameon=True)
    return save_figure(fig, path)


@seaborn_theme("white")
def plot_confusion(counts: np.ndarray, path: Path, class_names: Sequence[str] = CLASS_NAMES) -> Path:
    """Confusion matrix as counts and row-normalised (each row = one true class, sums to 1), and beside them the
    per-class recall as bars (its mean over the classes present is the balanced accuracy, drawn dashed)."""
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, rows, out=np.zeros_like(counts, dtype=float), where=rows > 0)
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.4), gridspec_kw={"width_ratios": [1, 1, 0.75]})
    for ax, data, fmt, title in (
        (axes[0], counts, "d", "counts"),
        (axes[1], normalised, ".2f", "row-normalised (recall on the diagonal)"),
    ):
        sns.heatmap(
            data,
            annot=True,
            fmt=fmt,
            cmap="Blues",
            cbar=False,
            square=True,
            ax=ax,
            xticklabels=class_names,
            yticklabels=class_names,
            annot_kws={"fontsize": 8},
        )
        ax.set(xlabel="predicted", ylabel="true", title=title)
    present = rows[:, 0] > 0
    recall = np.where(present, np.diag(normalised), np.nan)
    positions = np.arange(len(class_names))
    axes[2].barh(positions, np.nan_to_num(recall), color=sns.color_palette("tab10", len(class_names)))
    for y, (value, support) in enumerate(zip(recall, rows[:, 0], strict=True)):
        label = f"{value:.2f} (n={int(support)})" if support else "no test image"
        axes[2].text(np.nan_to_num(value) + 0.02, y, label, va="center", fontsize=8)  # right of its bar
    if present.any():
        balanced = float(np.nanmean(recall))
        axes[2].axvline(balanced, color="black", ls="--", lw=1.2, label=f"balanced accuracy {balanced:.3f}")
        axes[2].legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, frameon=False)
    axes[2].set(xlim=(0, 1.4), xticks=np.linspace(0, 1, 6), yticks=positions, yticklabels=class_names)
    axes[2].set(xlabel="recall", title="per-class recall")
    axes[2].invert_yaxis()  # rows in the confusion matrices' order
    fig.tight_layout()
    return save_figure(fig, path)


@seaborn_theme("whitegrid")
def plot_calibration(calibration: dict[str, Any], path: Path, title: str = "Reliability diagram") -> Path:
    """Accuracy against confidence per bin (gap to the diagonal = miscalibration), with bin counts below."""
    bins = [b for b in calibration["bins"] if b["count"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.6, 6.4), sharex=True, height_ratios=[3, 1])
    width = 1.0 / calibration["n_bins"]
    top.bar(
        [b["lower"] for b in bins],
        [b["accuracy"] for b in bins],
        width=width,
        align="edge",
        edgecolor="black",
        color="#4c72b0",
        alpha=0.8,
        label="accuracy",
    )
    top.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        "o",
        color="#dd8452",
        ms=4,
        label="(mean confidence, accuracy)",
    )
    top.plot([0, 1], [0, 1], "--", color="grey", label="perfect calibration")
    top.set(ylabel="accuracy", ylim=(0, 1), title=f"{title} (ECE {calibration['ece']:.3f})")
    top.legend(fontsize=8, loc="upper left")
    bottom.bar([b["lower"] for b in bins], [b["count"] for b in bins], width=width, align="edge", color="grey")
    bottom.set(xlabel="confidence (highest softmax probability)", ylabel="images", xlim=(0, 1))
    fig.tight_layout()
    return save_figure(fig, path)


def _min_max(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to ``[0, 1]`` with its minimum at 0 and its maximum at 1 (constant maps: 0)."""
    flat = maps.flatten(1)
    low, high = flat.min(dim=1).values, flat.max(dim=1).values
    shape = (-1,) + (1,) * (maps.ndim - 1)
    return (maps - low.view(shape)) / (high - low).clamp_min(1e-12).view(shape)


def gradcam_maps(model: nn.Module, target_layer: str, images: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM maps ``[N, H, W]`` in ``[0, 1]`` at the input's size, for ``class_index``; 1 = strongest evidence.

    MONAI's default post-processing maps (min, max) to (1, 0), which would show the evidence the other way
    round; :func:`_min_max` keeps the strongest evidence at 1. Runs with gradients enabled even inside
    Lightning's inference mode; ``model`` should be in eval mode. A compiled model (``run.compile``) runs eagerly
    here: Grad-CAM's hooks would otherwise make it recompile for every image.
    """
    with torch.inference_mode(False), torch.enable_grad(), torch.compiler.set_stance("force_eager"):
        cam = GradCAM(nn_module=model, target_layers=target_layer, postprocessing=_min_max)
        maps = cam(images.detach().clone().requires_grad_(True), class_idx=class_index)
    return maps[:, 0].detach().cpu().numpy()


def plot_gradcam(image: np.ndarray, maps: dict[str, np.ndarray], path: Path, title: str, alpha: float = 0.45) -> Path:
    """The image, then one overlay per Grad-CAM map (``{panel title: [H, W] map}``)."""
    fig, axes = plt.subplots(1, 1 + len(maps), figsize=(3.2 * (1 + len(maps)), 3.4))
    axes = np.atleast_1d(axes)
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    for ax, (name, heat) in zip(axes[1:], maps.items(), strict=True):
        ax.imshow(image)
        ax.imshow(heat, cmap="jet", alpha=alpha, vmin=0, vmax=1)
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)
