"""The offline bayes search: Optuna told each run's metric, a resumed sweep repeating no run, two workers sharing one
study, and a storage that cannot be opened refused in one line."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from common.errors import MedlitError
from common.studies.plan import load_sweep
from common.studies.search import ask, open_study
from common.studies.sweep import run_sweep
from tests.helpers import REPO, fake_env, fake_sweep, one_error_line, sweep_command, write_yaml


def test_bayes_search_with_optuna_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_EVENTS", str(tmp_path / "events.txt"))
    sweep = fake_sweep(tmp_path, "bayes", "bayes", run_cap=6)
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


@pytest.mark.slow
@pytest.mark.e2e
def test_two_bayes_workers_share_one_optuna_study(tmp_path: Path) -> None:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    sweep_dir = tmp_path / "sweep"
    command = sweep_command(fake_sweep(tmp_path, "bayes", "bayes", run_cap=6), sweep_dir, "--workers", "2")
    result = subprocess.run(command, cwd=REPO, env=fake_env(tmp_path, 1.0), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    index = pd.read_csv(sweep_dir / "index.csv")
    assert len(index) == 6 and set(index["status"]) == {"finished"} and index["worker"].nunique() == 2
    study = optuna.load_study(
        study_name="bayes", storage=JournalStorage(JournalFileBackend(str(sweep_dir / "optuna.journal")))
    )
    trials = study.get_trials()
    assert len(trials) == 6 and {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}  # trials = runs
    by_run = {t.user_attrs["run_id"]: t for t in trials}
    for row in index.itertuples():
        trial = by_run[row.run_id]
        assert trial.params["model.x"] == json.loads(row.params)["model.x"]
        assert trial.value == pytest.approx(row.metric) == pytest.approx(-((trial.params["model.x"] - 0.3) ** 2))
    assert len({t.params["model.x"] for t in trials}) == 6  # the two workers did not propose the same points


def test_an_optuna_storage_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    sweep_file, sweep_dir = fake_sweep(tmp_path, "bayes", "bayes", run_cap=2), tmp_path / "sweep"
    url = f"sqlite:///{tmp_path}/no/such/folder/optuna.db"
    result = subprocess.run(
        sweep_command(sweep_file, sweep_dir, "--storage", url),
        cwd=REPO,
        env=fake_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert one_error_line(result).startswith(f"error: --storage {url}: cannot open the Optuna storage (")
    assert not sweep_dir.exists()  # refused before anything was made


def test_unsupported_distribution_is_refused_by_name(tmp_path: Path) -> None:
    spec = load_sweep(
        write_yaml(
            tmp_path / "b.yaml",
            {
                "method": "bayes",
                "metric": {"name": "val/score", "goal": "maximize"},
                "parameters": {"model.x": {"distribution": "normal", "mu": 0.0, "sigma": 1.0}},
            },
        )
    )
    study = open_study(spec, str(tmp_path / "optuna.journal"), seed=0)
    with pytest.raises(MedlitError, match="parameters.model.x: distribution 'normal' is not supported by the offline"):
        ask(study, spec, "run000", seed=0)
