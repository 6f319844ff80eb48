"""The classifier's saved-probability ensemble and out-of-fold pool on hand-made run dirs: the decision rule chosen
on the pool, the files it writes, the averaged probabilities, and the mistakes refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.decisions import OFFSETS_RULE, TAU_RULE, choose_on_pool
from lesion_cls.ensemble import average_probabilities, ensemble_runs, pool_out_of_fold

N = 240
IDS = [f"ISIC_{i:07d}" for i in range(N)]
LESIONS = [f"HAM_{i // 2:07d}" for i in range(N)]


def _predictions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Informative probabilities ``[N, 7]`` of a network that underrates DF (class 5), and the labels."""
    rng = np.random.default_rng(seed)
    target = rng.choice(7, size=N, p=[0.12, 0.5, 0.1, 0.07, 0.11, 0.05, 0.05])
    logits = rng.normal(0.0, 1.0, (N, 7))
    logits[np.arange(N), target] += 2.0
    logits[:, 5] -= 2.0
    return torch.tensor(logits).softmax(dim=1).numpy(), target


def _run(root: Path, rows: np.ndarray, probs: np.ndarray, target: np.ndarray, metric: str = "bal_acc") -> Path:
    """A test run dir that saved its probabilities (``probabilities.csv``) for the images ``rows``."""
    root.mkdir(parents=True)
    (root / "config.yaml").write_text(f"model: {{selection_metric: {metric}}}\n")
    split = pd.DataFrame({"image_id": IDS, "lesion_id": LESIONS, "label": target, "split": "train"})
    split.to_csv(root / "split.csv", index=False)
    (root / "run_info.json").write_text(json.dumps({"task": "lesion_classification", "parameters": 10}))
    (root / "metrics.json").write_text("{}")
    frame = pd.DataFrame(probs[rows], columns=list(CLASS_NAMES))
    frame.insert(0, "image", np.asarray(IDS)[rows])
    frame.insert(1, "lesion_id", np.asarray(LESIONS)[rows])
    frame["label"] = [CLASS_NAMES[t] for t in target[rows]]
    frame.to_csv(root / "probabilities.csv", index=False, float_format="%.6f")
    return root


def _folds(root: Path, seed: int = 0) -> tuple[list[Path], np.ndarray]:
    """Three out-of-fold runs (every third image each) and the labels."""
    probs, target = _predictions(seed)
    return [_run(root / f"fold{k}", np.arange(N) % 3 == k, probs, target) for k in range(3)], target


