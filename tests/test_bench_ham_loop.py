"""The plain reference loop on HAM10000 (``benchmarks.ham_plain_loop``): its schedule, draws and augmentation, and a
few seconds of it on tiny data, whose run dir pairs and records as a medlit run's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.metrics import accuracy_score, recall_score

from benchmarks.ham_plain_loop import RECIPE, _augmented, class_draw_weights, cosine_lr, main
from common.studies.against import pair_with_reference
from common.studies.paired import BOOTSTRAP_TEST
from common.studies.records import write_record
from common.studies.runs import load_run
from lesion_cls import CLASS_NAMES
from lesion_cls.data import HAM10000DataModule
from lesion_cls.splits import split_by_lesion

SPLIT_SEED, BUDGET_MINUTES = 42, 0.05


def test_the_learning_rate_falls_on_a_half_cosine_over_the_budget() -> None:
    assert cosine_lr(0.0, 60.0) == pytest.approx(2e-3)
    assert cosine_lr(30.0, 60.0) == pytest.approx(1e-3)
    assert cosine_lr(15.0, 60.0) == pytest.approx(1e-3 * (1 + np.sqrt(0.5)))
    assert cosine_lr(60.0, 60.0) == pytest.approx(0.0, abs=1e-12)
    assert cosine_lr(90.0, 60.0) == pytest.approx(0.0, abs=1e-12)


def test_classes_are_drawn_in_proportion_to_the_square_root_of_their_size() -> None:
    labels = np.repeat([0, 1, 2], [400, 100, 25])
    weights = class_draw_weights(labels)
    mass = np.array([weights[labels == c].sum() for c in range(3)])
    assert mass / mass.sum() == pytest.approx(np.array([20, 10, 5]) / 35)
    drawn = torch.multinomial(
        torch.as_tensor(weights), 40_000, replacement=True, generator=torch.Generator().manual_seed(0)
    )
    shares = np.bincount(labels[drawn.numpy()], minlength=3) / 40_000
    assert shares == pytest.approx(np.array([20, 10, 5]) / 35, abs=0.01)


def test_each_augmented_image_is_a_flip_or_rotation_of_it_with_a_brightness_per_channel() -> None:
    x = torch.rand(64, 3, 4, 6, generator=torch.Generator().manual_seed(1)) * 0.7 + 0.1  # no clamping at 1.1x
    y = _augmented(x.clone(), torch.Generator().manual_seed(2))
    variants = [lambda t: t, lambda t: t.flip(-1), lambda t: t.flip(-2), lambda t: t.flip(-1).flip(-2)]
    used = []
    for xi, yi in zip(x, y, strict=True):
        for k, variant in enumerate(variants):
            ratio = yi / variant(xi)  # one factor per channel when the geometry matches
            spread = (ratio.amax(dim=(1, 2)) - ratio.amin(dim=(1, 2))).max()
            if spread < 1e-5:
                assert ((ratio >= 0.9 - 1e-6) & (ratio <= 1.1 + 1e-6)).all()
                used.append(k)
                break
        else:
            pytest.fail("an augmented image is no flip or rotation of its input")
    assert set(used) == {0, 1, 2, 3}  # each geometry occurs in 64 draws (each has p 1/4)


def test_a_folder_that_holds_something_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "old.txt").write_text("kept")
    with pytest.raises(SystemExit) as exited:
        main(["--data-root", str(tmp_path), "--minutes", "1", "--out", str(tmp_path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path}: exists and is not empty; choose a new --out folder (nothing is overwritten)"]
    assert (tmp_path / "old.txt").read_text() == "kept"


@pytest.fixture(scope="module")
def loop_run(tiny_ham: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few seconds of the loop on the tiny HAM data at 32x32, seed 1, the recipe's split (seed 42)."""
    out = tmp_path_factory.mktemp("loop") / "run"
    argv = ["--data-root", str(tiny_ham), "--minutes", str(BUDGET_MINUTES), "--seed", "1"]
    main([*argv, "--split-seed", str(SPLIT_SEED), "--out", str(out), "--image-size", "32", "32", "--no-figures"])
    return out


