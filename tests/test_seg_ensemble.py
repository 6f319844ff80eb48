"""The segmenter's saved-probability ensemble and out-of-fold pool on hand-made run dirs over tiny volumes: the
post-processing chosen on the pool, the files it writes, the averaged probabilities, the mistakes refused."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml

from common.errors import MedlitError
from volume_seg.data import VolumeDataModule
from volume_seg.ensemble import average_probabilities, ensemble_runs, pool_out_of_fold
from volume_seg.metrics import dc


def _run(root: Path, data: dict, largest_component: bool = False) -> Path:
    root.mkdir(parents=True)
    config = {"data": {"num_workers": 0, **data}, "model": {"largest_component": largest_component}}
    (root / "config.yaml").write_text(yaml.safe_dump(config))
    (root / "run_info.json").write_text(json.dumps({"task": "volume_segmentation", "parameters": 3}))
    return root


def _with_stray_blob(label: np.ndarray, shift: int) -> np.ndarray:
    """The label moved by ``shift`` voxels, plus a small blob apart from it (what largest-component removes)."""
    mask = np.roll(label, shift, axis=0).astype(np.uint8)
    corner = (slice(0, 3), slice(0, 3), slice(0, 3))
    mask[corner] = 0 if label[corner].any() else 1
    return mask


def _out_of_fold_runs(root: Path, data_root: Path) -> tuple[list[Path], dict[str, np.ndarray], dict[str, int]]:
    """Two folds' test runs, each with its validation cases' masks (``predictions/<case>.nii.gz``)."""
    runs, masks, labels, fold_of = [], {}, {}, {}
    for k in range(2):
        run = _run(root / f"fold{k}", {"root": str(data_root), "num_folds": 2, "fold": k})
        (run / "predictions").mkdir()
        cases = VolumeDataModule(root=str(data_root), num_folds=2, fold=k).cases_of("val")
        for i in range(len(cases)):
            item = cases[i]
            labels[item["case"]] = item["label"][0].numpy().astype(np.uint8)
            masks[item["case"]] = _with_stray_blob(labels[item["case"]], 1 + i % 2)
            image = nib.Nifti1Image(masks[item["case"]], item["affine"].numpy())
            nib.save(image, run / "predictions" / f"{item['case']}.nii.gz")
            fold_of[item["case"]] = k
        runs.append(run)
    return runs, labels, fold_of


def test_the_pool_keeps_the_largest_component_when_it_helps(tiny_la: Path, tmp_path: Path) -> None:
    runs, labels, fold_of = _out_of_fold_runs(tmp_path / "runs", tiny_la)
    out = tmp_path / "oof"
    decisions = pool_out_of_fold(runs, out)
    assert decisions == json.loads((out / "decisions.json").read_text())
    assert decisions["values"] == {"largest_component": True}
    assert decisions["args"] == ["--model.largest_component=true"]
    assert decisions["chosen_on"] == f"out-of-fold predictions of {len(labels)} cases (2 folds)"
    assert decisions["rule"].startswith("largest component kept when it does not lower the mean foreground Dice")
    # each candidate's Dice by hand: the raw masks, and the masks without the stray blob
    raw = {case: nib.load(runs[fold_of[case]] / "predictions" / f"{case}.nii.gz").get_fdata() for case in labels}
    kept = {case: np.asarray(nib.load(out / "predictions" / f"{case}.nii.gz").dataobj) for case in labels}
    candidates = decisions["candidates"]
    assert candidates["largest_component=false"]["dice"] == pytest.approx(
        np.mean([dc(raw[c], labels[c]) for c in labels]), abs=1e-12
    )
    assert candidates["largest_component=true"]["dice"] == pytest.approx(
        np.mean([dc(kept[c], labels[c]) for c in labels]), abs=1e-12
    )
    assert candidates["largest_component=true"]["dice"] > candidates["largest_component=false"]["dice"]
    assert all(not kept[c][:3, :3, :3].any() or labels[c][:3, :3, :3].any() for c in labels)  # the blob is gone
    folds = pd.read_csv(out / "folds.csv")
    assert dict(zip(folds["case"], folds["fold"], strict=True)) == fold_of
    metrics = json.loads((out / "metrics.json").read_text())
    assert (
        metrics["largest_component"] is True and metrics["dice"]["mean"] == candidates["largest_component=true"]["dice"]
    )
    assert metrics["checkpoint"] == "out-of-fold: each case by the model of the fold it validated (2 folds)"
    assert metrics["dice"]["ci95"] == metrics["ci95"]["dice"] and metrics["ci_unit"] == "case"
    assert sorted(pd.read_csv(out / "metrics_per_case.csv")["case"]) == sorted(labels)
    info = json.loads((out / "run_info.json").read_text())
    assert info["subcommand"] == "pool" and info["largest_component"] is True


def test_the_pool_refuses_overlapping_folds_and_missing_masks(tiny_la: Path, tmp_path: Path) -> None:
    runs, _, _ = _out_of_fold_runs(tmp_path / "runs", tiny_la)
    with pytest.raises(MedlitError, match=r"fold0: case LA\d+ is also in .*fold0; folds must not overlap"):
        pool_out_of_fold([runs[0], runs[0]], tmp_path / "oof")
    missing = runs[1] / "predictions" / f"{sorted(p.stem for p in (runs[1] / 'predictions').iterdir())[0]}"
    Path(f"{missing}.gz").unlink()
    with pytest.raises(MedlitError, match="missing; the out-of-fold test run did not save this case's mask"):
        pool_out_of_fold(runs, tmp_path / "oof")
    assert not (tmp_path / "oof").exists()


def _saved(root: Path, data_root: Path, seed: int) -> tuple[Path, dict[str, np.ndarray]]:
    """A test run that saved foreground probabilities near its test cases' labels (``probabilities/<case>.npz``)."""
    run = _run(root, {"root": str(data_root)}, largest_component=False)
    (run / "probabilities").mkdir()
    cases = VolumeDataModule(root=str(data_root)).cases_of("test")
    foreground = {}
    for i in range(len(cases)):
        label = cases[i]["label"][0].numpy().astype(np.float32)
        noise = np.random.default_rng(seed * 10 + i).uniform(size=label.shape)
        foreground[cases[i]["case"]] = np.clip(0.6 * label + 0.45 * noise, 0, 1).astype(np.float16)
        probabilities = np.stack([1 - foreground[cases[i]["case"]], foreground[cases[i]["case"]]])
        classes = np.array(["background", "foreground"])
        np.savez_compressed(
            run / "probabilities" / f"{cases[i]['case']}.npz", probabilities=probabilities, classes=classes
        )
    return run, foreground


