"""Ensembles of saved probabilities, and the out-of-fold pool of cross-validation, for skin-lesion classification.

* ``python -m lesion_cls.ensemble RUN RUN ... --out DIR``: the mean of the class probabilities that test runs saved
  before their decision τ (``probabilities.csv``, ``--outputs.save_probabilities``; or ``predictions.csv`` of a run
  tested at τ 0), then the decision τ (``--decision-tau``, with the class frequencies of the first run's training
  split), scored as a test: an ordinary run dir (``predictions.csv``, ``metrics.json`` with intervals over the
  lesions, classification report, figures; ``run_info.json`` lists the members).
* :func:`pool_out_of_fold` (used by :mod:`common.studies.cv`, written by :func:`common.studies.pooling.write_pool`):
  the fold models' probabilities of the images they did not train on, pooled (every non-test image once), the
  decision rule chosen on them (:func:`~lesion_cls.decisions.choose_on_pool`: the τ of
  :data:`~lesion_cls.decisions.DECISION_TAUS` that maximises the fold models' ``model.selection_metric``, plus
  per-class offsets only where they also score higher cross-fitted), and their metrics under it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from common.errors import MedlitError, exit_on_error
from common.rundir import derived_run_dir
from common.stats import BOOTSTRAP_RESAMPLES
from common.studies.pooling import PoolDecisions, model_args, pooled_checkpoint, pooled_items, write_pool
from lesion_cls import CLASS_NAMES
from lesion_cls.callbacks import summarize_predictions, write_test_files
from lesion_cls.class_balance import class_statistics
from lesion_cls.decisions import OFFSETS_RULE, TAU_RULE, PoolChoice, choose_on_pool, decided_probabilities

__all__ = ["OUT_OF_FOLD_ARGS", "average_probabilities", "class_names_of", "ensemble_runs", "main", "pool_out_of_fold"]

OUT_OF_FOLD_ARGS = ("--model.decision_tau=0", "--outputs.gradcam_per_class=0", "--outputs.figures=false")
"""The out-of-fold test runs write the probabilities before any decision τ (it is chosen on their pool)."""


def _read_csv(path: Path, names: Sequence[str]) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"image": str, "lesion_id": str})
    missing = [c for c in ("image", *names, "label") if c not in frame]
    if missing:
        raise MedlitError(f"{path}: no column {missing[0]} (needs image, {', '.join(names)} and label)")
    return frame


def _tested(run_dir: Path) -> dict[str, Any]:
    """The run's ``metrics.json``."""
    if not (run_dir / "metrics.json").is_file():
        raise MedlitError(f"{run_dir}: not a test run dir (no metrics.json)")
    return json.loads((run_dir / "metrics.json").read_text())


def class_names_of(run_dir: Path) -> tuple[str, ...]:
    """A test run's classes (``metrics.json``; HAM10000's seven for runs that predate the field)."""
    return tuple(_tested(run_dir).get("class_names") or CLASS_NAMES)


def _same_classes(runs: Sequence[Path]) -> tuple[str, ...]:
    names = class_names_of(runs[0])
    for run in runs[1:]:
        if class_names_of(run) != names:
            raise MedlitError(f"{run}: classes {', '.join(class_names_of(run))} differ from {runs[0]}'s")
    return names


def _lesions(run_dir: Path, ids: Sequence[str]) -> list[str]:
    """Each image's lesion from the run's ``split.csv`` (the image itself where it gives none)."""
    path = run_dir / "split.csv"
    lesion_of: dict[str, str] = {}
    if path.is_file():
        split = pd.read_csv(path, dtype={"image_id": str, "lesion_id": str})
        lesion_of = dict(zip(split["image_id"], split["lesion_id"], strict=True))
    return [lesion_of.get(i, i) for i in ids]


def raw_predictions(run_dir: Path) -> pd.DataFrame:
    """A test run's probabilities before its decision τ: ``probabilities.csv``, else ``predictions.csv`` when the
    run was tested at τ 0 (a shifted table cannot be averaged)."""
    names = class_names_of(run_dir)
    if (run_dir / "probabilities.csv").is_file():
        return _read_csv(run_dir / "probabilities.csv", names)
    tau = _tested(run_dir).get("decision_tau", 0.0)
    if tau == 0.0 and (run_dir / "predictions.csv").is_file():
        return _read_csv(run_dir / "predictions.csv", names)
    raise MedlitError(
        f"{run_dir}: no probabilities.csv, and its predictions.csv is shifted by decision τ {tau}; test it with "
        "--outputs.save_probabilities true"
    )


