"""The summary of a cross-validation dir: each fold's numbers in ``folds.csv`` as the fold's own test run wrote them,
and the ensemble against each fold model on the same test items in ``ensemble_comparisons.csv``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest


@pytest.mark.slow
@pytest.mark.e2e
def test_seg_summary_compares_the_ensemble_with_each_fold_on_the_test_cases(seg_cv: Path) -> None:
    summary = (seg_cv / "summary.md").read_text()
    assert "fold ensemble on test" in summary and "out-of-fold, pooled" in summary
    folds = pd.read_csv(seg_cv / "folds.csv")
    assert list(folds["fold"]) == ["fold0", "fold1"] and folds["val_items"].sum() == 8
    for k in (0, 1):
        tested = json.loads((seg_cv / "runs" / f"fold{k}" / "metrics.json").read_text())
        assert folds.loc[k, "test_dice"] == pytest.approx(tested["dice"]["mean"], abs=1e-6)
    comparisons = pd.read_csv(seg_cv / "ensemble_comparisons.csv")
    assert set(zip(comparisons["run_a"], comparisons["run_b"], strict=True)) == {
        ("fold0", "ensemble"),
        ("fold1", "ensemble"),
    }
    dice = comparisons[(comparisons["metric"] == "dice") & (comparisons["test"] == "paired bootstrap")]
    ensemble = json.loads((seg_cv / "ensemble" / "metrics.json").read_text())["dice"]["mean"]
    assert dice["value_b"].to_numpy() == pytest.approx([ensemble, ensemble], abs=1e-6) and (dice["n_units"] == 3).all()
