"""Ensembles of saved probabilities, and the out-of-fold pool of cross-validation, for skin-lesion classification.

* ``python -m lesion_cls.ensemble RUN RUN ... --out DIR``: the mean of the class probabilities that test runs saved
  before their decision τ (``probabilities.csv``, ``--outputs.save_probabilities``; or ``predictions.csv`` of a run
  tested at τ 0), then the decision τ (``--decision-tau``, with the class frequencies of the first run's training
  split), scored as a test: an ordinary run dir (``predictions.csv``, ``metrics.json`` with intervals over the
  lesions, classification report, figures; ``run_info.json`` lists the members).
* :func:`pool_out_of_fold` (used by :mod:`common.studies.cv`): the fold models' probabilities of the images they did not
  train on, pooled (every non-test image once), the decision rule chosen on them, and their metrics under it. The
  rule is the τ of :data:`~lesion_cls.metrics.DECISION_TAUS` that maximises the fold models'
  ``model.selection_metric`` (ties: the smallest ``|τ|``), plus per-class offsets fitted on top of it
  (:func:`~lesion_cls.metrics.fit_class_offsets`) only where they also score higher cross-fitted: each fold's images
  decided by a rule fitted on the other folds' images alone (:func:`~lesion_cls.metrics.cross_fitted_decisions`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from common.errors import MedlitError
from common.files import write_json
from common.rundir import derived_run_dir
from lesion_cls import CLASS_NAMES
from lesion_cls.callbacks import summarize_predictions, with_intervals, write_test_files
from lesion_cls.data import class_statistics
from lesion_cls.metrics import (
    DECISION_TAUS,
    best_decision,
    cross_fitted_decisions,
    decision_candidates,
    decision_scores,
    fit_class_offsets,
    shifted_probabilities,
)

__all__ = ["OUT_OF_FOLD_ARGS", "average_probabilities", "ensemble_runs", "main", "pool_out_of_fold"]

OUT_OF_FOLD_ARGS = ("--model.decision_tau=0", "--outputs.gradcam_per_class=0", "--outputs.figures=false")
"""The out-of-fold test runs write the probabilities before any decision τ (it is chosen on their pool)."""

BOOTSTRAP = 2000
"""Resamples of the lesions for the intervals in ``metrics.json`` (as the test's default)."""


def _read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"image": str, "lesion_id": str})
    missing = [c for c in ("image", *CLASS_NAMES, "label") if c not in frame]
    if missing:
        raise MedlitError(f"{path}: no column {missing[0]} (needs image, {', '.join(CLASS_NAMES)} and label)")
    return frame


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
    if not (run_dir / "metrics.json").is_file():
        raise MedlitError(f"{run_dir}: not a test run dir (no metrics.json)")
    if (run_dir / "probabilities.csv").is_file():
        return _read_csv(run_dir / "probabilities.csv")
    tau = json.loads((run_dir / "metrics.json").read_text()).get("decision_tau", 0.0)
    if tau == 0.0 and (run_dir / "predictions.csv").is_file():
        return _read_csv(run_dir / "predictions.csv")
    raise MedlitError(
        f"{run_dir}: no probabilities.csv, and its predictions.csv is shifted by decision τ {tau}; test it with "
        "--outputs.save_probabilities true"
    )


def _training_frequencies(run_dir: Path) -> list[float]:
    """The class frequencies of the run's training split (``split.csv``), as the model's decision τ uses them."""
    split = pd.read_csv(run_dir / "split.csv")
    labels = split.loc[split["split"] == "train", "label"].to_numpy(dtype=np.int64)
    return class_statistics(labels, "none", 0.0).frequencies


def _decide(
    probs: np.ndarray, tau: float, frequencies: Sequence[float], offsets: Sequence[float] | None = None
) -> np.ndarray:
    """Probabilities shifted by the decision τ and the class offsets, as :meth:`LesionClassifier.decided` shifts
    them."""
    if not tau and offsets is None:
        return probs
    log_frequencies = torch.log(torch.as_tensor(frequencies, dtype=torch.float32))
    shift = None if offsets is None else torch.as_tensor(offsets, dtype=torch.float32)
    return shifted_probabilities(torch.as_tensor(probs, dtype=torch.float32), tau, log_frequencies, shift).numpy()


def _write_scored(
    out: Path,
    ids: list[str],
    lesions: list[str],
    probs: np.ndarray,
    target: np.ndarray,
    checkpoint: str,
    decisions: dict[str, Any],
) -> dict[str, Any]:
    """``predictions.csv``, ``metrics.json`` (with intervals over the lesions; ``decisions``: the decision τ and
    any class offsets the probabilities were shifted by) and the report files in ``out``."""
    metrics = summarize_predictions(probs, target, np.full(len(ids), np.nan), checkpoint)
    metrics |= {key: value for key, value in decisions.items() if value is not None}
    metrics = with_intervals(metrics, ids, lesions, probs, target, BOOTSTRAP, 0)
    write_test_files(out, ids, probs, target, metrics, figures=True)
    return metrics


