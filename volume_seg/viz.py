"""Figures of the segmenter: 2D slice overlays against ground truth, 3D surface views (PNG and plotly HTML)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import seaborn as sns
from matplotlib.colors import ListedColormap
from mpl_toolkits.mplot3d.art3d import Poly3DCollection
from skimage.measure import marching_cubes

from common.plots import save_figure, seaborn_theme

__all__ = [
    "ERROR_COLORS",
    "Meshes",
    "error_map",
    "overlay_slices",
    "plot_case_boxes",
    "plot_learning_curves",
    "plot_overlay",
    "plot_surfaces",
    "surface_mesh",
    "surface_meshes",
    "write_surfaces_html",
]

_CLASS_COLORS = ["#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf"]


def overlay_slices(mask: np.ndarray, n: int = 3, axis: int = 2) -> list[int]:
    """``n`` slice indices along ``axis`` spread over the structure (largest area if it is thin)."""
    area = np.moveaxis(mask > 0, axis, 0)
    per_slice = area.reshape(area.shape[0], -1).sum(axis=1)
    occupied = np.flatnonzero(per_slice)
    if occupied.size == 0:
        return [int(s) for s in np.linspace(0, mask.shape[axis] - 1, n + 2)[1:-1].round()]
    # quantiles of the occupied slices themselves ("nearest"), so a gap between two structures is never picked
    picks = np.quantile(occupied, np.linspace(0.2, 0.8, n), method="nearest").astype(int)
    return sorted({int(p) for p in picks})


def _labels_cmap(num_classes: int) -> ListedColormap:
    return ListedColormap(["none", *_CLASS_COLORS[: max(1, num_classes - 1)]])


ERROR_COLORS: dict[str, tuple[float, float, float, float]] = {
    "false positive": (1.0, 0.0, 0.0, 0.8),
    "false negative": (0.0, 0.3, 1.0, 0.8),
    "wrong class": (1.0, 0.85, 0.0, 0.8),
}


def error_map(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """RGBA ``[..., 4]`` of a predicted label map's errors against the reference (:data:`ERROR_COLORS`):
    foreground where the reference is background, background where it is foreground, and (several classes)
    foreground of another class than the reference's; transparent where they agree."""
    errors = np.zeros((*reference.shape, 4))
    errors[(prediction > 0) & (reference == 0)] = ERROR_COLORS["false positive"]
    errors[(prediction == 0) & (reference > 0)] = ERROR_COLORS["false negative"]
    errors[(prediction > 0) & (reference > 0) & (prediction != reference)] = ERROR_COLORS["wrong class"]
    return errors


def plot_overlay(
    image: np.ndarray,
    prediction: np.ndarray,
    label: np.ndarray | None,
    path: Path,
    title: str,
    num_classes: int = 2,
    axis: int = 2,
) -> Path:
    """Rows of slices through the structure: image, ground truth, prediction, and errors.

    Errors (:func:`error_map`): false positives red, false negatives blue, a foreground voxel of the wrong class
    yellow.
    """
    reference = label if label is not None else prediction
    slices = overlay_slices(reference, axis=axis)
    errors_title = "errors (FP red, FN blue, wrong class yellow)" if num_classes > 2 else "errors (FP red, FN blue)"
    columns = ["image", "ground truth", "prediction", errors_title] if label is not None else ["image", "prediction"]
    cmap = _labels_cmap(num_classes)
    fig, axes = plt.subplots(len(slices), len(columns), figsize=(3.0 * len(columns), 3.0 * len(slices)), squeeze=False)
    for row, index in enumerate(slices):
        img = np.take(image, index, axis=axis).T
        pred = np.take(prediction, index, axis=axis).T
        panels = [None, np.take(label, index, axis=axis).T, pred] if label is not None else [None, pred]
        for col, panel in enumerate(panels):
            ax = axes[row, col]
            ax.imshow(img, cmap="gray", origin="lower")
            if panel is not None:
                ax.imshow(
                    np.ma.masked_equal(panel, 0),
                    cmap=cmap,
                    vmin=0,
                    vmax=max(1, num_classes - 1),
                    alpha=0.55,
                    origin="lower",
                    interpolation="nearest",
                )
        if label is not None:
            axes[row, 3].imshow(img, cmap="gray", origin="lower")
            errors = error_map(pred, np.take(label, index, axis=axis).T)
            axes[row, 3].imshow(errors, origin="lower", interpolation="nearest")
        axes[row, 0].set_ylabel(f"slice {index} (axis {axis})", fontsize=8)
        for col, name in enumerate(columns):
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            if row == 0:
                axes[row, col].set_title(name, fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=90)


def surface_mesh(
    mask: np.ndarray, spacing: Sequence[float] | None = None, max_faces: int = 40_000
) -> tuple[np.ndarray, np.ndarray] | None:
    """Marching-cubes surface ``(vertices [V, 3] in mm or voxels, faces [F, 3])`` of a binary mask."""
    if not mask.any():
        return None
    padded = np.pad(mask.astype(np.float32), 1)  # closes surfaces at the volume border
    step = 1
    while True:
        vertices, faces, _, _ = marching_cubes(
            padded, level=0.5, spacing=tuple(spacing or (1.0, 1.0, 1.0)), step_size=step
        )
        if len(faces) <= max_faces or step >= 4:
            break
        step += 1
    vertices -= np.asarray(spacing or (1.0, 1.0, 1.0))  # undo the padding offset
    return vertices, faces


