"""The real LA (UA-MT h5) and MSD hippocampus volumes in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import REPO, fit_in_a_fresh_process
from volume_seg.__main__ import main
from volume_seg.io import discover_cases, load_volume, read_case_list

pytestmark = pytest.mark.real

FEW_STEPS = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.limit_test_batches",
    "2",
    "--trainer.enable_progress_bar",
    "false",
    "--run.wandb",
    "off",
    "--data.num_workers",
    "0",
    "--outputs.views_3d",
    "false",
    "--model.channels",
    "[4, 8, 16]",
    "--model.strides",
    "[2, 2]",
]


def test_la_lists_and_volumes(shared_data: Path) -> None:
    root = shared_data / "la_uamt_h5"
    labelled, test = read_case_list(root / "labeled16.list"), read_case_list(root / "test20.list")
    assert len(labelled) == 16 and len(test) == 20 and not set(labelled) & set(test)
    layout, records = discover_cases(root)
    assert layout == "la_h5" and len(records) == 36
    volume = load_volume(next(r for r in records if r["case"] == test[0]), num_classes=2)
    assert volume["image"].shape[1:][2] == 88 and set(np.unique(volume["label"])) == {0, 1}
    assert np.isnan(volume["spacing"]).all()


def test_hippocampus_quirks(shared_data: Path) -> None:
    root = shared_data / "hippocampus_msd"
    layout, records = discover_cases(root)
    assert layout == "folders" and len(records) == 260
    float_labels = [r for r in records if nib.load(r["label"]).get_data_dtype() == np.float32]
    uint8_images = [r for r in records if nib.load(r["image"]).get_data_dtype() == np.uint8]
    assert len(float_labels) == 2 and len(uint8_images) == 55
    for record in float_labels:
        assert set(np.unique(load_volume(record, num_classes=3)["label"])) == {0, 1, 2}
    volume = load_volume(uint8_images[0], num_classes=3)
    assert volume["image"].dtype == np.float32 and volume["image"].max() > 1
    np.testing.assert_allclose(volume["spacing"], [1.0, 1.0, 1.0])


@pytest.mark.e2e
def test_few_steps_on_la(shared_data: Path, tmp_path: Path) -> None:
    run_dir = main(
        [
            "fit",
            "--config",
            str(REPO / "experiments" / "seg_bce.yaml"),
            "--data.root",
            str(shared_data / "la_uamt_h5"),
            "--data.train_list",
            "labeled16.list",
            "--data.test_list",
            "test20.list",
            "--data.patch_size",
            "[64, 64, 48]",
            "--data.batch_size",
            "2",
            "--model.sw_batch_size",
            "4",
            "--run.root",
            str(tmp_path),
            *FEW_STEPS,
        ]
    )
    split = pd.read_csv(run_dir / "split.csv")
    assert (split["split"] == "test").sum() == 20 and (split["split"] != "test").sum() == 16
    assert not set(split.loc[split["split"] == "val", "case"]) & set(split.loc[split["split"] == "test", "case"])
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_cases"] == 2 and metrics["distance_unit"] == "voxels"
    assert len(list((run_dir / "predictions").glob("*.nii.gz"))) == 2


@pytest.mark.e2e
def test_few_steps_on_hippocampus(shared_data: Path, tmp_path: Path) -> None:
    run_dir = main(
        [
            "fit",
            "--config",
            str(REPO / "experiments" / "seg_dice.yaml"),
            "--data.root",
            str(shared_data / "hippocampus_msd"),
            "--data.layout",
            "folders",
            "--data.train_list",
            "null",
            "--data.test_list",
            "null",
            "--data.num_classes",
            "3",
            "--data.patch_size",
            "[32, 32, 32]",
            "--data.augment",
            "rotflip",
            "--model.lr",
            "0.001",
            "--run.root",
            str(tmp_path),
            *FEW_STEPS,
        ]
    )
    table = pd.read_csv(run_dir / "metrics_per_case.csv")
    assert set(table["class"]) == {"class_1", "class_2"} and set(table["distance_unit"]) == {"mm"}
    split = pd.read_csv(run_dir / "split.csv")
    assert split["split"].value_counts().to_dict() == {"train": 166, "test": 52, "val": 42}


RECIPE_STEPS = [
    *("--trainer.max_time", "null", "--trainer.max_steps", "3", "--trainer.limit_val_batches", "1"),
    *("--trainer.limit_test_batches", "1", "--trainer.enable_progress_bar", "false", "--run.wandb", "off"),
    *("--outputs.views_3d", "false"),
]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize(
    ("recipe", "folder", "split_sizes"),
    [
        ("la16", "la_uamt_h5", {"test": 20, "train": 14, "val": 2}),
        ("hippocampus", "hippocampus_msd", {"train": 187, "test": 52, "val": 21}),
    ],
)
def test_recipe_runs_a_few_steps(
    shared_data: Path, tmp_path: Path, recipe: str, folder: str, split_sizes: dict[str, int]
) -> None:
    """Each recipe, unchanged but for its budget, on the real data: the split it promises, its settings in the
    run's config, and a scored test case."""
    recipe_path = REPO / "experiments" / "recipes" / f"{recipe}.yaml"
    args = ["fit", "--config", str(recipe_path), "--data.root", str(shared_data / folder), "--run.root", str(tmp_path)]
    run_dir = fit_in_a_fresh_process("volume_seg", [*args, *RECIPE_STEPS])
    split = pd.read_csv(run_dir / "split.csv")
    assert split["split"].value_counts().to_dict() == split_sizes
    config, recipe_config = (yaml.safe_load(path.read_text()) for path in (run_dir / "config.yaml", recipe_path))
    for section in ("model", "data"):
        for key, value in recipe_config[section].items():
            if key != "root":
                assert config[section][key] == value, f"{section}.{key}"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_cases"] == 1 and metrics["largest_component"] is True
    assert np.isfinite(metrics["dice"]["mean"])


