"""Ensembles of saved probabilities, and the out-of-fold pool of cross-validation, for 3D segmentation.

* ``python -m volume_seg.ensemble RUN RUN ... --out DIR``: the mean of the class probabilities that test runs
  saved (``--outputs.save_probabilities``, e.g. on other machines or for other folds), then the threshold/arg-max
  and the largest-component post-processing, scored against the labels of the runs' test cases: an ordinary run
  dir (masks, overlays, 3D views, ``metrics_per_case.csv``, ``metrics.json`` with intervals; ``run_info.json``
  lists the members). nnU-Net's ``--save_probabilities`` + ``nnUNetv2_ensemble``.
* :func:`pool_out_of_fold` (used by :mod:`common.studies.cv`, written by :func:`common.studies.pooling.write_pool`):
  the fold models' masks of the cases they did not train on, pooled (every training case once), the
  largest-component post-processing chosen on them (nnU-Net's rule: kept when it does not lower the mean foreground
  Dice), and their metrics under that choice.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import yaml

from common.errors import MedlitError, exit_on_error
from common.rundir import derived_run_dir
from common.stats import BOOTSTRAP_RESAMPLES
from common.studies.pooling import PoolDecisions, model_args, pooled_checkpoint, pooled_items, write_pool
from volume_seg import default_class_names
from volume_seg.callbacks import CaseJob, summarize_cases, write_case, write_test_metrics
from volume_seg.data import VolumeDataModule
from volume_seg.datasets import WholeVolumeDataset
from volume_seg.model import keep_largest_components

__all__ = ["OUT_OF_FOLD_ARGS", "average_probabilities", "ensemble_runs", "main", "pool_out_of_fold"]

OUT_OF_FOLD_ARGS = ("--model.largest_component=false", "--outputs.overlays=false", "--outputs.views_3d=false")
"""The out-of-fold test runs write raw masks (no post-processing: it is chosen on their pool)."""


def _config(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise MedlitError(f"{run_dir}: not a run dir (config.yaml missing)")
    return yaml.safe_load(path.read_text()) or {}


def _classes(config: dict[str, Any]) -> tuple[int, list[str]]:
    data = config.get("data") or {}
    num_classes = int(data.get("num_classes", 2))
    return num_classes, list(data.get("class_names") or default_class_names(num_classes))


def _cases(config: dict[str, Any], split: str, data_root: str | None = None) -> WholeVolumeDataset:
    data = dict(config.get("data") or {})
    if data_root:
        data["root"] = data_root
    return VolumeDataModule(**data).cases_of(split)


def _mask(probabilities: np.ndarray, num_classes: int, largest_component: bool) -> np.ndarray:
    """The model's decision rule on class probabilities ``[C, X, Y, Z]`` (background first): threshold 0.5 of the
    foreground (binary) or arg-max, then the optional largest component per class."""
    mask = (probabilities[1] > 0.5) if num_classes == 2 else probabilities.argmax(axis=0)
    return _post_processed(mask.astype(np.uint8), num_classes, largest_component)


def _post_processed(mask: np.ndarray, num_classes: int, largest_component: bool) -> np.ndarray:
    """``mask`` with only the largest component of each foreground class (when asked), as the model does."""
    if not largest_component:
        return mask
    kept = keep_largest_components(torch.as_tensor(mask.astype(np.int64))[None], num_classes)
    return kept[0].numpy().astype(np.uint8)


def _score(
    dataset: WholeVolumeDataset,
    masks: dict[str, np.ndarray],
    out: Path,
    config: dict[str, Any],
    files: dict[str, bool],
    scored: bool = True,
) -> pd.DataFrame:
    """Score (unless not ``scored``) each case's mask against its label and write its files as ``files`` say:
    :func:`write_case`'s rows."""
    num_classes, class_names = _classes(config)
    rows = []
    for index in range(len(dataset)):
        item = dataset[index]
        spacing = item["spacing"].numpy()
        job = CaseJob(
            out_dir=out,
            case=item["case"],
            image=item["image"][0].numpy(),
            mask=masks[item["case"]],
            label=item["label"][0].numpy().astype(np.uint8) if scored else None,
            spacing=None if np.isnan(spacing).any() else [float(s) for s in spacing],
            affine=item["affine"].numpy(),
            num_classes=num_classes,
            class_names=class_names,
            loss=float("nan"),
            overlays=files.get("overlays", False),
            views_3d=files.get("views_3d", False),
            save_masks=files.get("save_masks", False),
        )
        rows += write_case(job)
    return pd.DataFrame(rows).sort_values(["case", "class_index"], kind="stable") if rows else pd.DataFrame(rows)


