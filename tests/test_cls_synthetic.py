"""Generated HAM10000-layout data: layout, determinism, proportions, multi-image lesions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lesion_cls import DX_CODES
from lesion_cls.synthetic import HAM_PROPORTIONS, generate_ham10000


def test_layout_and_columns(tiny_ham: Path) -> None:
    meta = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    assert list(meta.columns) == ["lesion_id", "image_id", "dx", "dx_type", "age", "sex", "localization"]
    for image_id in meta["image_id"]:
        assert (tiny_ham / "images" / f"{image_id}.jpg").is_file()
    with Image.open(tiny_ham / "images" / f"{meta['image_id'][0]}.jpg") as image:
        assert image.size == (80, 60) and image.mode == "RGB"
    views = meta.groupby("lesion_id").size()
    assert views.max() >= 2 and (views == 1).mean() > 0.5
    assert (meta.groupby("lesion_id")["dx"].nunique() == 1).all()


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a = generate_ham10000(tmp_path / "a", n_images=12, size_hw=(30, 40), seed=5)
    b = generate_ham10000(tmp_path / "b", n_images=12, size_hw=(30, 40), seed=5)
    c = generate_ham10000(tmp_path / "c", n_images=12, size_hw=(30, 40), seed=6)
    assert (a / "HAM10000_metadata.csv").read_bytes() == (b / "HAM10000_metadata.csv").read_bytes()
    for image in (a / "images").iterdir():
        assert image.read_bytes() == (b / "images" / image.name).read_bytes()
    assert any(image.read_bytes() != (c / "images" / image.name).read_bytes() for image in (a / "images").iterdir())


def test_class_proportions_follow_ham10000(tmp_path: Path) -> None:
    out = generate_ham10000(tmp_path / "p", n_images=600, size_hw=(12, 16), seed=1)
    shares = pd.read_csv(out / "HAM10000_metadata.csv")["dx"].value_counts(normalize=True)
    total = sum(HAM_PROPORTIONS.values())
    assert abs(shares["nv"] - HAM_PROPORTIONS["nv"] / total) < 0.08
    assert set(shares.index) == set(HAM_PROPORTIONS)


def test_classes_differ_in_appearance(tiny_ham: Path) -> None:
    meta = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")

    def mean_center(dx: str) -> np.ndarray:
        ids = meta.loc[meta["dx"] == dx, "image_id"][:15]
        return np.mean(
            [np.asarray(Image.open(tiny_ham / "images" / f"{i}.jpg"))[20:40, 30:50].mean((0, 1)) for i in ids], axis=0
        )

    mel, nv, vasc = mean_center("mel"), mean_center("nv"), mean_center("vasc")
    assert mel.sum() < nv.sum()  # melanoma darker than naevi
    assert vasc[0] - vasc[1] > nv[0] - nv[1]  # vascular lesions redder


def test_the_command_line_prints_the_class_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lesion_cls.synthetic import main

    main(["--out", str(tmp_path / "g"), "--n-images", "30", "--height", "12", "--width", "16", "--seed", "2"])
    counts = pd.read_csv(tmp_path / "g" / "HAM10000_metadata.csv")["dx"].value_counts()
    (line,) = capsys.readouterr().out.splitlines()
    assert line == f"{tmp_path / 'g'}: " + ", ".join(f"{dx} {counts.get(dx, 0)}" for dx in DX_CODES)
    assert sum(counts) == 30
