"""Results records: a finished run kept as a committed reference, so that later runs are paired with it on the same
test items long after its run dir is gone.

A record is a folder ``results/<benchmark>/<name>/`` that reads as a run dir (:func:`common.studies.runs.load_run`):

* what the report and the paired tests read of a run: ``metrics.json``, ``config.yaml``, ``run_info.json``,
  ``history.csv`` and ``timing.json`` when the run has them, the task's per-item files
  (:attr:`~common.studies.task_reports.TaskReport.record_files`: the classifier's ``predictions.csv``, the
  segmenter's ``metrics_per_case.csv``) and ``split.csv`` without its training rows and file paths;
* ``record.json``: the format, the benchmark and name, the command line(s) that made the run, the provenance (code
  commit and whether it had changes, packages, device; :mod:`common.provenance`), the data fingerprint (the data
  root's folder name, items per split, split and test-item hashes), the wall time and steps, the headline metrics
  with their intervals, and the SHA-256 of every file, which :func:`load_record` checks.

No image, mask or checkpoint is kept: a record of a HAM10000 run is about 0.3 MB, of a segmentation run 20 kB.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from common.errors import MedlitError
from common.files import write_json
from common.provenance import data_fingerprint
from common.rundir import RUN_INFO
from common.studies.cv_provenance import cv_provenance, logged_steps
from common.studies.runs import RunResult, load_run

__all__ = ["RECORD_FILE", "RECORD_FORMAT", "Record", "find_records", "load_record", "write_record"]

RECORD_FORMAT = 1
"""The version of the record layout this medlit writes and reads (a newer one is refused)."""
RECORD_FILE = "record.json"
_RUN_FILES = ("metrics.json", "config.yaml", RUN_INFO, "history.csv", "timing.json")
"""Copied from the run dir when present (the first three always are: :func:`load_run` needs them)."""
_SPLIT_COLUMNS = ("lesion_id", "split", "fold")
"""The columns of ``split.csv`` a record keeps beside the first (the item id): grouping and assignment, no paths."""


@dataclass(frozen=True)
class Record:
    """A record read back: its folder, ``record.json``, and the run it reads as."""

    path: Path
    info: dict[str, Any]
    run: RunResult

    @property
    def label(self) -> str:
        """``<benchmark>/<name>``."""
        return f"{self.info['benchmark']}/{self.info['name']}"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _kept_split(run_dir: Path, out: Path) -> None:
    """``split.csv`` without training rows and paths: the test items' grouping, the validation units' count."""
    source = run_dir / "split.csv"
    if not source.is_file():
        return
    split = pd.read_csv(source, dtype=str, keep_default_na=False)
    columns = [split.columns[0], *(c for c in _SPLIT_COLUMNS if c in split and c != split.columns[0])]
    kept = split[split["split"] != "train"] if "split" in split else split
    kept[columns].to_csv(out / "split.csv", index=False)


def _command(argv: list[str]) -> str:
    """The command line as typed: ``python -m <package>`` for the ``<package>/__main__.py`` Python puts first."""
    if argv and argv[0].endswith("__main__.py"):
        argv = [f"python -m {Path(argv[0]).parent.name}", *argv[1:]]
    return " ".join(argv)


def _headline(run: RunResult) -> dict[str, Any]:
    intervals = run.metrics.get("ci95") or {}
    return {
        name: {"value": value, "ci95": intervals.get(name), "unit": run.unit(name) or None}
        for name, value in run.headline().items()
    }


def write_record(run_dir: Path, out: Path, benchmark: str, name: str, note: str = "") -> Record:
    """Keep the finished run ``run_dir`` as the record ``out`` (a new or empty folder: nothing is overwritten).

    Raises:
        MedlitError: not a finished run, a per-item file missing, or ``out`` holds something.
    """
    run = load_run(run_dir)
    missing = [f for f in run.report.record_files if not (run_dir / f).is_file()]
    if missing:
        raise MedlitError(f"{run_dir}: no {missing[0]} (the per-item scores a record keeps for pairing)")
    if out.exists() and any(out.iterdir()):
        raise MedlitError(f"{out}: exists and is not empty; choose another record name (nothing is overwritten)")
    out.mkdir(parents=True, exist_ok=True)
    for file_name in (*_RUN_FILES, *run.report.record_files):
        if (run_dir / file_name).is_file():
            shutil.copyfile(run_dir / file_name, out / file_name)
    _kept_split(run_dir, out)
    fingerprint = data_fingerprint(run_dir / "split.csv", None)
    root = run.cfg("data.root")
    timing = run.timing
    info = {
        "format": RECORD_FORMAT,
        "benchmark": benchmark,
        "name": name,
        "task": run.task,
        "experiment": run.experiment,
        "note": note,
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
        "source_run_dir": str(run_dir.resolve()),
        "commands": [_command(run.info.get("argv", [])), *(_command(r["argv"]) for r in run.info.get("resumes", []))],
        "started": run.info.get("started"),
        "provenance": run.info.get("provenance") or {"code.commit": "unknown"},
        "data": {
            "root_name": Path(str(root)).name if root else None,
            **{key.removeprefix("dataset."): v for key, v in fingerprint.items() if key != "dataset.root"},
        },
        "wall_time_s": {key.removesuffix("_s"): timing[key] for key in ("fit_s", "test_s") if key in timing},
        "epochs": timing.get("epochs"),
        "steps": logged_steps(run_dir),
        "metrics": _headline(run),
        "checksums": {p.name: _sha256(p) for p in sorted(out.iterdir()) if p.name != RECORD_FILE},
    }
    # a fold ensemble: the command, time and steps of the whole cross-validation, not only of its test
    info |= cv_provenance(run_dir, run.info) or {}
    write_json(out / RECORD_FILE, info)
    return load_record(out)


def load_record(path: Path) -> Record:
    """Read a record and check it: its format, and every file against its checksum.

    Raises:
        MedlitError: no record there, a newer format, or a file missing, edited or truncated.
    """
    record_file = path / RECORD_FILE
    if not record_file.is_file():
        raise MedlitError(f"{path}: not a results record ({RECORD_FILE} missing)")
    try:
        info = json.loads(record_file.read_text())
    except json.JSONDecodeError as err:
        raise MedlitError(f"{record_file}: not valid JSON (line {err.lineno}); restore it from git") from None
    if not isinstance(info, dict) or not isinstance(info.get("format"), int):
        raise MedlitError(f"{record_file}: no 'format' number; not a results record")
    if info["format"] > RECORD_FORMAT:
        raise MedlitError(
            f"{record_file}: format {info['format']} is newer than this medlit reads ({RECORD_FORMAT}); update medlit"
        )
    for file_name, digest in (info.get("checksums") or {}).items():
        file = path / file_name
        if not file.is_file():
            raise MedlitError(f"{file}: missing from the record (record.json lists it)")
        if _sha256(file) != digest:
            raise MedlitError(
                f"{file}: differs from its checksum in record.json (edited or truncated); restore it from git"
            )
    return Record(path=path, info=info, run=load_run(path))


def find_records(root: Path) -> list[Record]:
    """Every record under ``root`` (``<root>/<benchmark>/<name>/record.json``), checked, in path order."""
    if not root.is_dir():
        return []
    return [load_record(p.parent) for p in sorted(root.glob(f"*/*/{RECORD_FILE}"))]
