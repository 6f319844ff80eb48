"""Helpers shared by the tests: the repository root, the real-data root, tiny-run CLI arguments."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path:
    return Path(os.environ.get("MEDLIT_SHARED_DATA", REPO.parent / "shared" / "data"))


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


def logged_test_metrics(run_dir: Path) -> dict[str, float]:
    """The ``test/<name>`` values the CSV logger recorded in ``logs/metrics.csv`` (the last test row)."""
    import pandas as pd

    log = pd.read_csv(run_dir / "logs" / "metrics.csv")
    test = log[[c for c in log.columns if c.startswith("test/")]].dropna(how="all")
    return {key.removeprefix("test/"): float(value) for key, value in test.iloc[-1].items()}


def assert_one_number(run_dir: Path, names: tuple[str, ...]) -> None:
    """Each logged ``test/<name>`` equals ``metrics.json``'s value (or its ``mean``), to float32 precision."""
    import json
    import math

    logged = logged_test_metrics(run_dir)
    written = json.loads((run_dir / "metrics.json").read_text())
    for name in names:
        value = written[name]["mean"] if isinstance(written[name], dict) else written[name]
        value = float("nan") if value is None else value
        assert math.isclose(logged[name], value, rel_tol=1e-6, abs_tol=1e-7) or (
            math.isnan(logged[name]) and math.isnan(value)
        ), (name, logged[name], value)
