"""The real HAM10000 / ISIC 2018 files in ../shared/data (skipped when absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from lesion_cls import CLASS_NAMES
from lesion_cls.__main__ import main
from lesion_cls.io import read_ham_metadata, read_isic_ground_truth
from tests.helpers import REPO

pytestmark = pytest.mark.real


def test_isic2018_test_csv(shared_data: Path) -> None:
    table = read_isic_ground_truth(shared_data / "isic2018_task3" / "ISIC2018_Task3_Test_GroundTruth.csv")
    assert len(table) == 1512
    counts = table["label"].map(lambda i: CLASS_NAMES[i]).value_counts().to_dict()
    assert counts == {"NV": 909, "BKL": 217, "MEL": 171, "BCC": 93, "DF": 44, "AKIEC": 43, "VASC": 35}


def test_ham10000_metadata(shared_data: Path) -> None:
    root = shared_data / "ham10000_200x150"
    table = read_ham_metadata(root / "HAM10000_metadata.csv", root / "images")
    assert len(table) == 10015 and table["lesion_id"].nunique() == 7470
    counts = table["label"].map(lambda i: CLASS_NAMES[i]).value_counts().to_dict()
    assert counts == {"NV": 6705, "MEL": 1113, "BKL": 1099, "BCC": 514, "AKIEC": 327, "VASC": 142, "DF": 115}


@pytest.mark.e2e
def test_a_few_training_steps_on_real_images(shared_data: Path, tmp_path: Path) -> None:
    run_dir = main(
        [
            "fit",
            "--config",
            str(REPO / "experiments" / "cls_ce.yaml"),
            "--model.pretrained",
            "false",
            "--model.backbone",
            "resnet10t",
            "--data.root",
            str(shared_data / "ham10000_200x150"),
            "--data.image_size",
            "32",
            "--data.num_workers",
            "0",
            "--data.batch_size",
            "32",
            "--trainer.max_epochs",
            "1",
            "--trainer.limit_train_batches",
            "4",
            "--trainer.limit_val_batches",
            "2",
            "--trainer.limit_test_batches",
            "2",
            "--trainer.enable_progress_bar",
            "false",
            "--run.root",
            str(tmp_path),
            "--run.wandb",
            "off",
            "--outputs.gradcam_per_class",
            "0",
        ]
    )
    split = pd.read_csv(run_dir / "split.csv")
    assert len(split) == 10015 and (split.groupby("lesion_id")["split"].nunique() == 1).all()
    assert split["split"].value_counts(normalize=True)["test"] == pytest.approx(0.15, abs=0.02)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["n_images"] == 64 and metrics["loss"] > 0
    history = pd.read_csv(run_dir / "history.csv")
    assert history["train/loss"].notna().all()


@pytest.mark.slow
@pytest.mark.e2e
def test_ham10000_recipe_runs_a_few_steps(shared_data: Path, tmp_path: Path) -> None:
    """The recipe, unchanged but for its budget, on the real images: a 20 % test holdout split by lesion, its
    settings in the run's config, the sampled class priors reaching the model, a scored test batch."""
    import numpy as np
    import torch
    import yaml

    from lesion_cls.class_balance import sampled_class_priors

    recipe_path = REPO / "experiments" / "recipes" / "ham10000.yaml"
    root = shared_data / "ham10000_200x150"
    budget = ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2", "--trainer.max_epochs", "1"]
    budget += ["--trainer.limit_test_batches", "2", "--trainer.enable_progress_bar", "false", "--run.wandb", "off"]
    args = ["fit", "--config", str(recipe_path), "--data.root", str(root), "--run.root", str(tmp_path), *budget]
    run_dir = main([*args, "--outputs.gradcam_per_class", "0"])
    split = pd.read_csv(run_dir / "split.csv")
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    assert split["split"].value_counts(normalize=True)["test"] == pytest.approx(0.2, abs=0.02)
    config, recipe = (yaml.safe_load(path.read_text()) for path in (run_dir / "config.yaml", recipe_path))
    for section in ("model", "data"):
        for key, value in recipe[section].items():
            if key != "root":
                assert config[section][key] == value, f"{section}.{key}"
    hparams = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["hyper_parameters"]
    train = split.loc[split["split"] == "train", "label"].to_numpy()
    np.testing.assert_allclose(hparams["class_priors"], sampled_class_priors(train, 0.5))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    predictions = pd.read_csv(run_dir / "predictions.csv")
    decided = [CLASS_NAMES[i] for i in predictions[list(CLASS_NAMES)].to_numpy().argmax(axis=1)]
    assert metrics["n_images"] == 64 == len(predictions)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(predictions["label"], decided))


@pytest.mark.slow
@pytest.mark.e2e
def test_ham10000_two_fold_cross_validation(shared_data: Path, tmp_path: Path) -> None:
    """``common.studies.cv`` on HAM10000 for a few steps (small input, no flips): every non-test image out of
    fold exactly once, no lesion in both folds, the decision rule chosen on the pool with both rules' cross-fitted
    scores, and the fold ensemble tested on the recipe's test images, scored as scikit-learn scores its predictions."""
    from sklearn.metrics import recall_score

    from common.studies.cv import run_cv

    recipe = REPO / "experiments" / "recipes" / "ham10000.yaml"
    few = ["--data.image_size", "[32, 40]", "--model.tta_flips", "false", "--trainer.max_epochs", "1"]
    few += ["--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "2"]
    few += ["--trainer.enable_progress_bar", "false", "--outputs.gradcam_per_class", "0", "--outputs.figures", "false"]
    args = ["--config", str(recipe), "--data.root", str(shared_data / "ham10000_200x150"), *few]
    cv_dir = run_cv("lesion_cls", args, 2, tmp_path / "cv", wandb_mode="off")
    split = pd.read_csv(cv_dir / "runs" / "fold0" / "split.csv", dtype={"image_id": str, "lesion_id": str})
    assert (split.groupby("lesion_id")["fold"].nunique() == 1).all()  # a lesion's images share a fold
    pool = split.loc[split["split"] != "test", "image_id"]
    pooled = pd.read_csv(cv_dir / "oof" / "probabilities.csv", dtype={"image": str})
    assert len(pool) > 7000 and sorted(pooled["image"]) == sorted(pool)  # each non-test image once
    decisions = json.loads((cv_dir / "oof" / "decisions.json").read_text())
    assert set(decisions["cross_fitted"]) == {"decision τ", "decision τ + class offsets"}
    assert "out-of-fold predictions of" in decisions["chosen_on"]
    tested = pd.read_csv(cv_dir / "ensemble" / "predictions.csv", dtype={"image": str})
    assert sorted(tested["image"]) == sorted(split.loc[split["split"] == "test", "image_id"])
    decided = [CLASS_NAMES[i] for i in tested[list(CLASS_NAMES)].to_numpy().argmax(axis=1)]
    metrics = json.loads((cv_dir / "ensemble" / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(accuracy_score(tested["label"], decided), abs=1e-6)
    macro = recall_score(tested["label"], decided, average="macro", zero_division=0)
    assert metrics["balanced_accuracy"] == pytest.approx(macro, abs=1e-6)
    assert metrics.get("decision_offsets") == decisions["values"]["decision_offsets"]