@pytest.mark.slow
@pytest.mark.e2e
def test_la_two_fold_cross_validation(shared_data: Path, tmp_path: Path) -> None:
    """``common.studies.cv`` on LA-16 for a few steps: the 16 labelled cases out of fold once each, the fold ensemble
    tested on the 20 test cases, its Dice that of medpy on a saved mask."""
    from medpy.metric import binary as medpy

    from common.studies.cv import run_cv

    root = shared_data / "la_uamt_h5"
    at = FEW_STEPS.index("--trainer.limit_test_batches")
    few = FEW_STEPS[:at] + FEW_STEPS[at + 2 :]  # every case tested once
    args = ["--config", str(REPO / "experiments" / "recipes" / "la16.yaml"), "--data.root", str(root), *few]
    cv_dir = run_cv("volume_seg", [*args, "--outputs.overlays", "false"], 2, tmp_path / "cv", wandb_mode="off")
    pooled = pd.read_csv(cv_dir / "oof" / "metrics_per_case.csv")
    assert sorted(pooled["case"]) == sorted(read_case_list(root / "labeled16.list"))
    tested = pd.read_csv(cv_dir / "ensemble" / "metrics_per_case.csv")
    assert sorted(tested["case"]) == sorted(read_case_list(root / "test20.list"))
    row = tested.iloc[0]
    mask = np.asarray(nib.load(cv_dir / "ensemble" / "predictions" / f"{row['case']}.nii.gz").dataobj) > 0
    record = next(r for r in discover_cases(root)[1] if r["case"] == row["case"])
    label = np.asarray(load_volume(record, num_classes=2)["label"])[0] > 0
    assert row["dice"] == pytest.approx(medpy.dc(mask, label) if mask.any() or label.any() else 1.0, abs=1e-6)
    assert "fold ensemble on test" in (cv_dir / "summary.md").read_text()
