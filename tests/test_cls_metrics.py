"""Classification metrics, report, ROC and the resampled metrics against scikit-learn on the same predictions."""

from __future__ import annotations

import numpy as np
import pytest
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
    bootstrap_statistics,
    classification_metrics,
    classification_report_table,
    confusion_matrix,
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
