"""The segmenter's test in W&B: the same figures and per-case numbers the run dir holds.

Logged once at the end of ``test`` (:class:`~volume_seg.callbacks.SegmentationOutputs`, after its files):

* ``test/masks``: per case, the middle slice of its overlay (:func:`~volume_seg.viz.overlay_slices`, the slices of
  ``overlays/<case>.png``) as a W&B image with two mask layers, ``prediction`` and ``ground_truth``, each with the
  class names, that the W&B image panel shows, hides and compares;
* ``test/overlays`` and ``test/views3d``: the overlay and 3D-view PNGs as written (``overlays/<case>.png``,
  ``views3d/<case>.png``), captioned with the case and its Dice;
* ``test/per_case``: one row per test case, per class its Dice, Jaccard, HD95 and ASD with the unit in the column
  name (``<class> hd95 (mm)``; voxels when the spacing is unknown), as ``metrics_per_case.csv`` holds them;
* the run summary: each ``test/<name>`` of :data:`~volume_seg.metrics.METRIC_NAMES` and ``test/loss`` and, for those
  with an interval in ``metrics.json``, ``test/<name>_ci_low`` and ``test/<name>_ci_high``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pandas as pd

from common.wandb_media import WandbBuild, image_files, table_of
from volume_seg.metrics import METRIC_NAMES
from volume_seg.viz import overlay_slices

__all__ = ["MaskSlice", "case_table", "mask_image", "mask_slice", "wandb_test_dashboard"]

UNITLESS = {"dice": "0-1", "jaccard": "0-1"}
"""The unit written beside a metric without a distance (the distances get ``distance_unit``)."""


@dataclass
class MaskSlice:
    """One slice of a case, as its overlay shows it (rows up): the image and both label maps."""

    case: str
    index: int
    """The slice's index along the overlay's axis."""
    image: np.ndarray
    """``uint8 [H, W]``: the slice's intensities scaled to 0-255."""
    prediction: np.ndarray
    """``uint8 [H, W]``: class indices."""
    label: np.ndarray
    """``uint8 [H, W]``: class indices."""


def _shown(plane: np.ndarray) -> np.ndarray:
    """A slice turned as :func:`~volume_seg.viz.plot_overlay` shows it (transposed, origin at the bottom)."""
    return np.ascontiguousarray(np.flipud(plane.T))


def mask_slice(case: str, image: np.ndarray, mask: np.ndarray, label: np.ndarray, axis: int = 2) -> MaskSlice:
    """The middle slice of the case's overlay (``[X, Y, Z]`` volumes; slices chosen on the label, as the overlay)."""
    slices = overlay_slices(label, axis=axis)
    index = slices[len(slices) // 2]
    plane = np.take(image, index, axis=axis).astype(np.float64)
    low, high = float(plane.min()), float(plane.max())
    scaled = (plane - low) / (high - low) * 255 if high > low else np.zeros_like(plane)
    return MaskSlice(
        case,
        index,
        _shown(scaled.round().astype(np.uint8)),
        _shown(np.take(mask, index, axis=axis).astype(np.uint8)),
        _shown(np.take(label, index, axis=axis).astype(np.uint8)),
    )


def mask_image(wandb: ModuleType, item: MaskSlice, class_names: list[str], caption: str) -> Any:
    """A ``wandb.Image`` of the slice with the ``prediction`` and ``ground_truth`` mask layers (class names as
    labels)."""
    labels = dict(enumerate(class_names))
    masks = {
        "prediction": {"mask_data": item.prediction, "class_labels": labels},
        "ground_truth": {"mask_data": item.label, "class_labels": labels},
    }
    return wandb.Image(item.image, masks=masks, caption=f"{caption}, slice {item.index}")


def case_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per case from :func:`~volume_seg.callbacks.write_case`'s rows (one per case and class): per class its
    metrics, the unit in each column's name; ``foreground dice`` (all classes merged) when the rows have it."""
    unit = "/".join(sorted(table["distance_unit"].unique()))
    frame = pd.DataFrame({"case": sorted(table["case"].unique())}).set_index("case")
    for name, rows in table.groupby("class", sort=False):
        rows = rows.set_index("case")
        for metric in METRIC_NAMES:
            frame[f"{name} {metric} ({UNITLESS.get(metric, unit)})"] = rows[metric].astype(float)
    if "foreground_dice" in table:
        frame["merged foreground dice (0-1)"] = table.groupby("case")["foreground_dice"].first().astype(float)
    return frame.reset_index()


def _caption(case: str, dice: dict[str, float]) -> str:
    return f"{case} (Dice {dice[case]:.3f})" if case in dice and dice[case] == dice[case] else case


def wandb_test_dashboard(out: Path, table: pd.DataFrame, slices: list[MaskSlice], class_names: list[str]) -> WandbBuild:
    """What :func:`common.wandb_media.log_to_wandb` logs of a test (module docstring); built only when W&B runs.

    Args:
        out: The run dir (its ``overlays/`` and ``views3d/`` PNGs of the test's cases are logged).
        table: The per-case rows written to ``metrics_per_case.csv``.
        slices: Each case's :func:`mask_slice` (empty without overlays).
        class_names: Background first.
    """
    cases = sorted(table["case"].unique())
    dice = table.groupby("case")["dice"].mean().to_dict()

    def build(wandb: ModuleType) -> dict[str, Any]:
        payload: dict[str, Any] = {"test/per_case": table_of(wandb, case_table(table))}
        for folder in ("overlays", "views3d"):
            paths = [out / folder / f"{case}.png" for case in cases if (out / folder / f"{case}.png").is_file()]
            if paths:
                payload[f"test/{folder}"] = image_files(wandb, paths, [_caption(path.stem, dice) for path in paths])
        if slices:
            ordered = sorted(slices, key=lambda item: item.case)
            payload["test/masks"] = [mask_image(wandb, s, class_names, _caption(s.case, dice)) for s in ordered]
        return payload

    return build
