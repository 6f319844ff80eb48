"""The dataset check of volumes (:mod:`volume_seg.check`), as a function and through ``check`` and ``fit``: above
all, label values outside the task's classes, in every layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from tests.helpers import tiny_seg_args
from volume_seg.__main__ import main
from volume_seg.check import check_volume_dataset
from volume_seg.data import VolumeDataModule
from volume_seg.io import label_problem
from volume_seg.synthetic import generate_msd

OUTSIDE = (
    "label values 0, 1, 2, 255 are not classes 0..1 of this task (outside them: 2, 255; data.num_classes is 2; "
    "a binary label is 0/1 or 0/255)"
)
"""The problem of a binary task's label holding 2 and 255 besides 0/1."""
NIFTI_LISTS = ("--data.train_list", "null", "--data.test_list", "null")


def test_check_as_a_function_matches_the_datamodule(tiny_la: Path, tmp_path: Path) -> None:
    dm = VolumeDataModule(root=str(tiny_la), train_list="train.list", test_list="test.list", val_fraction=0.25)
    check = check_volume_dataset(tiny_la, "auto", "train.list", "test.list", 2, None, full=True)
    assert check.ok and check.summary["cases"] == "11 (la_h5 layout)" and "label values" in check.summary
    assert dm.check_data(full=True).render() == check.render()
    (tmp_path / "bad.list").write_text("nope\n")
    cheap = check_volume_dataset(tiny_la, "la_h5", None, str(tmp_path / "bad.list"), 2, None, full=False)
    assert [p.what for p in cheap.problems] == ["case 'nope' not found"] and "label values" not in cheap.summary


@pytest.mark.parametrize(
    ("values", "num_classes", "problem"),
    [
        ([0, 1], 2, ""),
        ([0, 255], 2, ""),  # a mask's usual form
        ([0.0, 1.0, 2.0], 3, ""),  # float files holding exact integers
        ([0, 2], 2, "label values 0, 2 are not classes 0..1 of this task (outside them: 2;"),
        ([0, 1, 255], 2, "label values 0, 1, 255 are not classes 0..1 of this task (outside them: 255;"),  # 255 alone
        ([0, 1, 2, 3], 3, "label values 0, 1, 2, 3 are not classes 0..2 of this task (outside them: 3; data.num"),
        ([0.0, 0.5, 1.0], 3, "label values 0, 0.5, 1 are not integers"),
        ([-1, 0, 1], 2, "label values -1, 0, 1 include negative values"),
        ([0.0, np.nan], 2, "label holds NaN or Inf values"),
    ],
)
def test_the_label_rule(values: list[float], num_classes: int, problem: str) -> None:
    found = label_problem(np.asarray(values), num_classes)
    assert found.startswith(problem) and bool(found) == bool(problem), found


def _add_outside_values(label: np.ndarray) -> np.ndarray:
    """A binary label with a 2 and a 255 added (the values of :data:`OUTSIDE`)."""
    label = label.copy()
    label[0, 0, 0], label[1, 0, 0] = 2, 255
    return label


def _broken_la(tiny_la: Path, root: Path) -> tuple[Path, list[str], Path]:
    root = Path(shutil.copytree(tiny_la, root))
    bad = root / "LA003" / "mri_norm2.h5"
    with h5py.File(bad, "r+") as h5:
        label = _add_outside_values(h5["label"][()])
        del h5["label"]
        h5.create_dataset("label", data=label)
    return root, [], bad


def _broken_msd(root: Path) -> tuple[Path, list[str], Path]:
    root = generate_msd(root, n_cases=6, shape=(20, 24, 16), num_classes=2, seed=1)
    bad = root / "labelsTr" / "case_002.nii.gz"
    label = nib.load(bad)
    nib.save(nib.Nifti1Image(_add_outside_values(np.asanyarray(label.dataobj)), label.affine), bad)
    return root, ["--data.layout", "msd", *NIFTI_LISTS], bad


