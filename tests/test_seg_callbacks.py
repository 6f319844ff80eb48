"""SegmentationOutputs without a Trainer: fake test/predict batches in, the run-dir files checked against medpy."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from medpy.metric import binary as medpy
from PIL import Image

from common.errors import MedlitError
from volume_seg.callbacks import SegmentationOutputs, default_eval_workers

SHAPE = (20, 20, 12)
COLUMNS = ["case", "class", "dice", "jaccard", "hd95", "asd", "distance_unit", "empty_prediction", "empty_reference"]
CSV_TOL = 1e-6  # metrics_per_case.csv is written with 6 decimals


def _trainer(root: Path, *, is_global_zero: bool = True) -> SimpleNamespace:
    return SimpleNamespace(
        default_root_dir=str(root),
        is_global_zero=is_global_zero,
        ckpt_path=None,
        datamodule=SimpleNamespace(test_dataset=None),
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        num_devices=1,
    )


def _module(class_names: list[str] | None = None) -> SimpleNamespace:
    """The module's attributes the callback reads; ``log`` records what the callback logs in ``logged``."""
    names = class_names or ["background", "foreground"]
    module = SimpleNamespace(
        num_classes=len(names), class_names=names, hparams=SimpleNamespace(largest_component=False), logged={}
    )
    module.log = lambda name, value, **kwargs: module.logged.__setitem__(name, value)
    return module


def _case_loss(case: str) -> float:
    return 0.1 * len(case) + 0.01 * sum(map(ord, case)) % 7  # a different loss per case


