"""Figures and run-dir helpers without a Trainer: lesion_cls.viz, volume_seg.viz, common.plots, common.callbacks."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import recall_score, roc_auc_score
from torch import nn

import common.plots
import lesion_cls.viz
import volume_seg.viz
from common.callbacks import MetricHistory, RunTimer
from common.files import atomic_path, write_json
from common.plots import history_metric_names, plot_history
from lesion_cls import CLASS_NAMES
from lesion_cls.metrics import calibration, confusion_matrix, roc_curves
from lesion_cls.viz import gradcam_maps, plot_calibration, plot_confusion, plot_gradcam, plot_roc
from volume_seg.viz import (
    ERROR_COLORS,
    error_map,
    overlay_slices,
    plot_overlay,
    plot_surfaces,
    surface_mesh,
    surface_meshes,
    write_surfaces_html,
)


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    yield
    plt.close("all")


def _capture(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[plt.Figure]:
    """Record the figures ``module`` saves (still written to disk by the real ``save_figure``)."""
    figures: list[plt.Figure] = []
    real = common.plots.save_figure

    def save(fig: plt.Figure, path: Path, *args: Any, **kwargs: Any) -> Path:
        figures.append(fig)
        return real(fig, path, *args, **kwargs)

    monkeypatch.setattr(module, "save_figure", save)
    return figures


def _assert_png(path: Path) -> None:
    with Image.open(path) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("L"), dtype=np.float64)
    assert min(pixels.shape) > 50 and pixels.std() > 5.0, path


def _predictions(seed: int, n: int = 60, absent: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.choice([c for c in range(7) if c not in absent], size=n)
    logits = rng.normal(0.0, 1.0, (n, 7))
    logits[np.arange(n), target] += rng.uniform(0.0, 2.5, n)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), target


# --- lesion_cls.viz ---


def test_plot_roc_legend_has_sklearn_aucs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, lesion_cls.viz)
    probs, target = _predictions(0, absent=(5,))  # DF has no positive: no curve
    plot_roc(roc_curves(probs, target), tmp_path / "roc.png")
    _assert_png(tmp_path / "roc.png")
    (ax,) = figures[0].axes
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    expected = [
        f"{name} (AUC {roc_auc_score(target == c, probs[:, c]):.3f})" for c, name in enumerate(CLASS_NAMES) if c != 5
    ]
    micro = roc_auc_score(np.eye(7)[target].ravel(), probs.ravel())
    assert legend[:6] == expected
    assert legend[6] == f"micro-average (AUC {micro:.3f})"
    assert legend[7].startswith("macro-average (AUC ")
    assert len(ax.lines) == 6 + 2 + 1  # classes, averages, chance diagonal


def test_plot_confusion_annotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, lesion_cls.viz)
    probs, target = _predictions(1, absent=(6,))  # VASC row is empty: normalised to zeros, not NaN
    plot_confusion(confusion_matrix(probs, target), tmp_path / "cm.png")
    _assert_png(tmp_path / "cm.png")
    counts = sk_confusion_matrix(target, probs.argmax(axis=1), labels=range(7))
    rows = counts.sum(axis=1, keepdims=True)
    normalised = np.where(rows > 0, counts / np.maximum(rows, 1), 0.0)
    left, right, bars = figures[0].axes
    assert [t.get_text() for t in left.texts] == [str(v) for v in counts.ravel()]
    assert [t.get_text() for t in right.texts] == [f"{v:.2f}" for v in normalised.ravel()]
    assert [t.get_text() for t in left.get_xticklabels()] == list(CLASS_NAMES)
    assert (left.get_xlabel(), left.get_ylabel()) == ("predicted", "true")
    # the recall bars: sklearn's per-class recall, the empty VASC row said so, sklearn's balanced accuracy dashed
    recall = recall_score(target, probs.argmax(axis=1), labels=range(6), average=None, zero_division=0)
    assert [p.get_width() for p in bars.patches][:6] == pytest.approx(recall)
    assert bars.texts[6].get_text() == "no test image"
    assert bars.get_legend().get_texts()[0].get_text() == f"balanced accuracy {recall.mean():.3f}"


def test_plot_calibration_bars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, lesion_cls.viz)
    probs, target = _predictions(2)
    result = calibration(probs, target, n_bins=10)
    plot_calibration(result, tmp_path / "cal.png")
    _assert_png(tmp_path / "cal.png")
    # the bins by hand: (k/10, (k+1)/10] of the top probability
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == target
    which = np.ceil(confidence * 10).astype(int) - 1
    occupied = np.unique(which)
    top, bottom = figures[0].axes
    assert [p.get_x() for p in top.patches] == pytest.approx(occupied / 10)
    assert [p.get_height() for p in top.patches] == pytest.approx([correct[which == b].mean() for b in occupied])
    assert [p.get_height() for p in bottom.patches] == [np.sum(which == b) for b in occupied]
    assert top.get_title().endswith(f"(ECE {result['ece']:.3f})")


class _TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()
        )
        self.fc = nn.Linear(8, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _hand_gradcam(model: _TinyCNN, images: torch.Tensor, class_index: int) -> np.ndarray:
    """Grad-CAM (Selvaraju et al.): ReLU of the gradient-weighted activations, bilinear upsampling, min-max
    scaled per image so the strongest evidence is 1."""
    x = images.clone().requires_grad_(True)
    activations = model.features(x)
    activations.retain_grad()
    model.fc(activations.mean(dim=(2, 3)))[:, class_index].sum().backward()
    weights = activations.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activations).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=images.shape[2:], mode="bilinear", align_corners=False)[:, 0].detach().numpy()
    low, high = cam.min(axis=(1, 2), keepdims=True), cam.max(axis=(1, 2), keepdims=True)
    assert (high > low).all()  # a degenerate (constant) map would make the comparison meaningless
    return (cam - low) / (high - low)


@pytest.fixture
def tiny_cnn() -> tuple[_TinyCNN, torch.Tensor]:
    torch.manual_seed(0)
    return _TinyCNN().eval(), torch.rand(2, 3, 24, 40)


def test_gradcam_maps_shape_range_and_class(tiny_cnn: tuple[_TinyCNN, torch.Tensor]) -> None:
    model, images = tiny_cnn
    maps = {c: gradcam_maps(model, "features", images, c) for c in (0, 1)}
    assert maps[0].shape == (2, 24, 40)  # [N, H, W] at the input's size
    for m in maps.values():
        assert m.min() >= 0.0 and m.max() <= 1.0
        assert m.min(axis=(1, 2)) == pytest.approx(0.0) and m.max(axis=(1, 2)) == pytest.approx(1.0)
    assert np.abs(maps[0] - maps[1]).max() > 0.1
    # Lightning runs test/predict under inference mode: the maps must not change there
    with torch.inference_mode():
        inside = gradcam_maps(model, "features", images.clone(), 0)
    np.testing.assert_allclose(inside, maps[0], atol=1e-6)


def test_gradcam_maps_equal_hand_computed_up_to_orientation(tiny_cnn: tuple[_TinyCNN, torch.Tensor]) -> None:
    model, images = tiny_cnn
    for c in (0, 1):
        maps, reference = gradcam_maps(model, "features", images, c), _hand_gradcam(model, images, c)
        assert min(np.abs(maps - reference).max(), np.abs(maps - (1.0 - reference)).max()) < 1e-5


def test_gradcam_maps_are_hot_where_the_evidence_is(tiny_cnn: tuple[_TinyCNN, torch.Tensor]) -> None:
    model, images = tiny_cnn
    np.testing.assert_allclose(gradcam_maps(model, "features", images, 0), _hand_gradcam(model, images, 0), atol=1e-5)


def test_plot_gradcam_panels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, lesion_cls.viz)
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(24, 40, 3))
    maps = {"Grad-CAM for MEL (p=0.80)": rng.uniform(size=(24, 40)), "Grad-CAM for NV (p=0.10)": np.zeros((24, 40))}
    path = plot_gradcam(image, maps, tmp_path / "sub" / "g.png", "x: true NV, predicted MEL")
    assert path == tmp_path / "sub" / "g.png"
    _assert_png(path)
    fig = figures[0]
    assert [ax.get_title() for ax in fig.axes] == ["image", *maps]
    assert fig.get_suptitle() == "x: true NV, predicted MEL"
    heat = fig.axes[1].images[1]
    assert heat.get_clim() == (0, 1)
    np.testing.assert_array_equal(heat.get_array(), maps["Grad-CAM for MEL (p=0.80)"])


# --- volume_seg.viz ---


def test_overlay_slices_pick_occupied_slices() -> None:
    mask = np.zeros((10, 10, 12), np.uint8)
    mask[2:5, 3:7, 3:9] = 1  # slices 3..8 along z
    assert overlay_slices(mask) == [4, 5, 7]  # nearest occupied slices to quantiles 0.2, 0.5, 0.8 of 3..8
    assert all(mask[:, :, s].any() for s in overlay_slices(mask, n=5))
    assert overlay_slices(mask, axis=0) == [2, 3, 4]
    thin = np.zeros((10, 10, 12), np.uint8)
    thin[4, 4, 5] = 2
    assert overlay_slices(thin) == [5]  # one occupied slice: picked once
    assert overlay_slices(np.zeros((10, 10, 12))) == [3, 6, 8]  # empty: spread over the volume, ends excluded


def test_overlay_slices_with_two_structures() -> None:
    mask = np.zeros((8, 8, 20), np.uint8)
    mask[2:5, 2:5, 2:4] = 1
    mask[2:5, 2:5, 15:17] = 1
    assert all(mask[:, :, s].any() for s in overlay_slices(mask))


def _box(shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int], value: int = 1) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = value
    return mask


def test_plot_overlay_panels_and_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, volume_seg.viz)
    shape = (16, 14, 10)
    label = _box(shape, (4, 4, 2), (11, 10, 8))
    prediction = _box(shape, (5, 3, 3), (13, 9, 8))
    image = np.random.default_rng(0).normal(size=shape)
    plot_overlay(image, prediction, label, tmp_path / "o.png", "case (Dice 0.7)")
    _assert_png(tmp_path / "o.png")
    fig = figures[0]
    slices = overlay_slices(label)
    axes = np.asarray(fig.axes).reshape(len(slices), 4)
    assert [ax.get_title() for ax in axes[0]] == ["image", "ground truth", "prediction", "errors (FP red, FN blue)"]
    assert [ax.get_ylabel() for ax in axes[:, 0]] == [f"slice {s} (axis 2)" for s in slices]
    for row, s in enumerate(slices):
        errors = np.asarray(axes[row, 3].images[1].get_array())
        pred, ref = prediction[:, :, s].T > 0, label[:, :, s].T > 0
        red = np.all(errors == (1, 0, 0, 0.8), axis=-1)
        blue = np.all(errors == (0, 0.3, 1, 0.8), axis=-1)
        np.testing.assert_array_equal(red, pred & ~ref)
        np.testing.assert_array_equal(blue, ~pred & ref)
        assert red.any() and blue.any()
    # without ground truth: image and prediction only, slices through the prediction
    plot_overlay(image, prediction, None, tmp_path / "p.png", "case")
    assert [ax.get_title() for ax in figures[1].axes[:2]] == ["image", "prediction"]
    assert len(figures[1].axes) == 2 * len(overlay_slices(prediction))


def test_error_map_marks_each_kind_of_error() -> None:
    reference = np.array([[0, 0, 1, 1, 2, 2]])
    prediction = np.array([[0, 1, 0, 1, 1, 2]])  # agree, FP, FN, agree, wrong class, agree
    errors = error_map(prediction, reference)
    expected = [None, "false positive", "false negative", None, "wrong class", None]
    for pixel, kind in enumerate(expected):
        np.testing.assert_array_equal(errors[0, pixel], ERROR_COLORS[kind] if kind else (0, 0, 0, 0))


def test_plot_overlay_multiclass_marks_wrong_class(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, volume_seg.viz)
    shape = (16, 14, 10)
    label = _box(shape, (4, 4, 2), (11, 10, 8), value=1)
    prediction = _box(shape, (4, 4, 2), (11, 10, 8), value=2)  # the right voxels, the wrong class
    plot_overlay(np.zeros(shape), prediction, label, tmp_path / "o.png", "case", num_classes=3)
    axes = np.asarray(figures[0].axes).reshape(-1, 4)
    assert axes[0, 3].get_title() == "errors (FP red, FN blue, wrong class yellow)"
    errors = np.asarray(axes[0, 3].images[1].get_array())
    yellow = np.all(errors == ERROR_COLORS["wrong class"], axis=-1)
    assert yellow.sum() == (label[:, :, overlay_slices(label)[0]] > 0).sum()


def test_surface_mesh_bounds() -> None:
    box = _box((12, 12, 10), (4, 5, 3), (10, 12, 8))  # touches the volume border along y
    for spacing in (None, (2.0, 0.5, 1.5)):
        vertices, faces = surface_mesh(box, spacing)
        s = np.asarray(spacing or (1.0, 1.0, 1.0))
        # the 0.5 level surface lies half a voxel outside the first and last voxel centres
        np.testing.assert_allclose(vertices.min(axis=0), (np.array([4, 5, 3]) - 0.5) * s, atol=1e-6)
        np.testing.assert_allclose(vertices.max(axis=0), (np.array([9, 11, 7]) + 0.5) * s, atol=1e-6)
        assert faces.shape[1] == 3 and faces.max() < len(vertices)
        # closed surface (the border is closed by the padding): every edge belongs to exactly two faces
        edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
        _, counts = np.unique(edges, axis=0, return_counts=True)
        assert (counts == 2).all()
    assert surface_mesh(np.zeros((5, 5, 5), bool)) is None


def test_surface_meshes_per_class() -> None:
    shape = (12, 12, 10)
    label = _box(shape, (1, 1, 1), (5, 5, 5)) + _box(shape, (6, 6, 4), (10, 10, 9), 2)
    prediction = _box(shape, (1, 2, 1), (5, 6, 5))  # class 2 missed
    meshes = surface_meshes(prediction, label, None, num_classes=3)
    assert {name: sorted(m) for name, m in meshes.items()} == {"ground truth": [1, 2], "prediction": [1]}
    np.testing.assert_allclose(meshes["prediction"][1][0].min(axis=0), (0.5, 1.5, 0.5), atol=1e-6)
    assert list(surface_meshes(prediction, None)) == ["prediction"]


def test_plot_surfaces_and_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, volume_seg.viz)
    shape = (12, 12, 10)
    label = _box(shape, (2, 2, 2), (8, 8, 7)) + _box(shape, (8, 8, 7), (11, 11, 9), 2)
    prediction = _box(shape, (3, 2, 2), (9, 8, 7)) + _box(shape, (8, 7, 6), (11, 11, 9), 2)
    spacing = (1.0, 1.0, 2.0)
    meshes = surface_meshes(prediction, label, spacing, num_classes=3)
    plot_surfaces(meshes, shape, tmp_path / "v" / "s.png", "case", spacing)
    _assert_png(tmp_path / "v" / "s.png")
    assert [ax.get_title() for ax in figures[0].axes] == ["ground truth", "prediction", "overlay (GT grey)"]
    assert figures[0].axes[0].get_zlim() == pytest.approx((0, 20))  # extent in mm: 10 slices x 2 mm

    path = write_surfaces_html(meshes, tmp_path / "v" / "s.html", "case", spacing)
    html = path.read_text()
    assert re.findall(r'<script[^>]*src="([^"]+)"', html) == ["plotly.min.js"]  # beside the page, opens offline
    assert (tmp_path / "v" / "plotly.min.js").stat().st_size > 100_000
    assert re.findall(r'"name":"([^"]+)"', html) == [
        "ground truth class 1",
        "ground truth class 2",
        "prediction class 1",
        "prediction class 2",
    ]
    assert all(f'"text":"{axis} (mm)"' in html for axis in "xyz")
    # binary, no spacing: plain trace names and voxel units
    binary = surface_meshes(prediction > 0, None)
    html = write_surfaces_html(binary, tmp_path / "w" / "b.html", "b").read_text()
    assert re.findall(r'"name":"([^"]+)"', html) == ["prediction"]
    assert '"text":"x (voxels)"' in html


# --- common.plots ---


def test_history_metric_names_loss_first() -> None:
    history = pd.DataFrame(columns=["epoch", "step", "val/dice", "train/acc", "val/loss", "train/loss", "lr"])
    assert history_metric_names(history) == ["loss", "acc", "dice"]
    assert history_metric_names(pd.DataFrame(columns=["epoch", "val/acc", "val/auc"])) == ["acc", "auc"]


def test_plot_history_panels_and_labels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = _capture(monkeypatch, common.plots)
    history = pd.DataFrame(
        {
            "epoch": [0, 1, 2],
            "train/loss": [1.0, 0.8, 0.6],
            "val/loss": [1.1, 0.9, 0.8],
            "train/acc": [np.nan] * 3,
            "val/acc": [0.3, 0.5, 0.6],
            "val/dice": [0.1, 0.2, 0.3],
            "train/f1": [0.2, 0.3, 0.4],
        }
    )
    path = plot_history(history, tmp_path / "curves.png", "exp / run", {"loss": "cross-entropy", "acc": "accuracy"})
    _assert_png(path)
    fig = figures[0]
    axes = fig.axes
    assert len(axes) == 6  # 4 metrics on a 2 x 3 grid, the rest switched off
    assert [ax.get_ylabel() for ax in axes[:4]] == ["cross-entropy", "accuracy", "dice", "f1"]
    assert [ax.axison for ax in axes] == [True] * 4 + [False] * 2
    assert [line.get_label() for line in axes[0].lines] == ["training", "validation"]
    np.testing.assert_array_equal(axes[0].lines[0].get_xdata(), [1, 2, 3])  # 1-based epochs
    np.testing.assert_array_equal(axes[0].lines[1].get_ydata(), [1.1, 0.9, 0.8])
    assert [line.get_label() for line in axes[1].lines] == ["validation"]  # all-NaN training curve left out
    assert fig.get_suptitle() == "exp / run"


# --- common.callbacks ---


def _history_trainer(root: Path, epoch: int, metrics: dict[str, float], **overrides: Any) -> SimpleNamespace:
    fields = {
        "default_root_dir": str(root),
        "is_global_zero": True,
        "sanity_checking": False,
        "fast_dev_run": False,
        "current_epoch": epoch,
        "global_step": 10 * (epoch + 1),
        "callback_metrics": {k: torch.tensor(v) for k, v in metrics.items()},
    }
    return SimpleNamespace(**(fields | overrides))


def _epoch(callback: MetricHistory, trainer: SimpleNamespace) -> None:
    callback.on_train_epoch_start(trainer, None)
    callback.on_train_epoch_end(trainer, None)


def test_metric_history_rows(tmp_path: Path) -> None:
    callback = MetricHistory({"loss": "loss"})
    logged = {"train/loss_step": 9.0, "test/loss": 7.0, "lr-AdamW": 0.1, "train/acc_epoch": 0.5}
    _epoch(callback, _history_trainer(tmp_path, 0, {"train/loss": 1.0, "val/loss": 1.5, **logged}))
    _epoch(callback, _history_trainer(tmp_path, 0, {"train/loss": 1.0}, sanity_checking=True))  # ignored
    _epoch(callback, _history_trainer(tmp_path, 1, {"train/loss": 0.75, "val/loss": 1.25, **logged}))
    _epoch(callback, _history_trainer(tmp_path, 1, {"train/loss": 0.5, "val/loss": 1.0, **logged}))  # replaces epoch 1
    _epoch(callback, _history_trainer(tmp_path, 2, {"train/loss": 0.1}, fast_dev_run=True))  # ignored
    history = pd.read_csv(tmp_path / "history.csv")
    assert list(history.columns) == ["epoch", "step", "train/loss", "val/loss", "train/acc", "epoch_time_s"]
    assert history["epoch"].tolist() == [0, 1]
    assert history["step"].tolist() == [10, 20]
    assert history["train/loss"].tolist() == [1.0, 0.5]
    assert history["val/loss"].tolist() == [1.5, 1.0]
    assert (history["epoch_time_s"] >= 0).all() and (history["epoch_time_s"] < 5).all()

    restored = MetricHistory()
    restored.load_state_dict(json.loads(json.dumps(callback.state_dict())))
    assert restored.rows == callback.rows
    assert restored.rows is not callback.state_dict()["rows"]
    _epoch(restored, _history_trainer(tmp_path, 2, {"train/loss": 0.25, "val/loss": 0.9}))
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [0, 1, 2]  # resumed run keeps earlier epochs
    MetricHistory().load_state_dict({})  # an old checkpoint without the history


def test_metric_history_curves_and_other_ranks(tmp_path: Path) -> None:
    callback = MetricHistory()
    _epoch(callback, _history_trainer(tmp_path, 0, {"train/loss": 1.0}, is_global_zero=False))
    callback.on_fit_end(_history_trainer(tmp_path, 0, {}, is_global_zero=False), None)
    assert list(tmp_path.iterdir()) == []  # only rank 0 writes, though every rank keeps the rows
    assert len(callback.rows) == 1
    root = tmp_path / "exp" / "run"
    root.mkdir(parents=True)
    callback.on_fit_end(_history_trainer(root, 0, {}), None)
    _assert_png(root / "curves.png")


def test_run_timer(tmp_path: Path) -> None:
    class FakeAccelerator:
        pass

    trainer = SimpleNamespace(
        default_root_dir=str(tmp_path),
        is_global_zero=True,
        current_epoch=3,
        num_devices=2,
        accelerator=FakeAccelerator(),
    )
    timer = RunTimer()
    timer.on_test_end(trainer, None)  # never started: nothing written
    assert not (tmp_path / "timing.json").exists()
    timer.on_fit_start(trainer, None)
    timer.on_fit_end(trainer, None)
    timer.on_test_start(trainer, None)
    timer.on_test_end(trainer, None)
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert set(timing) == {"fit_s", "test_s", "epochs", "devices", "accelerator"}
    assert 0 <= timing["fit_s"] < 5 and 0 <= timing["test_s"] < 5
    assert (timing["epochs"], timing["devices"], timing["accelerator"]) == (3, 2, "FakeAccelerator")
    timer.on_predict_start(trainer, None)
    timer.on_predict_end(SimpleNamespace(**(vars(trainer) | {"is_global_zero": False})), None)
    assert "predict_s" not in json.loads((tmp_path / "timing.json").read_text())


def test_write_json_nan_is_null(tmp_path: Path) -> None:
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (math.nan, 2), "e": "nan", "f": 0.5}
    write_json(tmp_path / "sub" / "x.json", data)
    text = (tmp_path / "sub" / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": [None, 2], "e": "nan", "f": 0.5}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.json"]


def test_atomic_path(tmp_path: Path) -> None:
    target = tmp_path / "a" / "table.csv.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".csv.gz") and tmp != target
        tmp.write_text("new")
        assert not target.exists()  # nothing visible until the body finishes
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new"  # the old file is untouched
    assert [p.name for p in target.parent.iterdir()] == ["table.csv.gz"]  # no temporary file left


def test_plots_leave_the_callers_matplotlib_settings_alone(tmp_path: Path) -> None:
    # seaborn's set_theme alone would restyle every later figure of the process (a user's notebook importing medlit)
    with plt.rc_context({"axes.grid": False, "font.size": 7.0, "axes.facecolor": "#fafafa"}):
        plot_confusion(np.eye(len(CLASS_NAMES), dtype=int) * 3, tmp_path / "confusion.png")
        plot_history(pd.DataFrame({"epoch": [0, 1], "train/loss": [1.0, 0.5]}), tmp_path / "history.png")
        assert plt.rcParams["axes.grid"] is False
        assert plt.rcParams["font.size"] == 7.0
        assert plt.rcParams["axes.facecolor"] == "#fafafa"
    _assert_png(tmp_path / "confusion.png")
