"""The sweep file and its plan: planning as documented, W&B-identical commands, seeded random search, one-line
errors for a bad sweep file, and ``plan.json`` (written once, then winning; a dir of another file or other
arguments refused)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from common.errors import MedlitError
from common.studies.plan import expand_command, load_sweep, open_plan, plan_runs
from tests.helpers import REPO, fake_sweep, write_yaml


def test_project_sweep_files_plan_as_documented() -> None:
    cls = load_sweep(REPO / "experiments" / "sweeps" / "cls_loss.yaml")
    plan = plan_runs(cls)
    assert len(plan) == 18 and plan[0] == {"seed_everything": 1, "model.loss": "ce", "data.class_balance": 0.0}
    assert [p["model.loss"] for p in plan[:6]] == ["ce", "ce", "focal", "focal", "ce_focal", "ce_focal"]
    assert len({json.dumps(p, sort_keys=True) for p in plan}) == 18
    seg = load_sweep(REPO / "experiments" / "sweeps" / "seg_loss_aug.yaml")
    plan = plan_runs(seg)
    assert len(plan) == 27 and {p["data.augment"] for p in plan} == {"none", "rotflip", "rich"}
    assert plan_runs(seg, max_runs=4) == plan[:4]


def test_real_data_sweeps_ask_the_seed_questions_on_the_recipes() -> None:
    """HAM10000: ce vs ce_focal on the 10-minute recipe, seeds 42/1/2, both losses of a seed back to back; LA-16:
    BCE, Dice, Dice + rotate/flip (one overlay each, nothing else changed) on the LA recipe with 10 minutes."""
    ham = load_sweep(REPO / "experiments" / "sweeps" / "ham10000_loss.yaml")
    plan = plan_runs(ham)
    assert [(p["seed_everything"], p["model.loss"]) for p in plan] == [
        (42, "ce"), (42, "ce_focal"), (1, "ce"), (1, "ce_focal"), (2, "ce"), (2, "ce_focal"),
    ]  # fmt: skip
    command = expand_command(ham, plan[1], [])
    assert command[command.index("fit") + 1 :] == [
        "--config", "experiments/recipes/ham10000.yaml", "--config", "experiments/recipes/ham10000_10min.yaml",
        "--data.root", "$MEDLIT_DATA_ROOT", "--seed_everything=42", "--model.loss=ce_focal",
    ]  # fmt: skip
    la = load_sweep(REPO / "experiments" / "sweeps" / "la16_loss_aug.yaml")
    plan = plan_runs(la)
    assert len(plan) == 6 and [p["seed_everything"] for p in plan] == [42, 42, 42, 1, 1, 1]
    arms = {}
    for params in plan[:3]:
        overlay = yaml.safe_load((REPO / params["config"]).read_text())
        assert set(overlay) == {"model", "data"} and set(overlay["model"]) == {"loss"}
        arms[Path(params["config"]).stem] = (overlay["model"]["loss"], overlay["data"]["augment"])
    assert arms == {"bce": ("bce", "none"), "dice": ("dice", "none"), "dice_rotflip": ("dice", "rotflip")}
    command = expand_command(la, plan[0], [])
    assert command[command.index("fit") + 1 : command.index("fit") + 5] == [
        "--config", "experiments/recipes/la16.yaml", "--trainer.max_time", "00:00:10:00",
    ]  # fmt: skip
    assert command[-1] == "--config=experiments/sweeps/la16_arms/bce.yaml"  # after the recipe: the arm wins


def test_command_is_what_wandb_agent_would_run() -> None:
    spec = load_sweep(REPO / "experiments" / "sweeps" / "cls_loss.yaml")
    params = {"model.loss": "focal", "data.class_balance": 1.0, "seed_everything": 2}
    command = expand_command(spec, params, ["--run.dir=x"])
    assert command == [
        sys.executable,
        "-m",
        "lesion_cls",
        "fit",
        "--config",
        "experiments/cls_ce.yaml",
        "--data.root",
        "$MEDLIT_DATA_ROOT",
        "--run.dir=x",
        "--model.loss=focal",
        "--data.class_balance=1.0",
        "--seed_everything=2",
    ]


def test_random_search_is_seeded(tmp_path: Path) -> None:
    spec = load_sweep(
        write_yaml(
            tmp_path / "r.yaml",
            {
                "method": "random",
                "run_cap": 5,
                "command": ["${args}"],
                "parameters": {
                    "model.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
                    "data.batch_size": {"values": [8, 16]},
                    "model.drop_rate": {"min": 0.0, "max": 0.5},
                },
            },
        )
    )
    a, b = plan_runs(spec, seed=1), plan_runs(spec, seed=1)
    assert a == b and len(a) == 5 and a != plan_runs(spec, seed=2)
    assert all(1e-5 <= p["model.lr"] <= 1e-2 and p["data.batch_size"] in (8, 16) for p in a)


def test_sweep_file_errors(tmp_path: Path) -> None:
    with pytest.raises(MedlitError, match="method 'hyperband' unknown"):
        load_sweep(write_yaml(tmp_path / "a.yaml", {"method": "hyperband", "parameters": {"x": {"value": 1}}}))
    with pytest.raises(MedlitError, match=r"parameters.model.lr: grid search needs 'value' or 'values'"):
        load_sweep(
            write_yaml(tmp_path / "b.yaml", {"method": "grid", "parameters": {"model.lr": {"min": 0.1, "max": 1}}})
        )
    with pytest.raises(MedlitError, match="bayes needs metric.name"):
        load_sweep(write_yaml(tmp_path / "c.yaml", {"method": "bayes", "parameters": {"x": {"values": [1, 2]}}}))
    with pytest.raises(MedlitError, match="random search needs run_cap"):
        plan_runs(
            load_sweep(write_yaml(tmp_path / "d.yaml", {"method": "random", "parameters": {"x": {"values": [1]}}}))
        )


def _runner_args(**changes: object) -> dict:
    args = {"max_runs": None, "data_root": None, "configs": [], "overrides": [], "wandb": "off", "seed": 0}
    return args | {"storage": None} | changes


def test_plan_file_is_written_once_and_wins_on_resume(tmp_path: Path) -> None:
    spec = load_sweep(fake_sweep(tmp_path))
    runs = plan_runs(spec)
    plan = open_plan(tmp_path, spec, runs, _runner_args())
    stored = json.loads((tmp_path / "plan.json").read_text())
    assert list(stored) == ["sweep", "digest", "file", "method", "runner_args", "plan"]
    assert stored["plan"] == runs == plan.runs and stored["digest"] == spec.digest
    assert (tmp_path / "sweep.yaml").read_text() == spec.path.read_text()
    text = (tmp_path / "plan.json").read_text()
    again = open_plan(tmp_path, spec, runs[:2], _runner_args(max_runs=2, wandb="offline"))
    assert again.runs == runs and again.runner_args["wandb"] == "off"  # the stored plan wins
    assert (tmp_path / "plan.json").read_text() == text and again.run_count(spec) == 6


def test_plan_file_of_another_sweep_or_other_arguments_is_refused(tmp_path: Path) -> None:
    first = load_sweep(fake_sweep(tmp_path, "first"))
    open_plan(tmp_path, first, plan_runs(first), _runner_args())
    second = load_sweep(fake_sweep(tmp_path, "second"))
    with pytest.raises(MedlitError, match=r"another sweep file \(first.yaml\), not second.yaml"):
        open_plan(tmp_path, second, plan_runs(second), _runner_args())
    changed = load_sweep(fake_sweep(tmp_path, "first", run_cap=3))
    with pytest.raises(MedlitError, match="holds a sweep of another version of first.yaml"):
        open_plan(tmp_path, changed, plan_runs(changed), _runner_args())
    with pytest.raises(MedlitError, match=r"was started with --data-root None, not /data"):
        open_plan(tmp_path, first, plan_runs(first), _runner_args(data_root="/data"))


def test_bayes_plan_records_its_study_storage(tmp_path: Path) -> None:
    spec = load_sweep(fake_sweep(tmp_path, "bayes", "bayes", run_cap=5))
    plan = open_plan(tmp_path, spec, plan_runs(spec), _runner_args())
    assert plan.runs is None and plan.run_count(spec) == 5
    assert plan.study_storage == plan.storage == str(tmp_path / "optuna.journal")
    stored = json.loads((tmp_path / "plan.json").read_text())
    del stored["storage"]  # a sweep dir made before journals
    (tmp_path / "plan.json").write_text(json.dumps(stored))
    old = open_plan(tmp_path, spec, None, _runner_args())
    assert old.storage is None and old.study_storage == f"sqlite:///{tmp_path / 'optuna.db'}"
    uncapped_dir = tmp_path / "uncapped"
    uncapped_dir.mkdir()
    uncapped = load_sweep(fake_sweep(uncapped_dir, "bayes", "bayes"))
    with pytest.raises(MedlitError, match="bayes search needs run_cap"):
        open_plan(uncapped_dir, uncapped, None, _runner_args()).run_count(uncapped)
