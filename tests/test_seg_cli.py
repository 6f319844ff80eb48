"""End to end through the CLI: fit + test outputs checked against medpy, multi-class NIfTI, predict."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from medpy.metric import binary as medpy

from tests.helpers import assert_one_number, assert_png, tiny_seg_args
from volume_seg.__main__ import main


@pytest.fixture(scope="module")
def la_run(tiny_la: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return main(["fit", *tiny_seg_args(tiny_la, tmp_path_factory.mktemp("runs"))])


@pytest.mark.smoke
def test_la_run_outputs(la_run: Path, tiny_la: Path) -> None:
    for name in (
        "config.yaml",
        "history.csv",
        "curves.png",
        "split.csv",
        "metrics.json",
        "metrics_per_case.csv",
        "timing.json",
        "checkpoints/last.ckpt",
    ):
        assert (la_run / name).is_file(), name
    config = yaml.safe_load((la_run / "config.yaml").read_text())
    assert config["data"]["patch_size"] == [16, 16, 16] and "roi_size" not in config["model"]  # linked, not saved
    hparams = torch.load(la_run / "checkpoints" / "last.ckpt", weights_only=False)["hyper_parameters"]
    assert list(hparams["roi_size"]) == [16, 16, 16] and hparams["num_classes"] == 2
    history = pd.read_csv(la_run / "history.csv")
    assert {"train/loss", "val/loss", "val/dice"} <= set(history.columns) and len(history) == 2
    split = pd.read_csv(la_run / "split.csv")
    test_cases = (tiny_la / "test.list").read_text().split()
    assert sorted(split.loc[split["split"] == "test", "case"]) == sorted(test_cases)
    assert not set(split.loc[split["split"] == "val", "case"]) & set(test_cases)
    for case in test_cases:
        assert_png(la_run / "overlays" / f"{case}.png")
        assert_png(la_run / "views3d" / f"{case}.png")
        html = (la_run / "views3d" / f"{case}.html").read_text()
        assert case in html and '"type":"mesh3d"' in html  # the case's surfaces, drawn by plotly
    assert (la_run / "views3d" / "plotly.min.js").stat().st_size > 100_000  # plotly itself, for offline viewing


@pytest.mark.smoke
def test_la_metrics_equal_medpy_on_saved_masks(la_run: Path, tiny_la: Path) -> None:
    table = pd.read_csv(la_run / "metrics_per_case.csv")
    assert set(table["distance_unit"]) == {"voxels"}
    for row in table.itertuples():
        prediction = np.asanyarray(nib.load(la_run / "predictions" / f"{row.case}.nii.gz").dataobj)
        with h5py.File(tiny_la / row.case / "mri_norm2.h5") as h5:
            label = h5["label"][()]
        assert prediction.shape == label.shape
        assert row.dice == pytest.approx(medpy.dc(prediction, label), abs=1e-6)
        assert row.jaccard == pytest.approx(medpy.jc(prediction, label), abs=1e-6)
        if prediction.any():
            assert row.hd95 == pytest.approx(medpy.hd95(prediction, label), abs=1e-5)
            assert row.asd == pytest.approx(medpy.asd(prediction, label), abs=1e-5)
        else:
            assert np.isnan(row.hd95) and row.empty_prediction
    metrics = json.loads((la_run / "metrics.json").read_text())
    assert metrics["dice"]["mean"] == pytest.approx(table["dice"].mean(), abs=1e-6)
    assert metrics["hd95"]["mean"] == pytest.approx(table["hd95"].mean(), abs=1e-5)
    assert metrics["n_cases"] == 3 and metrics["distance_unit"] == "voxels"
    assert metrics["units"]["hd95"] == "voxels" and "empty" in metrics["empty_mask_policy"]
    assert metrics["largest_component"] is False
    assert_one_number(la_run, ("dice", "jaccard", "hd95", "asd", "loss"))


@pytest.mark.smoke
def test_multiclass_msd_in_mm_with_largest_component(tiny_msd: Path, tmp_path: Path) -> None:
    run_dir = main(
        [
            "fit",
            *tiny_seg_args(
                tiny_msd,
                tmp_path,
                "--data.num_classes",
                "3",
                "--data.layout",
                "msd",
                "--data.train_list",
                "null",
                "--data.test_list",
                "null",
                "--data.test_fraction",
                "0.25",
                "--model.largest_component",
                "true",
                "--trainer.max_epochs",
                "1",
                "--outputs.views_3d",
                "false",
            ),
        ]
    )
    table = pd.read_csv(run_dir / "metrics_per_case.csv")
    assert sorted(set(table["class"])) == ["class_1", "class_2"] and len(table) == 2 * 2
    assert set(table["distance_unit"]) == {"mm"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"class_1", "class_2"} and metrics["largest_component"] is True
    row = table.iloc[0]
    prediction = np.asanyarray(nib.load(run_dir / "predictions" / f"{row['case']}.nii.gz").dataobj)
    label = np.asanyarray(nib.load(tiny_msd / "labelsTr" / f"{row['case']}.nii.gz").dataobj)
    assert nib.load(run_dir / "predictions" / f"{row['case']}.nii.gz").header.get_zooms() == (1.0, 1.0, 1.5)
    c = int(row["class"][-1])
    assert row["dice"] == pytest.approx(medpy.dc(prediction == c, label == c), abs=1e-6)
    if (prediction == c).any():
        assert row["hd95"] == pytest.approx(medpy.hd95(prediction == c, label == c, (1.0, 1.0, 1.5)), abs=1e-5)


@pytest.mark.smoke
def test_predict_folder_writes_masks_and_views(la_run: Path, tiny_la: Path, tmp_path: Path) -> None:
    folder = tmp_path / "volumes"
    folder.mkdir()
    for case in (tiny_la / "test.list").read_text().split()[:2]:
        with h5py.File(tiny_la / case / "mri_norm2.h5") as h5:
            nib.save(nib.Nifti1Image(h5["image"][()], np.eye(4)), folder / f"{case}.nii.gz")
    run_dir = main(
        [
            "predict",
            "--config",
            str(la_run / "config.yaml"),
            "--ckpt_path",
            str(la_run / "checkpoints" / "last.ckpt"),
            "--data.predict_dir",
            str(folder),
            "--run.root",
            str(tmp_path / "runs"),
        ]
    )
    masks = sorted(p.name for p in (run_dir / "predictions").iterdir())
    assert masks == sorted(p.name for p in folder.iterdir())
    assert len(list((run_dir / "views3d").glob("*.html"))) == 2
    assert not (run_dir / "metrics.json").exists()


@pytest.mark.e2e
def test_saved_probabilities_are_the_models_and_give_the_masks(la_run: Path, tiny_la: Path, tmp_path: Path) -> None:
    """``outputs.save_probabilities``: per test case ``float16 [classes, X, Y, Z]`` that sum to 1, equal the loaded
    checkpoint's own sliding-window probabilities, and threshold to the saved mask (no post-processing here)."""
    from volume_seg.io import discover_cases
    from volume_seg.model import VolumeSegmenter
    from volume_seg.transforms import loading_transform

    checkpoint = la_run / "checkpoints" / "last.ckpt"
    run_dir = main(
        [
            "test", "--config", str(la_run / "config.yaml"), "--ckpt_path", str(checkpoint),
            "--run.root", str(tmp_path / "runs"), "--outputs.save_probabilities", "true",
            "--model.largest_component", "false", "--outputs.overlays", "false", "--outputs.views_3d", "false",
        ]
    )  # fmt: skip
    test_cases = (tiny_la / "test.list").read_text().split()
    assert sorted(p.stem for p in (run_dir / "probabilities").glob("*.npz")) == sorted(test_cases)
    model = VolumeSegmenter.load_from_checkpoint(checkpoint, weights_only=True, largest_component=False).eval()
    records = {r["case"]: r for r in discover_cases(tiny_la, "la_h5")[1]}
    for case in test_cases:
        with np.load(run_dir / "probabilities" / f"{case}.npz") as saved:
            probabilities, classes = saved["probabilities"], list(saved["classes"])
        mask = np.asarray(nib.load(run_dir / "predictions" / f"{case}.nii.gz").dataobj)
        assert probabilities.dtype == np.float16 and probabilities.shape == (2, *mask.shape)
        assert classes == list(model.class_names)
        np.testing.assert_allclose(probabilities.astype(np.float32).sum(axis=0), 1.0, atol=2e-3)
        image = loading_transform(2, None, "zscore")(records[case])["image"][None]
        with torch.no_grad():
            expected, _ = model.predict_probabilities(image)
        np.testing.assert_allclose(probabilities[1], expected[0, 0].numpy(), atol=1e-3)
        decided = probabilities[1].astype(np.float32) > 0.5
        borderline = np.abs(expected[0, 0].numpy() - 0.5) < 1e-3  # float16 may round across the threshold
        assert np.array_equal(decided[~borderline], mask[~borderline] > 0)


