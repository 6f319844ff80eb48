"""bf16 on a CPU without bf16 instructions (common.precision): run as 32-true with one warning line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import common.precision
from common.cli import MedlitCLI
from common.precision import cpu_has_bf16, precision_for_this_machine
from tests.toy_task.callbacks import ToyOutputs
from tests.toy_task.data import ToyDataModule
from tests.toy_task.model import ToyRegressor


def test_bf16_on_a_cpu_without_bf16_becomes_32_true_and_everything_else_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(common.precision, "cpu_has_bf16", lambda: False)
    precision, warning = precision_for_this_machine("bf16-mixed", "cpu")
    assert precision == "32-true" and warning == (
        "warning: trainer.precision bf16-mixed: this CPU has no bf16 instructions (AVX-512 BF16 or AMX) and "
        "emulates bf16 about 10x slower than float32; this run uses 32-true"
    )
    assert precision_for_this_machine("bf16-true", "auto")[0] == "32-true"  # no GPU here: auto is the CPU
    assert precision_for_this_machine("bf16-mixed", "gpu") == ("bf16-mixed", None)
    assert precision_for_this_machine("16-mixed", "cpu") == ("16-mixed", None)
    assert precision_for_this_machine("32-true", "cpu") == ("32-true", None)
    monkeypatch.setattr(common.precision, "cpu_has_bf16", lambda: True)
    assert precision_for_this_machine("bf16-mixed", "cpu") == ("bf16-mixed", None)


def test_this_machines_answer_is_torchs() -> None:
    import torch

    native = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu_has_bf16() == native


def test_the_run_records_the_precision_it_ran_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(common.precision, "cpu_has_bf16", lambda: False)
    args = ["test", "--run.root", str(tmp_path), "--run.wandb", "off", "--trainer.precision", "bf16-mixed"]
    cli = MedlitCLI(ToyRegressor, ToyDataModule, ToyOutputs, args=args)
    assert cli.trainer.precision == "32-true"
    assert yaml.safe_load((cli.run_dir / "config.yaml").read_text())["trainer"]["precision"] == "32-true"
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: trainer.precision")]
    assert len(warnings) == 1
