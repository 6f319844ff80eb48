"""Volume discovery (LA h5, MSD, folders), case lists, reading and label checks (:mod:`volume_seg.io`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from common.errors import MedlitError
from volume_seg.io import discover_cases, load_volume, read_case_list


def test_discover_layouts(tiny_la: Path, tiny_msd: Path, tmp_path: Path) -> None:
    layout, records = discover_cases(tiny_la)
    assert layout == "la_h5" and len(records) == 11 and records[0]["format"] == "h5"
    layout, records = discover_cases(tiny_msd)
    assert layout == "msd" and len(records) == 8 and records[0]["image"].endswith(".nii.gz")
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for record in records[:3]:
        shutil.copy(record["image"], tmp_path / "images")
        shutil.copy(record["label"], tmp_path / "labels")
    layout, records = discover_cases(tmp_path)
    assert layout == "folders" and [r["case"] for r in records] == ["case_000", "case_001", "case_002"]
    (tmp_path / "labels" / "case_002.nii.gz").unlink()
    with pytest.raises(MedlitError, match="case_002.*no label of the same name"):
        discover_cases(tmp_path)
    with pytest.raises(MedlitError, match="no known layout"):
        discover_cases(tmp_path / "images")


def test_case_lists(tmp_path: Path) -> None:
    (tmp_path / "a.list").write_text("CASE1\n\n# comment\n../data/CASE2/mri_norm2.h5\n")
    assert read_case_list(tmp_path / "a.list") == ["CASE1", "CASE2"]
    with pytest.raises(MedlitError, match="case list not found"):
        read_case_list(tmp_path / "missing.list")


def test_load_binary_and_multiclass(tiny_msd: Path, tmp_path: Path) -> None:
    _, records = discover_cases(tiny_msd)
    multi = load_volume(records[0], num_classes=3)
    assert multi["image"].shape == (1, 24, 28, 20) and multi["image"].dtype == np.float32
    assert set(np.unique(multi["label"])) == {0, 1, 2}
    np.testing.assert_allclose(multi["spacing"], [1.0, 1.0, 1.5])
    # a binary task refuses a 3-class label instead of merging its classes into foreground
    with pytest.raises(MedlitError, match=r"label values 0, 1, 2 are not classes 0..1 of this task \(outside them: 2;"):
        load_volume(records[0], num_classes=2)
    # float labels holding 0/1/2 are accepted, anything else is refused with the file named
    label = nib.load(records[0]["label"])
    nib.save(nib.Nifti1Image(np.asanyarray(label.dataobj).astype(np.float32), label.affine), tmp_path / "f.nii.gz")
    assert set(np.unique(load_volume({**records[0], "label": str(tmp_path / "f.nii.gz")}, 3)["label"])) == {0, 1, 2}
    halves = np.asanyarray(label.dataobj).astype(np.float32) * 0.5  # 0, 0.5, 1: not class indices
    nib.save(nib.Nifti1Image(halves, label.affine), tmp_path / "h.nii.gz")
    with pytest.raises(MedlitError, match=r"h.nii.gz: label values 0, 0.5, 1 are not integers .*expected classes 0..2"):
        load_volume({**records[0], "label": str(tmp_path / "h.nii.gz")}, 3)
    with pytest.raises(MedlitError, match=r"label values 0, 0.5, 1 are not integers .*0..1 \(or 0/255\)"):
        load_volume({**records[0], "label": str(tmp_path / "h.nii.gz")}, 2)  # binary too: never label > 0
    twos = np.asanyarray(label.dataobj).astype(np.float32)
    nib.save(nib.Nifti1Image(twos + 1, label.affine), tmp_path / "t.nii.gz")
    with pytest.raises(MedlitError, match=r"t.nii.gz: label values 1, 2, 3 are not classes 0..2"):
        load_volume({**records[0], "label": str(tmp_path / "t.nii.gz")}, 3)


def test_la_h5_has_no_spacing_unless_given(tiny_la: Path) -> None:
    _, records = discover_cases(tiny_la)
    volume = load_volume(records[0], 2)
    assert np.isnan(volume["spacing"]).all()
    with h5py.File(records[0]["image"]) as h5:
        np.testing.assert_array_equal(volume["label"][0], h5["label"][()])
    np.testing.assert_allclose(load_volume(records[0], 2, spacing=[0.625] * 3)["spacing"], [0.625] * 3)


def test_msd_dataset_json_errors(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text(json.dumps({"training": [{"image": "x.nii.gz"}]}))
    with pytest.raises(MedlitError, match="training entry 0 needs 'image' and 'label'"):
        discover_cases(tmp_path)


def test_an_explicit_layout_without_its_files_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(MedlitError, match=r"labels: not found \(data.layout folders needs images/ and labels/\)"):
        discover_cases(tmp_path, "folders")
    with pytest.raises(MedlitError, match=r"dataset.json: not found \(data.layout msd needs dataset.json\)"):
        discover_cases(tmp_path, "msd")


def test_msd_keeps_the_dataset_json_order_and_leaves_out_unlabelled_test_images(tiny_msd: Path, tmp_path: Path) -> None:
    root = Path(shutil.copytree(tiny_msd, tmp_path / "msd"))
    dataset = json.loads((root / "dataset.json").read_text())
    dataset["training"] = dataset["training"][::-1]  # MSD's own files are not in name order
    dataset["test"] = [dataset["training"][0]["image"]]
    (root / "dataset.json").write_text(json.dumps(dataset))
    _, records = discover_cases(root, "msd")
    assert [r["case"] for r in records] == [f"case_{i:03d}" for i in range(7, -1, -1)]
    assert records[0] == {
        "case": "case_007",
        "image": str(root / "imagesTr" / "case_007.nii.gz"),
        "label": str(root / "labelsTr" / "case_007.nii.gz"),
        "format": "nifti",
    }
    (root / "dataset.json").write_text(json.dumps({"training": ["imagesTr/case_000.nii.gz"]}))
    with pytest.raises(MedlitError, match="dataset.json: expected JSON with a 'training' list of objects"):
        discover_cases(root)
    (root / "dataset.json").write_text("{not json")
    with pytest.raises(MedlitError, match="dataset.json: expected JSON with a 'training' list of objects"):
        discover_cases(root)