def _box(lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
    return mask


def _sphere(center: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE, dtype=float)
    return (sum((g - c) ** 2 for g, c in zip(grid, center, strict=True)) <= radius**2).astype(np.uint8)


def _affine(spacing: tuple[float, float, float] | None, shift: float) -> np.ndarray:
    affine = np.diag([*(spacing or (1.0, 1.0, 1.0)), 1.0])
    affine[:3, 3] = (-shift, 2.5, shift)
    return affine


def _batch(case: str, mask: np.ndarray, label: np.ndarray | None, spacing: tuple | None, shift: float = 0.0) -> tuple:
    """``(outputs, batch)`` as the module's test step returns them and the data loader yields them."""
    rng = np.random.default_rng(len(case))
    image = rng.normal(size=SHAPE) + 2.0 * (label if label is not None else mask)
    batch: dict[str, Any] = {
        "case": [case],
        "image": torch.as_tensor(image, dtype=torch.float32)[None, None],
        "spacing": torch.tensor([spacing if spacing is not None else (float("nan"),) * 3], dtype=torch.float64),
        "affine": torch.as_tensor(_affine(spacing, shift))[None],
    }
    if label is not None:
        batch["label"] = torch.as_tensor(label, dtype=torch.long)[None, None]
    return {"mask": torch.as_tensor(mask, dtype=torch.long)[None, None], "loss": _case_loss(case)}, batch


def _run(callback: SegmentationOutputs, trainer: Any, module: Any, cases: list[tuple], stage: str = "test") -> None:
    getattr(callback, f"on_{stage}_epoch_start")(trainer, module)
    for batch_idx, case in enumerate(cases):
        outputs, batch = _batch(*case)
        getattr(callback, f"on_{stage}_batch_end")(trainer, module, outputs, batch, batch_idx)
    getattr(callback, f"on_{stage}_epoch_end")(trainer, module)


def _medpy_row(mask: np.ndarray, label: np.ndarray, spacing: tuple | None) -> dict[str, float]:
    """The reference values; hd95/asd only where both masks are non-empty (medpy raises otherwise)."""
    row = {"dice": medpy.dc(mask, label), "jaccard": medpy.jc(mask, label), "hd95": np.nan, "asd": np.nan}
    if mask.any() and label.any():
        row["hd95"] = medpy.hd95(mask, label, voxelspacing=spacing)
        row["asd"] = medpy.asd(mask, label, voxelspacing=spacing)
    return row


def _assert_row(row: pd.Series, reference: dict[str, float], tol: float) -> None:
    for name, value in reference.items():
        if np.isnan(value):
            assert np.isnan(row[name]), (row["case"], name, row[name])
        else:
            assert row[name] == pytest.approx(value, abs=tol), (row["case"], name)


SPACING = (0.8, 0.8, 1.5)
BINARY_CASES = {
    # case: (prediction, reference, spacing or None)
    "c1": (_box((6, 5, 2), (14, 13, 10)), _sphere((10, 10, 6), 5), None),
    "c2": (_sphere((10, 10, 6), 4), _sphere((9, 11, 5), 4.5), SPACING),
    "c3": (np.zeros(SHAPE, np.uint8), _box((4, 4, 3), (12, 9, 8)), (1.0, 1.0, 2.0)),  # empty prediction
    "c4": (_box((2, 2, 2), (5, 6, 4)), np.zeros(SHAPE, np.uint8), None),  # empty reference
}


@pytest.mark.parametrize("eval_workers", [0, 2], ids=["inline", "2-workers"])
def test_binary_metrics_equal_medpy(tmp_path: Path, eval_workers: int) -> None:
    order = ["c2", "c1", "c3", "c4", "c1"]  # c1 again at the end, as a distributed sampler pads
    shifts = {case: 3.0 * i for i, case in enumerate(BINARY_CASES)}  # a distinct affine per case
    cases = [(case, *BINARY_CASES[case], shifts[case]) for case in order]
    module = _module()
    callback = SegmentationOutputs(overlays=False, views_3d=False, eval_workers=eval_workers)
    _run(callback, _trainer(tmp_path), module, cases)
    assert callback._workers._pool is None  # the worker processes are gone when the epoch ends

    table = pd.read_csv(tmp_path / "metrics_per_case.csv")
    assert list(table.columns) == COLUMNS  # binary: no merged-classes column
    assert table["case"].tolist() == ["c1", "c2", "c3", "c4"]  # once each, sorted
    assert set(table["class"]) == {"foreground"}
    references = {}
    for _, row in table.iterrows():
        mask, label, spacing = BINARY_CASES[row["case"]]
        references[row["case"]] = _medpy_row(mask, label, spacing)
        _assert_row(row, references[row["case"]], CSV_TOL)
        assert row["distance_unit"] == ("mm" if spacing is not None else "voxels")
        assert row["empty_prediction"] == (not mask.any())
        assert row["empty_reference"] == (not label.any())
    assert (table.loc[table["case"] == "c3", ["dice", "jaccard"]].to_numpy() == 0).all()
    assert table.loc[table["case"].isin(["c3", "c4"]), ["hd95", "asd"]].isna().all().all()  # NaN, never 0

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_cases"] == 4
    for name in ("dice", "jaccard", "hd95", "asd"):
        values = np.array([references[c][name] for c in sorted(references)])
        defined = values[~np.isnan(values)]
        assert metrics[name]["mean"] == pytest.approx(defined.mean(), abs=1e-9)
        assert metrics[name]["std"] == pytest.approx(defined.std(), abs=1e-9)
        assert metrics[name]["n_defined"] == len(defined)
        assert metrics[name]["n_undefined"] == len(values) - len(defined)
        assert metrics[name]["mean"] == pytest.approx(table[name].mean(), abs=CSV_TOL)  # the CSV column's mean
    assert metrics["hd95"]["n_undefined"] == 2
    assert (metrics["n_empty_prediction"], metrics["n_empty_reference"]) == (1, 1)
    assert metrics["per_class"]["foreground"]["dice"]["mean"] == pytest.approx(metrics["dice"]["mean"], abs=1e-12)
    assert metrics["distance_unit"] == "mm/voxels"
    assert metrics["units"]["hd95"] == "mm/voxels" and metrics["units"]["dice"] == "fraction (0-1)"
    assert metrics["largest_component"] is False
    unique_cases = sorted({case[0] for case in cases})
    assert metrics["loss"] == pytest.approx(np.mean([_case_loss(c) for c in unique_cases]), abs=1e-12)
    # one number per metric: what is logged is what metrics.json holds
    assert module.logged == {f"test/{m}": metrics[m]["mean"] for m in ("dice", "jaccard", "hd95", "asd")} | {
        "test/loss": metrics["loss"]
    }
    assert metrics["checkpoint"] == "current weights"

    for case in BINARY_CASES:
        image = nib.load(tmp_path / "predictions" / f"{case}.nii.gz")
        assert image.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(image.dataobj), BINARY_CASES[case][0])
        np.testing.assert_allclose(image.affine, _affine(BINARY_CASES[case][2], shifts[case]), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "metrics_per_case.csv", "predictions"]
    assert not list(tmp_path.rglob(".*"))  # no temporary files left


