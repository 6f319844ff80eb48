"""HAM10000/ISIC parsing and image reading (``lesion_cls.io``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.cache import build_pixel_cache
from lesion_cls.io import read_folder, read_ham_metadata, read_isic_ground_truth


def _write_metadata(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx"]).to_csv(folder / "meta.csv", index=False)
    return folder / "meta.csv"


def test_read_ham_metadata(tiny_ham: Path) -> None:
    table = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    raw = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    assert len(table) == len(raw) == 240
    assert [CLASS_NAMES[i].lower() for i in table["label"]] == raw["dx"].tolist()
    assert all(Path(p).is_file() for p in table["path"])


def test_metadata_errors_name_file_and_row(tmp_path: Path) -> None:
    csv = _write_metadata(tmp_path, [("L1", "A", "nv"), ("L2", "B", "melanoma")])
    with pytest.raises(MedlitError, match=r"meta.csv row 3: unknown dx 'melanoma'"):
        read_ham_metadata(csv)
    csv = _write_metadata(tmp_path, [("L1", "A", "nv"), ("L2", "A", "mel")])
    with pytest.raises(MedlitError, match=r"row 3: image_id 'A' appears twice"):
        read_ham_metadata(csv)
    pd.DataFrame({"image_id": ["A"], "dx": ["nv"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MedlitError, match=r"bad.csv: missing column\(s\) lesion_id"):
        read_ham_metadata(tmp_path / "bad.csv")
    csv = _write_metadata(tmp_path, [("L1", "A", "nv")])
    (tmp_path / "images").mkdir()
    with pytest.raises(MedlitError, match=r"row 2: image 'A' not found in .*images"):
        read_ham_metadata(csv, tmp_path / "images")
    with pytest.raises(MedlitError, match="file not found"):
        read_ham_metadata(tmp_path / "nope.csv")


def test_read_isic_ground_truth(tmp_path: Path) -> None:
    csv = tmp_path / "gt.csv"
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nI1,0,1,0,0,0,0,0\nI2,0.0,0.0,0.0,0.0,0.0,0.0,1.0\n")
    table = read_isic_ground_truth(csv)
    assert table["label"].tolist() == [1, 6]
    assert table["lesion_id"].tolist() == ["I1", "I2"]
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nI1,0,1,0,0,0,0,0\nI2,1,1,0,0,0,0,0\n")
    with pytest.raises(MedlitError, match="gt.csv row 3: expected exactly one class column"):
        read_isic_ground_truth(csv)
    csv.write_text("image,MEL,NV\nI1,0,1\n")
    with pytest.raises(MedlitError, match=r"missing column\(s\) BCC, AKIEC, BKL, DF, VASC"):
        read_isic_ground_truth(csv)


def test_predict_folder(tiny_ham: Path, tmp_path: Path) -> None:
    table = read_folder(tiny_ham / "images")
    assert len(table) == 240 and (table["label"] == -1).all()
    with pytest.raises(MedlitError, match="no .jpg/.png images"):
        read_folder(tmp_path)


def test_unusual_but_valid_metadata_reads_the_same(tiny_ham: Path, tmp_path: Path) -> None:
    """Columns in another order, extra columns, upper-case and padded dx codes: the same table, no error."""
    raw = pd.read_csv(tiny_ham / "HAM10000_metadata.csv", dtype=str)
    odd = raw.assign(dx=" " + raw["dx"].str.upper() + " ", site="back", age="55")
    odd = odd[["site", "dx", "age", "image_id", "lesion_id"]]
    odd.to_csv(tmp_path / "odd.csv", index=False)
    expected = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    got = read_ham_metadata(tmp_path / "odd.csv", tiny_ham / "images")
    pd.testing.assert_frame_equal(got, expected)


def test_16_bit_and_one_pixel_images_are_read_as_8_bit_rgb(tmp_path: Path) -> None:
    """Unusual but valid: a 16-bit grey PNG is scaled to 8 bits (PIL's own conversion would clip it to white), and
    a 1-pixel image is resized like any other."""
    from PIL import Image

    ramp = np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000  # 0 ... 63,000
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    Image.new("RGB", (1, 1), (10, 20, 30)).save(tmp_path / "dot.png")
    paths = [str(tmp_path / "deep.png"), str(tmp_path / "dot.png")]
    pixels = np.load(build_pixel_cache(paths, (8, 8), tmp_path / "cache"))
    expected = np.round(ramp / 257.0)
    for channel in range(3):
        np.testing.assert_allclose(pixels[0, :, :, channel], expected, atol=1)
    assert pixels[0].max() == 245 and (pixels[1] == [10, 20, 30]).all()
