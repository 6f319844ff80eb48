"""Cross-validation (``python -m common.studies.cv``): every item out of fold once, decisions chosen on the pool as
documented (re-derived with medpy, scipy and scikit-learn), the fold ensemble scored as medpy/sklearn score its
saved outputs, resume, the SLURM array template's arguments and the runner's refusals (the summary:
test_cv_summary.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import yaml
from medpy.metric import binary as medpy
from scipy import ndimage
from sklearn.metrics import accuracy_score, recall_score

from common.errors import MedlitError
from common.rundir import read_run_info
from common.studies.cv import main as cv_main
from common.studies.cv import run_cv
from common.studies.workers import without_options
from lesion_cls import CLASS_NAMES
from lesion_cls.decisions import DECISION_TAUS
from tests.helpers import print_config, recorded_srun
from volume_seg.model import VolumeSegmenter


def _label(tiny_la: Path, case: str) -> np.ndarray:
    with h5py.File(tiny_la / case / "mri_norm2.h5") as f:
        return (np.asarray(f["label"]) > 0).astype(np.uint8)


def _largest(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component (scipy), independent of MONAI's transform."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3)))
    if count == 0:
        return mask
    sizes = np.bincount(labels.ravel())[1:]
    return (labels == 1 + int(np.argmax(sizes))).astype(np.uint8)


def _macro_recall(target: np.ndarray, predicted: np.ndarray) -> float:
    """Balanced accuracy as ``metrics.json`` defines it: the mean recall over the classes in the truth or the
    predictions (scikit-learn's macro recall; its ``balanced_accuracy_score`` leaves out predicted classes that
    are not in the truth, which a tiny test set can have)."""
    return float(recall_score(target, predicted, average="macro", zero_division=0))


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 1.0 if not a.any() and not b.any() else float(medpy.dc(a, b))


# --- segmentation ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.e2e
def test_seg_out_of_fold_covers_every_training_case_once(seg_cv: Path) -> None:
    split = pd.read_csv(seg_cv / "runs" / "fold0" / "split.csv")
    pool = sorted(split.loc[split["fold"] >= 0, "case"])
    assert len(pool) == 8 and sorted(split.loc[split["split"] == "test", "case"]) == ["LA008", "LA009", "LA010"]
    pooled = pd.read_csv(seg_cv / "oof" / "metrics_per_case.csv")
    assert sorted(pooled["case"]) == pool  # each once
    folds = pd.read_csv(seg_cv / "oof" / "folds.csv")
    for k in (0, 1):
        fold_split = pd.read_csv(seg_cv / "runs" / f"fold{k}" / "split.csv")
        validated = sorted(fold_split.loc[fold_split["split"] == "val", "case"])
        assert validated == sorted(fold_split.loc[fold_split["fold"] == k, "case"])
        assert sorted(folds.loc[folds["fold"] == k, "case"]) == validated
        own = pd.read_csv(seg_cv / "oof_runs" / f"fold{k}" / "metrics_per_case.csv")
        assert sorted(own["case"]) == validated  # the fold's model scored on what it did not train on
        assert not set(validated) & set(fold_split.loc[fold_split["split"] == "train", "case"])


@pytest.mark.slow
@pytest.mark.e2e
def test_seg_largest_component_choice_follows_the_rule(seg_cv: Path, tiny_la: Path) -> None:
    """Mean Dice of the raw out-of-fold masks with and without the largest component (scipy + medpy): kept when it
    does not lower it; the pooled metrics are those of the chosen masks."""
    dice = {False: [], True: []}
    chosen_masks = {}
    decisions = json.loads((seg_cv / "oof" / "decisions.json").read_text())
    keep = decisions["values"]["largest_component"]
    for k in (0, 1):
        for path in sorted((seg_cv / "oof_runs" / f"fold{k}" / "predictions").glob("*.nii.gz")):
            case = path.name.removesuffix(".nii.gz")
            raw, label = np.asarray(nib.load(path).dataobj).astype(np.uint8), _label(tiny_la, case)
            dice[False].append(_dice(raw, label))
            dice[True].append(_dice(_largest(raw), label))
            chosen_masks[case] = _largest(raw) if keep else raw
    assert keep == (np.mean(dice[True]) >= np.mean(dice[False]))
    assert decisions["args"] == [f"--model.largest_component={str(keep).lower()}"]
    assert "out-of-fold predictions of 8 cases (2 folds)" in decisions["chosen_on"]
    candidates = decisions["candidates"]
    assert candidates["largest_component=true"]["dice"] == pytest.approx(np.mean(dice[True]), abs=1e-6)
    pooled = json.loads((seg_cv / "oof" / "metrics.json").read_text())
    assert pooled["largest_component"] == keep and "ci95" in pooled["dice"]
    for case, mask in chosen_masks.items():
        saved = np.asarray(nib.load(seg_cv / "oof" / "predictions" / f"{case}.nii.gz").dataobj)
        assert np.array_equal(saved, mask), case
    assert pooled["dice"]["mean"] == pytest.approx(
        np.mean([_dice(m, _label(tiny_la, c)) for c, m in chosen_masks.items()])
    )


@pytest.mark.slow
@pytest.mark.e2e
def test_seg_ensemble_is_an_ordinary_run_scored_as_medpy_scores_it(seg_cv: Path, tiny_la: Path) -> None:
    ensemble = seg_cv / "ensemble"
    info = read_run_info(ensemble)
    assert [m["given"] for m in info["ensemble"]] == [str(seg_cv / "runs" / f"fold{k}") for k in (0, 1)]
    assert info["decisions"]["values"] == json.loads((seg_cv / "oof" / "decisions.json").read_text())["values"]
    assert info["task"] == VolumeSegmenter.task and info["report_module"] == "volume_seg.report"
    metrics = json.loads((ensemble / "metrics.json").read_text())
    assert metrics["checkpoint"] == "ensemble of 2 (run_info.json)"
    table = pd.read_csv(ensemble / "metrics_per_case.csv")
    assert sorted(table["case"]) == ["LA008", "LA009", "LA010"]
    for row in table.itertuples():
        mask = np.asarray(nib.load(ensemble / "predictions" / f"{row.case}.nii.gz").dataobj).astype(bool)
        label = _label(tiny_la, row.case).astype(bool)
        assert row.dice == pytest.approx(medpy.dc(mask, label), abs=1e-6)
        if mask.any():
            assert row.hd95 == pytest.approx(medpy.hd95(mask, label), abs=1e-4)
    assert metrics["dice"]["mean"] == pytest.approx(table["dice"].mean(), abs=1e-6)


@pytest.mark.slow
@pytest.mark.e2e
def test_resume_keeps_what_is_done(seg_cv: Path, tiny_la: Path) -> None:
    """Running the same command again trains and tests nothing again; the summary is rewritten the same."""
    index = (seg_cv / "index.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in (seg_cv / "runs").rglob("metrics.json")}
    stamps |= {p: p.stat().st_mtime_ns for p in (seg_cv / "ensemble").glob("metrics.json")}
    summary = (seg_cv / "summary.md").read_text()
    spec = yaml.safe_load((seg_cv / "cv.yaml").read_text())
    fit_args = spec["command"][spec["command"].index("fit") + 1 : -2]
    run_cv("volume_seg", fit_args, 2, seg_cv, wandb_mode="off")
    assert (seg_cv / "index.csv").read_text() == index
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert (seg_cv / "summary.md").read_text() == summary


# --- classification -------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.e2e
def test_cls_out_of_fold_covers_every_non_test_image_once(cls_cv: Path) -> None:
    split = pd.read_csv(cls_cv / "runs" / "fold0" / "split.csv", dtype={"image_id": str})
    pool = set(split.loc[split["split"] != "test", "image_id"])
    pooled = pd.read_csv(cls_cv / "oof" / "predictions.csv", dtype={"image": str})
    assert len(pooled) == len(pool) and set(pooled["image"]) == pool
    raw = pd.read_csv(cls_cv / "oof" / "probabilities.csv", dtype={"image": str, "lesion_id": str}).set_index("image")
    lesion_of = dict(zip(split["image_id"], split["lesion_id"].astype(str), strict=True))
    assert len(raw) == len(pool) and all(raw.loc[i, "lesion_id"] == lesion_of[i] for i in raw.index)
    for k in (0, 1):
        own = pd.read_csv(cls_cv / "oof_runs" / f"fold{k}" / "predictions.csv", dtype={"image": str})
        fold_split = pd.read_csv(cls_cv / "runs" / f"fold{k}" / "split.csv", dtype={"image_id": str})
        assert set(own["image"]) == set(fold_split.loc[fold_split["split"] == "val", "image_id"])
        own = own.set_index("image")
        assert np.allclose(raw.loc[own.index, list(CLASS_NAMES)], own[list(CLASS_NAMES)], atol=2e-6)
        lesions = fold_split.groupby("lesion_id")["split"].nunique()
        assert (lesions == 1).all()  # no lesion on both sides of a fold


@pytest.mark.slow
@pytest.mark.e2e
def test_cls_decision_tau_is_the_best_on_out_of_fold_predictions(cls_cv: Path) -> None:
    """Every τ of the grid re-scored with scikit-learn on the raw out-of-fold probabilities, shifted by the first
    fold's training frequencies (those the ensemble's τ uses): the chosen one maximises the fold models' selection
    metric (ties: the smallest |τ|)."""
    raw = pd.concat(
        pd.read_csv(cls_cv / "oof_runs" / f"fold{k}" / "predictions.csv", dtype={"image": str}) for k in (0, 1)
    )
    target = raw["label"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()
    split = pd.read_csv(cls_cv / "runs" / "fold0" / "split.csv")
    counts = np.bincount(split.loc[split["split"] == "train", "label"], minlength=7) + 1.0
    log_f = np.log(counts / counts.sum())
    log_p = np.log(np.clip(raw[list(CLASS_NAMES)].to_numpy(), 1e-38, None))
    config = yaml.safe_load((cls_cv / "runs" / "fold0" / "config.yaml").read_text())
    metric = config["model"]["selection_metric"]

    def score(tau: float) -> float:
        predicted = (log_p - tau * log_f).argmax(axis=1)
        acc, bal = accuracy_score(target, predicted), _macro_recall(target, predicted)
        return {"acc": acc, "bal_acc": bal, "acc_bal_mean": (acc + bal) / 2}[metric]

    scores = {tau: score(tau) for tau in sorted(DECISION_TAUS, key=abs)}
    best = max(scores.values())
    expected = next(tau for tau in scores if scores[tau] >= best - 1e-9)
    decisions = json.loads((cls_cv / "oof" / "decisions.json").read_text())
    assert decisions["values"]["decision_tau"] == expected
    assert decisions["args"][0] == f"--model.decision_tau={expected}"
    offsets = np.asarray(decisions["values"]["decision_offsets"] or np.zeros(7))
    pooled = json.loads((cls_cv / "oof" / "metrics.json").read_text())
    predicted = (log_p - expected * log_f + offsets).argmax(axis=1)
    assert pooled["balanced_accuracy"] == pytest.approx(_macro_recall(target, predicted), abs=1e-6)
    assert pooled["decision_tau"] == expected and "ci95" in pooled


@pytest.mark.slow
@pytest.mark.e2e
def test_cls_class_offsets_are_used_only_where_they_win_cross_fitted(cls_cv: Path) -> None:
    """The τ rule's cross-fitted score re-derived with scikit-learn (each fold decided by the τ best on the other
    fold), and the class offsets used exactly when their cross-fitted score is the higher."""
    frames = [
        pd.read_csv(cls_cv / "oof_runs" / f"fold{k}" / "predictions.csv", dtype={"image": str}).assign(fold=k)
        for k in (0, 1)
    ]
    raw = pd.concat(frames, ignore_index=True)
    target = raw["label"].map({c: i for i, c in enumerate(CLASS_NAMES)}).to_numpy()
    split = pd.read_csv(cls_cv / "runs" / "fold0" / "split.csv")
    counts = np.bincount(split.loc[split["split"] == "train", "label"], minlength=7) + 1.0
    log_f = np.log(counts / counts.sum())
    log_p = np.log(np.clip(raw[list(CLASS_NAMES)].to_numpy(), 1e-38, None))
    metric = yaml.safe_load((cls_cv / "runs" / "fold0" / "config.yaml").read_text())["model"]["selection_metric"]

    def score(t: np.ndarray, predicted: np.ndarray) -> float:
        acc, bal = accuracy_score(t, predicted), _macro_recall(t, predicted)
        return {"acc": acc, "bal_acc": bal, "acc_bal_mean": (acc + bal) / 2}[metric]

    predicted = np.empty(len(target), dtype=np.int64)
    for k in (0, 1):
        other, held = (raw["fold"] != k).to_numpy(), (raw["fold"] == k).to_numpy()
        fits = {tau: score(target[other], (log_p[other] - tau * log_f).argmax(axis=1)) for tau in DECISION_TAUS}
        best = max(fits.values())
        tau = min((t for t in fits if fits[t] >= best - 1e-9), key=abs)
        predicted[held] = (log_p[held] - tau * log_f).argmax(axis=1)
    decisions = json.loads((cls_cv / "oof" / "decisions.json").read_text())
    cross = decisions["cross_fitted"]
    assert cross["decision τ"][metric] == pytest.approx(score(target, predicted), abs=1e-6)
    use_offsets = cross["decision τ + class offsets"][metric] > cross["decision τ"][metric]
    assert (decisions["values"]["decision_offsets"] is not None) == use_offsets
    assert decisions["rule"] in decisions["chosen_on"] and "cross-fitted" in decisions["chosen_on"]
    ensemble = json.loads((cls_cv / "ensemble" / "metrics.json").read_text())
    assert ensemble.get("decision_offsets") == decisions["values"]["decision_offsets"]


@pytest.mark.slow
@pytest.mark.e2e
def test_cls_ensemble_is_an_ordinary_run_scored_as_sklearn_scores_it(cls_cv: Path) -> None:
    ensemble = cls_cv / "ensemble"
    metrics = json.loads((ensemble / "metrics.json").read_text())
    decisions = json.loads((cls_cv / "oof" / "decisions.json").read_text())
    assert metrics["decision_tau"] == decisions["values"]["decision_tau"]
    predictions = pd.read_csv(ensemble / "predictions.csv", dtype={"image": str})
    split = pd.read_csv(cls_cv / "runs" / "fold0" / "split.csv", dtype={"image_id": str})
    assert set(predictions["image"]) == set(split.loc[split["split"] == "test", "image_id"])
    target = predictions["label"].map({c: i for i, c in enumerate(CLASS_NAMES)})
    predicted = predictions[list(CLASS_NAMES)].to_numpy().argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(target, predicted), abs=1e-6)
    assert metrics["balanced_accuracy"] == pytest.approx(_macro_recall(target, predicted), abs=1e-6)
    assert len(read_run_info(ensemble)["ensemble"]) == 2 and (cls_cv / "summary.md").is_file()


# --- the SLURM template ------------------------------------------------------------------------------------------
def test_the_cv_template_gives_each_task_the_same_fold_arguments(tmp_path: Path) -> None:
    first = recorded_srun("cv_array.sbatch", tmp_path, SLURM_ARRAY_JOB_ID="9", SLURM_ARRAY_TASK_ID="0")
    second = recorded_srun("cv_array.sbatch", tmp_path, SLURM_ARRAY_JOB_ID="9", SLURM_ARRAY_TASK_ID="3")
    assert first[:4] == [sys.executable, "-m", "common.studies.cv", "volume_seg"]
    assert without_options(first, ("--worker-label",)) == without_options(second, ("--worker-label",))
    assert first[first.index("--worker-label") + 1] == "9_0" and second[second.index("--worker-label") + 1] == "9_3"
    fit_args = without_options(first[4:], ("--folds", "--cv-dir", "--worker-label", "--stale-after"))
    assert print_config("volume_seg", fit_args)["run"]["experiment"] == "la16"


# --- refusals -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["volume_seg", "--data.fold=1", "--folds", "2"], "--data.fold: set by the cross-validation runner"),
        (["volume_seg", "--folds", "1"], "--folds must be at least 2"),
        (["no_such_task", "--folds", "2"], "'no_such_task': not a task with cross-validation"),
    ],
)
def test_runner_refuses_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cv_main([*argv, "--cv-dir", str(tmp_path / "cv")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err
    assert not (tmp_path / "cv").exists()


def test_a_cv_dir_of_other_arguments_is_refused_and_kept(tmp_path: Path) -> None:
    cv_dir = tmp_path / "cv"
    cv_dir.mkdir()
    (cv_dir / "cv.yaml").write_text(yaml.safe_dump({"name": "cv", "command": ["x"]}))
    before = (cv_dir / "cv.yaml").read_text()
    with pytest.raises(MedlitError, match="holds a cross-validation run with other arguments"):
        run_cv("volume_seg", ["--config", "experiments/seg_dice.yaml"], 2, cv_dir)
    assert (cv_dir / "cv.yaml").read_text() == before and sorted(p.name for p in cv_dir.iterdir()) == ["cv.yaml"]