Meshes = dict[str, dict[int, tuple[np.ndarray, np.ndarray]]]
"""``{"ground truth" | "prediction": {class: (vertices, faces)}}``."""


def surface_meshes(
    prediction: np.ndarray,
    label: np.ndarray | None,
    spacing: Sequence[float] | None = None,
    num_classes: int = 2,
    max_faces: int = 20_000,
) -> Meshes:
    """The surfaces of every foreground class of the prediction and (when given) the ground truth, computed once
    for both the static and the interactive views."""
    volumes = {"ground truth": label, "prediction": prediction}
    return {
        name: {c: mesh for c in range(1, num_classes) if (mesh := surface_mesh(volume == c, spacing, max_faces))}
        for name, volume in volumes.items()
        if volume is not None
    }


def plot_surfaces(
    meshes: Meshes, shape: Sequence[int], path: Path, title: str, spacing: Sequence[float] | None = None
) -> Path:
    """Static 3D views: ground-truth surface, predicted surface, both overlaid (same camera and scale)."""
    views = [(name, [(name, 1.0)]) for name in meshes]
    if "ground truth" in meshes:
        views.append(("overlay (GT grey)", [("ground truth", 0.18), ("prediction", 0.75)]))
    fig = plt.figure(figsize=(4.2 * len(views), 4.4))
    extent = np.asarray(shape) * np.asarray(spacing or (1.0, 1.0, 1.0))
    for i, (title_of_view, layers) in enumerate(views, start=1):
        ax = fig.add_subplot(1, len(views), i, projection="3d")
        for name, alpha in layers:
            for c, (vertices, faces) in meshes[name].items():
                grey = len(layers) > 1 and name == "ground truth"
                color = "#999999" if grey else _CLASS_COLORS[(c - 1) % len(_CLASS_COLORS)]
                ax.add_collection3d(
                    Poly3DCollection(vertices[faces], facecolors=color, linewidths=0, alpha=alpha, shade=True)
                )
        ax.set(xlim=(0, extent[0]), ylim=(0, extent[1]), zlim=(0, extent[2]), title=title_of_view)
        ax.set_box_aspect(tuple(extent))  # matplotlib rescales an array argument in place
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi=90)


def write_surfaces_html(meshes: Meshes, path: Path, title: str, spacing: Sequence[float] | None = None) -> Path:
    """Interactive plotly view: predicted surfaces (coloured) and ground truth (grey, translucent).

    plotly.js is written once beside the HTML files (``plotly.min.js``), so the pages open offline.
    """
    traces = []
    for name, opacity in (("ground truth", 0.25), ("prediction", 0.7)):
        for c, (vertices, faces) in meshes.get(name, {}).items():
            x, y, z = vertices.T
            suffix = f" class {c}" if len(meshes[name]) > 1 or c > 1 else ""
            color = "#888888" if name == "ground truth" else _CLASS_COLORS[(c - 1) % len(_CLASS_COLORS)]
            traces.append(
                go.Mesh3d(
                    x=x,
                    y=y,
                    z=z,
                    i=faces[:, 0],
                    j=faces[:, 1],
                    k=faces[:, 2],
                    color=color,
                    opacity=opacity,
                    name=f"{name}{suffix}",
                    showlegend=True,
                )
            )
    unit = "mm" if spacing is not None else "voxels"
    fig = go.Figure(traces)
    axes = {f"{axis}axis_title": f"{axis} ({unit})" for axis in "xyz"}
    fig.update_layout(title=title, scene={"aspectmode": "data", **axes})
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="directory", full_html=True)
    return path


@seaborn_theme("whitegrid")
def plot_case_boxes(per_case: dict[str, pd.DataFrame], path: Path, distance_unit: str = "voxels") -> Path:
    """Box plots (with every case as a dot) of per-case Dice and HD95, one box per run.

    Args:
        per_case: Run name → one row per test case with ``dice`` and ``hd95`` (cases whose HD95 is undefined are
            left out of that panel and counted in its title).
        path: PNG to write.
        distance_unit: Unit of HD95.
    """
    frame = pd.concat([table.assign(run=name) for name, table in per_case.items()], ignore_index=True)
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 2.4 * len(per_case) + 3), 3.8))
    for ax, (metric, label) in zip(axes, (("dice", "Dice"), ("hd95", f"HD95 ({distance_unit})")), strict=True):
        defined = frame[frame[metric].notna()]
        sns.boxplot(data=defined, x="run", y=metric, ax=ax, color="#c6d4e8", fliersize=0, width=0.55)
        sns.stripplot(data=defined, x="run", y=metric, ax=ax, color="#333333", size=3.5, jitter=0.15)
        missing = len(frame) - len(defined)
        ax.set(xlabel="", ylabel=label, title=label + (f" ({missing} undefined left out)" if missing else ""))
        ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return save_figure(fig, path)


@seaborn_theme("whitegrid")
def plot_learning_curves(histories: dict[str, pd.DataFrame], path: Path, metric: str = "val/dice") -> Path:
    """Validation ``metric`` against training wall time (minutes, from ``epoch_time_s``), one line per run."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for name, history in histories.items():
        if metric not in history or "epoch_time_s" not in history:
            continue
        minutes = history["epoch_time_s"].cumsum() / 60.0
        rows = history[metric].notna()
        ax.plot(minutes[rows], history.loc[rows, metric], "-o", markersize=3, label=name)
    ax.set(xlabel="training wall time (minutes)", ylabel="validation Dice", title="Learning curves")
    ax.legend(frameon=False, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)
