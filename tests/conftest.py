"""Shared fixtures: tiny generated data in temporary folders, the real-data root, CPU-only settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import shared_data_root


@pytest.fixture(autouse=True, scope="session")
def _offline_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No network, no GPU, caches in a temporary folder."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["MEDLIT_CACHE"] = str(tmp_path_factory.mktemp("medlit-cache"))


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
