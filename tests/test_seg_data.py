"""Volume discovery (LA h5, MSD, folders), labels, splits, normalisation, patch sampling, augmentation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch

from common.errors import MedlitError
from volume_seg.data import PatchDataset, VolumeDataModule, discover_cases, load_volume, read_case_list


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
    binary = load_volume(records[0], num_classes=2)
    np.testing.assert_array_equal(binary["label"], multi["label"] > 0)
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


def test_split_with_lists_never_validates_on_test_cases(tiny_la: Path) -> None:
    dm = VolumeDataModule(
        root=str(tiny_la),
        train_list="train.list",
        test_list="test.list",
        val_fraction=0.25,
        patch_size=[16, 16, 16],
        num_workers=0,
    )
    dm.setup("fit")
    split = dm.split_table()
    test = set(read_case_list(tiny_la / "test.list"))
    assert set(split.loc[split["split"] == "test", "case"]) == test
    assert not test & set(split.loc[split["split"] != "test", "case"])
    assert (split["split"] == "val").sum() == 2 and (split["split"] == "train").sum() == 6
    assert len(dm.train_dataset) == 6 * 8


def test_split_without_lists_and_leak_check(tiny_msd: Path, tmp_path: Path) -> None:
    dm = VolumeDataModule(
        root=str(tiny_msd), num_classes=3, test_fraction=0.25, val_fraction=0.2, patch_size=[16, 16, 16], num_workers=0
    )
    dm.setup("fit")
    counts = dm.split_table()["split"].value_counts()
    assert counts["test"] == 2 and counts["val"] == 1 and counts["train"] == 5
    root = tmp_path / "la"
    shutil.copytree(tiny_msd, root)
    (root / "train.list").write_text("case_000\ncase_001\ncase_002\n")
    (root / "test.list").write_text("case_002\n")
    with pytest.raises(MedlitError, match="case 'case_002' is in both train.list and test.list"):
        VolumeDataModule(root=str(root), num_classes=3, train_list="train.list", test_list="test.list").setup("fit")
    (root / "test.list").write_text("case_999\n")
    with pytest.raises(MedlitError, match=r"test.list: 1 case\(s\) not found under .*: 'case_999'"):
        VolumeDataModule(root=str(root), num_classes=3, test_list="test.list").setup("fit")


def test_zscore_normalisation_per_volume(tiny_msd: Path) -> None:
    dm = VolumeDataModule(root=str(tiny_msd), num_classes=3, patch_size=[16, 16, 16], num_workers=0)
    dm.setup("fit")
    for item in (dm.val_dataset[0], dm.test_dataset[0]):
        # the generator scales raw intensities by up to 5e4; normalised volumes have mean 0, std 1
        assert abs(float(item["image"].mean())) < 1e-3 and abs(float(item["image"].std()) - 1) < 1e-2


def test_patches_padding_and_foreground_sampling(tiny_la: Path) -> None:
    dm = VolumeDataModule(
        root=str(tiny_la),
        train_list="train.list",
        test_list="test.list",
        patch_size=[40, 40, 16],
        num_workers=0,
        sampling="foreground",
        foreground_ratio=1.0,
    )
    dm.setup("fit")
    patch = dm.train_dataset[0]
    assert patch["image"].shape == (1, 40, 40, 16) and patch["label"].shape == (1, 40, 40, 16)
    assert patch["label"].sum() > 0  # centred on foreground
    uniform = VolumeDataModule(
        root=str(tiny_la), train_list="train.list", test_list="test.list", patch_size=[8, 8, 8], num_workers=0
    )
    fg = VolumeDataModule(
        root=str(tiny_la),
        train_list="train.list",
        test_list="test.list",
        patch_size=[8, 8, 8],
        num_workers=0,
        sampling="foreground",
        foreground_ratio=1.0,
    )
    uniform.setup("fit")
    fg.setup("fit")
    torch.manual_seed(0)
    share = {
        name: np.mean([float(d.train_dataset[i]["label"].float().mean()) for i in range(48)])
        for name, d in (("uniform", uniform), ("foreground", fg))
    }
    assert share["foreground"] > share["uniform"] + 0.1


@pytest.mark.parametrize("augment", ["rotflip", "rich", "nnunet", "nnunet_elastic"])
def test_augmentation_keeps_image_and_label_aligned(tmp_path: Path, augment: str) -> None:
    rng = np.random.default_rng(0)
    label = np.zeros((24, 24, 16), np.uint8)
    label[4:14, 6:20, 3:12] = 1
    image = label * 10.0 + rng.normal(0, 0.1, label.shape)
    (tmp_path / "C1").mkdir()
    (tmp_path / "C2").mkdir()
    for case in ("C1", "C2"):
        with h5py.File(tmp_path / case / "mri_norm2.h5", "w") as h5:
            h5["image"], h5["label"] = image.astype(np.float32), label
    dm = VolumeDataModule(
        root=str(tmp_path),
        normalize="none",
        augment=augment,
        patch_size=[24, 24, 16],
        val_fraction=0.5,
        test_fraction=0.0,
        num_workers=0,
    )
    dm.setup("fit")
    cached = dm.train_dataset.volumes[0]["image"].clone()
    changed = False
    for i in range(12):
        patch = dm.train_dataset[i]
        bright = patch["image"][0] > 5
        agreement = (bright == (patch["label"][0] > 0)).float().mean()
        assert agreement > 0.97, agreement  # interpolation may blur the boundary a little
        changed |= not torch.equal(patch["label"][0], torch.as_tensor(label))
    assert changed
    torch.testing.assert_close(dm.train_dataset.volumes[0]["image"], cached)  # the cache is never modified


def test_rotation_needs_square_patch_and_other_checks() -> None:
    with pytest.raises(MedlitError, match="equal first two sides"):
        VolumeDataModule(augment="rotflip", patch_size=[96, 112, 80])
    VolumeDataModule(augment="nnunet", patch_size=[96, 112, 80])  # mirrors, never rotates by 90 degrees
    with pytest.raises(MedlitError, match="unknown data.augment 'flip'"):
        VolumeDataModule(augment="flip")
    with pytest.raises(MedlitError, match="num_classes counts the background"):
        VolumeDataModule(num_classes=1)


def test_patch_dataset_length_defines_an_epoch() -> None:
    volumes = [{"image": torch.zeros(1, 4, 4, 4), "label": torch.zeros(1, 4, 4, 4)}] * 3
    dataset = PatchDataset(volumes, lambda d: d, patches_per_volume=5)
    assert len(dataset) == 15 and dataset[14]["image"].shape == (1, 4, 4, 4)


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
