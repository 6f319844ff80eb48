"""Bad volume datasets through the real CLI: one ``error:`` line naming the file, exit status 2, no traceback.

Odd but valid inputs (labels stored as 0/255, float label files holding exact integers, volumes smaller than
the patch) run to the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from tests.helpers import REPO, tiny_seg_args
from volume_seg.__main__ import main
from volume_seg.synthetic import generate_la_h5, generate_msd

CASE = "LA001"  # a training case of the generated LA layout


@pytest.fixture
def la(tiny_la: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny LA dataset to break."""
    return Path(shutil.copytree(tiny_la, tmp_path / "la"))


def _rewrite(la: Path, case: str = CASE, **datasets: np.ndarray | None) -> Path:
    """Replace datasets of one case's h5 file (``None`` drops a dataset)."""
    path = la / case / "mri_norm2.h5"
    with h5py.File(path, "r") as h5:
        content = {k: h5[k][()] for k in h5}
    content.update(datasets)
    with h5py.File(path, "w") as h5:
        for key, value in content.items():
            if value is not None:
                h5.create_dataset(key, data=value)
    return path


def _image_label(la: Path, case: str = CASE) -> tuple[np.ndarray, np.ndarray]:
    with h5py.File(la / case / "mri_norm2.h5", "r") as h5:
        return h5["image"][()], h5["label"][()]


def _no_label(la: Path) -> tuple[str, str]:
    return str(_rewrite(la, label=None)), "no 'label' dataset"


def _shape_mismatch(la: Path) -> tuple[str, str]:
    _, label = _image_label(la)
    return str(_rewrite(la, label=label[:-2])), "label shape (30, 32, 24) differs from image shape (32, 32, 24)"


def _two_dimensional(la: Path) -> tuple[str, str]:
    image, label = _image_label(la)
    return str(_rewrite(la, image=image[..., 0], label=label[..., 0])), "expected a 3D volume, got shape (32, 32)"


def _truncated(la: Path) -> tuple[str, str]:
    path = la / CASE / "mri_norm2.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path), "cannot read volume"


def _nan_voxels(la: Path) -> tuple[str, str]:
    image, _ = _image_label(la)
    image[3, 4, 5] = np.nan
    image[6, 7, 8] = np.inf
    return str(_rewrite(la, image=image)), "image holds 2 NaN/Inf voxel(s)"


def _probability_label(la: Path) -> tuple[str, str]:
    _, label = _image_label(la)
    return str(_rewrite(la, label=label.astype(np.float32) * 0.5)), "label values 0, 0.5 are not integers"


def _negative_label(la: Path) -> tuple[str, str]:
    _, label = _image_label(la)
    return str(_rewrite(la, label=label.astype(np.int16) - 1)), "include negative values"


def _missing_case(la: Path) -> tuple[str, str]:
    (la / "train.list").write_text((la / "train.list").read_text() + "LA999\n")
    return str(la / "train.list"), "case 'LA999' not found"


def _duplicate_case(la: Path) -> tuple[str, str]:
    (la / "train.list").write_text((la / "train.list").read_text() + f"{CASE}\n")
    return str(la / "train.list"), f"case '{CASE}' is listed more than once"


BROKEN: dict[str, Callable[[Path], tuple[str, str]]] = {
    "h5 without label": _no_label,
    "label shape differs": _shape_mismatch,
    "2D image": _two_dimensional,
    "truncated h5": _truncated,
    "NaN/Inf voxels": _nan_voxels,
    "label 0/0.5": _probability_label,
    "negative label": _negative_label,
    "list names a missing case": _missing_case,
    "list repeats a case": _duplicate_case,
}


def _expect_error(args: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


@pytest.mark.parametrize("kind", list(BROKEN))
def test_bad_volume_input_is_one_clear_line(kind: str, la: Path, tmp_path: Path, capsys) -> None:
    where, what = BROKEN[kind](la)
    line = _expect_error(["fit", *tiny_seg_args(la, tmp_path / "runs")], capsys)
    assert line.startswith(f"error: {where}") and what in line, line


@pytest.mark.e2e
def test_empty_training_label_warns_or_is_refused(la: Path, tmp_path: Path, capsys) -> None:
    _, label = _image_label(la)
    _rewrite(la, label=np.zeros_like(label))
    line = _expect_error(["fit", *tiny_seg_args(la, tmp_path / "runs", "--data.empty_labels", "error")], capsys)
    assert f"have an empty label: {CASE}" in line
    with pytest.warns(UserWarning, match=f"empty label: {CASE}"):
        assert main(["fit", *tiny_seg_args(la, tmp_path / "runs", "--trainer.max_epochs", "1")]) is not None


def test_nifti_label_in_another_space_is_refused(tmp_path: Path, capsys) -> None:
    root = generate_msd(tmp_path / "msd", n_cases=6, shape=(20, 24, 16), seed=1)
    label_path = sorted((root / "labelsTr").iterdir())[0]
    label = nib.load(label_path)
    shifted = label.affine.copy()
    shifted[0, 3] += 5.0
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj), shifted), label_path)
    msd = ("--data.num_classes", "3", "--data.layout", "msd", "--data.train_list", "null", "--data.test_list", "null")
    line = _expect_error(["fit", *tiny_seg_args(root, tmp_path / "runs", *msd)], capsys)
    assert line.startswith(f"error: {label_path}: affine differs from its image's"), line


def test_a_label_outside_the_classes_is_refused_also_without_the_check(la: Path, tmp_path: Path, capsys) -> None:
    """``run.check_data false`` skips the check before training; reading the volumes refuses the label all the same."""
    _, label = _image_label(la)
    path = _rewrite(la, label=label * 2)  # 0/2 in a binary task: not folded into foreground
    args = tiny_seg_args(la, tmp_path / "runs", "--run.check_data", "false")
    line = _expect_error(["fit", *args], capsys)
    assert line.startswith(f"error: {path}: label values 0, 2 are not classes 0..1 of this task (outside them: 2;")


@pytest.mark.e2e
def test_odd_but_valid_volumes_run(tmp_path: Path) -> None:
    root = generate_la_h5(tmp_path / "odd", n_train=6, n_test=2, shape=(12, 12, 10), seed=2)  # smaller than the patch
    for i, case in enumerate(sorted(p.name for p in root.iterdir() if p.is_dir())):
        _, label = _image_label(root, case)
        stored = label.astype(np.uint8) * 255 if i % 2 else label.astype(np.float32)  # 0/255; float integers
        _rewrite(root, case, label=stored)
    run_dir = main(["fit", *tiny_seg_args(root, tmp_path / "runs", "--trainer.max_epochs", "1")])
    assert (run_dir / "metrics.json").is_file() and len(list((run_dir / "predictions").iterdir())) == 2


@pytest.mark.smoke
def test_truncated_file_in_a_fresh_process_exits_cleanly(la: Path, tmp_path: Path) -> None:
    """The case that aborted (exit -6) or hung: a separate process, so signals and stray threads would show."""
    where, what = _truncated(la)
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "volume_seg", "fit", *tiny_seg_args(la, tmp_path / "runs")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and f"error: {where}: {what}" in result.stderr
