"""Bootstrap intervals: the vectorised statistics against the naive loop over resamples, in the same run.

``python -m benchmarks.bench_bootstrap`` times, on generated predictions of HAM10000's class mix:

* classification: ``--resamples`` lesion-grouped resamples of ``--images`` test images (two per lesion) scored
  for balanced accuracy and macro AUC, by :func:`lesion_cls.metrics.bootstrap_statistics` (one confusion matrix
  per resample through ``bincount``, weighted AUC) against the naive loop (for each resample, repeat the images
  as drawn and call sklearn's ``balanced_accuracy_score`` and ``roc_auc_score`` per class). The naive loop runs
  ``--naive-resamples`` resamples and its time is scaled to ``--resamples``.
* segmentation: the four per-case metrics over ``--cases`` cases (:func:`volume_seg.metrics.scored_items`)
  against a loop of ``np.nanmean`` per resample.

It prints both times, the speed-up, and the largest difference between the two on the resamples both computed
(must be <= 1e-9).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

from benchmarks.results_file import record
from common.stats import resample_weights
from lesion_cls.metrics import bootstrap_statistics
from volume_seg.metrics import METRIC_NAMES, scored_items

_HAM_MIX = np.array([1113, 6705, 514, 327, 1099, 115, 142], dtype=float)  # MEL NV BCC AKIEC BKL DF VASC


def _predictions(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.choice(7, n, p=_HAM_MIX / _HAM_MIX.sum())
    logits = rng.normal(size=(n, 7))
    logits[np.arange(n), target] += rng.uniform(0, 3, n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs.round(6), target  # as predictions.csv stores them: ties in the scores happen


def _naive_classification(probs: np.ndarray, target: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    bal, auc = [], []
    for row in weights:
        rows = np.repeat(np.arange(len(target)), row.astype(int))
        t, p = target[rows], probs[rows]
        with np.errstate(all="ignore"):
            bal.append(balanced_accuracy_score(t, p.argmax(axis=1)))
        present = [c for c in range(7) if 0 < (t == c).sum() < len(t)]
        auc.append(np.mean([roc_auc_score(t == c, p[:, c]) for c in present]))
    return {"balanced_accuracy": np.array(bal), "auc_macro": np.array(auc)}


def _cases(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dice = rng.uniform(0.75, 0.95, n)
    hd95 = rng.gamma(2.0, 3.0, n)
    hd95[rng.random(n) < 0.1] = np.nan  # an empty prediction now and then
    return pd.DataFrame(
        {
            "case": [f"case{i:03d}" for i in range(n)],
            "class": "left_atrium",
            "dice": dice,
            "jaccard": dice / (2 - dice),
            "hd95": hd95,
            "asd": hd95 / 3,
            "empty_prediction": np.isnan(hd95),
            "empty_reference": False,
        }
    )


def _naive_cases(table: pd.DataFrame, weights: np.ndarray) -> dict[str, np.ndarray]:
    out = {name: [] for name in METRIC_NAMES}
    for row in weights:
        drawn = table.iloc[np.repeat(np.arange(len(table)), row.astype(int))]
        for name in METRIC_NAMES:
            out[name].append(np.nanmean(drawn[name].to_numpy()) if drawn[name].notna().any() else np.nan)
    return {name: np.array(values) for name, values in out.items()}


def _timed(fn, *args) -> tuple[float, dict]:
    start = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - start, result


def _largest_difference(ours: dict, naive: dict, rows: int) -> float:
    return max(float(np.nanmax(np.abs(ours[name][:rows] - naive[name]))) for name in naive)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--naive-resamples", type=int, default=200)
    args = parser.parse_args(argv)
    lines = []

    probs, target = _predictions(args.images)
    lesions = np.arange(args.images) // 2
    weights = resample_weights(lesions, args.resamples, seed=0)
    statistics = bootstrap_statistics(probs, target)
    ours_s, ours = _timed(statistics, weights)
    naive_s, naive = _timed(_naive_classification, probs, target, weights[: args.naive_resamples])
    naive_full = naive_s * args.resamples / args.naive_resamples
    lines.append(
        f"- classification, {args.images} images / {args.images // 2} lesions, {args.resamples} resamples, balanced "
        f"accuracy + macro AUC (+ accuracy, macro F1, per-class recall): vectorised {ours_s:.2f} s, naive sklearn "
        f"loop {naive_full:.1f} s (measured on {args.naive_resamples} resamples, scaled): "
        f"**{naive_full / ours_s:.0f}x**; largest difference "
        f"{_largest_difference(ours, naive, args.naive_resamples):.1e}"
    )
    print(lines[-1], flush=True)

    table = _cases(args.cases)
    items = scored_items(table)
    case_weights = resample_weights(items.units, args.resamples, seed=0)
    ours_s, ours = _timed(items.statistics, case_weights)
    naive_s, naive = _timed(_naive_cases, table, case_weights)
    lines.append(
        f"- segmentation, {args.cases} cases, {args.resamples} resamples of Dice, Jaccard, HD95, ASD: vectorised "
        f"{ours_s * 1000:.1f} ms, naive loop {naive_s:.2f} s: **{naive_s / ours_s:.0f}x**; largest difference "
        f"{_largest_difference(ours, naive, args.resamples):.1e}"
    )
    print(lines[-1], flush=True)
    path = record("Bootstrap intervals against the naive loop", lines, "python -m benchmarks.bench_bootstrap")
    print(f"results: {path}")


if __name__ == "__main__":
    main()
