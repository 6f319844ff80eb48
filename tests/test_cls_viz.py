"""``lesion_cls.viz``: ROC, confusion, calibration and Grad-CAM figures, against sklearn and hand-computed Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics import confusion_matrix as sk_confusion_matrix
from sklearn.metrics import recall_score, roc_auc_score
from torch import nn

import lesion_cls.viz
from lesion_cls import CLASS_NAMES
from lesion_cls.metrics import calibration, confusion_matrix, roc_curves
from lesion_cls.viz import gradcam_maps, plot_calibration, plot_confusion, plot_gradcam, plot_roc
from tests.helpers import assert_png, capture_figures


def _predictions(seed: int, n: int = 60, absent: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    target = rng.choice([c for c in range(7) if c not in absent], size=n)
    logits = rng.normal(0.0, 1.0, (n, 7))
    logits[np.arange(n), target] += rng.uniform(0.0, 2.5, n)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), target


def test_plot_roc_legend_has_sklearn_aucs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    figures = capture_figures(monkeypatch, lesion_cls.viz)
    probs, target = _predictions(0, absent=(5,))  # DF has no positive: no curve
    plot_roc(roc_curves(probs, target), tmp_path / "roc.png")
    assert_png(tmp_path / "roc.png")
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
    figures = capture_figures(monkeypatch, lesion_cls.viz)
    probs, target = _predictions(1, absent=(6,))  # VASC row is empty: normalised to zeros, not NaN
    plot_confusion(confusion_matrix(probs, target), tmp_path / "cm.png")
    assert_png(tmp_path / "cm.png")
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
    figures = capture_figures(monkeypatch, lesion_cls.viz)
    probs, target = _predictions(2)
    result = calibration(probs, target, n_bins=10)
    plot_calibration(result, tmp_path / "cal.png")
    assert_png(tmp_path / "cal.png")
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
    figures = capture_figures(monkeypatch, lesion_cls.viz)
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(24, 40, 3))
    maps = {"Grad-CAM for MEL (p=0.80)": rng.uniform(size=(24, 40)), "Grad-CAM for NV (p=0.10)": np.zeros((24, 40))}
    path = plot_gradcam(image, maps, tmp_path / "sub" / "g.png", "x: true NV, predicted MEL")
    assert path == tmp_path / "sub" / "g.png"
    assert_png(path)
    fig = figures[0]
    assert [ax.get_title() for ax in fig.axes] == ["image", *maps]
    assert fig.get_suptitle() == "x: true NV, predicted MEL"
    heat = fig.axes[1].images[1]
    assert heat.get_clim() == (0, 1)
    np.testing.assert_array_equal(heat.get_array(), maps["Grad-CAM for MEL (p=0.80)"])