def _training_frequencies(run_dir: Path) -> list[float]:
    """The class frequencies of the run's training split (``split.csv``), as the model's decision τ uses them."""
    split = pd.read_csv(run_dir / "split.csv")
    labels = split.loc[split["split"] == "train", "label"].to_numpy(dtype=np.int64)
    return class_statistics(labels, "none", 0.0, len(class_names_of(run_dir))).frequencies


def _write_scored(
    out: Path,
    ids: list[str],
    lesions: list[str],
    probs: np.ndarray,
    target: np.ndarray,
    checkpoint: str,
    decisions: dict[str, Any],
    member: Path,
) -> dict[str, Any]:
    """``predictions.csv``, ``metrics.json`` (with intervals over the lesions; ``decisions``: the decision τ and
    any class offsets the probabilities were shifted by) and the report files in ``out``; the classes and the
    interval unit are those of the run dir ``member``."""
    names, unit = class_names_of(member), _tested(member).get("ci_unit", "lesion")
    metrics = summarize_predictions(probs, target, np.full(len(ids), np.nan), checkpoint, names)
    metrics |= {key: value for key, value in decisions.items() if value is not None}
    return write_test_files(out, ids, lesions, probs, target, metrics, True, BOOTSTRAP_RESAMPLES, 0, names, unit)


def _labels(frame: pd.DataFrame, path: Path) -> np.ndarray:
    names = class_names_of(path)
    index = {name: i for i, name in enumerate(names)}
    unknown = sorted(set(frame["label"]) - set(index))
    if unknown:
        raise MedlitError(f"{path}: label {unknown[0]!r} is not one of {', '.join(names)}")
    return frame["label"].map(index).to_numpy(dtype=np.int64)


