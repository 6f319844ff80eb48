"""Classification metrics, report and ROC against scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    auc,
    balanced_accuracy_score,
    classification_report,
    precision_recall_fscore_support,
    roc_auc_score,
    roc_curve,
)

from common.stats import resample_weights
from lesion_cls import CLASS_NAMES
from lesion_cls.metrics import (
    CLASS_OFFSET_GRID,
    DECISION_TAUS,
    SELECTION_METRICS,
    DecisionSearch,
    bootstrap_statistics,
    classification_metrics,
    classification_report_table,
    confusion_matrix,
    cross_fitted_decisions,
    fit_class_offsets,
    roc_curves,
    scored_items,
)


def _predictions(seed: int, n: int = 300, absent: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Noisy but informative probabilities: the true class gets a boost."""
    rng = np.random.default_rng(seed)
    classes = [c for c in range(7) if c not in absent]
    target = rng.choice(classes, size=n, p=np.linspace(3, 1, len(classes)) / np.linspace(3, 1, len(classes)).sum())
    logits = rng.normal(0, 1.0, (n, 7))
    logits[np.arange(n), target] += rng.uniform(0, 2.5, n)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return probs, target


@pytest.mark.parametrize(("seed", "absent"), [(0, ()), (1, ()), (2, (5,)), (3, (5, 6))])
def test_metrics_equal_sklearn(seed: int, absent: tuple[int, ...]) -> None:
    probs, target = _predictions(seed, absent=absent)
    pred = probs.argmax(axis=1)
    m = classification_metrics(probs, target)
    assert m["accuracy"] == pytest.approx(accuracy_score(target, pred), abs=1e-6)
    assert m["balanced_accuracy"] == pytest.approx(
        precision_recall_fscore_support(target, pred, average="macro", zero_division=0)[1], abs=1e-6
    )
    if not absent:
        assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(target, pred), abs=1e-6)
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(target, pred, average=average, zero_division=0)
        assert (m[f"precision_{average}"], m[f"recall_{average}"], m[f"f1_{average}"]) == pytest.approx(
            (p, r, f), abs=1e-6
        )
    p, r, f, s = precision_recall_fscore_support(target, pred, labels=range(7), zero_division=0)
    for i, name in enumerate(CLASS_NAMES):
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p[i], r[i], f[i]), abs=1e-6)
        assert row["support"] == s[i]
        if i in absent:
            assert np.isnan(row["auc"])
        else:
            assert row["auc"] == pytest.approx(roc_auc_score(target == i, probs[:, i]), abs=1e-6)


def test_report_table_equals_sklearn_report() -> None:
    probs, target = _predictions(4)
    table = classification_report_table(classification_metrics(probs, target))
    expected = classification_report(
        target, probs.argmax(axis=1), labels=range(7), target_names=CLASS_NAMES, output_dict=True, zero_division=0
    )
    assert list(table.index) == [*CLASS_NAMES, "accuracy", "macro avg", "weighted avg"]
    for name in [*CLASS_NAMES, "macro avg", "weighted avg"]:
        for column in ("precision", "recall", "f1-score", "support"):
            assert table.loc[name, column] == pytest.approx(expected[name][column], abs=1e-6), (name, column)
    assert table.loc["accuracy", "f1-score"] == pytest.approx(expected["accuracy"], abs=1e-6)


def test_roc_curves_equal_sklearn() -> None:
    probs, target = _predictions(5)
    curves = roc_curves(probs, target)
    for i, name in enumerate(CLASS_NAMES):
        fpr, tpr, _ = roc_curve(target == i, probs[:, i])
        assert curves[name]["auc"] == pytest.approx(auc(fpr, tpr), abs=1e-6)
        assert auc(curves[name]["fpr"], curves[name]["tpr"]) == pytest.approx(auc(fpr, tpr), abs=1e-6)
    onehot = np.eye(7)[target]
    assert curves["micro"]["auc"] == pytest.approx(roc_auc_score(onehot, probs, average="micro"), abs=1e-6)
    assert 0.5 < curves["macro"]["auc"] <= 1.0
    assert curves["macro"]["auc"] == pytest.approx(roc_auc_score(onehot, probs, average="macro"), abs=0.02)


def test_confusion_matrix_counts() -> None:
    probs, target = _predictions(6, n=50)
    counts = confusion_matrix(probs, target)
    expected = np.zeros((7, 7), dtype=int)
    np.add.at(expected, (target, probs.argmax(axis=1)), 1)
    np.testing.assert_array_equal(counts, expected)


