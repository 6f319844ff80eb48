"""``volume_seg.viz``: slice overlays, error maps, surface meshes and their 3D views."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import volume_seg.viz
from tests.helpers import assert_png, capture_figures
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
    figures = capture_figures(monkeypatch, volume_seg.viz)
    shape = (16, 14, 10)
    label = _box(shape, (4, 4, 2), (11, 10, 8))
    prediction = _box(shape, (5, 3, 3), (13, 9, 8))
    image = np.random.default_rng(0).normal(size=shape)
    plot_overlay(image, prediction, label, tmp_path / "o.png", "case (Dice 0.7)")
    assert_png(tmp_path / "o.png")
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
    figures = capture_figures(monkeypatch, volume_seg.viz)
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
    figures = capture_figures(monkeypatch, volume_seg.viz)
    shape = (12, 12, 10)
    label = _box(shape, (2, 2, 2), (8, 8, 7)) + _box(shape, (8, 8, 7), (11, 11, 9), 2)
    prediction = _box(shape, (3, 2, 2), (9, 8, 7)) + _box(shape, (8, 7, 6), (11, 11, 9), 2)
    spacing = (1.0, 1.0, 2.0)
    meshes = surface_meshes(prediction, label, spacing, num_classes=3)
    plot_surfaces(meshes, shape, tmp_path / "v" / "s.png", "case", spacing)
    assert_png(tmp_path / "v" / "s.png")
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
