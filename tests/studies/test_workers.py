"""Local worker processes: the local worker options dropped from their command, one GPU and a share of the cores
each, and three local workers running each configuration of a sweep once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from common.studies.workers import start_workers, without_options
from tests.helpers import REPO, events, fake_env, fake_sweep, sweep_command


def test_without_options_drops_the_local_worker_options() -> None:
    argv = ["s.yaml", "--workers", "3", "--devices=0,1", "--sweep-dir", "d", "--worker-label", "x", "--seed=2"]
    assert without_options(argv, ("--workers", "--devices", "--worker-label")) == [
        "s.yaml",
        "--sweep-dir",
        "d",
        "--seed=2",
    ]


def test_local_workers_get_one_gpu_and_their_share_of_the_cores(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--devices 3,5`` with 3 workers: round robin over the devices through CUDA_VISIBLE_DEVICES, the cores
    shared (OMP_NUM_THREADS), each output line marked with its worker, and the worst exit status returned."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    show = "print(sys.argv[-1], os.environ['CUDA_VISIBLE_DEVICES'], os.environ['OMP_NUM_THREADS'])"
    program = tmp_path / "show.py"
    program.write_text(f"import os, sys\n{show}\nsys.exit(sys.argv[-1] == 'w2')\n")
    assert start_workers([sys.executable, str(program)], 3, ["3", "5"]) == 1
    lines = sorted(capsys.readouterr().out.splitlines())
    threads = max(1, len(os.sched_getaffinity(0)) // 3)
    assert lines == [f"[w0] w0 3 {threads}", f"[w1] w1 5 {threads}", f"[w2] w2 3 {threads}"]


@pytest.mark.slow
@pytest.mark.e2e
def test_three_local_workers_run_each_configuration_once(tmp_path: Path) -> None:
    sweep_dir = tmp_path / "sweep"
    command = sweep_command(fake_sweep(tmp_path), sweep_dir, "--workers", "3")
    result = subprocess.run(command, cwd=REPO, env=fake_env(tmp_path, 2.0), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    started, ended = events(tmp_path, "start"), events(tmp_path, "end")
    xs = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert started == Counter(xs) and ended == Counter(xs)  # every configuration once, none twice
    index = pd.read_csv(sweep_dir / "index.csv")
    assert sorted(index["run_id"]) == [f"run{i:03d}" for i in range(6)] and set(index["status"]) == {"finished"}
    assert index["worker"].nunique() >= 2  # shared between the workers, not run by one
    assert {w.split(":")[0] for w in index["worker"]} <= {"w0", "w1", "w2"}
    assert not list((sweep_dir / "claims").glob("*.json"))
    comparison = pd.read_csv(sweep_dir / "comparison.csv")
    assert sorted(comparison["run_id"]) == sorted(index["run_id"])  # the comparison saw every run
    assert {line.split("]")[0] for line in result.stdout.splitlines() if line.startswith("[w")} >= {"[w0", "[w1"}
