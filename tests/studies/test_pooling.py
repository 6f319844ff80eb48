"""The out-of-fold pool's shared shape with a toy task's hook: the run dir, the scored pool, folds.csv and
decisions.json written the same way for every task."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from common.errors import MedlitError
from common.studies.pooling import PoolDecisions, model_args, pooled_checkpoint, pooled_items, write_pool


def _fold_runs(root: Path) -> list[Path]:
    """Two finished out-of-fold test runs of a toy task."""
    runs = []
    for k in range(2):
        run = root / f"fold{k}"
        run.mkdir(parents=True)
        (run / "config.yaml").write_text(f"model: {{threshold: 0.{k}}}\n")
        (run / "split.csv").write_text("sample,split\na,train\nb,val\n")
        (run / "run_info.json").write_text(json.dumps({"task": "toy_regression", "parameters": 7, "seed": k}))
        runs.append(run)
    return runs


def _decisions() -> PoolDecisions:
    values = {"threshold": 0.25, "smooth": True, "window": None}
    return PoolDecisions(
        values=values,
        args=model_args(values),
        chosen_on=pooled_items(4, "sample", 2),
        rule="the threshold with the lowest pooled MAE",
        evidence={"candidates": {"0.25": {"mae": 1.5}, "0.5": {"mae": 2.0}}},
    )


def test_model_args_apply_the_values_as_the_cli_takes_them() -> None:
    values = {"largest_component": False, "decision_tau": -0.25, "decision_offsets": None, "offsets": [0.5, 0.0]}
    assert model_args(values) == [
        "--model.largest_component=false",
        "--model.decision_tau=-0.25",
        "--model.offsets=[0.5, 0.0]",
    ]
    assert pooled_items(120, "image", 5) == "out-of-fold predictions of 120 images (5 folds)"
    assert pooled_checkpoint("case", 3) == "out-of-fold: each case by the model of the fold it validated (3 folds)"


def test_write_pool_makes_the_pool_run_dir_with_the_task_hook(tmp_path: Path) -> None:
    runs = _fold_runs(tmp_path / "runs")
    out = tmp_path / "oof"
    scored: list[Path] = []

    def write_scored(folder: Path) -> None:  # the toy task's scored pool, written into the new run dir
        assert (folder / "run_info.json").is_file()  # the run dir is made first
        scored.append(folder)
        (folder / "metrics.json").write_text('{"mae": 1.5}\n')

    folds = pd.DataFrame({"sample": ["b", "d", "a", "c"], "fold": [0, 0, 1, 1]})
    returned = write_pool(out, runs, _decisions(), folds, write_scored)

    assert scored == [out]
    assert (out / "decisions.json").read_text() == (
        "{\n"
        '  "values": {\n    "threshold": 0.25,\n    "smooth": true,\n    "window": null\n  },\n'
        '  "args": [\n    "--model.threshold=0.25",\n    "--model.smooth=true"\n  ],\n'
        '  "chosen_on": "out-of-fold predictions of 4 samples (2 folds)",\n'
        '  "rule": "the threshold with the lowest pooled MAE",\n'
        '  "candidates": {\n    "0.25": {\n      "mae": 1.5\n    },\n    "0.5": {\n      "mae": 2.0\n    }\n  }\n'
        "}\n"
    )
    assert returned == json.loads((out / "decisions.json").read_text()) == _decisions().as_json()
    assert (out / "folds.csv").read_text() == "sample,fold\nb,0\nd,0\na,1\nc,1\n"
    info = json.loads((out / "run_info.json").read_text())
    assert info["subcommand"] == "pool" and info["pooled"] == [str(r) for r in runs]
    assert (info["threshold"], info["smooth"], info["window"]) == (0.25, True, None)  # the values, for the report
    assert info["task"] == "toy_regression" and info["parameters"] == 7  # the first fold's, not summed
    assert (out / "config.yaml").read_text() == "model: {threshold: 0.0}\n"  # the first fold's settings
    assert sorted(p.name for p in out.iterdir()) == [
        "config.yaml",
        "decisions.json",
        "folds.csv",
        "metrics.json",
        "run_info.json",
        "split.csv",
    ]


def test_write_pool_refuses_a_used_folder_before_the_hook(tmp_path: Path) -> None:
    runs = _fold_runs(tmp_path / "runs")
    out = tmp_path / "oof"
    out.mkdir()
    (out / "old.txt").write_text("kept")

    def write_scored(folder: Path) -> None:
        raise AssertionError("the hook ran in a used folder")

    with pytest.raises(MedlitError, match="oof: exists and is not empty"):
        write_pool(out, runs, _decisions(), pd.DataFrame({"sample": [], "fold": []}), write_scored)
    assert [p.name for p in out.iterdir()] == ["old.txt"]
