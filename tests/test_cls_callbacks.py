"""ClassificationOutputs without a Trainer: fake test/predict batches in, the run-dir files checked against sklearn."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    precision_recall_fscore_support,
    roc_auc_score,
)

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.callbacks import INTERVAL_METRICS, ClassificationOutputs

COLUMNS = ["image", *CLASS_NAMES, "label"]
FIGURES = ("roc.png", "confusion_matrix.png", "calibration.png")


def _trainer(root: Path, *, is_global_zero: bool = True, datamodule: Any = None) -> SimpleNamespace:
    return SimpleNamespace(
        default_root_dir=str(root),
        is_global_zero=is_global_zero,
        ckpt_path=None,
        datamodule=datamodule or SimpleNamespace(test_dataset=None, predict_dataset=None),
    )


def _data(seed: int = 0, per_class: int = 4) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Every class ``per_class`` times, shuffled, with informative but imperfect float32 softmax probabilities."""
    rng = np.random.default_rng(seed)
    target = rng.permutation(np.repeat(np.arange(7), per_class))
    logits = rng.normal(0.0, 1.0, (len(target), 7))
    logits[np.arange(len(target)), target] += rng.uniform(0.0, 2.5, len(target))
    probs = torch.softmax(torch.as_tensor(logits, dtype=torch.float32), dim=1).numpy()
    # ids not in sorted order, so first-seen order is distinguishable from a sorted one
    ids = [f"ISIC_{n:07d}" for n in rng.permutation(1000)[: len(target)]]
    return ids, probs, target


def _image_losses(probs: np.ndarray, target: np.ndarray) -> np.ndarray:
    return -np.log(probs[np.arange(len(target)), target].astype(np.float64))  # each image's cross-entropy


def _outputs(ids: list[str], probs: np.ndarray, target: np.ndarray, losses: bool = True) -> dict[str, Any]:
    outputs = {"probs": torch.as_tensor(probs), "target": torch.as_tensor(target, dtype=torch.long), "image_id": ids}
    if losses:
        outputs["loss"] = torch.as_tensor(_image_losses(probs, target))
    return outputs


def _run_test_epoch(
    callback: ClassificationOutputs,
    trainer: SimpleNamespace,
    ids: list[str],
    probs: np.ndarray,
    target: np.ndarray,
    losses: bool = True,
) -> dict[str, float]:
    """Batches of 10, then a last batch padded with the first two images again (as a DDP sampler does).

    Returns:
        What the callback logged through the module (``test/<name>`` → value).
    """
    logged: dict[str, float] = {}
    module = SimpleNamespace(log=lambda name, value, **kwargs: logged.__setitem__(name, value))
    callback.on_test_epoch_start(trainer, module)
    batches = [slice(0, 10), slice(10, 20), slice(20, len(ids))]
    for batch_idx, rows in enumerate(batches):
        outputs = _outputs(ids[rows], probs[rows], target[rows], losses)
        callback.on_test_batch_end(trainer, module, outputs, {"image_id": ids[rows]}, batch_idx)
    padded = [0, 1]
    outputs = _outputs([ids[i] for i in padded], probs[padded], target[padded], losses)
    callback.on_test_batch_end(trainer, module, outputs, {}, len(batches))
    callback.on_test_epoch_end(trainer, module)
    return logged


def _assert_png(path: Path) -> None:
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min(pixels.shape) > 100
    assert pixels.std() > 5.0  # not a blank canvas


