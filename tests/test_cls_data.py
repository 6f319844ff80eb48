"""HAM10000/ISIC parsing, lesion-grouped splits, the pixel cache, datasets and the datamodule."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from common.errors import MedlitError
from lesion_cls import CLASS_NAMES
from lesion_cls.data import (
    BatchAugment,
    HAM10000DataModule,
    build_pixel_cache,
    build_transforms,
    read_folder,
    read_ham_metadata,
    read_isic_ground_truth,
    sampled_class_priors,
    sampling_weights,
    split_by_lesion,
)


def _write_metadata(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["lesion_id", "image_id", "dx"]).to_csv(folder / "meta.csv", index=False)
    return folder / "meta.csv"


def test_read_ham_metadata(tiny_ham: Path) -> None:
    table = read_ham_metadata(tiny_ham / "HAM10000_metadata.csv", tiny_ham / "images")
    raw = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    assert len(table) == len(raw) == 240
    assert [CLASS_NAMES[i].lower() for i in table["label"]] == raw["dx"].tolist()
    assert all(Path(p).is_file() for p in table["path"])


def test_metadata_errors_name_file_and_row(tmp_path: Path) -> None:
    csv = _write_metadata(tmp_path, [("L1", "A", "nv"), ("L2", "B", "melanoma")])
    with pytest.raises(MedlitError, match=r"meta.csv row 3: unknown dx 'melanoma'"):
        read_ham_metadata(csv)
    csv = _write_metadata(tmp_path, [("L1", "A", "nv"), ("L2", "A", "mel")])
    with pytest.raises(MedlitError, match=r"row 3: image_id 'A' appears twice"):
        read_ham_metadata(csv)
    pd.DataFrame({"image_id": ["A"], "dx": ["nv"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(MedlitError, match=r"bad.csv: missing column\(s\) lesion_id"):
        read_ham_metadata(tmp_path / "bad.csv")
    csv = _write_metadata(tmp_path, [("L1", "A", "nv")])
    (tmp_path / "images").mkdir()
    with pytest.raises(MedlitError, match=r"row 2: image 'A' not found in .*images"):
        read_ham_metadata(csv, tmp_path / "images")
    with pytest.raises(MedlitError, match="file not found"):
        read_ham_metadata(tmp_path / "nope.csv")


def test_read_isic_ground_truth(tmp_path: Path) -> None:
    csv = tmp_path / "gt.csv"
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nI1,0,1,0,0,0,0,0\nI2,0.0,0.0,0.0,0.0,0.0,0.0,1.0\n")
    table = read_isic_ground_truth(csv)
    assert table["label"].tolist() == [1, 6]
    assert table["lesion_id"].tolist() == ["I1", "I2"]
    csv.write_text("image,MEL,NV,BCC,AKIEC,BKL,DF,VASC\nI1,0,1,0,0,0,0,0\nI2,1,1,0,0,0,0,0\n")
    with pytest.raises(MedlitError, match="gt.csv row 3: expected exactly one class column"):
        read_isic_ground_truth(csv)
    csv.write_text("image,MEL,NV\nI1,0,1\n")
    with pytest.raises(MedlitError, match=r"missing column\(s\) BCC, AKIEC, BKL, DF, VASC"):
        read_isic_ground_truth(csv)


def _lesion_table(n_lesions: int = 600, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for lesion in range(n_lesions):
        label = int(rng.choice(7, p=[0.11, 0.67, 0.05, 0.03, 0.11, 0.015, 0.015]))
        for view in range(int(rng.choice([1, 2, 3], p=[0.7, 0.2, 0.1]))):
            rows.append({"image_id": f"I{lesion}_{view}", "lesion_id": f"L{lesion}", "label": label})
    return pd.DataFrame(rows)


def test_split_groups_lesions_and_stratifies() -> None:
    table = _lesion_table()
    split = split_by_lesion(table, val_fraction=0.15, test_fraction=0.2, seed=1)
    assert set(split) == {"train", "val", "test"}
    per_lesion = pd.Series(split).groupby(table["lesion_id"]).nunique()
    assert (per_lesion == 1).all(), "a lesion has images in two splits"
    lesion_split = pd.Series(split, index=table["lesion_id"]).groupby(level=0).first()
    n = len(lesion_split)
    assert (lesion_split == "test").sum() == pytest.approx(0.2 * n, abs=2)
    assert (lesion_split == "val").sum() == pytest.approx(0.15 * n, abs=2)
    overall = table["label"].value_counts(normalize=True)
    for name in ("train", "test"):
        share = table.loc[split == name, "label"].value_counts(normalize=True)
        assert abs(share[1] - overall[1]) < 0.04  # NV share kept


def test_split_is_seeded() -> None:
    table = _lesion_table()
    a = split_by_lesion(table, 0.15, 0.15, seed=7)
    assert (a == split_by_lesion(table, 0.15, 0.15, seed=7)).all()
    assert (a != split_by_lesion(table, 0.15, 0.15, seed=8)).any()


def test_pixel_cache_reused_and_invalidated(tiny_ham: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    shutil.copytree(tiny_ham / "images", images)
    paths = sorted(str(p) for p in images.iterdir())[:10]
    first = build_pixel_cache(paths, (24, 32), tmp_path / "cache")
    pixels = np.load(first)
    assert pixels.shape == (10, 24, 32, 3) and pixels.dtype == np.uint8 and pixels.std() > 5
    assert build_pixel_cache(paths, (24, 32), tmp_path / "cache") == first
    Path(paths[3]).write_bytes(Path(paths[4]).read_bytes())  # an image changed on disk
    second = build_pixel_cache(paths, (24, 32), tmp_path / "cache")
    assert second != first
    np.testing.assert_array_equal(np.load(second)[3], np.load(second)[4])


def test_datamodule_splits_datasets_and_weights(tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham),
        image_size=32,
        batch_size=8,
        num_workers=0,
        class_weights="balanced",
        cache_dir=str(tmp_path),
    )
    dm.prepare_data()
    dm.setup("fit")
    sizes = {s: len(getattr(dm, f"{s}_dataset")) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 240 and min(sizes.values()) > 20
    split = dm.split_table()
    assert (split.groupby("lesion_id")["split"].nunique() == 1).all()
    counts = np.bincount(dm.train_dataset.labels, minlength=7)
    expected = len(dm.train_dataset) / (7 * counts)
    np.testing.assert_allclose(dm.loss_class_weights(), expected, rtol=1e-5)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (8, 3, 32, 32) and batch["image"].dtype == torch.float32
    assert -3 < batch["image"].mean() < 3 and len(batch["image_id"]) == 8
    val = next(iter(dm.val_dataloader()))
    again = next(iter(dm.val_dataloader()))
    torch.testing.assert_close(val["image"], again["image"])  # no augmentation outside training


def test_balanced_sampler_evens_out_classes(tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham),
        image_size=16,
        batch_size=64,
        num_workers=0,
        balanced_sampler=True,
        augment=False,
        cache_dir=str(tmp_path),
    )
    dm.setup("fit")
    torch.manual_seed(0)
    drawn = np.concatenate([b["label"].numpy() for _ in range(8) for b in dm.train_dataloader()])
    shares = np.bincount(drawn, minlength=7) / len(drawn)
    natural = np.bincount(dm.train_dataset.labels, minlength=7) / len(dm.train_dataset)
    present = natural > 0
    assert shares[1] < natural[1] / 2  # NV no longer dominates
    assert np.all(np.abs(shares[present] - 1 / present.sum()) < 0.07)


def test_sampling_power_gives_the_class_probabilities() -> None:
    """Power p: class c drawn in proportion to n_c ** (1 - p); checked in closed form and by drawing."""
    labels = np.repeat(np.arange(7), [100, 400, 25, 16, 9, 4, 1])
    counts = np.bincount(labels).astype(float)
    for power in (0.0, 0.5, 1.0):
        weights = sampling_weights(labels, power)
        by_class = np.bincount(labels, weights=weights) / weights.sum()
        expected = counts ** (1 - power) / (counts ** (1 - power)).sum()
        np.testing.assert_allclose(by_class, expected, rtol=1e-12)
        np.testing.assert_allclose(sampled_class_priors(labels, power), expected, rtol=1e-12)
    np.testing.assert_allclose(
        sampled_class_priors(labels, 0.5)[:2], np.array([10, 20]) / (10 + 20 + 5 + 4 + 3 + 2 + 1)
    )
    drawn = torch.multinomial(
        torch.as_tensor(sampling_weights(labels, 0.5)),
        200_000,
        replacement=True,
        generator=torch.Generator().manual_seed(0),
    ).numpy()
    shares = np.bincount(labels[drawn], minlength=7) / len(drawn)
    np.testing.assert_allclose(shares, sampled_class_priors(labels, 0.5), atol=0.005)


def test_datamodule_sampling_power_and_priors(tiny_ham: Path, tmp_path: Path) -> None:
    dm = HAM10000DataModule(
        root=str(tiny_ham), image_size=16, num_workers=0, balanced_sampler=0.5, cache_dir=str(tmp_path)
    )
    dm.setup("fit")
    labels = dm.train_dataset.labels
    np.testing.assert_allclose(dm.training_class_priors(), sampled_class_priors(labels, 0.5))
    # the decision tau's frequencies: as in the data, not as sampled, each class counted once more
    counts = np.array([(labels == c).sum() for c in range(7)])
    np.testing.assert_allclose(dm.training_class_frequencies(), (counts + 1) / (len(labels) + 7))
    sampler = dm.train_dataloader().sampler
    np.testing.assert_allclose(sampler.weights.numpy(), sampling_weights(labels, 0.5))
    with pytest.raises(MedlitError, match="balanced_sampler must be"):
        HAM10000DataModule(root=str(tiny_ham), balanced_sampler=1.5)


def test_batch_augment_warps_each_image_and_normalizes() -> None:
    """BatchAugment: identity settings give the plain normalisation; a forced flip mirrors the image; crops and
    rotations differ per image; colour jitter stays within its factors."""
    torch.manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 12, 16), dtype=torch.uint8)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    plain = (images.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    augment = BatchAugment(mean, std, rotation_degrees=0.0, color_jitter=0.0, crop_scale_min=1.0)
    torch.testing.assert_close(augment.normalize(images), plain)
    out = augment(images)
    for i in range(len(images)):  # no crop, no rotation: each image is itself or a mirror image of itself
        candidates = [plain[i], plain[i].flip(2), plain[i].flip(1), plain[i].flip(1, 2)]
        assert min(float((out[i] - c).abs().max()) for c in candidates) < 1e-4
    # flips alone, in matrix form: the x and y scales are +-1
    matrices = augment.warp_matrices(1000, 12, 16, torch.device("cpu"))
    assert set(matrices[:, 0, 0].round().tolist()) == {-1.0, 1.0} and matrices[:, :, 2].abs().max() == 0
    # rotations of a non-square image are rotations in pixels: D M D^-1 (D = diag(W, H)) is orthogonal
    turning = BatchAugment(mean, std, rotation_degrees=40.0, color_jitter=0.0, crop_scale_min=1.0)
    linear = turning.warp_matrices(500, 12, 16, torch.device("cpu"))[:, :, :2]
    pixels = torch.diag(torch.tensor([16.0, 12.0])) @ linear @ torch.diag(torch.tensor([1 / 16, 1 / 12]))
    torch.testing.assert_close(pixels @ pixels.transpose(1, 2), torch.eye(2).expand(500, 2, 2), atol=1e-5, rtol=0)
    assert linear[:, 0, 1].abs().max() > 0.3  # they do rotate
    strong = BatchAugment(mean, std, rotation_degrees=30.0, color_jitter=0.0, crop_scale_min=0.5)
    matrices = strong.warp_matrices(1000, 12, 16, torch.device("cpu"))
    determinant = torch.linalg.det(matrices[:, :, :2])  # area share of the crop (rotation keeps areas)
    assert determinant.abs().min() >= 0.5 - 1e-4 and determinant.abs().max() <= 1.0 + 1e-4
    assert len(set(strong(images).flatten(1).sum(1).tolist())) == len(images)
    jitter = BatchAugment(mean, std, rotation_degrees=0.0, color_jitter=0.2, crop_scale_min=1.0)
    gray = torch.full((4, 3, 8, 8), 100, dtype=torch.uint8)  # gray: contrast and saturation change nothing
    brightness = (jitter(gray) * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)) / (100 / 255)
    assert brightness.min() >= 0.8 - 1e-4 and brightness.max() <= 1.2 + 1e-4


def test_batch_augment_in_the_datamodule(tiny_ham: Path, tmp_path: Path) -> None:
    """With data.batch_augment the training loader yields uint8 images and the transfer hook augments them in
    training only; evaluation images are normalised floats as before."""
    dm = HAM10000DataModule(
        root=str(tiny_ham),
        image_size=16,
        num_workers=0,
        batch_augment=True,
        auto_augment="trivial",
        cache_dir=str(tmp_path),
        batch_size=8,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (8, 3, 16, 16)
    assert dm.val_dataset[0]["image"].dtype == torch.float32

    class Training:
        training = True

    dm.trainer = Training()  # the hook asks the trainer whether it trains
    out = dm.on_after_batch_transfer({"image": batch["image"].clone(), "label": batch["label"]}, 0)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (8, 3, 16, 16)
    Training.training = False
    assert dm.on_after_batch_transfer({"image": batch["image"]}, 0)["image"].dtype == torch.uint8
    steps = build_transforms(True, (16, 16), (0, 0, 0), (1, 1, 1), auto_augment="randaugment", batch_augment=True)
    assert steps(batch["image"][0]).dtype == torch.uint8


def test_explicit_test_csv(tiny_ham: Path, tmp_path: Path) -> None:
    meta = pd.read_csv(tiny_ham / "HAM10000_metadata.csv")
    held = meta.iloc[:40]
    (tmp_path / "train").mkdir()
    meta.iloc[40:].to_csv(tmp_path / "train" / "HAM10000_metadata.csv", index=False)
    shutil.copytree(tiny_ham / "images", tmp_path / "train" / "images")
    onehot = pd.get_dummies(held["dx"].str.upper()).reindex(columns=CLASS_NAMES, fill_value=0).astype(float)
    onehot.insert(0, "image", held["image_id"].to_numpy())
    onehot.to_csv(tmp_path / "gt.csv", index=False)
    dm = HAM10000DataModule(
        root=str(tmp_path / "train"),
        test_csv=str(tmp_path / "gt.csv"),
        test_image_dir=str(tiny_ham / "images"),
        image_size=16,
        num_workers=0,
        cache_dir=str(tmp_path / "cache"),
    )
    dm.setup("fit")
    assert sorted(dm.test_dataset.table["image_id"]) == sorted(held["image_id"])
    assert len(dm.train_dataset) + len(dm.val_dataset) == 200
    # the same images in training metadata and test CSV are refused
    leaky = HAM10000DataModule(
        root=str(tiny_ham),
        test_csv=str(tmp_path / "gt.csv"),
        test_image_dir=str(tiny_ham / "images"),
        cache_dir=str(tmp_path / "cache"),
    )
    with pytest.raises(MedlitError, match="also in the training metadata"):
        leaky.setup("fit")


def test_predict_folder(tiny_ham: Path, tmp_path: Path) -> None:
    table = read_folder(tiny_ham / "images")
    assert len(table) == 240 and (table["label"] == -1).all()
    with pytest.raises(MedlitError, match="no .jpg/.png images"):
        read_folder(tmp_path)


def test_bad_datamodule_arguments() -> None:
    with pytest.raises(MedlitError, match="val_fraction"):
        HAM10000DataModule(val_fraction=0.0)
    with pytest.raises(MedlitError, match="class_weights needs 7 numbers"):
        HAM10000DataModule(class_weights=[1.0, 2.0])
    with pytest.raises(MedlitError, match="test_image_dir"):
        HAM10000DataModule(test_csv="x.csv")
