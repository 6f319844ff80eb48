"""A sweep dir's comparison: configurations over seeds, paired tests, which parameters are replicate seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from common.studies.comparison import compare_sweep, is_replicate_seed, main
from tests.helpers import assert_png
from tests.toy_task.report import write_toy_run


def _toy_sweep(sweep_dir: Path, scores: dict[tuple[float, int], float]) -> None:
    """A finished grid sweep of the toy task (no per-item scores): x x seed -> validation score and MAE."""
    runs = []
    for i, ((x, seed), mae) in enumerate(scores.items()):
        run_dir = sweep_dir / "runs" / f"run{i:03d}"
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(f"model: {{x: {x}}}\nseed_everything: {seed}\n")
        info = {"monitor": "val/score", "monitor_mode": "max", "task": "toy_regression"}
        (run_dir / "run_info.json").write_text(json.dumps({**info, "report_module": "tests.toy_task.report"}))
        (run_dir / "history.csv").write_text(f"epoch,train/loss,val/score\n0,1.0,{-mae}\n")
        (run_dir / "metrics.json").write_text(json.dumps({"mae": mae, "rmse": mae * 1.5}))
        runs.append({"run_id": run_dir.name, "status": "finished", "run_dir": str(run_dir)})
        runs[-1]["params"] = json.dumps({"seed_everything": seed, "model.x": x})
    pd.DataFrame(runs).to_csv(sweep_dir / "index.csv", index=False)
    (sweep_dir / "plan.json").write_text(json.dumps({"sweep": "toy", "method": "grid"}))


def test_sweep_compares_configurations_over_their_common_seeds(tmp_path: Path) -> None:
    """Per configuration: mean, std and the Student-t interval over seeds; two configurations with the same
    seeds: the paired t over seeds (scipy's ttest_rel); a task without per-item scores pairs no single runs."""
    from scipy import stats

    a = {1: 0.20, 2: 0.25, 3: 0.22}
    b = {1: 0.15, 2: 0.21, 3: 0.16}
    _toy_sweep(tmp_path, {**{(0.1, s): v for s, v in a.items()}, **{(0.3, s): v for s, v in b.items()}})
    compare_sweep(tmp_path)
    table = pd.read_csv(tmp_path / "comparisons.csv")
    mae = table[table["metric"] == "mae"].iloc[0]
    assert (mae["run_a"], mae["run_b"], mae["test"], mae["n_units"]) == (
        "model.x=0.1",
        "model.x=0.3",
        "paired t over seeds",
        3,
    )
    reference = stats.ttest_rel(list(b.values()), list(a.values()))
    assert mae["p_value"] == pytest.approx(reference.pvalue)
    assert (mae["ci_low"], mae["ci_high"]) == pytest.approx(tuple(reference.confidence_interval()))
    assert mae["delta"] == pytest.approx(np.mean(list(b.values())) - np.mean(list(a.values())))
    assert set(table["metric"]) == {"mae", "rmse"} and (table["p_holm"] >= table["p_value"]).all()
    text = (tmp_path / "comparison.md").read_text()
    ci = stats.ttest_1samp(list(a.values()), 0).confidence_interval()
    assert f"0.223 ± 0.025 [{ci.low:.3f}-{ci.high:.3f}] (3)" in text
    assert "has no per-item test scores" in text
    assert_png(tmp_path / "comparison_metrics.png", min_side=300)
    assert_png(tmp_path / "comparison_curves.png", min_side=300)


@pytest.mark.parametrize(
    ("parameter", "replicate"),
    [
        ("seed_everything", True),
        ("model.seed", True),
        ("seed", True),
        ("data.split_seed", False),  # another split: other data, another configuration
        ("data.seed_list", False),
        ("seeds", False),
        ("model.x", False),
    ],
)
def test_a_replicate_seed_is_seed_everything_or_a_dotted_name_ending_in_seed(parameter: str, replicate: bool) -> None:
    assert is_replicate_seed(parameter) is replicate


def test_the_repository_sweeps_repeat_their_configurations_over_seed_everything() -> None:
    """Every sweep file in experiments/sweeps varies ``seed_everything`` and no other seed-like parameter, so the
    rule gives the configurations and seeds the substring match gave before."""
    import yaml

    from tests.helpers import REPO

    files = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
    assert files
    for path in files:
        parameters = yaml.safe_load(path.read_text())["parameters"]
        seedlike = [name for name in parameters if "seed" in name.lower()]
        assert seedlike == ["seed_everything"], path.name
        assert all(is_replicate_seed(name) == ("seed" in name.lower()) for name in parameters), path.name


def test_a_split_seed_is_a_configuration_not_a_replicate(tmp_path: Path) -> None:
    """Runs that differ in ``data.split_seed`` were trained and tested on other data: each split is its own
    configuration, and runs of different splits with the same ``seed_everything`` are compared."""
    rows = []
    for i, (split, seed) in enumerate([(1, 1), (1, 2), (2, 1), (2, 2)]):
        run_dir = write_toy_run(tmp_path / "runs" / f"run{i}", 0.1 + 0.01 * i, 0.1)
        params = {"data.split_seed": split, "seed_everything": seed}
        rows.append({"run_id": f"run{i}", "status": "finished", "run_dir": str(run_dir), "params": json.dumps(params)})
    pd.DataFrame(rows).to_csv(tmp_path / "index.csv", index=False)
    (tmp_path / "plan.json").write_text(json.dumps({"sweep": "splits", "method": "grid"}))
    text = compare_sweep(tmp_path).read_text()
    assert "configurations differ in `data.split_seed`, repeated over `seed_everything`." in text
    table = pd.read_csv(tmp_path / "comparisons.csv")
    assert set(table["run_a"]) == {"data.split_seed=1"} and set(table["run_b"]) == {"data.split_seed=2"}
    assert set(table["n_units"]) == {2}  # the two seeds both splits ran


def test_main_refuses_a_folder_that_is_not_a_sweep_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main([str(tmp_path)])
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: {tmp_path}: not a sweep dir (plan.json missing)\n"
    (tmp_path / "plan.json").write_text(json.dumps({"sweep": "s", "method": "grid"}))
    (tmp_path / "index.csv").write_text("run_id,status,run_dir,params\n")
    main([str(tmp_path)])
    assert capsys.readouterr().out == f"{tmp_path}: no finished run yet\n"
