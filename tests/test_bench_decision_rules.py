"""The decision-rule ablation of an out-of-fold pool (benchmarks/ham_decision_rules.py), checked with scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from benchmarks.ham_decision_rules import compare_rules, main, read_pool

NAMES = ["MEL", "NV", "BCC"]
FREQUENCIES = [0.2, 0.7, 0.1]


def _pool(folder: Path, n: int = 300, seed: int = 0) -> Path:
    """A pool of a classifier that leans towards NV: three folds, two images per lesion."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, size=n, p=FREQUENCIES)
    logits = rng.normal(size=(n, 3)) + 1.5 * np.eye(3)[labels] + np.log(FREQUENCIES)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    images = [f"img{i}" for i in range(n)]
    frame = pd.DataFrame({"image": images, "lesion_id": [f"les{i // 2}" for i in range(n)]})
    frame[NAMES] = probs
    frame["label"] = [NAMES[k] for k in labels]
    folder.mkdir()
    frame.to_csv(folder / "probabilities.csv", index=False)
    folds = pd.DataFrame({"image": images, "run": [f"fold{(i // 2) % 3}" for i in range(n)]})
    folds.to_csv(folder / "folds.csv", index=False)
    (folder / "decisions.json").write_text(json.dumps({"class_frequencies": FREQUENCIES}))
    return folder


def test_fixed_rules_score_as_sklearn_and_argmax_pairs_with_itself(tmp_path: Path) -> None:
    pool_dir = _pool(tmp_path / "oof")
    pool, names, log_f = read_pool(pool_dir)
    table = compare_rules(pool, names, log_f, n_resamples=100).set_index("rule")
    probs, truth = pool[names].to_numpy(), pool["label"].to_numpy()

    first = table.loc["arg-max (τ 0)"]
    assert first["Δacc (95% interval)"] == "+0.000 (+0.000 to +0.000)"
    assert float(first["acc"]) == pytest.approx(accuracy_score(truth, probs.argmax(1)), abs=5e-4)

    balanced = (np.log(probs) - log_f).argmax(1)  # τ 1 needs no fit: the same decisions in every fold
    row = table.loc["τ 1 (the balanced-error rule)"]
    assert float(row["bal"]) == pytest.approx(balanced_accuracy_score(truth, balanced), abs=5e-4)
    assert float(row["acc"]) == pytest.approx(accuracy_score(truth, balanced), abs=5e-4)
    # a classifier that leans towards NV: dividing out the prior raises balanced accuracy
    gain = balanced_accuracy_score(truth, balanced) - balanced_accuracy_score(truth, probs.argmax(1))
    assert gain > 0 and float(row["Δbal (95% interval)"].split()[0]) == pytest.approx(gain, abs=5e-4)
    assert float(row["Δbal detectable"]) > 0


def test_a_pool_without_its_files_or_with_unknown_labels_is_one_line(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "probabilities.csv: not found" in capsys.readouterr().err

    pool_dir = _pool(tmp_path / "oof")
    frame = pd.read_csv(pool_dir / "probabilities.csv")
    frame.loc[3, "label"] = "DF"
    frame.to_csv(pool_dir / "probabilities.csv", index=False)
    with pytest.raises(SystemExit):
        main([str(pool_dir)])
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "label 'DF' is not one of MEL, NV, BCC" in err
