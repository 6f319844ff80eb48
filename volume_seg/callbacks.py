"""Writes the segmenter's test and predict outputs into the run dir.

Test: per case ``predictions/<case>.nii.gz``, ``overlays/<case>.png`` (slices: image, ground truth,
prediction, errors) and ``views3d/<case>.png`` + ``.html`` (marching-cubes surfaces), then
``metrics_per_case.csv`` and ``metrics.json`` (mean and std of Dice, Jaccard, HD95 and ASD, units, the
empty-mask policy, post-processing). Predict: masks, overlays and 3D views.

Each process handles the cases of its own batches (files are written atomically). Scoring and drawing a case
runs in worker processes (``outputs.eval_workers``) while the next volume is predicted, so an accelerator does
not wait for them. The per-case metric rows are gathered on every process, each case counted once, and
summarised once: the same numbers are logged as ``test/<metric>`` (means over cases, and ``test/loss``) and
written to ``metrics.json``.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from lightning.pytorch import Callback, LightningModule, Trainer

from common.distributed import gather_objects
from common.ensemble import tested_weights_of
from common.errors import MedlitError
from common.files import atomic_path
from common.loaders import available_cpus
from common.rundir import run_dir_of
from common.scoring import check_resamples, write_metrics
from common.stats import BOOTSTRAP_RESAMPLES
from common.wandb_media import CheckpointUpload, interval_summary, log_to_wandb, logs_to_wandb
from volume_seg.dashboard import MaskSlice, mask_slice, wandb_test_dashboard
from volume_seg.metrics import (
    EMPTY_POLICY,
    METRIC_DEFINITIONS,
    METRIC_NAMES,
    case_metrics,
    case_summary,
    dc,
    scored_items,
    summarize,
)
from volume_seg.viz import plot_overlay, plot_surfaces, surface_meshes, write_surfaces_html

__all__ = [
    "CaseJob",
    "CaseWorkers",
    "SegmentationOutputs",
    "default_eval_workers",
    "summarize_cases",
    "write_case",
    "write_test_metrics",
]


def _spacing(spacing: np.ndarray) -> list[float] | None:
    return None if np.isnan(spacing).any() else [float(s) for s in spacing]


@dataclass
class CaseJob:
    """What :func:`write_case` needs for one case: plain arrays and settings, cheap to send to a worker."""

    out_dir: Path
    case: str
    image: np.ndarray
    mask: np.ndarray
    label: np.ndarray | None
    spacing: list[float] | None
    affine: np.ndarray
    num_classes: int
    class_names: list[str]
    loss: float
    overlays: bool
    views_3d: bool
    save_masks: bool
    probabilities: np.ndarray | None = None
    """``float16 [num_classes, X, Y, Z]`` to save as ``probabilities/<case>.npz`` (``None``: not saved)."""


def write_case(job: CaseJob) -> list[dict[str, Any]]:
    """Score one case (when it has a label) and write its files; returns its per-class metric rows.

    Runs in the evaluation worker processes (or inline), so it touches nothing but its arguments.
    """
    rows = []
    if job.label is not None:
        unit = "mm" if job.spacing is not None else "voxels"
        metrics = case_metrics(job.mask, job.label, job.num_classes, job.spacing, job.class_names)
        rows = [
            {"case": job.case, "class_index": index, **row, "distance_unit": unit, "loss": job.loss}
            for index, row in enumerate(metrics, 1)
        ]
        if job.num_classes > 2:  # the structure as a whole (all foreground classes merged), as papers also report
            merged = dc(job.mask > 0, job.label > 0)
            rows = [{**row, "foreground_dice": merged} for row in rows]
    if job.save_masks:
        with atomic_path(job.out_dir / "predictions" / f"{job.case}.nii.gz") as tmp:
            nib.save(nib.Nifti1Image(job.mask, job.affine), tmp)
    if job.probabilities is not None:
        with atomic_path(job.out_dir / "probabilities" / f"{job.case}.npz") as tmp:
            np.savez_compressed(tmp, probabilities=job.probabilities, classes=np.array(job.class_names))
    dice = [row["dice"] for row in rows if not np.isnan(row["dice"])]
    title = job.case + (f" (Dice {np.mean(dice):.3f})" if dice else "")
    if job.overlays:
        with atomic_path(job.out_dir / "overlays" / f"{job.case}.png") as tmp:
            plot_overlay(job.image, job.mask, job.label, tmp, title, job.num_classes)
    if job.views_3d:
        meshes = surface_meshes(job.mask, job.label, job.spacing, job.num_classes)
        with atomic_path(job.out_dir / "views3d" / f"{job.case}.png") as tmp:
            plot_surfaces(meshes, job.mask.shape, tmp, title, job.spacing)
        with atomic_path(job.out_dir / "views3d" / f"{job.case}.html") as tmp:
            write_surfaces_html(meshes, tmp, title, job.spacing)
    return rows


def _ready() -> None:
    """A worker's first job: importing this module is the work."""