def _labels(frame: pd.DataFrame, path: Path) -> np.ndarray:
    index = {name: i for i, name in enumerate(CLASS_NAMES)}
    unknown = sorted(set(frame["label"]) - set(index))
    if unknown:
        raise MedlitError(f"{path}: label {unknown[0]!r} is not one of {', '.join(CLASS_NAMES)}")
    return frame["label"].map(index).to_numpy(dtype=np.int64)


# --- the out-of-fold pool ------------------------------------------------------------------------------------
OFFSETS_RULE = "decision τ + class offsets"
TAU_RULE = "decision τ"


def _decision_rules(
    log_probs: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    log_frequencies: np.ndarray,
    metric: str,
    tau: float,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The class offsets fitted on all the items on top of their decision ``tau`` (chosen on all of them), and both
    rules' cross-fitted scores (each group's items decided by the rule fitted on the other groups)."""

    def best_tau(lp: np.ndarray, t: np.ndarray) -> float:
        lp_t, f_t = torch.as_tensor(lp, dtype=torch.float32), torch.as_tensor(log_frequencies, dtype=torch.float32)
        return best_decision(decision_candidates(lp_t, torch.as_tensor(t), DECISION_TAUS, f_t), metric)

    def tau_offsets(lp: np.ndarray, t: np.ndarray) -> np.ndarray:
        return -best_tau(lp, t) * log_frequencies

    def class_offsets(lp: np.ndarray, t: np.ndarray) -> np.ndarray:
        return fit_class_offsets(lp, t, metric, tau_offsets(lp, t))

    cross_fitted = {}
    for name, fit in ((TAU_RULE, tau_offsets), (OFFSETS_RULE, class_offsets)):
        predicted = cross_fitted_decisions(log_probs, target, groups, fit)
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(predicted), log_probs.shape[1]).float()
        cross_fitted[name] = decision_scores(one_hot, torch.as_tensor(target))
    # the offsets as the model adds them: on top of the τ shift
    residual = fit_class_offsets(log_probs, target, metric, -tau * log_frequencies) + tau * log_frequencies
    use_offsets = cross_fitted[OFFSETS_RULE][metric] > cross_fitted[TAU_RULE][metric]
    values = {"decision_tau": tau, "decision_offsets": [round(float(v), 6) for v in residual] if use_offsets else None}
    return values, cross_fitted


def pool_out_of_fold(test_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
    """Pool the out-of-fold test runs into ``out`` and choose the decision rule on them (see the module docstring);
    returns the decisions (:class:`common.contracts.TaskEnsemble`)."""
    frames = []
    for run_dir in test_dirs:
        frame = raw_predictions(run_dir)
        frames.append(frame.assign(run=str(run_dir)))
    pooled = pd.concat(frames, ignore_index=True)
    repeated = pooled[pooled["image"].duplicated(keep=False)]
    if not repeated.empty:
        first = repeated.iloc[0]
        raise MedlitError(f"{first['run']}: image {first['image']} is in two out-of-fold runs; folds must not overlap")
    config = yaml.safe_load((test_dirs[0] / "config.yaml").read_text()) or {}
    metric = (config.get("model") or {}).get("selection_metric") or "bal_acc"
    # the frequencies the ensemble's τ will use: those of its settings' (the first fold's) training split
    frequencies = _training_frequencies(test_dirs[0])
    probs, target = pooled[list(CLASS_NAMES)].to_numpy(dtype=np.float64), _labels(pooled, test_dirs[0])
    log_probs = torch.as_tensor(probs, dtype=torch.float32).clamp_min(torch.finfo(torch.float32).tiny).log()
    log_frequencies = torch.log(torch.as_tensor(frequencies, dtype=torch.float32))
    candidates = decision_candidates(log_probs, torch.as_tensor(target), DECISION_TAUS, log_frequencies)
    groups = pooled["run"].astype("category").cat.codes.to_numpy()
    values, cross_fitted = _decision_rules(
        log_probs.numpy().astype(np.float64),
        target,
        groups,
        log_frequencies.numpy().astype(np.float64),
        metric,
        best_decision(candidates, metric),
    )
    derived_run_dir(out, test_dirs, subcommand="pool", pooled=[str(d) for d in test_dirs], **values)
    ids = pooled["image"].tolist()
    lesions = _lesions(test_dirs[0], ids)
    checkpoint = f"out-of-fold: each image by the model of the fold it validated ({len(test_dirs)} folds)"
    decided = _decide(probs, values["decision_tau"], frequencies, values["decision_offsets"])
    _write_scored(out, ids, lesions, decided, target, checkpoint, values)
    pooled[["image", "run"]].to_csv(out / "folds.csv", index=False)
    raw = pooled[["image", *CLASS_NAMES, "label"]].copy()
    raw.insert(1, "lesion_id", lesions)
    raw.to_csv(out / "probabilities.csv", index=False, float_format="%.6f")  # before τ, as the fold models gave them
    rule = OFFSETS_RULE if values["decision_offsets"] is not None else TAU_RULE
    scores = ", ".join(f"{name} {cross_fitted[name][metric]:.4f}" for name in (TAU_RULE, OFFSETS_RULE))
    args = [f"--model.decision_tau={values['decision_tau']}"]
    args += [f"--model.decision_offsets={values['decision_offsets']}"] if values["decision_offsets"] else []
    decisions = {
        "values": values,
        "args": args,
        "chosen_on": f"out-of-fold predictions of {len(pooled)} images ({len(test_dirs)} folds), maximising {metric}; "
        f"rule: {rule} (cross-fitted {metric}, each fold decided by the rule fitted on the other folds: {scores})",
        "rule": rule,
        "class_frequencies": frequencies,
        "candidates": {str(tau): scores for tau, scores in candidates.items()},
        "cross_fitted": cross_fitted,
    }
    write_json(out / "decisions.json", decisions)
    return decisions


# --- the ensemble of saved probabilities ---------------------------------------------------------------------
def average_probabilities(runs: Sequence[Path]) -> pd.DataFrame:
    """The mean probabilities before the decision τ of the runs (same images, same labels), in the first run's
    image order, with ``label``."""
    first = raw_predictions(runs[0])
    total = first[list(CLASS_NAMES)].to_numpy(dtype=np.float64)
    for run in runs[1:]:
        frame = raw_predictions(run)
        if set(frame["image"]) != set(first["image"]):
            image = sorted(set(frame["image"]) ^ set(first["image"]))[0]
            raise MedlitError(f"{run}: image {image} is in one member but not the other; members need the same images")
        frame = frame.set_index("image").loc[first["image"]]
        if (frame["label"].to_numpy() != first["label"].to_numpy()).any():
            raise MedlitError(f"{run}: labels differ from {runs[0]}'s for the same images")
        total += frame[list(CLASS_NAMES)].to_numpy(dtype=np.float64)
    averaged = first[["image", "label"]].copy()
    averaged[list(CLASS_NAMES)] = total / len(runs)
    return averaged


def ensemble_runs(
    runs: Sequence[Path], out: Path, decision_tau: float = 0.0, decision_offsets: Sequence[float] | None = None
) -> dict[str, Any]:
    """The ensemble of the runs' saved probabilities as a run dir ``out``; returns its ``metrics.json``."""
    if decision_offsets is not None and len(decision_offsets) != len(CLASS_NAMES):
        raise MedlitError(f"--decision-offsets needs {len(CLASS_NAMES)} numbers, got {len(decision_offsets)}")
    averaged = average_probabilities(runs)
    members = [{"given": str(run)} for run in runs]
    offsets = None if decision_offsets is None else [float(v) for v in decision_offsets]
    values = {"decision_tau": float(decision_tau), "decision_offsets": offsets}
    derived_run_dir(out, runs, subcommand="ensemble", ensemble=members, **values)
    frequencies = _training_frequencies(runs[0]) if decision_tau else [1.0] * len(CLASS_NAMES)
    probs = _decide(averaged[list(CLASS_NAMES)].to_numpy(dtype=np.float64), decision_tau, frequencies, offsets)
    checkpoint = f"ensemble of {len(runs)} runs' saved probabilities (run_info.json)"
    ids = averaged["image"].tolist()
    return _write_scored(out, ids, _lesions(runs[0], ids), probs, _labels(averaged, runs[0]), checkpoint, values)


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
        nargs=len(CLASS_NAMES),
        default=None,
        metavar="B",
        help=f"class offsets after the τ shift, {len(CLASS_NAMES)} numbers in the order {' '.join(CLASS_NAMES)}",
    )
    args = parser.parse_args(argv)
    try:
        metrics = ensemble_runs(args.runs, args.out, args.decision_tau, args.decision_offsets)
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"accuracy {metrics['accuracy']:.4f}, balanced accuracy {metrics['balanced_accuracy']:.4f}")
    print(f"run_dir: {args.out}")


if __name__ == "__main__":
    main()