def test_the_pool_chooses_on_every_image_once_and_writes_the_decisions(tmp_path: Path) -> None:
    runs, target = _folds(tmp_path / "runs")
    decisions = pool_out_of_fold(runs, tmp_path / "oof")
    out = tmp_path / "oof"
    assert json.loads((out / "decisions.json").read_text()) == decisions
    assert list(decisions) == ["values", "args", "chosen_on", "rule", "class_frequencies", "candidates", "cross_fitted"]
    # the same choice as the decision rules make on the pooled table (images in fold order, as read back)
    pooled = pd.concat([pd.read_csv(r / "probabilities.csv") for r in runs], ignore_index=True)
    order = [IDS.index(i) for i in pooled["image"]]
    frequencies = list((np.bincount(target, minlength=7) + 1.0) / (N + 7))  # the training split's, smoothed
    assert decisions["class_frequencies"] == pytest.approx(frequencies, abs=1e-12)
    groups = np.repeat([0, 1, 2], N // 3)
    choice = choose_on_pool(pooled[list(CLASS_NAMES)].to_numpy(), target[order], groups, frequencies, "bal_acc")
    assert decisions["values"] == choice.values and decisions["rule"] == choice.rule == OFFSETS_RULE
    tau, offsets = choice.values["decision_tau"], choice.values["decision_offsets"]
    assert decisions["args"] == [f"--model.decision_tau={tau}", f"--model.decision_offsets={offsets}"]
    assert decisions["chosen_on"].startswith(f"out-of-fold predictions of {N} images (3 folds), maximising bal_acc; ")
    assert f"{TAU_RULE} {choice.cross_fitted[TAU_RULE]['bal_acc']:.4f}" in decisions["chosen_on"]
    assert list(decisions["candidates"]) == [str(t) for t in choice.candidates]
    # the pool's files: each image once, its fold, the probabilities before and after the rule
    folds = pd.read_csv(out / "folds.csv")
    assert folds["image"].tolist() == pooled["image"].tolist() and folds["run"].nunique() == 3
    assert pd.read_csv(out / "probabilities.csv")["lesion_id"].tolist() == [LESIONS[i] for i in order]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["decision_tau"] == tau and metrics["decision_offsets"] == offsets
    assert metrics["checkpoint"] == "out-of-fold: each image by the model of the fold it validated (3 folds)"
    decided = np.log(pooled[list(CLASS_NAMES)].to_numpy()) - tau * np.log(frequencies) + np.array(offsets)
    expected = balanced_accuracy_score(target[order], decided.argmax(axis=1))
    assert metrics["balanced_accuracy"] == pytest.approx(expected, abs=1e-6)  # torchmetrics in float32
    assert metrics["n_images"] == N and metrics["ci_unit"] == "lesion" and metrics["n_units"] == N // 2
    info = json.loads((out / "run_info.json").read_text())
    assert info["subcommand"] == "pool" and info["decision_offsets"] == offsets


def test_the_pool_refuses_overlapping_folds(tmp_path: Path) -> None:
    probs, target = _predictions(1)
    runs = [_run(tmp_path / f"fold{k}", np.arange(N) < 100 + 40 * k, probs, target) for k in range(2)]
    with pytest.raises(MedlitError, match=r"fold0: image ISIC_0000000 is in two out-of-fold runs; folds must not"):
        pool_out_of_fold(runs, tmp_path / "oof")
    assert not (tmp_path / "oof").exists()


def test_the_ensemble_averages_then_applies_the_rule(tmp_path: Path) -> None:
    every = np.ones(N, dtype=bool)
    (probs_a, target), (probs_b, _) = _predictions(2), _predictions(3)
    runs = [_run(tmp_path / "a", every, probs_a, target), _run(tmp_path / "b", every, probs_b, target)]
    averaged = average_probabilities(runs)
    read = [pd.read_csv(r / "probabilities.csv")[list(CLASS_NAMES)].to_numpy() for r in runs]
    np.testing.assert_allclose(averaged[list(CLASS_NAMES)].to_numpy(), (read[0] + read[1]) / 2, rtol=0, atol=1e-15)
    offsets = [0.0, 0.0, 0.0, 0.0, 0.0, 1.5, 0.0]
    metrics = ensemble_runs(runs, tmp_path / "ens", 0.5, offsets)
    frequencies = (np.bincount(target, minlength=7) + 1.0) / (N + 7)
    shifted = np.log((read[0] + read[1]) / 2) - 0.5 * np.log(frequencies) + offsets
    by_hand = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    written = pd.read_csv(tmp_path / "ens" / "predictions.csv")[list(CLASS_NAMES)].to_numpy()
    np.testing.assert_allclose(written, by_hand, atol=2e-6)
    written_metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert list(metrics) == list(written_metrics) and metrics["ci95"] == written_metrics["ci95"]  # what was written
    assert metrics["loss"] != metrics["loss"] and written_metrics["loss"] is None  # no loss without logits: null
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(target, by_hand.argmax(1)), abs=1e-6)
    assert (metrics["decision_tau"], metrics["decision_offsets"]) == (0.5, offsets)
    assert metrics["ci_resamples"] == 2000 and "recall_ci95" in metrics["per_class"]["DF"]
    with pytest.raises(MedlitError, match=r"--decision-offsets needs 7 numbers \(one per class: MEL .* VASC\), got 2"):
        ensemble_runs(runs, tmp_path / "ens2", 0.0, [1.0, 2.0])
    other = _run(tmp_path / "c", np.arange(N) < N - 1, probs_b, target)
    with pytest.raises(MedlitError, match="c: image ISIC_0000239 is in one member but not the other"):
        average_probabilities([runs[0], other])


def test_a_shifted_table_is_not_averaged(tmp_path: Path) -> None:
    probs, target = _predictions(4)
    run = _run(tmp_path / "shifted", np.ones(N, dtype=bool), probs, target)
    (run / "probabilities.csv").rename(run / "predictions.csv")
    (run / "metrics.json").write_text('{"decision_tau": 0.5}')
    with pytest.raises(MedlitError, match="predictions.csv is shifted by decision τ 0.5; test it with"):
        average_probabilities([run])