def default_eval_workers(on_gpu: bool, processes: int = 1, most: int = 4) -> int:
    """Evaluation worker processes per process when ``outputs.eval_workers`` is not set.

    On a GPU a worker lets the next volume's inference start while this one is scored and drawn (the cores
    are otherwise idle); on a CPU inference already uses every core, so workers only pay off when there are
    cores to spare (``benchmarks/bench_sliding_window.py`` measures both on a machine).
    """
    cores = available_cpus() // max(1, processes)
    if on_gpu:
        return max(1, min(most, cores - 1))
    return min(most, cores // 4)


class CaseWorkers:
    """Runs :func:`write_case` jobs inline (``workers=0``) or in a pool of spawned processes, in order.

    At most ``2 * workers`` jobs wait at a time: a fast accelerator then waits for the scoring instead of
    holding every volume of the test set in memory.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        self._done: list[list[dict[str, Any]]] = []
        if workers > 0:
            # spawn, not fork: the parent's OpenMP and CUDA state is not safe to fork
            self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
            for _ in range(workers):  # start them now: their imports overlap the first volume's inference
                self._pool.submit(_ready)

    def submit(self, job: CaseJob) -> None:
        if self._pool is None:
            self._done.append(write_case(job))
            return
        self._pending.append(self._pool.submit(write_case, job))
        while len(self._pending) > 2 * self.workers:
            self._done.append(self._pending.popleft().result())

    def results(self) -> list[dict[str, Any]]:
        """Every row of the jobs submitted so far (waits for them), in submission order."""
        while self._pending:
            self._done.append(self._pending.popleft().result())
        return [row for rows in self._done for row in rows]

    def close(self, wait: bool = True) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=wait, cancel_futures=True)
        self._pool = None
        self._pending.clear()
        self._done = []


class SegmentationOutputs(Callback):
    """Per-case files and the test metrics of the segmenter.

    Args:
        overlays: Write 2D slice overlays.
        views_3d: Write 3D surface views (PNG and interactive HTML).
        save_masks: Write predicted masks as NIfTI.
        save_probabilities: Also write each case's class probabilities (after test-time flips, before the
            threshold/arg-max and post-processing) as ``probabilities/<case>.npz``: ``probabilities`` ``float16
            [num_classes, X, Y, Z]`` (background first) and ``classes`` (their names); for averaging models
            trained elsewhere (nnU-Net's ``--save_probabilities``).
        eval_workers: Processes that score and draw the cases while the next ones are predicted; ``0`` does it
            in the main process; default :func:`default_eval_workers`.
        bootstrap: Resamples of the test cases for the 95% confidence intervals in ``metrics.json`` (0 = none).
        bootstrap_seed: Seed of those resamples (the same seed gives the same intervals).
        wandb_media: When the run logs to W&B, also log the test's figures and tables there
            (:mod:`volume_seg.dashboard`; the headline numbers and their intervals go to the run summary either way).
        wandb_checkpoint: When the run logs to W&B, upload the tested checkpoint as a ``model`` artifact.
    """

    def __init__(
        self,
        overlays: bool = True,
        views_3d: bool = True,
        save_masks: bool = True,
        save_probabilities: bool = False,
        eval_workers: int | None = None,
        bootstrap: int = BOOTSTRAP_RESAMPLES,
        bootstrap_seed: int = 0,
        wandb_media: bool = True,
        wandb_checkpoint: bool = False,
    ) -> None:
        if eval_workers is not None and eval_workers < 0:
            raise MedlitError(f"outputs.eval_workers must be >= 0, got {eval_workers}")
        check_resamples(bootstrap)
        self.overlays = overlays
        self.views_3d = views_3d
        self.save_masks = save_masks
        self.save_probabilities = save_probabilities
        self.eval_workers = eval_workers
        self.bootstrap = bootstrap
        self.bootstrap_seed = bootstrap_seed
        self.wandb_media = wandb_media
        self.wandb_checkpoint = wandb_checkpoint
        self._workers = CaseWorkers(0)
        self._slices: list[MaskSlice] = []

    def _start(self, trainer: Trainer, *_: Any) -> None:
        self._workers.close()
        workers = self.eval_workers
        if workers is None:
            on_gpu = trainer.strategy.root_device.type != "cpu"
            workers = default_eval_workers(on_gpu, max(1, trainer.num_devices))
        self._workers = CaseWorkers(workers)
        self._slices = []

    on_test_epoch_start = _start
    on_predict_epoch_start = _start

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._workers.close()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._workers.close(wait=False)  # Lightning skips callbacks' teardown after an error or Ctrl-C

    def _submit(self, trainer: Trainer, pl_module: LightningModule, outputs: dict, batch: dict) -> None:
        label = batch.get("label")
        # popped: predict keeps every step's outputs, and whole-volume probabilities would fill the memory
        probabilities = outputs.pop("probabilities", None)
        if self.save_probabilities and probabilities is not None:
            probabilities = pl_module.class_probabilities(probabilities)[0].float().cpu().numpy().astype(np.float16)
        else:
            probabilities = None
        self._workers.submit(
            CaseJob(
                out_dir=run_dir_of(trainer),
                case=batch["case"][0],
                image=batch["image"][0, 0].float().cpu().numpy(),
                mask=outputs["mask"][0, 0].cpu().numpy().astype(np.uint8),
                label=label[0, 0].cpu().numpy().astype(np.uint8) if label is not None else None,
                spacing=_spacing(batch["spacing"][0].cpu().numpy()),
                affine=batch["affine"][0].cpu().numpy(),
                num_classes=pl_module.num_classes,
                class_names=list(pl_module.class_names),
                loss=float(outputs.get("loss", float("nan"))),
                overlays=self.overlays,
                views_3d=self.views_3d,
                save_masks=self.save_masks,
                probabilities=probabilities,
            )
        )

    def _wants_slices(self, trainer: Trainer) -> bool:
        """Whether each test case's overlay slice goes to W&B with its masks (:mod:`volume_seg.dashboard`)."""
        return self.wandb_media and self.overlays and logs_to_wandb(trainer)

    def on_test_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        label = batch.get("label")
        if label is not None and self._wants_slices(trainer):
            image, mask = batch["image"][0, 0].float().cpu().numpy(), outputs["mask"][0, 0].cpu().numpy()
            self._slices.append(mask_slice(batch["case"][0], image, mask, label[0, 0].cpu().numpy()))
        self._submit(trainer, pl_module, outputs, batch)

    def on_predict_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, *_: Any
    ) -> None:
        self._submit(trainer, pl_module, outputs, batch)

    def on_predict_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._workers.results()  # every file written before predict returns
        self._workers.close()

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        own_rows = self._workers.results()
        self._workers.close()
        rows = {(r["case"], r["class"]): r for rows in gather_objects(own_rows) for r in rows}  # once each
        if not rows:
            return
        table = pd.DataFrame(list(rows.values())).sort_values(["case", "class_index"], kind="stable")
        checkpoint = tested_weights_of(pl_module, trainer.ckpt_path)
        metrics = summarize_cases(table, bool(pl_module.hparams.largest_component), checkpoint)
        for name in (*METRIC_NAMES, "loss"):  # every process logs the same number
            value = metrics[name]["mean"] if isinstance(metrics[name], dict) else metrics[name]
            pl_module.log(f"test/{name}", value, sync_dist=False)
        slices: list[MaskSlice] = []
        if self._wants_slices(trainer):  # every rank alike: each gathers its cases' slices for rank 0
            slices = [s for gathered in gather_objects(self._slices) for s in gathered]
        if trainer.is_global_zero:
            out = run_dir_of(trainer)
            metrics = write_test_metrics(out, table, metrics, self.bootstrap, self.bootstrap_seed)
            build = wandb_test_dashboard(out, table, list({s.case: s for s in slices}.values()), pl_module.class_names)
            log_to_wandb(  # after every file: W&B sees what the run dir holds
                trainer,
                interval_summary(metrics, (*METRIC_NAMES, "loss")),
                build if self.wandb_media else None,
                CheckpointUpload(checkpoint, {"run_dir": str(out)}) if self.wandb_checkpoint else None,
            )