def test_test_outputs_match_sklearn(tmp_path: Path) -> None:
    ids, probs, target = _data()
    logged = _run_test_epoch(ClassificationOutputs(gradcam_per_class=0), _trainer(tmp_path), ids, probs, target)
    pred = probs.argmax(axis=1)

    frame = pd.read_csv(tmp_path / "predictions.csv")
    assert list(frame.columns) == COLUMNS
    assert frame["image"].tolist() == ids  # each image once, first-seen order (padding dropped)
    np.testing.assert_allclose(frame[list(CLASS_NAMES)].to_numpy(), probs, rtol=0, atol=1e-6)
    assert frame["label"].tolist() == [CLASS_NAMES[t] for t in target]

    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_images"] == len(ids)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(target, pred), abs=1e-6)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(target, pred), abs=1e-6)
    assert metrics["loss"] == pytest.approx(_image_losses(probs, target).mean(), abs=1e-9)  # padding dropped
    names = ("loss", "accuracy", "balanced_accuracy", "f1_macro", "auc_macro", "ece")
    assert logged == {f"test/{name}": metrics[name] for name in names}  # one number per metric
    assert metrics["checkpoint"] == "current weights"
    assert metrics["class_names"] == list(CLASS_NAMES)
    for c, name in enumerate(CLASS_NAMES):
        assert metrics["per_class"][name]["auc"] == pytest.approx(roc_auc_score(target == c, probs[:, c]), abs=1e-6)
    # ECE by hand: 15 equal-width bins (lower, upper] of the top probability, share-weighted |accuracy - confidence|
    confidence = probs.max(axis=1).astype(np.float64)
    which = np.clip(np.ceil(confidence * 15).astype(int) - 1, 0, 14)
    ece = sum(
        np.mean(which == b) * abs(np.mean(pred[which == b] == target[which == b]) - confidence[which == b].mean())
        for b in np.unique(which)
    )
    assert metrics["ece"] == pytest.approx(ece, abs=1e-5)
    assert metrics["calibration"]["ece"] == metrics["ece"]
    assert sum(b["count"] for b in metrics["calibration"]["bins"]) == len(ids)

    report = pd.read_csv(tmp_path / "classification_report.csv", index_col="class")
    assert report.index.tolist() == [*CLASS_NAMES, "accuracy", "macro avg", "weighted avg"]
    p, r, f, s = precision_recall_fscore_support(target, pred, labels=range(7), zero_division=0)
    for c, name in enumerate(CLASS_NAMES):
        row = report.loc[name]
        assert (row["precision"], row["recall"], row["f1-score"]) == pytest.approx((p[c], r[c], f[c]), abs=1e-4)
        assert row["support"] == s[c]
    assert report.loc["accuracy", "f1-score"] == pytest.approx(accuracy_score(target, pred), abs=1e-4)
    assert report.loc["accuracy", "support"] == len(ids)
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(target, pred, average=average, zero_division=0)
        row = report.loc[f"{average} avg"]
        assert (row["precision"], row["recall"], row["f1-score"]) == pytest.approx((p, r, f), abs=1e-4)
    markdown = (tmp_path / "classification_report.md").read_text()
    assert markdown.count("\n| ") == len(report)  # one Markdown row per report row

    for name in FIGURES:
        _assert_png(tmp_path / name)
    assert not (tmp_path / "gradcam").exists()
    assert not list(tmp_path.glob(".*.tmp*"))  # atomic writes leave nothing behind


def test_no_figures_and_epoch_start_resets(tmp_path: Path) -> None:
    callback = ClassificationOutputs(gradcam_per_class=0, figures=False)
    trainer = _trainer(tmp_path)
    ids, probs, target = _data(seed=1)
    _run_test_epoch(callback, trainer, ids, probs, target)
    # a second test epoch with other images replaces the first one's rows
    ids2, probs2, target2 = _data(seed=2, per_class=3)
    _run_test_epoch(callback, trainer, ids2, probs2, target2)

    frame = pd.read_csv(tmp_path / "predictions.csv")
    assert frame["image"].tolist() == ids2
    np.testing.assert_allclose(frame[list(CLASS_NAMES)].to_numpy(), probs2, rtol=0, atol=1e-6)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n_images"] == len(ids2)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(target2, probs2.argmax(axis=1)), abs=1e-6)
    assert (tmp_path / "classification_report.csv").is_file()
    assert not list(tmp_path.rglob("*.png"))