# --- the out-of-fold pool ------------------------------------------------------------------------------------
def _pooled(test_dirs: Sequence[Path]) -> pd.DataFrame:
    """The out-of-fold runs' probabilities before τ, one table with each image's ``run``; each image once."""
    pooled = pd.concat([raw_predictions(run_dir).assign(run=str(run_dir)) for run_dir in test_dirs], ignore_index=True)
    repeated = pooled[pooled["image"].duplicated(keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        raise MedlitError(f"{first['run']}: image {first['image']} is in two out-of-fold runs; folds must not overlap")
    return pooled


def _decisions(choice: PoolChoice, metric: str, n_images: int, n_folds: int, frequencies: list[float]) -> PoolDecisions:
    """``decisions.json`` of the rule chosen on the pool, with the scores that chose it."""
    scores = ", ".join(f"{name} {choice.cross_fitted[name][metric]:.4f}" for name in (TAU_RULE, OFFSETS_RULE))
    return PoolDecisions(
        values=choice.values,
        args=model_args(choice.values),
        chosen_on=f"{pooled_items(n_images, 'image', n_folds)}, maximising {metric}; rule: {choice.rule} "
        f"(cross-fitted {metric}, each fold decided by the rule fitted on the other folds: {scores})",
        rule=choice.rule,
        evidence={
            "class_frequencies": frequencies,
            "candidates": {str(tau): scores for tau, scores in choice.candidates.items()},
            "cross_fitted": choice.cross_fitted,
        },
    )


def pool_out_of_fold(test_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    """Pool the out-of-fold test runs into ``out`` and choose the decision rule on them (see the module docstring);
    returns the decisions (:class:`common.contracts.TaskEnsemble`)."""
    names = _same_classes(test_dirs)
    pooled = _pooled(test_dirs)
    config = yaml.safe_load((test_dirs[0] / "config.yaml").read_text()) or {}
    metric = (config.get("model") or {}).get("selection_metric") or "bal_acc"
    # the frequencies the ensemble's τ will use: those of its settings' (the first fold's) training split
    frequencies = _training_frequencies(test_dirs[0])
    probs, target = pooled[list(names)].to_numpy(dtype=np.float64), _labels(pooled, test_dirs[0])
    groups = pooled["run"].astype("category").cat.codes.to_numpy()
    choice = choose_on_pool(probs, target, groups, frequencies, metric)
    ids = pooled["image"].tolist()
    lesions = _lesions(test_dirs[0], ids)

    def write_scored(folder: Path) -> None:
        values = choice.values
        decided = decided_probabilities(probs, values["decision_tau"], frequencies, values["decision_offsets"])
        checkpoint = pooled_checkpoint("image", len(test_dirs))
        _write_scored(folder, ids, lesions, decided, target, checkpoint, values, test_dirs[0])
        raw = pooled[["image", *names, "label"]].copy()
        raw.insert(1, "lesion_id", lesions)
        raw.to_csv(folder / "probabilities.csv", index=False, float_format="%.6f")  # before τ, as the folds gave them

    decisions = _decisions(choice, metric, len(pooled), len(test_dirs), frequencies)
    return write_pool(out, test_dirs, decisions, pooled[["image", "run"]], write_scored)


# --- the ensemble of saved probabilities ---------------------------------------------------------------------
def average_probabilities(runs: Sequence[Path]) -> pd.DataFrame:
    """The mean probabilities before the decision τ of the runs (same images, same labels), in the first run's
    image order, with ``label``."""
    names = _same_classes(runs)
    first = raw_predictions(runs[0])
    total = first[list(names)].to_numpy(dtype=np.float64)
    for run in runs[1:]:
        frame = raw_predictions(run)
        if set(frame["image"]) != set(first["image"]):
            image = sorted(set(frame["image"]) ^ set(first["image"]))[0]
            raise MedlitError(f"{run}: image {image} is in one member but not the other; members need the same images")
        frame = frame.set_index("image").loc[first["image"]]
        if (frame["label"].to_numpy() != first["label"].to_numpy()).any():
            raise MedlitError(f"{run}: labels differ from {runs[0]}'s for the same images")
        total += frame[list(names)].to_numpy(dtype=np.float64)
    averaged = first[["image", "label"]].copy()
    averaged[list(names)] = total / len(runs)
    return averaged


def ensemble_runs(
    runs: Sequence[Path], out: Path, decision_tau: float = 0.0, decision_offsets: Sequence[float] | None = None
) -> dict[str, Any]:
    """The ensemble of the runs' saved probabilities as a run dir ``out``; returns its ``metrics.json``."""
    names = _same_classes(runs)
    if decision_offsets is not None and len(decision_offsets) != len(names):
        raise MedlitError(
            f"--decision-offsets needs {len(names)} numbers (one per class: {' '.join(names)}), "
            f"got {len(decision_offsets)}"
        )
    averaged = average_probabilities(runs)
    members = [{"given": str(run)} for run in runs]
    offsets = None if decision_offsets is None else [float(v) for v in decision_offsets]
    values = {"decision_tau": float(decision_tau), "decision_offsets": offsets}
    derived_run_dir(out, runs, subcommand="ensemble", ensemble=members, **values)
    frequencies = _training_frequencies(runs[0]) if decision_tau else [1.0] * len(names)
    probs = decided_probabilities(averaged[list(names)].to_numpy(np.float64), decision_tau, frequencies, offsets)
    checkpoint = f"ensemble of {len(runs)} runs' saved probabilities (run_info.json)"
    ids = averaged["image"].tolist()
    target = _labels(averaged, runs[0])
    return _write_scored(out, ids, _lesions(runs[0], ids), probs, target, checkpoint, values, runs[0])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lesion_cls.ensemble",
        description="Average the class probabilities test runs saved (--outputs.save_probabilities) into a run dir.",
    )
    parser.add_argument("runs", nargs="+", type=Path, help="test run dirs with probabilities.csv")
    parser.add_argument("--out", type=Path, required=True, help="the ensemble's run dir (new)")
    parser.add_argument("--decision-tau", type=float, default=0.0, help="decision τ after averaging (default 0)")
    parser.add_argument(
        "--decision-offsets",
        type=float,
        nargs="+",
        default=None,
        metavar="B",
        help="class offsets after the τ shift, one number per class in the runs' class order (metrics.json)",
    )
    args = parser.parse_args(argv)
    with exit_on_error():
        metrics = ensemble_runs(args.runs, args.out, args.decision_tau, args.decision_offsets)
    print(f"accuracy {metrics['accuracy']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}")
    print(f"run_dir: {args.out}")


if __name__ == "__main__":
    main()