def summarize_cases(table: pd.DataFrame, largest_component: bool, checkpoint: str) -> dict[str, Any]:
    """``metrics.json`` without intervals: the summary over the cases of :func:`write_case`'s rows (each case's
    value averaged over its foreground classes), per class, units, definitions and how the masks were made."""
    unit = "/".join(sorted(table["distance_unit"].unique()))  # one unit unless spacing is missing for some
    per_case = case_summary(table)
    merged = {}
    if "foreground_dice" in table:
        values = table.groupby("case")["foreground_dice"].first().dropna()
        merged = {"foreground_dice": {"mean": float(values.mean()), "std": float(values.std(ddof=0))}}
    return {
        **summarize(per_case.reset_index().to_dict("records")),
        **merged,
        "per_class": {name: summarize(group.to_dict("records")) for name, group in table.groupby("class")},
        "distance_unit": unit,
        "units": {"dice": "fraction (0-1)", "jaccard": "fraction (0-1)", "hd95": unit, "asd": unit},
        "empty_mask_policy": EMPTY_POLICY,
        "largest_component": largest_component,
        "loss": float(table.groupby("case")["loss"].first().mean()),
        "checkpoint": checkpoint,
        "definitions": METRIC_DEFINITIONS,
    }


def _interval_names(summary: dict[str, Any]) -> list[str]:
    """The metrics of a test summary that get a bootstrap interval: ``dice`` ..., ``<class>/dice`` ... for each
    class in ``per_class``, and ``foreground_dice`` when the summary has it."""
    names = [*METRIC_NAMES, *(f"{c}/{m}" for c in summary["per_class"] for m in METRIC_NAMES)]
    return names + (["foreground_dice"] if "foreground_dice" in summary else [])


def _place_in_summary(summary: dict[str, Any], name: str, interval: list[float]) -> bool:
    """Each interval also goes into its summary as ``ci95`` (``dice.ci95``, ``per_class.<class>.dice.ci95``)."""
    class_name, _, metric = name.rpartition("/")
    (summary["per_class"][class_name] if class_name else summary)[metric]["ci95"] = interval
    return True


def write_test_metrics(
    out: Path, table: pd.DataFrame, summary: dict[str, Any], n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> dict[str, Any]:
    """``metrics_per_case.csv`` and ``metrics.json`` of a test run in ``out``: ``summary`` with bootstrap intervals
    over the cases (``ci95`` in each summary, all of them also in the top-level ``ci95`` mapping); returns the
    metrics written."""
    columns = ["case", "class", *METRIC_NAMES, "distance_unit", "empty_prediction", "empty_reference"]
    columns += ["foreground_dice"] if "foreground_dice" in table else []
    with atomic_path(out / "metrics_per_case.csv") as tmp:
        table[columns].to_csv(tmp, index=False, float_format="%.6f")
    names = _interval_names(summary)
    return write_metrics(out, summary, scored_items(table), names, n_resamples, seed, _place_in_summary)
