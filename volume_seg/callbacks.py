"""Writes the segmenter's test and predict outputs into the run dir.

Test: per case ``predictions/<case>.nii.gz``, ``overlays/<case>.png`` (slices: image, ground truth,
prediction, errors) and ``views3d/<case>.png`` + ``.html`` (marching-cubes surfaces), then
``metrics_per_case.csv`` and ``metrics.json`` (mean and std of Dice, Jaccard, HD95 and ASD, units, the
empty-mask policy, post-processing). Predict: masks, overlays and 3D views.

Each process handles the cases of its own batches (files are written atomically). The per-case metric rows are
gathered on every process, each case counted once, and summarised once: the same numbers are logged as
``test/<metric>`` (means over cases, and ``test/loss``) and written to ``metrics.json``.
"""

from __future__ import annotations

from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from lightning.pytorch import Callback, LightningModule, Trainer

from common.callbacks import atomic_path, gather_objects, run_dir_of, write_json
from volume_seg.metrics import (
    EMPTY_POLICY,
    METRIC_DEFINITIONS,
    METRIC_NAMES,
    case_metrics,
    case_summary,
    summarize,
)
from volume_seg.viz import plot_overlay, plot_surfaces, surface_meshes, write_surfaces_html

__all__ = ["SegmentationOutputs"]


def _spacing(spacing: np.ndarray) -> list[float] | None:
    return None if np.isnan(spacing).any() else [float(s) for s in spacing]


class SegmentationOutputs(Callback):
    """Per-case files and the test metrics of the segmenter.

    Args:
        overlays: Write 2D slice overlays.
        views_3d: Write 3D surface views (PNG and interactive HTML).
        save_masks: Write predicted masks as NIfTI.
    """

    def __init__(self, overlays: bool = True, views_3d: bool = True, save_masks: bool = True) -> None:
        self.overlays = overlays
        self.views_3d = views_3d
        self.save_masks = save_masks
        self._rows: list[dict[str, Any]] = []

    def _reset(self, *_: Any) -> None:
        self._rows = []

    on_test_epoch_start = _reset
    on_predict_epoch_start = _reset

    def _write_case(self, trainer: Trainer, pl_module: LightningModule, outputs: dict, batch: dict) -> None:
        out = run_dir_of(trainer)
        num_classes = pl_module.num_classes
        case = batch["case"][0]
        image = batch["image"][0, 0].float().cpu().numpy()
        mask = outputs["mask"][0, 0].cpu().numpy().astype(np.uint8)
        label = batch["label"][0, 0].cpu().numpy().astype(np.uint8) if "label" in batch else None
        spacing = _spacing(batch["spacing"][0].cpu().numpy())
        if label is not None:
            unit = "mm" if spacing is not None else "voxels"
            loss = float(outputs.get("loss", float("nan")))
            for index, row in enumerate(case_metrics(mask, label, num_classes, spacing, pl_module.class_names), 1):
                self._rows.append({"case": case, "class_index": index, **row, "distance_unit": unit, "loss": loss})
        if self.save_masks:
            with atomic_path(out / "predictions" / f"{case}.nii.gz") as tmp:
                nib.save(nib.Nifti1Image(mask, batch["affine"][0].cpu().numpy()), tmp)
        title = f"{case}" + (f" (Dice {self._case_dice(case):.3f})" if label is not None else "")
        if self.overlays:
            with atomic_path(out / "overlays" / f"{case}.png") as tmp:
                plot_overlay(image, mask, label, tmp, title, num_classes)
        if self.views_3d:
            meshes = surface_meshes(mask, label, spacing, num_classes)
            with atomic_path(out / "views3d" / f"{case}.png") as tmp:
                plot_surfaces(meshes, mask.shape, tmp, title, spacing)
            with atomic_path(out / "views3d" / f"{case}.html") as tmp:
                write_surfaces_html(meshes, tmp, title, spacing)

    def _case_dice(self, case: str) -> float:
        values = [row["dice"] for row in self._rows if row["case"] == case]
        return float(np.nanmean(values)) if values and not np.isnan(values).all() else float("nan")

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._write_case(trainer, pl_module, outputs, batch)

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._write_case(trainer, pl_module, outputs, batch)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        rows = {(r["case"], r["class"]): r for rows in gather_objects(self._rows) for r in rows}  # once each
        if not rows:
            return
        table = pd.DataFrame(list(rows.values())).sort_values(["case", "class_index"], kind="stable")
        metrics = self._summary(table, trainer, pl_module)
        for name in (*METRIC_NAMES, "loss"):  # every process logs the same number
            value = metrics[name]["mean"] if isinstance(metrics[name], dict) else metrics[name]
            pl_module.log(f"test/{name}", value, sync_dist=False)
        if trainer.is_global_zero:
            out = run_dir_of(trainer)
            columns = ["case", "class", *METRIC_NAMES, "distance_unit", "empty_prediction", "empty_reference"]
            with atomic_path(out / "metrics_per_case.csv") as tmp:
                table[columns].to_csv(tmp, index=False, float_format="%.6f")
            write_json(out / "metrics.json", metrics)

    @staticmethod
    def _summary(table: pd.DataFrame, trainer: Trainer, pl_module: LightningModule) -> dict[str, Any]:
        """``metrics.json``: the summary over cases (each case's value averaged over its foreground classes)."""
        unit = "/".join(sorted(table["distance_unit"].unique()))  # one unit unless spacing is missing for some
        per_case = case_summary(table)
        return {
            **summarize(per_case.reset_index().to_dict("records")),
            "per_class": {name: summarize(group.to_dict("records")) for name, group in table.groupby("class")},
            "distance_unit": unit,
            "units": {"dice": "fraction (0-1)", "jaccard": "fraction (0-1)", "hd95": unit, "asd": unit},
            "empty_mask_policy": EMPTY_POLICY,
            "largest_component": bool(pl_module.hparams.largest_component),
            "loss": float(table.groupby("case")["loss"].first().mean()),
            "checkpoint": trainer.ckpt_path or "current weights",
            "definitions": METRIC_DEFINITIONS,
        }
