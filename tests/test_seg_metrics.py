"""Segmentation metrics equal medpy's on varied shapes; the empty-mask policy holds."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from medpy.metric import binary as medpy
from scipy.ndimage import gaussian_filter

from volume_seg.metrics import (
    asd,
    assd,
    binary_case_metrics,
    case_metrics,
    case_summary,
    dc,
    hd95,
    jc,
    scored_items,
    summarize,
)


def _blob(shape: tuple[int, ...], seed: int, threshold: float = 0.6) -> np.ndarray:
    noise = gaussian_filter(np.random.default_rng(seed).normal(size=shape), sigma=max(shape) / 8)
    return noise > np.quantile(noise, threshold)


def _sphere(shape: tuple[int, int, int], center: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(shape).astype(float)
    return sum((g - c) ** 2 for g, c in zip(grid, center, strict=True)) <= radius**2


CASES = [
    # (result, reference, spacing): blobs, anisotropic spacing, masks touching the border, 2D, thin shapes
    (_blob((40, 36, 24), 0), _blob((40, 36, 24), 1), None),
    (_blob((40, 36, 24), 2), _blob((40, 36, 24), 3), (0.625, 0.625, 2.5)),
    (_blob((30, 30, 30), 4, 0.2), _blob((30, 30, 30), 5, 0.3), (1.0, 0.5, 3.0)),  # large, touch all faces
    (_sphere((32, 32, 20), (0, 16, 10), 9), _sphere((32, 32, 20), (3, 14, 12), 8), (0.8, 0.8, 1.5)),
    (_blob((64, 48), 6), _blob((64, 48), 7), (0.5, 2.0)),
    (np.pad(np.ones((1, 20, 1), bool), 2), np.pad(np.ones((2, 18, 1), bool), ((2, 1), (3, 3), (2, 2))), None),
]


@pytest.mark.parametrize(("result", "reference", "spacing"), CASES)
def test_equal_to_medpy(result: np.ndarray, reference: np.ndarray, spacing: tuple | None) -> None:
    assert result.any() and reference.any()
    assert dc(result, reference) == pytest.approx(medpy.dc(result, reference), abs=1e-12)
    assert jc(result, reference) == pytest.approx(medpy.jc(result, reference), abs=1e-12)
    assert hd95(result, reference, spacing) == pytest.approx(medpy.hd95(result, reference, spacing), abs=1e-9)
    assert asd(result, reference, spacing) == pytest.approx(medpy.asd(result, reference, spacing), abs=1e-9)
    assert asd(reference, result, spacing) == pytest.approx(medpy.asd(reference, result, spacing), abs=1e-9)
    assert assd(result, reference, spacing) == pytest.approx(medpy.assd(result, reference, spacing), abs=1e-9)
    combined = binary_case_metrics(result, reference, spacing)
    assert combined["hd95"] == pytest.approx(medpy.hd95(result, reference, spacing), abs=1e-9)
    assert combined["asd"] == pytest.approx(medpy.asd(result, reference, spacing), abs=1e-9)


def test_connectivity_matches_medpy() -> None:
    result, reference = _blob((24, 24, 24), 8), _blob((24, 24, 24), 9)
    for connectivity in (1, 2, 3):
        assert hd95(result, reference, (1, 1, 2), connectivity) == pytest.approx(
            medpy.hd95(result, reference, (1, 1, 2), connectivity)
        )


def test_hand_computed_distances() -> None:
    # two single voxels 3 apart along axis 0 with spacing 2 mm: every distance is 6 mm
    a = np.zeros((10, 5, 5), bool)
    b = a.copy()
    a[2, 2, 2], b[5, 2, 2] = True, True
    assert hd95(a, b, (2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert asd(a, b) == pytest.approx(3.0)  # voxels without spacing
    assert dc(a, b) == 0.0 and dc(a, a) == 1.0 and jc(a | b, b) == pytest.approx(0.5)


def test_empty_masks_are_never_perfect() -> None:
    reference = _sphere((20, 20, 20), (10, 10, 10), 5)
    empty = np.zeros_like(reference)
    for result, ref in ((empty, reference), (reference, empty), (empty, empty)):
        metrics = binary_case_metrics(result, ref, (1.0, 1.0, 1.0))
        assert math.isnan(metrics["hd95"]) and math.isnan(metrics["asd"])
    assert binary_case_metrics(empty, reference)["dice"] == 0.0
    assert binary_case_metrics(empty, reference)["empty_prediction"]
    assert math.isnan(binary_case_metrics(empty, empty)["dice"])


def test_multiclass_rows_and_summary() -> None:
    label = np.zeros((20, 20, 20), np.int64)
    label[_sphere(label.shape, (6, 10, 10), 4)] = 1
    label[_sphere(label.shape, (14, 10, 10), 4)] = 2
    prediction = np.roll(label, 1, axis=1)
    rows = case_metrics(prediction, label, num_classes=3, class_names=["bg", "anterior", "posterior"])
    assert [r["class"] for r in rows] == ["anterior", "posterior"]
    for c, row in enumerate(rows, start=1):
        assert row["dice"] == pytest.approx(medpy.dc(prediction == c, label == c))
        assert row["hd95"] == pytest.approx(medpy.hd95(prediction == c, label == c))
    empty_row = binary_case_metrics(np.zeros_like(label), label == 1)
    summary = summarize([*rows[:1], empty_row])
    assert summary["n_cases"] == 2 and summary["n_empty_prediction"] == 1
    assert summary["hd95"]["n_defined"] == 1 and summary["hd95"]["n_undefined"] == 1
    assert summary["hd95"]["mean"] == pytest.approx(rows[0]["hd95"])
    assert summary["dice"]["mean"] == pytest.approx(rows[0]["dice"] / 2)


def test_scored_cases_give_the_summary_means_and_resample_whole_cases() -> None:
    """Each case's metrics and each class's, as the summary averages them (undefined values left out), under
    unit weights; a resample's value is the mean over the drawn cases, repeated as drawn."""
    label = np.zeros((20, 20, 20), np.int64)
    label[_sphere(label.shape, (6, 10, 10), 4)] = 1
    label[_sphere(label.shape, (14, 10, 10), 4)] = 2
    rows = []
    for i, shift in enumerate((0, 1, 2)):
        prediction = np.roll(label, shift, axis=1)
        if i == 2:
            prediction[prediction == 2] = 0  # posterior missed: its HD95 and the case's are undefined
        rows += [{"case": f"c{i}", **r} for r in case_metrics(prediction, label, 3, None, ["bg", "ant", "post"])]
    table = pd.DataFrame(rows)
    items = scored_items(table)
    point = items.point()
    per_case = case_summary(table)
    summary = summarize(per_case.reset_index().to_dict("records"))
    for name in ("dice", "jaccard", "hd95", "asd"):
        assert point[name] == pytest.approx(summary[name]["mean"])
        for class_name, group in table.groupby("class"):
            assert point[f"{class_name}/{name}"] == pytest.approx(summarize(group.to_dict("records"))[name]["mean"])
    assert np.isnan(per_case.loc["c2", "hd95"]) and summary["hd95"]["n_defined"] == 2
    weights = np.array([[0.0, 0.0, 3.0], [2.0, 1.0, 0.0]])
    values = items.statistics(weights)
    assert np.isnan(values["hd95"][0])  # only the case without a defined HD95 was drawn
    dice = per_case["dice"].to_numpy()
    assert values["dice"][1] == pytest.approx((2 * dice[0] + dice[1]) / 3)
    assert items.item_tests["hd95"] == "Wilcoxon signed-rank" and items.size() == "3 cases"
