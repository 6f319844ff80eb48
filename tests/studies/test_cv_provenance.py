"""A record of a fold ensemble describes the whole cross-validation: its command, every fold's time and steps."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from common.studies.records import write_record


@pytest.mark.e2e
def test_a_fold_ensembles_record_sums_the_folds_time_and_steps(cls_cv: Path, tmp_path: Path) -> None:
    record = write_record(cls_cv / "ensemble", tmp_path / "results" / "toy" / "cv", "toy", "cv")
    folds = sorted((cls_cv / "runs").glob("fold*"))
    timing = [json.loads((f / "timing.json").read_text()) for f in folds]
    steps = [int(pd.read_csv(f / "logs" / "metrics.csv")["step"].max()) + 1 for f in folds]
    tests = [json.loads((d / "timing.json").read_text())["test_s"] for d in (cls_cv / "oof_runs").iterdir()]
    tests.append(json.loads((cls_cv / "ensemble" / "timing.json").read_text())["test_s"])
    info = record.info
    assert info["wall_time_s"]["fit"] == pytest.approx(sum(t["fit_s"] for t in timing), abs=1e-3)
    assert info["wall_time_s"]["test"] == pytest.approx(sum(t["test_s"] for t in timing) + sum(tests), abs=1e-3)
    assert info["steps"] == sum(steps) and [m["steps"] for m in info["members"]] == steps
    assert [m["run"] for m in info["members"]] == [f.name for f in folds]
    command = info["commands"][0]
    assert command.startswith("python -m common.studies.cv lesion_cls ") and " --folds 2 --cv-dir " in command
    assert " fit " not in command and "num_folds" not in command
    # a plain run dir keeps its own command and time
    member = write_record(folds[0], tmp_path / "results" / "toy" / "fold0", "toy", "fold0").info
    assert member["wall_time_s"]["fit"] == timing[0]["fit_s"] and "members" not in member
