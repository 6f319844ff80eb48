"""The offline W&B sweep runner: planning, W&B-identical commands, resume after a kill, the comparison."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from common.errors import MedlitError
from common.studies.sweep import expand_command, load_sweep, plan_runs
from tests.helpers import REPO


def _write(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


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
        "--seed_everything=42", "--model.loss=ce_focal",
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
        "--run.dir=x",
        "--model.loss=focal",
        "--data.class_balance=1.0",
        "--seed_everything=2",
    ]


def test_random_search_is_seeded(tmp_path: Path) -> None:
    spec = load_sweep(
        _write(
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
        load_sweep(_write(tmp_path / "a.yaml", {"method": "hyperband", "parameters": {"x": {"value": 1}}}))
    with pytest.raises(MedlitError, match=r"parameters.model.lr: grid search needs 'value' or 'values'"):
        load_sweep(_write(tmp_path / "b.yaml", {"method": "grid", "parameters": {"model.lr": {"min": 0.1, "max": 1}}}))
    with pytest.raises(MedlitError, match="bayes needs metric.name"):
        load_sweep(_write(tmp_path / "c.yaml", {"method": "bayes", "parameters": {"x": {"values": [1, 2]}}}))
    with pytest.raises(MedlitError, match="random search needs run_cap"):
        plan_runs(load_sweep(_write(tmp_path / "d.yaml", {"method": "random", "parameters": {"x": {"values": [1]}}})))


def _wait_for(predicate, timeout: float = 240.0) -> None:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError
        time.sleep(0.3)


def _finished(sweep_dir: Path) -> list[str]:
    index = sweep_dir / "index.csv"
    if not index.exists():
        return []
    table = pd.read_csv(index, dtype=str)
    return table.loc[table["status"] == "finished", "run_id"].tolist()


@pytest.mark.e2e
def test_killed_sweep_resumes_without_repeating_a_run(tiny_ham: Path, tmp_path: Path) -> None:
    sweep = _write(
        tmp_path / "two.yaml",
        {
            "name": "two",
            "program": "lesion_cls",
            "method": "grid",
            "metric": {"name": "val/bal_acc", "goal": "maximize"},
            "parameters": {"model.loss": {"values": ["ce", "focal"]}, "seed_everything": {"value": 7}},
            "command": [
                "${env}",
                "${interpreter}",
                "-m",
                "${program}",
                "fit",
                "--config",
                str(REPO / "experiments" / "cls_ce.yaml"),
                "${args}",
            ],
        },
    )
    tiny = _write(
        tmp_path / "tiny.yaml",
        {
            "data": {"image_size": 32, "batch_size": 16},
            "trainer": {"max_epochs": 1, "enable_progress_bar": False, "enable_model_summary": False},
            "outputs": {"gradcam_per_class": 0},
        },
    )
    sweep_dir = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "common.studies.sweep",
        str(sweep),
        "--sweep-dir",
        str(sweep_dir),
        "--data-root",
        str(tiny_ham),
        "--config",
        str(REPO / "experiments" / "demo" / "cls.yaml"),
        "--config",
        str(tiny),
        "--wandb",
        "off",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runner = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        _wait_for(lambda: _finished(sweep_dir) == ["run000"])
    finally:
        os.killpg(runner.pid, signal.SIGKILL)  # the runner and the run it started, between or in runs
        runner.wait()
    first = sweep_dir / "runs" / "run000" / "metrics.json"
    stamp = first.stat().st_mtime_ns
    assert _finished(sweep_dir) == ["run000"]

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "[sweep two] run000" not in resumed.stdout  # the finished run was not started again
    assert first.stat().st_mtime_ns == stamp
    index = pd.read_csv(sweep_dir / "index.csv", dtype=str)
    assert index["run_id"].tolist() == ["run000", "run001"] and set(index["status"]) == {"finished"}
    comparison = pd.read_csv(sweep_dir / "comparison.csv")
    assert sorted(comparison["run_id"]) == ["run000", "run001"]
    assert sorted(comparison["model.loss"]) == ["ce", "focal"]
    table = (sweep_dir / "comparison.md").read_text()
    rows = [line for line in table.splitlines() if line.startswith("| ce ") or line.startswith("| focal ")]
    assert len(rows) == 2 and all("(1)" in row for row in rows)
    for name in ("comparison_metrics.png", "comparison_curves.png", "plan.json"):
        assert (sweep_dir / name).is_file()
    metrics = json.loads((sweep_dir / "runs" / "run001" / "metrics.json").read_text())
    low, high = metrics["ci95"]["accuracy"]
    assert f"{metrics['accuracy']:.3f} ({low:.3f}-{high:.3f})" in table  # the run with its interval
    comparisons = pd.read_csv(sweep_dir / "comparisons.csv")
    assert set(comparisons["test"]) == {"paired bootstrap", "exact McNemar"}
    assert set(zip(comparisons["run_a"], comparisons["run_b"], strict=True)) == {("run000", "run001")}
    assert "p (Holm)" in table


FAKE_TRAINER = """
import json, sys
from pathlib import Path
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
run_dir = Path(args["run.dir"])
run_dir.mkdir(parents=True)
x = float(args["model.x"])
(run_dir / "config.yaml").write_text("model: {x: %s}\\n" % x)
(run_dir / "run_info.json").write_text(json.dumps({"monitor": "val/score", "monitor_mode": "max",
                                                   "task": "toy_regression", "report_module": "tests.toy_task.report"}))
(run_dir / "history.csv").write_text("epoch,train/loss,val/score\\n0,1.0,%r\\n" % (-(x - 0.3) ** 2))
(run_dir / "metrics.json").write_text(json.dumps({"mae": abs(x - 0.3), "rmse": abs(x - 0.3)}))
"""


def test_bayes_search_with_optuna_resumes(tmp_path: Path) -> None:
    program = tmp_path / "fake_train.py"
    program.write_text(FAKE_TRAINER)
    sweep = _write(
        tmp_path / "bayes.yaml",
        {
            "name": "bayes",
            "program": str(program),
            "method": "bayes",
            "run_cap": 6,
            "metric": {"name": "val/score", "goal": "maximize"},
            "parameters": {"model.x": {"min": 0.0, "max": 1.0}},
            "command": ["${env}", "${interpreter}", "${program}", "${args}"],
        },
    )
    from common.studies.sweep import run_sweep

    sweep_dir = run_sweep(sweep, tmp_path / "sweep", max_runs=4, wandb_mode="off")
    index = pd.read_csv(sweep_dir / "index.csv")
    assert len(index) == 4 and set(index["status"]) == {"finished"}
    xs = [json.loads(p)["model.x"] for p in index["params"]]
    assert all(0.0 <= x <= 1.0 for x in xs) and len(set(xs)) == 4
    np_metric = index["metric"].to_numpy()
    assert all(abs(m + (x - 0.3) ** 2) < 1e-9 for m, x in zip(np_metric, xs, strict=True))
    assert (sweep_dir / "optuna.journal").is_file()  # the study, in the storage Optuna recommends for NFS
    run_sweep(sweep, sweep_dir, max_runs=4, wandb_mode="off")  # nothing left to do: no run repeated
    assert len(pd.read_csv(sweep_dir / "index.csv")) == 4
    assert (sweep_dir / "comparison.md").is_file()
