"""``python -m <task> check``: every problem of a dataset listed (file, what, hint), a summary, exit 1 on problems;
``fit`` stops on the cheap part of it before training."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from lesion_cls.__main__ import main as cls_main
from tests.helpers import tiny_cls_args, tiny_seg_args
from volume_seg.__main__ import main as seg_main


def _check(main, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    with pytest.raises(SystemExit) as exit_info:
        main(["check", *args])
    return int(exit_info.value.code), capsys.readouterr().out.strip().splitlines()


def _broken_ham(tiny_ham: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = Path(shutil.copytree(tiny_ham, tmp_path / "ham"))
    csv = root / "HAM10000_metadata.csv"
    table = pd.read_csv(csv, dtype=str)
    table.loc[3, "dx"] = "melanoma"
    table.loc[7, "image_id"] = table.loc[6, "image_id"]
    table.to_csv(csv, index=False)
    missing = table.loc[10, "image_id"]
    (root / "images" / f"{missing}.jpg").unlink()
    corrupt = root / "images" / f"{table.loc[12, 'image_id']}.jpg"
    corrupt.write_bytes(b"not a jpeg")
    expected = {
        f"{csv} row 5": "unknown dx 'melanoma'",
        f"{csv} row 9": "appears twice",
        f"{csv} row 12": f"image '{missing}' not found",
        str(corrupt): "cannot decode image",
    }
    return root, expected


def test_lesion_check_lists_every_problem(tiny_ham: Path, tmp_path: Path, capsys) -> None:
    root, expected = _broken_ham(tiny_ham, tmp_path)
    code, lines = _check(cls_main, tiny_cls_args(root, tmp_path / "runs"), capsys)
    problems = [line.removeprefix("problem: ") for line in lines if line.startswith("problem: ")]
    assert code == 1 and len(problems) == len(expected), lines
    for where, what in expected.items():
        assert any(p.startswith(f"{where}: ") and what in p for p in problems), (where, problems)
    assert lines[-1] == f"{len(expected)} problem(s) found"
    assert any("classes" in line and "MEL" in line for line in lines)  # the summary table
    assert not (tmp_path / "runs").exists()  # a check writes no run


def test_fit_stops_on_the_cheap_check(tiny_ham: Path, tmp_path: Path, capsys) -> None:
    root, expected = _broken_ham(tiny_ham, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cls_main(["fit", *tiny_cls_args(root, tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1
    first = next(iter(expected))
    assert err[0].startswith(f"error: {first}: unknown dx") and "and 2 more problem(s)" in err[0]
    assert "`python -m lesion_cls check` with the same arguments lists them all" in err[0]
    assert not (tmp_path / "runs").exists()  # checked before anything read the data or made a run dir
    # the class statistics the model needs are read only after that check: with it off, the reader's own error
    with pytest.raises(SystemExit):
        cls_main(["fit", *tiny_cls_args(root, tmp_path / "runs"), "--run.check_data", "false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {first}: unknown dx") and "more problem" not in err[0]


def test_clean_datasets_pass(tiny_ham: Path, tiny_la: Path, tmp_path: Path, capsys) -> None:
    code, lines = _check(cls_main, tiny_cls_args(tiny_ham, tmp_path / "runs"), capsys)
    assert code == 0 and lines[-1] == "no problems found"
    assert any(line.startswith("decoded images (240)") for line in lines)
    code, lines = _check(seg_main, tiny_seg_args(tiny_la, tmp_path / "runs"), capsys)
    assert code == 0 and lines[-1] == "no problems found"
    summary = dict(line.split(None, 1) for line in lines[:-1] if not line.startswith(("cases", "label", "empty")))
    assert summary["shapes"] == "32..32 x 32..32 x 24..24" and "none stored" in summary["spacings"]


def test_volume_check_lists_every_problem(tiny_la: Path, tmp_path: Path, capsys) -> None:
    root = Path(shutil.copytree(tiny_la, tmp_path / "la"))
    cases = sorted(p.name for p in root.iterdir() if p.is_dir())
    (root / "train.list").write_text((root / "train.list").read_text() + "LA999\n")
    with h5py.File(root / cases[0] / "mri_norm2.h5", "r+") as h5:
        image = h5["image"][()]
        image[0, 0, 0] = np.nan
        del h5["image"]
        h5.create_dataset("image", data=image)
    with h5py.File(root / cases[1] / "mri_norm2.h5", "r+") as h5:
        del h5["label"]
    truncated = root / cases[2] / "mri_norm2.h5"
    truncated.write_bytes(truncated.read_bytes()[:500])
    code, lines = _check(seg_main, tiny_seg_args(root, tmp_path / "runs"), capsys)
    problems = [line.removeprefix("problem: ") for line in lines if line.startswith("problem: ")]
    assert code == 1 and len(problems) == 4, lines
    assert f"{root / 'train.list'}: case 'LA999' not found" in problems[0]
    assert any("NaN/Inf voxel" in p for p in problems) and any("no 'label' dataset" in p for p in problems)
    assert any(p.startswith(f"{truncated}: cannot read volume") for p in problems)
    assert any(line.startswith("cases") and str(len(cases)) in line for line in lines)