@pytest.fixture(scope="module")
def development_run(tiny_ham: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The loop on a development split (``--inner-split 5``) with the recipe's hold-out left out of training."""
    out = tmp_path_factory.mktemp("loop") / "dev"
    argv = ["--data-root", str(tiny_ham), "--minutes", str(BUDGET_MINUTES), "--seed", "1", "--hold-out"]
    argv += ["--inner-split", "5", "--split-seed", str(SPLIT_SEED), "--out", str(out), "--image-size", "32", "32"]
    main([*argv, "--no-figures"])
    return out


def _recipe_fractions() -> dict:
    recipe = yaml.safe_load(RECIPE.read_text())["data"]
    return {k: recipe[k] for k in ("val_fraction", "test_fraction")}


@pytest.mark.e2e
def test_a_development_split_never_reads_a_test_image_and_holds_out_what_the_recipe_does(
    development_run: Path, loop_run: Path, tiny_ham: Path, tmp_path: Path
) -> None:
    dm = HAM10000DataModule(root=str(tiny_ham), split_seed=SPLIT_SEED, cache_dir=str(tmp_path), **_recipe_fractions())
    dm.prepare_data()
    dm.setup("test")
    outer = dm.split_table()
    pool = outer[outer["split"] != "test"].reset_index(drop=True)
    inner = pool.assign(split=split_by_lesion(pool, *_recipe_fractions().values(), 5))
    split = pd.read_csv(development_run / "split.csv", dtype=str)
    assert not set(split["image_id"]) & set(outer.loc[outer["split"] == "test", "image_id"])
    assert sorted(split["image_id"]) == sorted(pool["image_id"])
    for name in ("train", "val", "test"):
        assert sorted(split.loc[split["split"] == name, "image_id"]) == sorted(
            inner.loc[inner["split"] == name, "image_id"]
        )
    predictions = pd.read_csv(development_run / "predictions.csv", dtype={"image": str})
    assert sorted(predictions["image"]) == sorted(inner.loc[inner["split"] == "test", "image_id"])
    loop = json.loads((development_run / "run_info.json").read_text())["loop"]
    assert loop["train_images"] == (inner["split"] == "train").sum()  # the inner validation lesions are left out
    plain = json.loads((loop_run / "run_info.json").read_text())["loop"]
    assert plain["train_images"] == (outer["split"] != "test").sum()  # without --hold-out they are trained on
    assert "held out" in yaml.safe_load((development_run / "config.yaml").read_text())["data"]["validation"]


@pytest.mark.e2e
def test_it_tests_the_images_a_medlit_datamodule_tests(loop_run: Path, tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham), split_seed=SPLIT_SEED, image_size=32, cache_dir=str(tmp_path), **_recipe_fractions()
    )
    dm.prepare_data()
    dm.setup("test")
    medlit_test = dm.test_dataset.table["image_id"].tolist()
    predictions = pd.read_csv(loop_run / "predictions.csv", dtype={"image": str})
    assert sorted(predictions["image"]) == sorted(medlit_test)
    split = pd.read_csv(loop_run / "split.csv", dtype=str)
    assert sorted(split.loc[split["split"] == "test", "image_id"]) == sorted(medlit_test)
    assert set(split["split"]) == {"train", "test"}  # the recipe's validation lesions are trained on
    assert len(split) == len(dm.split_table())


@pytest.mark.e2e
def test_its_probabilities_sum_to_one_and_its_metrics_are_sklearn_s(loop_run: Path) -> None:
    predictions = pd.read_csv(loop_run / "predictions.csv")
    probs = predictions[list(CLASS_NAMES)].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    truth = predictions["label"].map(CLASS_NAMES.index).to_numpy()
    decided = probs.argmax(axis=1)
    metrics = json.loads((loop_run / "metrics.json").read_text())
    assert metrics["n_images"] == len(predictions)
    assert metrics["accuracy"] == pytest.approx(accuracy_score(truth, decided), abs=1e-6)
    # torchmetrics' macro recall: the classes in the test labels or the decisions (a class decided but absent: 0)
    classes = sorted(set(truth) | set(decided))
    expected = recall_score(truth, decided, labels=classes, average="macro", zero_division=0)
    assert metrics["balanced_accuracy"] == pytest.approx(expected, abs=1e-6)
    low, high = metrics["ci95"]["accuracy"]
    assert low <= metrics["accuracy"] <= high


@pytest.mark.e2e
def test_its_run_dir_says_how_long_on_what_and_how_many_steps(loop_run: Path) -> None:
    info = json.loads((loop_run / "run_info.json").read_text())
    timing = json.loads((loop_run / "timing.json").read_text())
    config = yaml.safe_load((loop_run / "config.yaml").read_text())
    history = pd.read_csv(loop_run / "history.csv")
    steps = info["loop"]["steps"]
    assert steps >= 1 and steps == timing["steps"] == history["step"].iloc[-1] == config["loop"]["steps"]
    assert timing["fit_s"] >= BUDGET_MINUTES * 60  # training stops once the budget is spent, not before
    assert info["argv"][0] == "python -m benchmarks.ham_plain_loop" and "--minutes" in info["argv"]
    assert info["provenance"]["device.precision"] == config["trainer"]["precision"] == info["loop"]["precision"]
    assert config["seed_everything"] == 1 and config["data"]["split_seed"] == SPLIT_SEED


@pytest.mark.e2e
def test_a_record_of_it_pairs_with_it_with_no_difference(loop_run: Path, tmp_path: Path) -> None:
    record = write_record(loop_run, tmp_path / "ham10000" / "plain_loop", "ham10000", "plain_loop", "test")
    assert record.info["steps"] == json.loads((loop_run / "timing.json").read_text())["steps"]
    assert record.info["commands"][0].startswith("python -m benchmarks.ham_plain_loop --data-root")
    table = pair_with_reference(load_run(loop_run), "loop", record, n_resamples=200)
    boot = table[table["test"] == BOOTSTRAP_TEST].set_index("metric")
    assert {"accuracy", "balanced_accuracy", "f1_macro", "auc_macro"} <= set(boot.index)
    assert (boot["delta"] == 0).all() and (boot["ci_low"] == 0).all() and (boot["ci_high"] == 0).all()
    assert (boot["n_units"] == record.run.scored_items().n_units).all()
