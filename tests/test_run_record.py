"""What ``run_info.json`` records (common.run_record): a run's start, its resumes and the end of its fit, in the
key order the report and earlier runs have; written by rank 0 only."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from lightning.pytorch.utilities import rank_zero_only

from common.run_options import RunOptions
from common.run_record import record_device, record_fit_end, record_resume, record_start
from tests.toy_task.data import ToyDataModule
from tests.toy_task.model import ToyRegressor


def _info(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "run_info.json").read_text())


def _checkpoint(path: str, monitor: str | None = None, score: float = 0.0) -> Any:
    return SimpleNamespace(monitor=monitor, best_model_path=path, best_model_score=torch.tensor(score))


def test_the_start_records_what_the_report_needs_in_order(tmp_path: Path) -> None:
    module = ToyRegressor(features=3)
    module.net.bias.requires_grad_(False)
    record_start(tmp_path, RunOptions(experiment="toy"), "fit", module, ToyDataModule(), "tests.toy_task.report")
    info = _info(tmp_path)
    assert list(info) == [
        *("experiment", "task", "report_module", "subcommand", "model_class", "datamodule_class", "monitor"),
        *("monitor_mode", "parameters", "trainable_parameters", "started", "argv", "provenance"),
    ]
    assert info["model_class"] == "tests.toy_task.model.ToyRegressor" and info["monitor"] == "val/mae"
    assert (info["parameters"], info["trainable_parameters"]) == (4, 3)  # 3 weights and a frozen bias
    assert info["argv"] == sys.argv and info["report_module"] == "tests.toy_task.report"
    assert info["provenance"]["packages.torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert {"code.commit", "code.dirty"} <= set(info["provenance"])


def test_the_device_joins_the_provenance(tmp_path: Path) -> None:
    record_start(tmp_path, RunOptions(experiment="toy"), "fit", ToyRegressor(features=3), ToyDataModule(), None)
    trainer = SimpleNamespace(
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
        accelerator=SimpleNamespace(),
        num_devices=2,
        num_nodes=1,
        precision="bf16-mixed",
    )
    record_device(tmp_path, trainer)
    provenance = _info(tmp_path)["provenance"]
    assert provenance["device.name"] == "cpu" and provenance["device.count"] == 2
    assert provenance["device.precision"] == "bf16-mixed" and "code.commit" in provenance  # kept beside it


def test_each_resume_is_appended(tmp_path: Path) -> None:
    record_resume(tmp_path, "a/last.ckpt")
    record_resume(tmp_path, "b/last.ckpt")
    resumes = _info(tmp_path)["resumes"]
    assert [r["ckpt_path"] for r in resumes] == ["a/last.ckpt", "b/last.ckpt"]
    assert list(resumes[0]) == ["at", "ckpt_path", "argv"]


@pytest.mark.parametrize(("test_checkpoint", "tested"), [("best", "best-epoch001.ckpt"), ("last", "last.ckpt")])
def test_the_end_of_fit_records_the_best_checkpoint_and_the_one_tested(
    test_checkpoint: str, tested: str, tmp_path: Path
) -> None:
    checkpoints = [_checkpoint(str(tmp_path / "best-epoch001.ckpt"), "val/mae", 0.25), _checkpoint("last.ckpt")]
    chosen = record_fit_end(tmp_path, checkpoints, test_checkpoint)
    info = _info(tmp_path)
    assert chosen.endswith(tested) and info["tested_checkpoint"] == chosen
    assert list(info) == ["fit_finished", "best_checkpoint", "best_score", "test_checkpoint", "tested_checkpoint"]
    assert info["best_score"] == 0.25 and info["test_checkpoint"] == test_checkpoint


def test_without_a_house_last_checkpoint_the_weights_in_memory_are_tested(tmp_path: Path) -> None:
    assert record_fit_end(tmp_path / "a", [_checkpoint("/x/my-last.ckpt", "val/mae", 0.5)], "last") == ""
    info = _info(tmp_path / "a")
    assert info["best_checkpoint"] == "/x/my-last.ckpt" and info["tested_checkpoint"] == ""
    assert record_fit_end(tmp_path / "b", [], "best") == ""  # no checkpoint callback at all
    assert list(_info(tmp_path / "b")) == ["fit_finished", "test_checkpoint", "tested_checkpoint"]


def test_other_ranks_write_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rank_zero_only, "rank", 1)
    record_resume(tmp_path, "a/last.ckpt")
    assert record_fit_end(tmp_path, [_checkpoint("best.ckpt", "val/mae")], "best") == "best.ckpt"
    assert not (tmp_path / "run_info.json").exists()
