"""The segmenter's test in W&B (volume_seg.dashboard), read from an offline run's transaction log: the config, the
summary with interval bounds, the per-case table, the overlays with their mask layers and the 3D views; and runs whose
W&B is off, leaves media out, or fails: the same files and numbers, at most one warning line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tests.helpers import WandbLog, run_with_stderr, tiny_seg_args, wandb_warnings
from volume_seg.__main__ import main
from volume_seg.dashboard import case_table, mask_slice
from volume_seg.metrics import METRIC_NAMES

pytestmark = pytest.mark.smoke


def _run(data: Path, runs: Path, *extra: str) -> tuple[Path, str]:
    """A tiny fit + test through the CLI; its run dir and what it printed on stderr."""
    return run_with_stderr(main, ["fit", *tiny_seg_args(data, runs, "--outputs.eval_workers", "0", *extra)])


@pytest.fixture(scope="module")
def offline(tiny_la: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _run(tiny_la, tmp_path_factory.mktemp("offline"), "--run.wandb", "offline")


@pytest.fixture(scope="module")
def off(tiny_la: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return _run(tiny_la, tmp_path_factory.mktemp("off"))  # tiny_seg_args: --run.wandb off


@pytest.fixture(scope="module")
def log(offline: tuple[Path, str]) -> WandbLog:
    return WandbLog(offline[0])


def _cases(run_dir: Path) -> list[str]:
    return sorted(pd.read_csv(run_dir / "metrics_per_case.csv")["case"].unique())


def test_config_has_every_setting_and_what_tells_runs_apart(offline: tuple[Path, str], log: WandbLog) -> None:
    config = log.config
    assert config["model.loss"] == "dice" and config["model.channels"] == [4, 8, 16]
    assert config["data.augment"] == "none" and config["data.patch_size"] == [16, 16, 16]
    assert config["trainer.max_epochs"] == 2 and config["seed_everything"] == 42
    assert config["run.experiment"] == "seg_dice" and config["outputs.wandb_checkpoint"] is False
    assert {f"packages.{name}" for name in ("torch", "lightning", "monai", "timm")} <= set(config)
    assert {"code.commit", "code.dirty", "device.name", "device.accelerator", "dataset.split_hash"} <= set(config)
    split = pd.read_csv(offline[0] / "split.csv")
    counts = split["split"].value_counts().to_dict()
    assert {name: config[f"dataset.n_{name}"] for name in counts} == counts
    assert config["dataset.n_test"] == len(_cases(offline[0])) == 3


def test_summary_has_the_headline_metrics_and_their_intervals(offline: tuple[Path, str], log: WandbLog) -> None:
    metrics = json.loads((offline[0] / "metrics.json").read_text())
    for name in METRIC_NAMES:
        assert log.summary[f"test/{name}"] == pytest.approx(metrics[name]["mean"], rel=1e-6)
        low, high = metrics["ci95"][name]
        assert (log.summary[f"test/{name}_ci_low"], log.summary[f"test/{name}_ci_high"]) == (low, high)
    assert log.summary["test/loss"] == pytest.approx(metrics["loss"], rel=1e-6)


def test_the_case_table_has_one_row_per_test_case_with_units(offline: tuple[Path, str], log: WandbLog) -> None:
    written = pd.read_csv(offline[0] / "metrics_per_case.csv")
    unit = json.loads((offline[0] / "metrics.json").read_text())["distance_unit"]
    columns, rows = log.table("test/per_case")
    assert columns == [
        "case",
        *(f"foreground {m} ({'0-1' if m in ('dice', 'jaccard') else unit})" for m in METRIC_NAMES),
    ]
    assert [row[0] for row in rows] == _cases(offline[0])
    logged = pd.DataFrame(rows, columns=columns).set_index("case")
    for metric, column in zip(METRIC_NAMES, columns[1:], strict=True):
        expected = written.set_index("case")[metric]
        np.testing.assert_allclose(logged[column].astype(float), expected.loc[logged.index], atol=1e-6)


def test_every_figure_png_is_an_image_and_each_case_has_its_masks(offline: tuple[Path, str], log: WandbLog) -> None:
    run_dir, cases = offline[0], _cases(offline[0])
    for folder in ("overlays", "views3d"):
        pngs = sorted(p.stem for p in (run_dir / folder).glob("*.png"))
        assert pngs == cases
        assert [caption.split(" ")[0] for caption in log.images(f"test/{folder}")] == pngs
    masks = log.logged("test/masks")
    assert [caption.split(" ")[0] for caption in log.images("test/masks")] == cases
    assert len(masks["all_masks"]) == len(cases)
    assert all(set(layers) == {"prediction", "ground_truth"} for layers in masks["all_masks"])
    labels = log.config["_wandb"]["mask/class_labels"]
    assert {key.rpartition("_delimeter_")[2]: named["value"] for key, named in labels.items()} == {
        "prediction": {"0": "background", "1": "foreground"},
        "ground_truth": {"0": "background", "1": "foreground"},
    }  # the class names of each layer (W&B keeps them in the config under "<key>_wandb_delimeter_<layer>")


def test_the_mask_slice_is_the_overlays_middle_slice_turned_as_shown() -> None:
    label = np.zeros((6, 5, 4), dtype=np.uint8)
    label[1:3, 1:4, 1:3] = 1
    image = np.arange(label.size, dtype=np.float32).reshape(label.shape)
    item = mask_slice("c1", image, label * 0, label)
    assert item.index == 2 and item.image.shape == (5, 6) and item.image.dtype == np.uint8
    assert item.image[-1, 0] == 0 and item.image[0, -1] == 255  # origin at the bottom left, as the overlay
    assert item.label.sum() == 6 and item.prediction.sum() == 0


def test_case_table_spreads_classes_over_columns() -> None:
    rows = pd.DataFrame(
        {
            "case": ["a", "a", "b", "b"],
            "class": ["atrium", "vessel", "atrium", "vessel"],
            **{m: [0.1, 0.2, 0.3, 0.4] for m in METRIC_NAMES},
            "distance_unit": "mm",
            "foreground_dice": [0.5, 0.5, 0.6, 0.6],
        }
    )
    table = case_table(rows)
    assert table.columns.tolist() == [
        "case",
        *(
            f"{c} {m} ({'0-1' if m in ('dice', 'jaccard') else 'mm'})"
            for c in ("atrium", "vessel")
            for m in METRIC_NAMES
        ),
        "merged foreground dice (0-1)",
    ]
    assert table["vessel hd95 (mm)"].tolist() == [0.2, 0.4] and len(table) == 2


def _same_files(one: Path, other: Path) -> None:
    for name in ("metrics_per_case.csv", "split.csv"):
        assert (one / name).read_bytes() == (other / name).read_bytes(), name
    metrics = [json.loads((run / "metrics.json").read_text()) for run in (one, other)]
    for written in metrics:
        written.pop("checkpoint")  # the run dir's own path
    assert metrics[0] == metrics[1]


def test_wandb_changes_no_number_and_off_writes_nothing_of_it(offline: tuple[Path, str], off: tuple[Path, str]) -> None:
    _same_files(offline[0], off[0])
    assert not (off[0] / "wandb").exists() and not wandb_warnings(off[1]) and not wandb_warnings(offline[1])


def test_a_failing_upload_is_one_warning_line_and_the_same_files(
    tiny_la: Path, tmp_path: Path, off: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from wandb.sdk.wandb_run import Run

    real = Run.log

    def refuse_media(self: Any, data: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if "test/per_case" in data:
            raise TimeoutError("upload timed out")
        real(self, data, *args, **kwargs)

    monkeypatch.setattr(Run, "log", refuse_media)
    run_dir, stderr = _run(tiny_la, tmp_path, "--run.wandb", "offline")
    assert wandb_warnings(stderr) == [
        "warning: W&B did not log the test figures and tables (TimeoutError: upload timed out)"
    ]
    _same_files(run_dir, off[0])
    log = WandbLog(run_dir)
    assert "test/dice_ci_low" in log.summary and not [s for s in log.history if "test/masks" in s]


def test_media_left_out_on_request(tiny_la: Path, tmp_path: Path, off: tuple[Path, str]) -> None:
    run_dir, stderr = _run(tiny_la, tmp_path, "--run.wandb", "offline", "--outputs.wandb_media", "false")
    _same_files(run_dir, off[0])
    log = WandbLog(run_dir)
    assert "test/hd95_ci_high" in log.summary and not wandb_warnings(stderr)
    assert not [key for step in log.history for key in step if key.startswith("test/") and "/" in key[5:]]
    assert not list((run_dir / "wandb").glob("offline-run-*/files/media"))