def test_single_unit_in_mm(tmp_path: Path) -> None:
    mask, label, _ = BINARY_CASES["c1"]
    _run(
        SegmentationOutputs(overlays=False, views_3d=False),
        _trainer(tmp_path),
        _module(),
        [("s", mask, label, SPACING)],
    )
    table = pd.read_csv(tmp_path / "metrics_per_case.csv")
    _assert_row(table.iloc[0], _medpy_row(mask, label, SPACING), CSV_TOL)
    # the same masks in voxels give other distances: the spacing really reached the metric
    assert table["hd95"].iloc[0] != pytest.approx(medpy.hd95(mask, label), abs=1e-3)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["distance_unit"] == "mm" and metrics["units"]["asd"] == "mm"
    assert metrics["hd95"]["mean"] == pytest.approx(medpy.hd95(mask, label, voxelspacing=SPACING), abs=1e-9)


def test_multiclass_rows_per_foreground_class(tmp_path: Path) -> None:
    names = ["background", "a", "b"]
    label1 = _sphere((6, 6, 6), 4) + 2 * _box((12, 10, 3), (18, 18, 9))
    pred1 = _sphere((7, 6, 5), 4) + 2 * _box((11, 11, 4), (18, 17, 10))
    label2 = _box((3, 3, 3), (9, 9, 9)) + 2 * _sphere((14, 14, 6), 3.5)
    pred2 = _box((3, 4, 3), (9, 10, 8))  # class b missed entirely
    volumes = {"m1": (pred1, label1, None), "m2": (pred2, label2, SPACING)}
    cases = [(case, *volumes[case]) for case in ("m1", "m2")]
    _run(SegmentationOutputs(overlays=False, views_3d=False), _trainer(tmp_path), _module(names), cases)

    table = pd.read_csv(tmp_path / "metrics_per_case.csv")
    assert list(zip(table["case"], table["class"], strict=True)) == [("m1", "a"), ("m1", "b"), ("m2", "a"), ("m2", "b")]
    per_case: dict[str, list[dict[str, float]]] = {}
    for _, row in table.iterrows():
        pred, label, spacing = volumes[row["case"]]
        c = names.index(row["class"])
        reference = _medpy_row(pred == c, label == c, spacing)
        _assert_row(row, reference, CSV_TOL)
        per_case.setdefault(row["case"], []).append(reference)
        assert row["empty_prediction"] == (not (pred == c).any())
    assert table["empty_prediction"].tolist() == [False, False, False, True]

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"a", "b"}
    # case values average the classes (ignoring undefined ones), the summary averages the cases
    case_dice = [np.mean([r["dice"] for r in rows]) for rows in per_case.values()]
    assert metrics["dice"]["mean"] == pytest.approx(np.mean(case_dice), abs=1e-9)
    # a class missed entirely makes the case's distance undefined (not the other class's distance)
    case_hd95 = [np.mean([r["hd95"] for r in rows]) for rows in per_case.values()]
    assert np.isnan(case_hd95[1]) and metrics["hd95"]["n_undefined"] == 1
    assert metrics["hd95"]["mean"] == pytest.approx(case_hd95[0], abs=1e-9)
    assert metrics["n_empty_prediction"] == 1
    b = metrics["per_class"]["b"]
    assert b["n_cases"] == 2 and b["n_empty_prediction"] == 1 and b["hd95"]["n_undefined"] == 1
    merged = [medpy.dc(pred > 0, label > 0) for pred, label, _ in volumes.values()]  # the structure as one
    assert metrics["foreground_dice"]["mean"] == pytest.approx(np.mean(merged), abs=1e-9)
    assert metrics["foreground_dice"]["std"] == pytest.approx(np.std(merged), abs=1e-9)
    assert table.groupby("case")["foreground_dice"].first().to_numpy() == pytest.approx(merged, abs=CSV_TOL)
    assert b["dice"]["mean"] == pytest.approx(np.mean([rows[1]["dice"] for rows in per_case.values()]), abs=1e-9)


