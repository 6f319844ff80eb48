"""Checks of what the command line gives (common.arguments), called directly: each mistake is one line naming the
flag, file or key. The same mistakes through the real CLI: tests/test_cli_bad_input.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.cli import LightningArgumentParser

from common.arguments import (
    ENSEMBLE_HELP,
    add_ensemble_arguments,
    check_checkpoint,
    check_config_files,
    check_settings,
    ensemble_members,
    expand_data_root,
    given_model_keys,
    program_of,
    stop_at_first_problem,
)
from common.check import DataCheck
from common.errors import MedlitError
from common.run_options import RunOptions
from lesion_cls.model import LesionClassifier
from tests.toy_task.model import ToyRegressor


def _message(call: object, *args: object) -> str:
    with pytest.raises(MedlitError) as error:
        call(*args)  # type: ignore[operator]
    return str(error.value)


def test_a_config_file_that_is_missing_broken_or_not_a_mapping_is_named(tmp_path: Path) -> None:
    good, broken, listed = tmp_path / "good.yaml", tmp_path / "broken.yaml", tmp_path / "list.yaml"
    good.write_text("model:\n  lr: 0.1\n")
    broken.write_text("model:\n  backbone: [resnet18\n")
    listed.write_text("- a\n")
    check_config_files(["fit", "--config", str(good), "--config", "{model: {lr: 0.1}}", f"--config={good}"])
    assert _message(check_config_files, ["--config", str(tmp_path / "no.yaml")]) == (
        f"--config {tmp_path / 'no.yaml'}: file not found"
    )
    assert _message(check_config_files, [f"--config={broken}"]).startswith(
        f"--config {broken}: not valid YAML (line 3, column 1: "
    )
    assert _message(check_config_files, ["--config", str(listed)]) == (
        f"--config {listed}: holds a list, not a mapping of keys"
    )


def test_given_model_keys_are_the_flags_not_the_config_files() -> None:
    args = ["--config", "cls.yaml", "--model.tta_flips", "false", "--model.loss=focal", "--model.net.depth", "3"]
    assert given_model_keys([*args, "--data.root", "x", "--modelx", "1"]) == {"tta_flips", "loss", "net"}


def test_a_checkpoint_that_is_missing_or_foreign_is_named_and_lightning_names_are_left_alone(tmp_path: Path) -> None:
    for name in ("last", "best", "hpc", "registry", "registry:model:v1", "s3://bucket/x.ckpt"):
        check_checkpoint(name, ToyRegressor)
    missing = tmp_path / "no.ckpt"
    assert _message(check_checkpoint, str(missing), ToyRegressor) == f"--ckpt_path {missing}: no such checkpoint file"
    assert _message(check_checkpoint, str(tmp_path), ToyRegressor) == (
        f"--ckpt_path {tmp_path}: no such checkpoint file; a run dir is given as --ensemble RUN, or by its "
        "checkpoints/*.ckpt"
    )
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"backbone": "resnet18", "lr": 0.1}}, foreign)
    assert _message(check_checkpoint, str(foreign), ToyRegressor) == (
        f"--ckpt_path {foreign}: trained with another task's model (settings backbone are not ToyRegressor's)"
    )
    own = tmp_path / "own.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"features": 4, "lr": 0.1}}, own)
    check_checkpoint(str(own), ToyRegressor)


def test_ensemble_flags_given_wrongly_are_one_line(tmp_path: Path) -> None:
    assert ensemble_members({"ensemble": None, "ensemble_one_at_a_time": False}, LesionClassifier) == []
    assert _message(ensemble_members, {"ensemble_one_at_a_time": True}, LesionClassifier) == (
        "--ensemble_one_at_a_time: it only applies with --ensemble RUN_OR_CHECKPOINT ..."
    )
    both = {"ensemble": [str(tmp_path)], "ckpt_path": "x.ckpt"}
    assert _message(ensemble_members, both, LesionClassifier) == (
        "--ckpt_path and --ensemble: give one (an ensemble of one is --ensemble RUN)"
    )
    assert "does not satisfy EnsembleModule" in _message(ensemble_members, {"ensemble": ["x"]}, ToyRegressor)
    assert _message(ensemble_members, {"ensemble": [str(tmp_path / "none")]}, LesionClassifier) == (
        f"--ensemble {tmp_path / 'none'}: no such run dir or checkpoint file"
    )


def test_ensemble_arguments_parse_and_say_what_they_do() -> None:
    parser = LightningArgumentParser()
    add_ensemble_arguments(parser)
    config = parser.parse_args(["--ensemble", "runs/a", "b.ckpt"])
    assert config.ensemble == ["runs/a", "b.ckpt"] and config.ensemble_one_at_a_time is False
    assert parser.parse_args([]).ensemble is None
    assert "Average the class probabilities" in ENSEMBLE_HELP


def test_settings_typed_on_the_command_line_are_checked_before_a_library_reads_them(tmp_path: Path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("my notes\n")
    check_settings({"trainer": {"max_time": "00:01:00:00"}}, RunOptions(root=str(tmp_path / "runs")))
    message = _message(check_settings, {"trainer": {"max_time": "1h"}}, RunOptions(root=str(tmp_path)))
    assert message.startswith("trainer.max_time '1h': not DD:HH:MM:SS")
    message = _message(check_settings, {"trainer": {}}, RunOptions(root=str(taken)))
    assert message == f"run.root {taken}: {taken} is a file, not a folder; choose another --run.root"
    message = _message(check_settings, {"trainer": {}}, RunOptions(dir=str(taken / "run1")))
    assert message == f"run.dir {taken / 'run1'}: {taken} is a file, not a folder; choose another --run.dir"


def test_the_data_root_may_name_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLIT_DATA_ROOT", str(tmp_path))
    config = {"data": {"root": "$MEDLIT_DATA_ROOT/ham"}}
    expand_data_root(config)
    assert config["data"]["root"] == f"{tmp_path}/ham"
    plain = {"data": {"root": "data/HAM10000"}}
    expand_data_root(plain)
    assert plain == {"data": {"root": "data/HAM10000"}}
    monkeypatch.delenv("MEDLIT_DATA_ROOT")
    message = _message(expand_data_root, {"data": {"root": "${MEDLIT_DATA_ROOT}"}})
    assert message == (
        "data.root ${MEDLIT_DATA_ROOT}: the environment variable MEDLIT_DATA_ROOT is not set; "
        "export MEDLIT_DATA_ROOT=/path/to/the/data or pass --data.root"
    )


def test_the_cheap_dataset_check_stops_at_its_first_problem_and_counts_the_rest() -> None:
    stop_at_first_problem(DataCheck(), "python -m toy")
    one = DataCheck()
    one.add("meta.csv", "no rows", "add some")
    assert _message(stop_at_first_problem, one, "python -m toy") == "meta.csv: no rows (add some)"
    three = DataCheck()
    for row in (1, 2, 3):
        three.add(f"meta.csv row {row}", "no image")
    assert _message(stop_at_first_problem, three, "python -m toy") == (
        "meta.csv row 1: no image; and 2 more problem(s): `python -m toy check` with the same arguments lists them "
        "all (run.check_data=false skips this check)"
    )


def test_the_program_is_the_task_package() -> None:
    assert program_of(LesionClassifier) == "python -m lesion_cls"
    assert program_of(ToyRegressor) == "python -m tests"
