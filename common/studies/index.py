"""``index.csv``, the one table of a sweep or cross-validation dir: one row per run, read and written only here.

Columns (:data:`INDEX_COLUMNS`): ``run_id``, ``status`` (``running``, ``finished``, ``interrupted``, ``failed
(exit N)``), ``run_dir``, ``params`` (the run's sweep parameters as JSON), ``started``/``finished`` (local time),
``seconds``, ``metric`` (the sweep metric of the run), ``worker`` (who ran it) and ``trial`` (the Optuna trial).
Workers rewrite it under the dir's lock (:mod:`common.studies.claims`), atomically, so a reader sees a whole file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from common.files import atomic_path

__all__ = ["INDEX_COLUMNS", "IndexEntry", "finished_entries", "index_row", "read_index", "set_row", "write_index"]

INDEX_COLUMNS = ["run_id", "status", "run_dir", "params", "started", "finished", "seconds", "metric", "worker", "trial"]
"""The columns of ``index.csv``, in order (a column added later is kept after them)."""

INDEX_FILE = "index.csv"


@dataclass(frozen=True)
class IndexEntry:
    """One finished run as the index records it."""

    run_id: str
    params: dict[str, Any]
    """The run's sweep parameters (name → value)."""
    run_dir: Path


def read_index(folder: Path) -> pd.DataFrame:
    """The index of a sweep or cross-validation dir (an empty table with :data:`INDEX_COLUMNS` when there is none)."""
    path = folder / INDEX_FILE
    if not path.exists():
        return pd.DataFrame(columns=INDEX_COLUMNS)
    index = pd.read_csv(path, dtype={"run_id": str, "status": str, "run_dir": str, "params": str, "worker": str})
    return index.reindex(columns=[*INDEX_COLUMNS, *(c for c in index.columns if c not in INDEX_COLUMNS)])


def write_index(folder: Path, index: pd.DataFrame) -> None:
    """Replace the index atomically (call under the dir's lock)."""
    with atomic_path(folder / INDEX_FILE) as tmp:
        index.to_csv(tmp, index=False)


def set_row(index: pd.DataFrame, run_id: str, **values: Any) -> pd.DataFrame:
    """``index`` with the row of ``run_id`` (added when missing) holding ``values``."""
    if run_id not in set(index["run_id"]):
        index = pd.concat([index, pd.DataFrame([{"run_id": run_id}])], ignore_index=True)
    for key, value in values.items():
        index[key] = index[key].astype(object)
        index.loc[index["run_id"] == run_id, key] = value
    return index


def index_row(index: pd.DataFrame, run_id: str) -> pd.Series | None:
    """The row of ``run_id`` (``None`` when the index has none)."""
    rows = index.loc[index["run_id"] == run_id]
    return None if rows.empty else rows.iloc[0]


def finished_entries(folder: Path) -> list[IndexEntry]:
    """Every finished run of the dir, in index order; a run dir recorded from another working dir is looked for
    inside the dir (``runs/<run id>``)."""
    index = read_index(folder)
    return [
        IndexEntry(str(entry.run_id), json.loads(entry.params), _run_path(folder, str(entry.run_id), entry.run_dir))
        for entry in index[index["status"] == "finished"].itertuples()
    ]


def _run_path(folder: Path, run_id: str, recorded: str) -> Path:
    path = Path(recorded)
    return path if path.is_dir() else folder / "runs" / run_id
