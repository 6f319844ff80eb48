"""What a record of a cross-validation's fold ensemble says about how it was made: the ``python -m common.studies.cv``
command (from the cv dir's ``cv.yaml``), the wall time and steps of every fold model plus the out-of-fold and
ensemble tests, and each member's steps and checkpoint. The ensemble's own run dir knows only its test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from common.rundir import read_run_info, read_timing

__all__ = ["cv_provenance", "logged_steps"]


def logged_steps(run_dir: Path) -> int | None:
    """The last optimizer step the run's CSV log reached, plus one (``None`` without a log)."""
    log = run_dir / "logs" / "metrics.csv"
    if not log.is_file():
        return None
    steps = pd.read_csv(log, usecols=lambda c: c == "step")
    return int(steps["step"].max()) + 1 if "step" in steps and len(steps) else None


def _cv_command(cv_dir: Path, shown_dir: str) -> str | None:
    """``python -m common.studies.cv <task> <fit args> --folds N --cv-dir <dir>``, from ``cv.yaml`` (its sweep file)."""
    spec = yaml.safe_load((cv_dir / "cv.yaml").read_text()) or {}
    command, folds = spec.get("command") or [], (spec.get("parameters") or {}).get("data.fold", {}).get("values")
    if "fit" not in command or not folds:
        return None
    fit_args = [a for a in command[command.index("fit") + 1 :] if a != "${args}" and not a.startswith("--data.num")]
    task = spec.get("program", "?")
    return " ".join(["python -m common.studies.cv", task, *fit_args, f"--folds {len(folds)} --cv-dir {shown_dir}"])


def cv_provenance(run_dir: Path, info: dict[str, Any]) -> dict[str, Any] | None:
    """For the ensemble run dir ``run_dir`` of a cross-validation (a member list in ``info``, its ``run_info.json``,
    and ``cv.yaml`` in the folder above): the record keys that describe the whole cross-validation (``commands``
    where ``cv.yaml`` gives the fit, ``started``, ``wall_time_s`` with ``fit`` the folds' training and ``test`` every
    test, ``epochs``, ``steps``, and ``members``); ``None`` for any other run dir."""
    members = [Path(m["checkpoint"]).parent.parent for m in info.get("ensemble") or [] if m.get("checkpoint")]
    cv_dir = run_dir.resolve().parent
    if not members or not (cv_dir / "cv.yaml").is_file():
        return None
    given = next((a.split("=", 1)[1] for a in info.get("argv", []) if a.startswith("--run.dir=")), str(run_dir))
    timings = [read_timing(m) for m in members]
    out_of_fold = [read_timing(d) for d in sorted((cv_dir / "oof_runs").glob("*")) if d.is_dir()]
    steps = [logged_steps(m) for m in members]
    started = [read_run_info(m).get("started") for m in members]
    command = _cv_command(cv_dir, str(Path(given).parent))
    return {
        **({"commands": [command]} if command else {}),
        "started": min((s for s in started if s), default=None),
        "wall_time_s": {
            "fit": round(sum(t.get("fit_s", 0.0) for t in timings), 3),
            "test": round(sum(t.get("test_s", 0.0) for t in [*timings, *out_of_fold, read_timing(run_dir)]), 3),
        },
        "epochs": sum(t.get("epochs") or 0 for t in timings) or None,
        "steps": sum(steps) if all(s is not None for s in steps) else None,
        "members": [
            {"run": m.name, "steps": s, "fit_s": t.get("fit_s"), "checkpoint": Path(c["checkpoint"]).name}
            for m, s, t, c in zip(members, steps, timings, info["ensemble"], strict=True)
        ],
    }