def _over_balanced(seed: int, n: int = 700) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HAM-like class frequencies and logits pushed towards the rare classes, as a balanced sampler leaves them."""
    rng = np.random.default_rng(seed)
    frequencies = np.array([0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02])
    target = rng.choice(7, size=n, p=frequencies)
    logits = rng.normal(0.0, 1.0, (n, 7))
    logits[np.arange(n), target] += 1.5
    return logits - 0.8 * np.log(frequencies), target, frequencies


@pytest.mark.parametrize("selection_metric", SELECTION_METRICS)
def test_decision_search_scores_every_tau_as_sklearn(selection_metric: str) -> None:
    logits, target, frequencies = _over_balanced(0)
    log_f = torch.log(torch.tensor(frequencies, dtype=torch.float32))
    search = DecisionSearch(log_f, selection_metric=selection_metric)
    for rows in np.array_split(np.arange(len(target)), 6):  # one update per validation batch
        search.update(torch.tensor(logits[rows], dtype=torch.float32), torch.tensor(target[rows]))
    chosen = search.compute()
    by_sklearn = {}
    for tau in DECISION_TAUS:
        pred = (logits - tau * log_f.double().numpy()).argmax(axis=1)
        acc, bal_acc = accuracy_score(target, pred), balanced_accuracy_score(target, pred)
        by_sklearn[tau] = {"acc": acc, "bal_acc": bal_acc, "acc_bal_mean": (acc + bal_acc) / 2}
    best = max(scores[selection_metric] for scores in by_sklearn.values())
    assert by_sklearn[chosen["decision_tau"]][selection_metric] == pytest.approx(best, abs=1e-6)
    for name in ("acc", "bal_acc", "acc_bal_mean"):
        assert chosen[name] == pytest.approx(by_sklearn[chosen["decision_tau"]][name], abs=1e-6)
    # shifting decisions changes the scores: the search is not a no-op on these logits
    assert chosen[selection_metric] > by_sklearn[0.0][selection_metric] + 0.01


def test_decision_search_directions_and_ties() -> None:
    logits, target, frequencies = _over_balanced(1)
    log_f = torch.log(torch.tensor(frequencies, dtype=torch.float32))
    chosen = {}
    for metric in ("acc", "bal_acc"):
        search = DecisionSearch(log_f, selection_metric=metric)
        search.update(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
        chosen[metric] = search.compute()["decision_tau"]
    # accuracy favours the common classes more than balanced accuracy does
    assert chosen["acc"] < chosen["bal_acc"]
    # decisions that no tau in the grid can change: every tau ties, the smallest |tau| (0) wins
    certain = torch.nn.functional.one_hot(torch.tensor(target), 7).float() * 100.0
    search = DecisionSearch(log_f)
    search.update(certain, torch.tensor(target))
    assert search.compute() == {"acc": 1.0, "bal_acc": 1.0, "f1_macro": 1.0, "acc_bal_mean": 1.0, "decision_tau": 0.0}
    # one candidate: a plain metric of the decisions at that tau
    fixed = DecisionSearch(log_f, taus=(0.5,))
    fixed.update(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
    pred = (logits - 0.5 * log_f.double().numpy()).argmax(axis=1)
    result = fixed.compute()
    assert result["decision_tau"] == 0.5
    assert result["bal_acc"] == pytest.approx(balanced_accuracy_score(target, pred), abs=1e-6)


def _sklearn_score(metric: str, target: np.ndarray, predicted: np.ndarray) -> float:
    acc, bal = accuracy_score(target, predicted), balanced_accuracy_score(target, predicted)
    return {"acc": acc, "bal_acc": bal, "acc_bal_mean": (acc + bal) / 2}[metric]


@pytest.mark.parametrize("metric", SELECTION_METRICS)
def test_class_offsets_are_a_coordinate_optimum_scored_as_sklearn(metric: str) -> None:
    """No single class moved to any other grid value scores higher (re-scored with scikit-learn), the score is at
    least that of the start, and the most frequent class keeps its start value."""
    logits, target, frequencies = _over_balanced(3, n=600)
    log_p = torch.tensor(logits).log_softmax(dim=1).numpy()
    start = 0.25 * np.log(frequencies)  # a decision τ of -0.25, as the out-of-fold pool starts from
    offsets = fit_class_offsets(log_p, target, metric, start)
    fitted = _sklearn_score(metric, target, (log_p + offsets).argmax(axis=1))
    assert fitted >= _sklearn_score(metric, target, (log_p + start).argmax(axis=1))
    assert offsets[1] == start[1]  # NV, the most frequent class here
    assert not np.allclose(offsets, start)  # the fit moved something on these logits
    for c in (0, 2, 3, 4, 5, 6):
        for value in CLASS_OFFSET_GRID[::4]:
            moved = offsets.copy()
            moved[c] = value
            assert _sklearn_score(metric, target, (log_p + moved).argmax(axis=1)) <= fitted + 1e-12, (c, value)


def test_class_offsets_find_a_class_the_network_underrates() -> None:
    """A class whose logits are lowered by 2 for every image: balanced accuracy gets it back with an offset near 2."""
    rng = np.random.default_rng(4)
    target = rng.choice(7, size=2000, p=[0.2, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1])
    logits = rng.normal(0.0, 1.0, (2000, 7))
    logits[np.arange(2000), target] += 2.0
    logits[:, 5] -= 2.0
    log_p = torch.tensor(logits).log_softmax(dim=1).numpy()
    offsets = fit_class_offsets(log_p, target, "bal_acc", np.zeros(7))
    assert 1.2 < offsets[5] - np.median(offsets) < 2.8
    plain = balanced_accuracy_score(target, log_p.argmax(axis=1))
    assert balanced_accuracy_score(target, (log_p + offsets).argmax(axis=1)) > plain + 0.05


def test_cross_fitted_decisions_decide_each_group_by_a_fit_on_the_others() -> None:
    rng = np.random.default_rng(5)
    log_p, target = rng.normal(size=(30, 7)), rng.integers(0, 7, 30)
    groups = np.repeat([2, 0, 1], 10)
    seen: list[np.ndarray] = []

    def fit(lp: np.ndarray, t: np.ndarray) -> np.ndarray:  # a different shift for every fit, by what it saw
        seen.append(lp)
        offsets = np.zeros(7)
        offsets[len(seen) % 7] = 5.0
        return offsets

    predicted = cross_fitted_decisions(log_p, target, groups, fit)
    for k, group in enumerate(np.unique(groups)):
        held = groups == group
        np.testing.assert_array_equal(seen[k], log_p[~held])  # fitted without the group's own items
        shift = np.zeros(7)
        shift[(k + 1) % 7] = 5.0
        np.testing.assert_array_equal(predicted[held], (log_p[held] + shift).argmax(axis=1))


@pytest.mark.parametrize(("seed", "absent"), [(0, ()), (2, (5,))])
def test_resampled_metrics_equal_the_metrics_of_the_resampled_images(seed: int, absent: tuple[int, ...]) -> None:
    """The vectorised statistics of a weighted resample equal classification_metrics (torchmetrics) and sklearn's
    AUC on the images repeated as often as the resample draws them, also when a rare class drops out."""
    probs, target = _predictions(seed, n=120, absent=absent)
    lesions = np.arange(120) // 2  # two images per lesion
    weights = resample_weights(lesions, 12, seed=seed)
    values = bootstrap_statistics(probs, target)(weights)
    for b in range(len(weights)):
        rows = np.repeat(np.arange(120), weights[b].astype(int))
        ref = classification_metrics(probs[rows], target[rows])
        for name in ("accuracy", "balanced_accuracy", "f1_macro"):
            assert values[name][b] == pytest.approx(ref[name], abs=1e-6)
        assert values["acc_bal_mean"][b] == pytest.approx((ref["accuracy"] + ref["balanced_accuracy"]) / 2, abs=1e-6)
        aucs = [
            roc_auc_score(target[rows] == c, probs[rows, c])
            for c in range(7)
            if 0 < (target[rows] == c).sum() < len(rows)
        ]
        assert values["auc_macro"][b] == pytest.approx(np.mean(aucs), abs=1e-9)
        for c, name in enumerate(CLASS_NAMES):
            support = (target[rows] == c).sum()
            expected = ((probs[rows].argmax(axis=1) == c) & (target[rows] == c)).sum() / support if support else np.nan
            assert values[f"recall_{name}"][b] == pytest.approx(expected, nan_ok=True)


def test_unit_weights_give_the_reported_metrics_and_lesions_group_the_images() -> None:
    probs, target = _predictions(4, n=200)
    ids = [f"ISIC_{i:07d}" for i in range(200)]
    lesions = [f"HAM_{i // 3:07d}" for i in range(200)]
    items = scored_items(ids, lesions, probs, target)
    point, ref = items.point(), classification_metrics(probs, target)
    for name in ("accuracy", "balanced_accuracy", "f1_macro", "auc_macro"):
        assert point[name] == pytest.approx(ref[name], abs=1e-6)
    assert items.n_units == 67 and items.size() == "200 images / 67 lesions"
    assert items.item_tests == {"accuracy": "exact McNemar"}
    np.testing.assert_array_equal(items.per_item["accuracy"], probs.argmax(axis=1) == target)