def test_the_ensemble_thresholds_the_mean_probability(tiny_la: Path, tmp_path: Path) -> None:
    (run_a, fg_a), (run_b, fg_b) = _saved(tmp_path / "a", tiny_la, 1), _saved(tmp_path / "b", tiny_la, 2)
    means = average_probabilities([run_a, run_b])
    for case, mean in means.items():
        expected = (fg_a[case].astype(np.float32) + fg_b[case].astype(np.float32)) / 2
        np.testing.assert_allclose(mean[1], expected, rtol=0, atol=1e-6)
    metrics = ensemble_runs([run_a, run_b], tmp_path / "ens", files={"save_masks": True})
    for case, mean in means.items():
        mask = np.asarray(nib.load(tmp_path / "ens" / "predictions" / f"{case}.nii.gz").dataobj)
        np.testing.assert_array_equal(mask, (mean[1] > 0.5).astype(np.uint8))
    written = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert metrics["dice"] == written["dice"] and "ci95" in written["dice"] and metrics["ci95"] == written["ci95"]
    assert written["largest_component"] is False  # the first run's setting
    (run_b / "probabilities" / f"{sorted(means)[0]}.npz").unlink()
    with pytest.raises(MedlitError, match="members must hold the same cases"):
        average_probabilities([run_a, run_b])
