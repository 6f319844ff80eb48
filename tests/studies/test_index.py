"""``index.csv``: written and read back the same, one row per run added or updated, and the finished runs found
also when the index was written from another working dir."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from common.studies.index import (
    INDEX_COLUMNS,
    IndexEntry,
    finished_entries,
    index_row,
    read_index,
    set_row,
    write_index,
)


def test_a_dir_without_an_index_reads_as_an_empty_table(tmp_path: Path) -> None:
    index = read_index(tmp_path)
    assert index.empty and list(index.columns) == INDEX_COLUMNS


def test_index_round_trip_keeps_values_and_column_order(tmp_path: Path) -> None:
    index = set_row(read_index(tmp_path), "run000", status="finished", params=json.dumps({"model.x": 0.1}))
    index = set_row(index, "run001", status="failed (exit 1)", worker="w0", seconds=1.5, trial=3)
    index["note"] = ["a", "b"]  # a column added later is kept, after the known ones
    write_index(tmp_path, index)
    assert (tmp_path / "index.csv").read_text().splitlines()[0] == ",".join([*INDEX_COLUMNS, "note"])
    back = read_index(tmp_path)
    assert list(back.columns) == [*INDEX_COLUMNS, "note"]
    assert back["run_id"].tolist() == ["run000", "run001"]
    assert back["status"].tolist() == ["finished", "failed (exit 1)"]
    assert json.loads(back.loc[0, "params"]) == {"model.x": 0.1} and back.loc[1, "worker"] == "w0"
    assert back.loc[1, "seconds"] == 1.5 and back.loc[1, "trial"] == 3


def test_set_row_adds_a_missing_run_and_updates_an_existing_one() -> None:
    index = set_row(pd.DataFrame(columns=INDEX_COLUMNS), "run000", status="running", worker="a")
    index = set_row(index, "run001", status="running", worker="b")
    index = set_row(index, "run000", status="finished", metric=0.5)
    assert index["run_id"].tolist() == ["run000", "run001"]  # updated in place, not appended
    row = index_row(index, "run000")
    assert (row["status"], row["worker"], row["metric"]) == ("finished", "a", 0.5)
    assert index_row(index, "run001")["status"] == "running" and index_row(index, "run002") is None


def test_finished_entries_find_a_run_dir_recorded_from_another_working_dir(tmp_path: Path) -> None:
    here = tmp_path / "sweep" / "runs" / "run000"
    here.mkdir(parents=True)
    elsewhere = tmp_path / "moved"
    elsewhere.mkdir()
    index = set_row(read_index(tmp_path), "run000", status="finished", params='{"x": 1}', run_dir="old/cwd/run000")
    index = set_row(index, "run001", status="running", params='{"x": 2}', run_dir=str(elsewhere))
    index = set_row(index, "run002", status="finished", params='{"x": 3}', run_dir=str(elsewhere))
    write_index(tmp_path / "sweep", index)
    assert finished_entries(tmp_path / "sweep") == [
        IndexEntry("run000", {"x": 1}, here),  # not found where it was recorded: looked for in the dir
        IndexEntry("run002", {"x": 3}, elsewhere),  # found where it was recorded
    ]