# --- the out-of-fold pool ------------------------------------------------------------------------------------
def _out_of_fold_masks(test_dirs: Sequence[Path]) -> tuple[list[WholeVolumeDataset], dict[str, np.ndarray], dict]:
    datasets, masks, fold_of = [], {}, {}
    for fold, run_dir in enumerate(test_dirs):
        dataset = _cases(_config(run_dir), "val")
        for volume in dataset.volumes:
            case = volume["case"]
            if case in masks:
                raise MedlitError(
                    f"{run_dir}: case {case} is also in {test_dirs[fold_of[case]]}; folds must not overlap"
                )
            path = run_dir / "predictions" / f"{case}.nii.gz"
            if not path.is_file():
                raise MedlitError(f"{path}: missing; the out-of-fold test run did not save this case's mask")
            masks[case] = np.asarray(nib.load(path).dataobj).astype(np.uint8)
            fold_of[case] = fold
        datasets.append(dataset)
    return datasets, masks, fold_of


RULE = "largest component kept when it does not lower the mean foreground Dice (nnU-Net's rule)"
"""How the pool chooses ``largest_component``."""


def pool_out_of_fold(test_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    """Pool the out-of-fold test runs into ``out`` and choose ``largest_component`` on them (see the module
    docstring); returns the decisions (:class:`common.contracts.TaskEnsemble`)."""
    config = _config(test_dirs[0])
    num_classes, _ = _classes(config)
    datasets, raw, fold_of = _out_of_fold_masks(test_dirs)
    masks: dict[bool, dict[str, np.ndarray]] = {}
    tables: dict[bool, pd.DataFrame] = {}
    candidates: dict[bool, dict[str, Any]] = {}
    checkpoint = pooled_checkpoint("case", len(test_dirs))
    for keep in (False, True):
        masks[keep] = {case: _post_processed(mask, num_classes, keep) for case, mask in raw.items()}
        tables[keep] = pd.concat([_score(d, masks[keep], out, config, {}) for d in datasets])
        tables[keep] = tables[keep].sort_values(["case", "class_index"], kind="stable")
        candidates[keep] = summarize_cases(tables[keep], keep, checkpoint)
    dice = {keep: candidates[keep]["dice"]["mean"] for keep in candidates}
    chosen = bool(dice[True] >= dice[False])
    values = {"largest_component": chosen}
    decisions = PoolDecisions(
        values=values,
        args=model_args(values),
        chosen_on=pooled_items(len(raw), "case", len(test_dirs)),
        rule=RULE,
        evidence={
            "candidates": {
                f"largest_component={str(keep).lower()}": {
                    m: candidates[keep][m]["mean"] for m in ("dice", "jaccard", "hd95", "asd")
                }
                for keep in candidates
            }
        },
    )

    def write_scored(folder: Path) -> None:
        for dataset in datasets:  # the chosen masks, already scored above: written, not scored again
            _score(dataset, masks[chosen], folder, config, {"save_masks": True}, scored=False)
        write_test_metrics(folder, tables[chosen], candidates[chosen], BOOTSTRAP_RESAMPLES, 0)

    folds = pd.DataFrame({"case": list(fold_of), "fold": list(fold_of.values())})
    return write_pool(out, test_dirs, decisions, folds, write_scored)


# --- the ensemble of saved probabilities ---------------------------------------------------------------------
def average_probabilities(runs: Sequence[Path]) -> dict[str, np.ndarray]:
    """The mean class probabilities of every case the runs saved (``probabilities/<case>.npz``), float32; the runs
    must hold the same cases and classes."""
    folders = [run / "probabilities" for run in runs]
    for run in runs:
        if not (run / "config.yaml").is_file():
            raise MedlitError(f"{run}: not a run dir (no config.yaml)")
    for folder in folders:
        if not folder.is_dir():
            raise MedlitError(f"{folder.parent}: no probabilities/ (test it with --outputs.save_probabilities true)")
    cases = sorted(p.name.removesuffix(".npz") for p in folders[0].glob("*.npz"))
    if not cases:
        raise MedlitError(f"{folders[0]}: no saved probabilities (*.npz)")
    classes = None
    means = {}
    for case in cases:
        total = None
        for folder in folders:
            path = folder / f"{case}.npz"
            if not path.is_file():
                raise MedlitError(
                    f"{folder.parent}: case {case} missing ({runs[0]} has it); members must hold the same cases"
                )
            with np.load(path) as saved:
                probabilities, names = saved["probabilities"].astype(np.float32), saved["classes"].tolist()
            if classes is None:
                classes = names
            if names != classes or (total is not None and probabilities.shape != total.shape):
                raise MedlitError(f"{path}: classes {names} or shape {probabilities.shape} differ from {runs[0]}'s")
            total = probabilities if total is None else total + probabilities
        means[case] = total / len(runs)
    extra = {p.name.removesuffix(".npz") for folder in folders[1:] for p in folder.glob("*.npz")} - set(cases)
    if extra:
        raise MedlitError(
            f"case {sorted(extra)[0]} is in a member but not in {runs[0]}; members must hold the same cases"
        )
    return means


def ensemble_runs(
    runs: Sequence[Path],
    out: Path,
    largest_component: bool | None = None,
    data_root: str | None = None,
    files: dict[str, bool] | None = None,
) -> dict[str, Any]:
    """The ensemble of the runs' saved probabilities as a run dir ``out``; returns its ``metrics.json``.

    Args:
        runs: Test run dirs that saved their probabilities, on the same cases.
        out: The new run dir (must not exist or be empty).
        largest_component: Post-processing (default: the first run's setting).
        data_root: The dataset folder, when it is not where the first run's ``config.yaml`` says.
        files: Which per-case files to write (``save_masks``, ``overlays``, ``views_3d``; default all).
    """
    config = _config(runs[0])
    num_classes, _ = _classes(config)
    keep = (
        bool((config.get("model") or {}).get("largest_component")) if largest_component is None else largest_component
    )
    probabilities = average_probabilities(runs)
    split = (config.get("data") or {}).get("test_split", "test")
    dataset = _cases(config, split, data_root)
    missing = sorted({v["case"] for v in dataset.volumes} ^ set(probabilities))
    if missing:
        raise MedlitError(f"{runs[0]}: saved cases and the {split} cases of its dataset differ (e.g. {missing[0]})")
    members = [{"given": str(run), "probabilities": str(run / "probabilities")} for run in runs]
    derived_run_dir(out, runs, subcommand="ensemble", ensemble=members, largest_component=keep)
    masks = {case: _mask(p, num_classes, keep) for case, p in probabilities.items()}
    table = _score(dataset, masks, out, config, files or {"save_masks": True, "overlays": True, "views_3d": True})
    metrics = summarize_cases(table, keep, f"ensemble of {len(runs)} runs' saved probabilities (run_info.json)")
    return write_test_metrics(out, table, metrics, BOOTSTRAP_RESAMPLES, 0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m volume_seg.ensemble",
        description="Average the class probabilities test runs saved (--outputs.save_probabilities) into a run dir.",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="test run dirs with probabilities/")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's run dir (new)")
    parser.add_argument("--largest-component", choices=("true", "false"), default=None, help="default: the first run's")
    parser.add_argument("--data-root", default=None, help="the dataset, when not where the first run's config says")
    parser.add_argument("--no-overlays", action="store_true", help="skip the 2D overlays")
    parser.add_argument("--no-views-3d", action="store_true", help="skip the 3D views")
    args = parser.parse_args(argv)
    keep = None if args.largest_component is None else args.largest_component == "true"
    files = {"save_masks": True, "overlays": not args.no_overlays, "views_3d": not args.no_views_3d}
    with exit_on_error():
        metrics = ensemble_runs(args.runs, args.out, keep, args.data_root, files)
    print(f"Dice {metrics['dice']['mean']:.4f}, HD95 {metrics['hd95']['mean']:.3f} {metrics['distance_unit']}")
    print(f"run_dir: {args.out}")


if __name__ == "__main__":
    main()
