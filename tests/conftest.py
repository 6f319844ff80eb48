"""Shared fixtures: tiny generated data in temporary folders, the real-data root, CPU-only settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import HttpSite, shared_data_root


@pytest.fixture(autouse=True, scope="session")
def _offline_environment(tmp_path_factory: pytest.TempPathFactory) -> None:
    """No network, no GPU, caches in a temporary folder."""
    os.environ["WANDB_MODE"] = "offline"
    os.environ["WANDB_SILENT"] = "true"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["MPLBACKEND"] = "Agg"
    os.environ["MEDLIT_CACHE"] = str(tmp_path_factory.mktemp("medlit-cache"))


FULL_FIT_MARKERS = ("smoke", "e2e")
"""A test that trains through the CLI (a ``fit`` that reaches its training loop, also in a fixture the test uses)
carries one of these, so that ``-m "not e2e and not smoke"`` is the fast unit layer. Runs in other processes (DDP,
sweeps, subprocesses) are marked by hand."""
_running: dict[str, pytest.Item | None] = {"test": None}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    _running["test"] = item  # also while the fixtures it asks for are set up
    try:
        return (yield)
    finally:
        _running["test"] = None


@pytest.fixture(autouse=True, scope="session")
def _full_fits_are_marked() -> None:
    """Fail a test whose CLI ``fit`` trains in this process without a :data:`FULL_FIT_MARKERS` marker (a run dir
    with ``config.yaml`` is the CLI's; small ``Trainer.fit`` calls in unit tests are not whole runs)."""
    from lightning.pytorch.loops.fit_loop import _FitLoop

    run = _FitLoop.run

    def guarded(loop: _FitLoop) -> None:
        test, by_cli = _running["test"], (Path(loop.trainer.default_root_dir) / "config.yaml").is_file()
        if by_cli and test is not None and not any(test.get_closest_marker(name) for name in FULL_FIT_MARKERS):
            pytest.fail(f"{test.nodeid} trains a model: mark it e2e (or smoke) to keep the unit layer fast")
        return run(loop)

    _FitLoop.run = guarded
    yield
    _FitLoop.run = run


@pytest.fixture(autouse=True)
def _close_figures() -> Iterator[None]:
    """No figure outlives its test (matplotlib keeps every unclosed one)."""
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


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


@pytest.fixture(scope="session")
def seg_cv(tiny_la: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-fold cross-validation of the segmenter on ``tiny_la`` (1 epoch per fold):
    ``common.studies.cv``'s dir."""
    from common.studies.cv import run_cv
    from tests.helpers import tiny_seg_args

    cv_dir = tmp_path_factory.mktemp("cv") / "seg"
    args = tiny_seg_args(tiny_la, cv_dir.parent, "--trainer.max_epochs", "1", "--outputs.views_3d", "false")
    return run_cv("volume_seg", args, 2, cv_dir, wandb_mode="off")


@pytest.fixture(scope="session")
def cls_cv(tiny_ham: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-fold cross-validation of the classifier on ``tiny_ham`` (1 epoch per fold, flip TTA, the
    decision τ searched on validation as in the recipe): ``common.studies.cv``'s dir."""
    from common.studies.cv import run_cv
    from tests.helpers import tiny_cls_args

    cv_dir = tmp_path_factory.mktemp("cv") / "cls"
    extra = ("--trainer.max_epochs", "1", "--model.tta_flips", "true", "--model.decision_tau", "null")
    args = tiny_cls_args(tiny_ham, cv_dir.parent, *extra, "--outputs.gradcam_per_class", "0")
    return run_cv("lesion_cls", args, 2, cv_dir, wandb_mode="off")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[HttpSite]:
    """A folder served over HTTP on localhost (the download tests' stand-in for GitHub and the ISIC bucket)."""
    served = HttpSite(tmp_path / "site")
    yield served
    served.server.shutdown()
