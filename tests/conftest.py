"""Shared fixtures: tiny generated data in temporary folders, the real-data root, CPU-only settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True, scope="session")
def _offline_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No network, no GPU, caches in a temporary folder."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["MEDLIT_CACHE"] = str(tmp_path_factory.mktemp("medlit-cache"))


def shared_data_root() -> Path:
    return Path(os.environ.get("MEDLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (or ``$MEDLIT_SHARED_DATA``); tests using it are skipped when it is absent."""
    root = shared_data_root()
    if not root.is_dir():
        pytest.skip(f"real data not found at {root} (set MEDLIT_SHARED_DATA)")
    return root


@pytest.fixture(scope="session")
def tiny_ham(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 240-image HAM10000-layout folder at 60x80 pixels."""
    from lesion_cls.synthetic import generate_ham10000

    return generate_ham10000(tmp_path_factory.mktemp("ham") / "ham10000", n_images=240, size_hw=(60, 80), seed=3)


def _quiet_run(runs_root: Path) -> list[str]:
    """Run-dir, W&B and console settings shared by the tiny CLI runs."""
    return [
        *("--run.root", str(runs_root), "--run.wandb", "off", "--trainer.max_epochs", "2"),
        *("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"),
    ]


def tiny_cls_args(data_root: Path, runs_root: Path, *extra: str) -> list[str]:
    """CLI arguments for a 2-epoch CPU run of the classifier on tiny data."""
    return [
        *("--config", str(REPO / "experiments" / "cls_ce.yaml")),
        *("--config", str(REPO / "experiments" / "demo" / "cls.yaml")),
        *("--data.root", str(data_root), "--data.image_size", "32", "--data.batch_size", "16"),
        *_quiet_run(runs_root),
        *("--outputs.gradcam_per_class", "1"),
        *extra,
    ]


@pytest.fixture(scope="session")
def tiny_la(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 + 3 LA-layout h5 cases of 32x32x24 voxels with train.list/test.list."""
    from volume_seg.synthetic import generate_la_h5

    return generate_la_h5(tmp_path_factory.mktemp("la") / "la_h5", n_train=8, n_test=3, shape=(32, 32, 24), seed=4)


@pytest.fixture(scope="session")
def tiny_msd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 MSD-layout NIfTI cases, 3 classes, spacing (1, 1, 1.5)."""
    from volume_seg.synthetic import generate_msd

    return generate_msd(tmp_path_factory.mktemp("msd") / "msd", n_cases=8, shape=(24, 28, 20), seed=5)


def tiny_seg_args(data_root: Path, runs_root: Path, *extra: str) -> list[str]:
    """CLI arguments for a 2-epoch CPU run of the segmenter on tiny volumes."""
    return [
        *("--config", str(REPO / "experiments" / "seg_dice.yaml")),
        *("--config", str(REPO / "experiments" / "demo" / "seg.yaml")),
        *("--data.root", str(data_root), "--data.patch_size", "[16, 16, 16]", "--data.patches_per_volume", "2"),
        *("--model.channels", "[4, 8, 16]", "--model.strides", "[2, 2]"),
        *_quiet_run(runs_root),
        *extra,
    ]
