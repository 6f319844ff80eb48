"""Which decision rule a classifier's out-of-fold pool supports: each rule cross-fitted by fold and paired with
arg-max on the same images, resampling lesions.

``python -m benchmarks.ham_decision_rules CV_DIR/oof [--out FILE.md]`` reads the pool a cross-validation wrote
(``probabilities.csv``: each image's probabilities before any decision τ, from the fold model that did not train on
it; ``folds.csv``; ``decisions.json``: the training split's class frequencies) and decides every image with each rule
of :data:`RULES`, fitted on the other folds' images alone (:func:`lesion_cls.decisions.cross_fitted_decisions`), so
no rule is scored on the images that chose it. Each rule is paired with arg-max (τ 0) by the paired bootstrap over
lesions (:func:`common.stats.paired_bootstrap`): the difference in accuracy and balanced accuracy with its 95 %
interval and the minimum difference the pool could detect (two-sided 5 %, 80 % power). No test image is read.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import MedlitError, exit_on_error
from common.intervals import minimum_detectable_difference
from common.stats import paired_bootstrap
from common.text import markdown_table, signed_interval
from lesion_cls.decisions import cross_fitted_decisions, tau_and_offsets_rule, tau_rule
from lesion_cls.metrics import scored_items

Fit = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""``(log_probs, target) -> offsets [C]``: a rule fitted on some images, applied as ``argmax(log p + offsets)``."""


def _fixed_tau(tau: float, log_frequencies: np.ndarray) -> Fit:
    return lambda lp, t: -tau * log_frequencies


RULES: dict[str, Callable[[np.ndarray], Fit]] = {
    "arg-max (τ 0)": lambda f: _fixed_tau(0.0, f),
    "τ 1 (the balanced-error rule)": lambda f: _fixed_tau(1.0, f),
    "τ chosen for accuracy": lambda f: tau_rule("acc", f),
    "τ chosen for balanced accuracy": lambda f: tau_rule("bal_acc", f),
    "τ chosen for their mean (the recipe's)": lambda f: tau_rule("acc_bal_mean", f),
    "τ + class offsets for their mean": lambda f: tau_and_offsets_rule("acc_bal_mean", f),
    "τ + class offsets for balanced accuracy": lambda f: tau_and_offsets_rule("bal_acc", f),
}
"""The rules compared, each built from the training split's log class frequencies."""


def read_pool(pool: Path) -> tuple[pd.DataFrame, list[str], np.ndarray]:
    """The pool's images (``image``, ``lesion_id``, ``label`` index, ``fold``), its class names and the training
    class frequencies; one line naming the file when one is missing or does not fit."""
    files = {name: pool / name for name in ("probabilities.csv", "folds.csv", "decisions.json")}
    for path in files.values():
        if not path.is_file():
            raise MedlitError(f"{path}: not found; give the oof/ dir of a `python -m common.studies.cv lesion_cls` run")
    probs = pd.read_csv(files["probabilities.csv"])
    frequencies = json.loads(files["decisions.json"].read_text()).get("class_frequencies")
    names = [c for c in probs.columns if c not in ("image", "lesion_id", "label")]
    if not frequencies or len(frequencies) != len(names):
        raise MedlitError(f"{files['decisions.json']}: class_frequencies must list one frequency per class {names}")
    folds = pd.read_csv(files["folds.csv"]).set_index("image")["run"]
    missing = sorted(set(probs["image"]) - set(folds.index))
    if missing:
        raise MedlitError(f"{files['folds.csv']}: image {missing[0]} of probabilities.csv has no fold")
    unknown = sorted(set(probs["label"].astype(str)) - set(names))
    if unknown:
        raise MedlitError(f"{files['probabilities.csv']}: label {unknown[0]!r} is not one of {', '.join(names)}")
    probs["fold"] = probs["image"].map(folds).astype("category").cat.codes
    probs["label"] = probs["label"].astype(str).map({name: k for k, name in enumerate(names)})
    return probs, names, np.log(np.asarray(frequencies, dtype=np.float64))


def compare_rules(pool: pd.DataFrame, names: list[str], log_frequencies: np.ndarray, n_resamples: int) -> pd.DataFrame:
    """One row per rule of :data:`RULES`: its cross-fitted accuracy and balanced accuracy, and its difference from
    arg-max (rule minus arg-max) with the 95 % interval over lesions and the minimum detectable difference."""
    log_probs = np.log(np.clip(pool[names].to_numpy(dtype=np.float64), np.finfo(np.float64).tiny, None))
    target, folds = pool["label"].to_numpy(dtype=np.int64), pool["fold"].to_numpy()
    images, lesions = pool["image"].to_numpy(), pool["lesion_id"].to_numpy()

    def items(decided: np.ndarray):  # one-hot decisions: the scores of these decisions, resampled by lesion
        return scored_items(images, lesions, np.eye(len(names))[decided], target, names)

    argmax = items(log_probs.argmax(axis=1))
    rows = []
    for rule, build in RULES.items():
        decided = items(cross_fitted_decisions(log_probs, target, folds, build(log_frequencies)))
        paired = paired_bootstrap(argmax, decided, n_resamples=n_resamples)
        row = {"rule": rule}
        for metric, short in (("accuracy", "acc"), ("balanced_accuracy", "bal")):
            d = paired[metric]
            row[short] = f"{d['value_b']:.3f}"
            row[f"Δ{short} (95% interval)"] = signed_interval(d["delta"], d["ci_low"], d["ci_high"])
            row[f"Δ{short} detectable"] = f"{minimum_detectable_difference(d['se']):.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ham_decision_rules", description=__doc__.split("\n")[0])
    parser.add_argument("pool", type=Path, help="the oof/ dir of a classifier cross-validation")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the lesions")
    parser.add_argument("--out", type=Path, help="also write the table here (markdown)")
    args = parser.parse_args(argv)
    with exit_on_error():
        pool, names, log_frequencies = read_pool(args.pool)
        table = compare_rules(pool, names, log_frequencies, args.resamples)
        text = (
            f"Decision rules on {len(pool)} out-of-fold images / {pool['lesion_id'].nunique()} lesions of {args.pool} "
            f"({pool['fold'].nunique()} folds, each decided by the rule fitted on the other folds); Δ: rule minus "
            "arg-max, 95 % paired bootstrap interval over lesions; detectable: two-sided 5 %, 80 % power\n\n"
            + markdown_table(table)
        )
        print(text)
        if args.out:
            args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