def test_nan_auc_and_missing_loss_are_null(tmp_path: Path) -> None:
    # only MEL and NV in the ground truth: the other classes' AUC is undefined, written as null
    ids, probs, target = _data(seed=3)
    keep = np.isin(target, (0, 1))
    ids = [i for i, k in zip(ids, keep, strict=True) if k]
    trainer = _trainer(tmp_path)
    trainer.ckpt_path = "/runs/x/checkpoints/best.ckpt"
    callback = ClassificationOutputs(gradcam_per_class=0, figures=False)
    logged = _run_test_epoch(callback, trainer, ids, probs[keep], target[keep], losses=False)
    text = (tmp_path / "metrics.json").read_text()
    assert "NaN" not in text
    metrics = json.loads(text)
    assert metrics["loss"] is None
    # classes without a test image: the logged numbers are still the written ones (NaN written as null)
    written = {k: (float("nan") if metrics[k] is None else metrics[k]) for k in ("loss", "accuracy", "auc_macro")}
    assert np.isnan(logged["test/loss"]) and logged["test/accuracy"] == written["accuracy"]
    assert logged["test/auc_macro"] == pytest.approx(written["auc_macro"], nan_ok=True)
    assert metrics["checkpoint"] == "/runs/x/checkpoints/best.ckpt"
    assert metrics["per_class"]["MEL"]["auc"] == pytest.approx(roc_auc_score(target[keep] == 0, probs[keep, 0]))
    assert all(metrics["per_class"][name]["auc"] is None for name in CLASS_NAMES[2:])
    assert [metrics["per_class"][name]["support"] for name in CLASS_NAMES] == [4, 4, 0, 0, 0, 0, 0]


def test_other_ranks_and_empty_epochs_write_nothing(tmp_path: Path) -> None:
    ids, probs, target = _data()
    _run_test_epoch(
        ClassificationOutputs(gradcam_per_class=0), _trainer(tmp_path, is_global_zero=False), ids, probs, target
    )
    callback = ClassificationOutputs(gradcam_per_class=0)
    trainer = _trainer(tmp_path)
    callback.on_test_epoch_start(trainer, None)
    callback.on_test_epoch_end(trainer, None)
    callback.on_predict_epoch_start(trainer, None)
    callback.on_predict_epoch_end(trainer, None)
    assert list(tmp_path.iterdir()) == []