def _broken_folders(root: Path) -> tuple[Path, list[str], Path]:
    msd, _, _ = _broken_msd(root.with_name("msd_source"))
    root.mkdir()
    shutil.copytree(msd / "imagesTr", root / "images")
    shutil.copytree(msd / "labelsTr", root / "labels")
    return root, ["--data.layout", "folders", *NIFTI_LISTS], root / "labels" / "case_002.nii.gz"


@pytest.fixture(params=["la_h5", "msd", "folders"])
def broken(request: pytest.FixtureRequest, tiny_la: Path, tmp_path: Path) -> tuple[Path, list[str], Path]:
    """A binary dataset in each layout whose one label holds a 2 and a 255: root, its CLI options, that file."""
    if request.param == "la_h5":
        return _broken_la(tiny_la, tmp_path / "data")
    return {"msd": _broken_msd, "folders": _broken_folders}[request.param](tmp_path / "data")


def test_check_names_the_label_and_its_values_outside_the_classes(broken, tmp_path: Path, capsys) -> None:
    root, options, bad = broken
    layout = options[1] if options else "la_h5"
    lists = (None, None) if options else ("train.list", "test.list")
    for full in (True, False):  # the check command's and fit's (cheap) check
        check = check_volume_dataset(root, layout, *lists, 2, None, full=full)
        assert [str(p) for p in check.problems] == [f"{bad}: {OUTSIDE}"], full
    with pytest.raises(SystemExit) as exit_info:
        main(["check", *tiny_seg_args(root, tmp_path / "runs", *options)])
    lines = capsys.readouterr().out.splitlines()
    assert exit_info.value.code == 1 and lines[-1] == "1 problem(s) found"
    assert [line for line in lines if line.startswith("problem: ")] == [f"problem: {bad}: {OUTSIDE}"]


def test_fit_stops_before_training_on_a_label_outside_the_classes(broken, tmp_path: Path, capsys) -> None:
    root, options, bad = broken
    existing = tmp_path / "existing_run_dir"
    existing.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", *tiny_seg_args(root, tmp_path / "runs", *options, "--run.dir", str(existing))])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exit_info.value.code == 2 and err == [f"error: {bad}: {OUTSIDE}"]
    assert not any(existing.iterdir()) and not (tmp_path / "runs").exists()  # nothing written


def _relabel(root: Path, case: str, scale: float) -> Path:
    """Store one MSD case's label as float32 times ``scale``."""
    path = root / "labelsTr" / f"{case}.nii.gz"
    label = nib.load(path)
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj).astype(np.float32) * scale, label.affine), path)
    return path


def test_float_labels_pass_when_they_hold_the_classes(tiny_msd: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_msd, tmp_path / "msd"))
    _relabel(root, "case_001", 1.0)  # float32 0/1/2, as two of the hippocampus labels
    for full in (True, False):
        check = check_volume_dataset(root, "msd", None, None, 3, None, full=full)
        assert check.ok, check.problems
    halves = _relabel(root, "case_004", 0.5)  # 0, 0.5, 1: an interpolated map, not classes
    for full in (True, False):
        check = check_volume_dataset(root, "msd", None, None, 3, None, full=full)
        assert [p.where for p in check.problems] == [str(halves)]
        assert check.problems[0].what.startswith("label values 0, 0.5, 1 are not integers"), check.problems


@pytest.mark.real
def test_hippocampus_labels_are_the_classes_of_its_three_class_setting(shared_data: Path) -> None:
    root = shared_data / "hippocampus_msd"
    assert check_volume_dataset(root, "auto", None, None, 3, None, full=False).ok
    binary = check_volume_dataset(root, "auto", None, None, 2, None, full=False)  # anterior/posterior: not binary
    assert len(binary.problems) == 260 and all("outside them: 2;" in p.what for p in binary.problems)