def test_intervals_in_every_summary_and_in_ci95(tmp_path: Path) -> None:
    names = ["background", "a", "b"]
    label = _sphere((6, 6, 6), 4) + 2 * _box((12, 10, 3), (18, 18, 9))
    cases = [(f"i{k}", np.roll(label, k % 3, axis=k % 2).astype(np.uint8), label, None) for k in range(4)]
    callback = SegmentationOutputs(overlays=False, views_3d=False, bootstrap=100, bootstrap_seed=2)
    _run(callback, _trainer(tmp_path), _module(names), cases)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    metric_names = ["dice", "jaccard", "hd95", "asd"]
    expected = [*metric_names, *(f"{c}/{m}" for c in ("a", "b") for m in metric_names), "foreground_dice"]
    assert list(metrics["ci95"]) == expected  # all of them in ci95 ...
    for name in metric_names:  # ... and each also in its summary
        assert metrics[name]["ci95"] == metrics["ci95"][name]
        for class_name in ("a", "b"):
            assert metrics["per_class"][class_name][name]["ci95"] == metrics["ci95"][f"{class_name}/{name}"]
    low, high = metrics["foreground_dice"]["ci95"]
    assert low <= metrics["foreground_dice"]["mean"] <= high
    assert (metrics["ci_unit"], metrics["n_units"]) == ("case", 4)
    assert (metrics["ci_resamples"], metrics["ci_seed"]) == (100, 2)
    with pytest.raises(MedlitError, match=r"outputs.bootstrap must be >= 0 \(0 = no intervals\), got -3"):
        SegmentationOutputs(bootstrap=-3)


def test_figures_are_written(tmp_path: Path) -> None:
    mask, label, _ = BINARY_CASES["c2"]
    callback = SegmentationOutputs(overlays=True, views_3d=True, save_masks=False)
    _run(callback, _trainer(tmp_path), _module(), [("f1", mask, label, SPACING)])
    for path in (tmp_path / "overlays" / "f1.png", tmp_path / "views3d" / "f1.png"):
        with Image.open(path) as image:
            assert image.format == "PNG", path
            pixels = np.asarray(image.convert("L"), dtype=np.float64)
        assert min(pixels.shape) > 100, path  # a figure, not a thumbnail
        assert pixels.std() > 5.0, path  # not a blank canvas
    html = (tmp_path / "views3d" / "f1.html").read_text()
    assert 'src="plotly.min.js"' in html and "f1 (Dice " in html
    assert (tmp_path / "views3d" / "plotly.min.js").stat().st_size > 100_000
    assert not (tmp_path / "predictions").exists()
    assert not list(tmp_path.rglob(".*"))


def test_predict_writes_masks_only(tmp_path: Path) -> None:
    mask, _, _ = BINARY_CASES["c1"]
    callback = SegmentationOutputs(overlays=False, views_3d=False)
    _run(callback, _trainer(tmp_path), _module(), [("p1", mask, None, None)], stage="predict")
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "predictions" / "p1.nii.gz").dataobj), mask)
    callback.on_test_epoch_end(_trainer(tmp_path), _module())  # no labelled case: no metrics
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions"]


def test_only_rank_zero_writes_metrics(tmp_path: Path) -> None:
    mask, label, _ = BINARY_CASES["c1"]
    callback = SegmentationOutputs(overlays=False, views_3d=False)
    _run(callback, _trainer(tmp_path, is_global_zero=False), _module(), [("r1", mask, label, None)])
    assert (tmp_path / "predictions" / "r1.nii.gz").is_file()  # every rank writes its own cases' files
    assert not (tmp_path / "metrics_per_case.csv").exists() and not (tmp_path / "metrics.json").exists()


@pytest.mark.parametrize(
    ("cores", "on_gpu", "processes", "expected"),
    [(2, False, 1, 0), (16, False, 1, 4), (16, False, 2, 2), (2, True, 1, 1), (16, True, 1, 4), (16, True, 8, 1)],
)
def test_default_eval_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, on_gpu: bool, processes: int, expected: int
) -> None:
    monkeypatch.setattr("volume_seg.callbacks.available_cpus", lambda: cores)
    assert default_eval_workers(on_gpu, processes) == expected


def test_negative_eval_workers_refused() -> None:
    with pytest.raises(MedlitError, match="outputs.eval_workers must be >= 0, got -1"):
        SegmentationOutputs(eval_workers=-1)