def test_predict_outputs_have_no_label(tmp_path: Path) -> None:
    ids, probs, _ = _data(seed=4)
    unknown = np.full(len(ids), -1)  # predict batches carry label -1
    callback = ClassificationOutputs()
    trainer = _trainer(tmp_path)
    callback.on_predict_epoch_start(trainer, None)
    for batch_idx, rows in enumerate((slice(0, 16), slice(16, len(ids)), slice(len(ids) - 3, len(ids)))):
        callback.on_predict_batch_end(trainer, None, _outputs(ids[rows], probs[rows], unknown[rows]), {}, batch_idx)
    callback.on_predict_epoch_end(trainer, None)
    frame = pd.read_csv(tmp_path / "predictions.csv")
    assert list(frame.columns) == [*COLUMNS[:-1], "decision"]
    assert frame["image"].tolist() == ids
    np.testing.assert_allclose(frame[list(CLASS_NAMES)].to_numpy(), probs, rtol=0, atol=1e-6)
    assert frame["decision"].tolist() == [CLASS_NAMES[c] for c in probs.argmax(axis=1)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predictions.csv"]  # no metrics, figures or Grad-CAM


class _Dataset:
    """The three members of LesionImageDataset that the Grad-CAM path uses."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids

    def index_of(self, image_id: str) -> int:
        return self.ids.index(image_id)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": torch.full((3, 8, 8), float(index))}

    def display_image(self, index: int) -> np.ndarray:
        return np.zeros((8, 8, 3))


def test_gradcam_selection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Per class, the most confident correct and the most confidently wrong images, named by kind."""
    maps_for: list[tuple[float, int]] = []
    plots: dict[str, tuple[str, list[str]]] = {}

    def fake_maps(model: Any, layer: str, image: torch.Tensor, class_index: int) -> np.ndarray:
        assert layer == "net.layer4"
        maps_for.append((float(image[0, 0, 0, 0]), class_index))
        return np.zeros((1, 8, 8))

    def fake_plot(image: np.ndarray, maps: dict, path: Path, title: str) -> Path:
        plots[str(path.relative_to(tmp_path))] = (title, list(maps))
        return path

    monkeypatch.setattr("lesion_cls.callbacks.gradcam_maps", fake_maps)
    monkeypatch.setattr("lesion_cls.callbacks.plot_gradcam", fake_plot)
    ids = ["a", "b", "c", "d", "e"]
    probs = np.full((5, 7), 0.05, dtype=np.float32)
    # a, b: MEL correct (b more confident); c, d: MEL predicted NV (d more confidently wrong); e: NV correct
    for row, (c, p) in enumerate([(0, 0.6), (0, 0.7), (1, 0.6), (1, 0.65), (1, 0.7)]):
        probs[row, c] = p
        probs[row, 1 - c] = 1 - p - 0.25
    target = np.array([0, 0, 0, 0, 1])
    module = SimpleNamespace(device=torch.device("cpu"), gradcam_layer=lambda: "net.layer4", log=lambda *a, **k: None)
    datamodule = SimpleNamespace(test_dataset=_Dataset(ids))
    trainer = _trainer(tmp_path, datamodule=datamodule)
    callback = ClassificationOutputs(gradcam_per_class=1, figures=False)
    callback.on_test_epoch_start(trainer, module)
    callback.on_test_batch_end(trainer, module, _outputs(ids, probs, target), {}, 0)
    callback.on_test_epoch_end(trainer, module)

    assert sorted(plots) == ["gradcam/MEL/correct_b.png", "gradcam/MEL/wrong_d_as_NV.png", "gradcam/NV/correct_e.png"]
    assert plots["gradcam/MEL/wrong_d_as_NV.png"] == (
        "d: true MEL, predicted NV",
        ["Grad-CAM for NV (p=0.65)", "Grad-CAM for MEL (p=0.10)"],
    )
    assert plots["gradcam/MEL/correct_b.png"][1] == ["Grad-CAM for MEL (p=0.70)"]
    # image index 1 (b) for MEL; index 3 (d) for NV then MEL; index 4 (e) for NV
    assert sorted(maps_for) == [(1.0, 0), (3.0, 0), (3.0, 1), (4.0, 1)]
    assert sorted(p.name for p in (tmp_path / "gradcam").iterdir()) == sorted(CLASS_NAMES)  # a folder per class


def test_intervals_over_lesions_with_each_recall_beside_its_class(tmp_path: Path) -> None:
    ids, probs, target = _data(seed=5, per_class=6)
    lesions = [f"HAM_{i // 2:07d}" for i in range(len(ids))]  # two images per lesion, resampled together
    table = pd.DataFrame({"image_id": ids, "lesion_id": lesions})
    trainer = _trainer(tmp_path, datamodule=SimpleNamespace(test_dataset=SimpleNamespace(table=table)))
    callback = ClassificationOutputs(gradcam_per_class=0, figures=False, bootstrap=200, bootstrap_seed=1)
    _run_test_epoch(callback, trainer, ids, probs, target)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["ci95"]) == list(INTERVAL_METRICS)  # the per-class recalls are not in ci95 ...
    for name in CLASS_NAMES:  # ... but beside each class's recall, around it
        low, high = metrics["per_class"][name]["recall_ci95"]
        assert low <= metrics["per_class"][name]["recall"] <= high
    assert (metrics["ci_unit"], metrics["n_units"]) == ("lesion", 21)
    assert (metrics["ci_resamples"], metrics["ci_seed"]) == (200, 1)
    off = tmp_path / "off"
    _run_test_epoch(ClassificationOutputs(gradcam_per_class=0, figures=False, bootstrap=0), _trainer(off), *_data(5, 6))
    metrics = json.loads((off / "metrics.json").read_text())
    assert metrics["ci_resamples"] == 0 and "ci95" not in metrics
    assert not any("recall_ci95" in row for row in metrics["per_class"].values())
    with pytest.raises(MedlitError, match=r"outputs.bootstrap must be >= 0 \(0 = no intervals\), got -1"):
        ClassificationOutputs(bootstrap=-1)