@pytest.mark.slow
@pytest.mark.e2e
def test_compiled_run_equals_eager_run(la_run: Path, tiny_la: Path, tmp_path: Path) -> None:
    """``run.compile`` compiles the forward (dynamo captures graphs) and trains the same model: same seed, same
    curves and test metrics as the eager run, and a checkpoint that loads without compiling."""
    from torch._dynamo.utils import counters

    graphs_before = counters["stats"]["unique_graphs"]
    compiled = main(["fit", *tiny_seg_args(tiny_la, tmp_path, "--run.compile", "true")])
    assert counters["stats"]["unique_graphs"] > graphs_before
    eager_history, compiled_history = pd.read_csv(la_run / "history.csv"), pd.read_csv(compiled / "history.csv")
    for column in ("train/loss", "val/loss", "val/dice"):
        np.testing.assert_allclose(compiled_history[column], eager_history[column], rtol=1e-3, atol=1e-5)
    eager, other = (json.loads((run / "metrics.json").read_text()) for run in (la_run, compiled))
    assert other["dice"]["mean"] == pytest.approx(eager["dice"]["mean"], abs=1e-3)
    state = torch.load(compiled / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)  # the same keys as an eager checkpoint


@pytest.mark.slow
@pytest.mark.e2e
def test_ema_weights_are_the_ones_validated_and_tested(la_run: Path, tiny_la: Path, tmp_path: Path) -> None:
    """``common.callbacks.EMAWeights``: checkpoints hold the averaged weights (the raw ones aside), and the test
    after fit scores the averaged weights: the same numbers as a separate ``test`` of the best checkpoint."""
    overlay = tmp_path / "ema.yaml"
    overlay.write_text(
        "trainer:\n  callbacks:\n    - class_path: common.callbacks.EMAWeights\n      init_args: {decay: 0.5}\n"
    )
    run = main(["fit", *tiny_seg_args(tiny_la, tmp_path / "runs", "--config", str(overlay))])
    best = json.loads((run / "run_info.json").read_text())["best_checkpoint"]
    checkpoint = torch.load(best, weights_only=True)
    averaged, raw = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert any(not torch.equal(averaged[key], raw[key]) for key in averaged)
    eager = pd.read_csv(la_run / "history.csv")["val/dice"]
    assert not np.allclose(pd.read_csv(run / "history.csv")["val/dice"], eager)  # validation saw the average
    fit_metrics = json.loads((run / "metrics.json").read_text())
    retest = main(["test", *tiny_seg_args(tiny_la, tmp_path / "retest"), "--ckpt_path", best])
    test_metrics = json.loads((retest / "metrics.json").read_text())
    assert test_metrics["loss"] == pytest.approx(fit_metrics["loss"], abs=1e-6)
    assert test_metrics["dice"]["mean"] == pytest.approx(fit_metrics["dice"]["mean"], abs=1e-9)


