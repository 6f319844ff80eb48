"""Bad skin-lesion datasets through the real CLI: one ``error:`` line naming the file or row, exit status 2.

Odd but valid images (grayscale, RGBA and palette PNGs, other sizes) are decoded to RGB and run to the end.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from tests.helpers import tiny_cls_args


@pytest.fixture
def ham(tiny_ham: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_ham, tmp_path / "ham"))


def _edit_metadata(ham: Path, edit: Callable[[pd.DataFrame], pd.DataFrame]) -> Path:
    csv = ham / "HAM10000_metadata.csv"
    edit(pd.read_csv(csv, dtype=str, keep_default_na=False)).to_csv(csv, index=False)
    return csv


def _first_image(ham: Path) -> Path:
    return sorted((ham / "images").iterdir())[0]


def _write_test_set(ham: Path, ids: list[str], onehot_rows: list[list[float]] | None = None) -> Path:
    rows = onehot_rows or [[1.0 if c == i % 7 else 0.0 for c in range(7)] for i in range(len(ids))]
    table = pd.DataFrame(rows, columns=list(CLASS_NAMES))
    table.insert(0, "image", ids)
    path = ham / "test_gt.csv"
    table.to_csv(path, index=False)
    return path


def _unknown_dx(ham: Path) -> tuple[list[str], str]:
    csv = _edit_metadata(ham, lambda t: t.assign(dx=t["dx"].where(t.index != 3, "melanoma")))
    return [], f"{csv} row 5: unknown dx 'melanoma'"


def _repeated_id(ham: Path) -> tuple[list[str], str]:
    csv = _edit_metadata(ham, lambda t: pd.concat([t, t.iloc[[2]]], ignore_index=True))
    return [], f"{csv} row {240 + 2}: image_id"


def _empty_lesion(ham: Path) -> tuple[list[str], str]:
    csv = _edit_metadata(ham, lambda t: t.assign(lesion_id=t["lesion_id"].where(t.index != 4, "")))
    return [], f"{csv} row 6: empty lesion_id"


def _missing_column(ham: Path) -> tuple[list[str], str]:
    csv = _edit_metadata(ham, lambda t: t.drop(columns="dx"))
    return [], f"{csv}: missing column(s) dx"


def _missing_image(ham: Path) -> tuple[list[str], str]:
    image = _first_image(ham)
    image.unlink()
    return [], f"image '{image.stem}' not found"


def _corrupt_image(ham: Path) -> tuple[list[str], str]:
    image = _first_image(ham)
    image.write_bytes(b"\xff\xd8 not really a jpeg")
    return [], f"{image}: cannot decode image"


def _oversized_image(ham: Path) -> tuple[list[str], str]:
    """A 90-megapixel PNG (a 1-bit image: small on disk, 270 MB once decoded to RGB)."""
    path = _first_image(ham)
    path.unlink()
    Image.new("1", (10_000, 9_000)).save(path.with_suffix(".png"))
    size = "10000x9000 = 90,000,000 pixels; the limit is 89,478,485 pixels, PIL's decompression-bomb guard"
    return [], f"{path.with_suffix('.png')}: image too large to decode safely ({size}): resize it"


def _not_one_hot(ham: Path) -> tuple[list[str], str]:
    (ham / "test_images").mkdir()
    path = _write_test_set(ham, ["T1", "T2"], [[1, 1, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0]])
    for name in ("T1", "T2"):
        shutil.copy(_first_image(ham), ham / "test_images" / f"{name}.jpg")
    args = ["--data.test_csv", str(path), "--data.test_image_dir", str(ham / "test_images")]
    return args, f"{path} row 2: expected exactly one class column set to 1"


def _test_image_in_training(ham: Path) -> tuple[list[str], str]:
    leaked = _first_image(ham).stem
    path = _write_test_set(ham, [leaked])
    return ["--data.test_csv", str(path), "--data.test_image_dir", str(ham / "images")], "also in the training"


def _test_csv_without_images(ham: Path) -> tuple[list[str], str]:
    path = _write_test_set(ham, ["T1"])
    return ["--data.test_csv", str(path)], "data.test_csv is set but data.test_image_dir is not"


BROKEN = {
    "unknown dx": _unknown_dx,
    "repeated image id": _repeated_id,
    "empty lesion id": _empty_lesion,
    "missing column": _missing_column,
    "missing image": _missing_image,
    "corrupt image": _corrupt_image,
    "image too large": _oversized_image,
    "test CSV not one-hot": _not_one_hot,
    "test image also in training": _test_image_in_training,
    "test CSV without its images": _test_csv_without_images,
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_bad_lesion_input_is_one_clear_line(kind: str, ham: Path, tmp_path: Path, capsys) -> None:
    extra, expected = BROKEN[kind](ham)
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_cls_args(ham, tmp_path / "runs", *extra)])
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


@pytest.mark.e2e
def test_odd_but_valid_images_run(ham: Path, tmp_path: Path, capsys) -> None:
    images = sorted((ham / "images").iterdir())
    for i, path in enumerate(images[:40]):
        with Image.open(path) as image:
            odd = [image.convert("L"), image.convert("RGBA"), image.convert("P"), image.resize((97, 71))][i % 4]
            if i % 4 in (1, 2):  # RGBA and palette images as PNG (JPEG cannot hold them)
                path.unlink()
                odd.save(path.with_suffix(".png"))
            else:
                odd.save(path)
    with pytest.raises(SystemExit) as exit_info:
        main(["check", *tiny_cls_args(ham, tmp_path / "runs")])
    assert exit_info.value.code == 0 and "modes L (10), P (10), RGB (210), RGBA (10)" in capsys.readouterr().out
    run_dir = main(["fit", *tiny_cls_args(ham, tmp_path / "runs", "--trainer.max_epochs", "1")])
    split = pd.read_csv(run_dir / "split.csv")
    assert len(pd.read_csv(run_dir / "predictions.csv")) == int((split["split"] == "test").sum())


def test_images_too_large_are_named_by_the_check(ham: Path, tmp_path: Path, capsys) -> None:
    """Over PIL's limit, and over twice it (where PIL refuses to open the file at all): both named, with the limit."""
    images = sorted((ham / "images").iterdir())
    sizes = {images[0]: (10_000, 9_000), images[1]: (14_000, 13_000)}
    for path, size in sizes.items():
        path.unlink()
        Image.new("1", size).save(path.with_suffix(".png"))
    with pytest.raises(SystemExit) as exit_info:
        main(["check", *tiny_cls_args(ham, tmp_path / "runs")])
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    for path in sizes:
        line = next(line for line in out.splitlines() if str(path.with_suffix(".png")) in line)
        assert "image too large to decode safely" in line and "the limit is 89,478,485 pixels" in line
    assert "(182,000,000 pixels;" in out  # PIL's own count, for the file it would not open