@pytest.mark.slow
@pytest.mark.e2e
def test_test_checkpoint_last_tests_the_final_weights(tiny_la: Path, tmp_path: Path) -> None:
    """``run.test_checkpoint=last``: the test after fit scores ``last.ckpt`` (a separate test of it gives the same
    numbers), ``run_info.json`` says so, and the report's "selected epoch" is the last one."""
    from common.studies.runs import load_run

    run = main(
        [
            "fit",
            *tiny_seg_args(tiny_la, tmp_path / "runs", "--trainer.max_epochs", "3", "--run.test_checkpoint", "last"),
        ]
    )
    info = json.loads((run / "run_info.json").read_text())
    assert info["test_checkpoint"] == "last" and info["tested_checkpoint"].endswith("last.ckpt")
    assert info["best_checkpoint"].endswith(".ckpt")  # still recorded
    fit_metrics = json.loads((run / "metrics.json").read_text())
    retest = main(["test", *tiny_seg_args(tiny_la, tmp_path / "last"), "--ckpt_path", info["tested_checkpoint"]])
    last_metrics = json.loads((retest / "metrics.json").read_text())
    assert last_metrics["loss"] == pytest.approx(fit_metrics["loss"], abs=1e-6)
    assert last_metrics["dice"]["mean"] == pytest.approx(fit_metrics["dice"]["mean"], abs=1e-9)
    assert int(load_run(run).best_epoch()["epoch"]) == 2


@pytest.mark.e2e
def test_last_checkpoint_is_the_last_epoch_not_the_best(tiny_la: Path, tmp_path: Path) -> None:
    """``last.ckpt`` is rewritten every epoch. With lr 0 the validation Dice never improves, so the best checkpoint
    stays at epoch 0 while ``last.ckpt`` (what a resume continues from) must hold epoch 2."""
    run = main(["fit", *tiny_seg_args(tiny_la, tmp_path, "--trainer.max_epochs", "3", "--model.lr", "0.0")])
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 2
    assert json.loads((run / "run_info.json").read_text())["best_checkpoint"].endswith("best-epoch000.ckpt")


@pytest.mark.slow
@pytest.mark.e2e
def test_test_with_a_checkpoint_keeps_the_settings_given(tiny_la: Path, tmp_path: Path) -> None:
    """Lightning loads a checkpoint's hyperparameters over the model's config; the CLI keeps ``--model.*`` flags:
    ``--model.tta_flips false`` wins over the training run's ``true``, while settings not given as flags come from
    the checkpoint: ``largest_component``, the ``tta_axes`` of its training augmentation (rotflip: X and Y, though
    this test's configs say ``augment: none``) and ``lr`` (a ``--config`` file's value does not replace it)."""
    fit_flags = ["--model.tta_flips", "true", "--model.largest_component", "true", "--model.lr", "0.01"]
    run = main(["fit", *tiny_seg_args(tiny_la, tmp_path / "fit", *fit_flags, "--data.augment", "rotflip")])
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]["tta_axes"] == [0, 1]
    args = ["--ckpt_path", str(run / "checkpoints" / "last.ckpt"), "--model.tta_flips", "false"]
    tested = main(["test", *tiny_seg_args(tiny_la, tmp_path / "test", *args)])
    model = yaml.safe_load((tested / "config.yaml").read_text())["model"]
    assert model["tta_flips"] is False and model["largest_component"] is True
    assert model["tta_axes"] == [0, 1] and model["lr"] == 0.01
