"""The in-memory volume cache (:mod:`volume_seg.cache`): order kept, HDF5 read in the calling thread, NIfTI in
threads, errors raised as the transform raised them."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from common.errors import MedlitError
from volume_seg.cache import cache_volumes


def _records(file_format: str, n: int) -> list[dict[str, Any]]:
    return [{"case": f"c{i}", "image": f"c{i}.{file_format}", "format": file_format} for i in range(n)]


def test_h5_volumes_are_read_one_at_a_time_in_the_calling_thread() -> None:
    threads: list[int] = []

    def transform(record: dict[str, Any]) -> dict[str, Any]:
        threads.append(threading.get_ident())
        record["read"] = True
        return {"case": record["case"]}

    records = _records("h5", 5) + _records("nifti", 3)  # one h5 file makes the whole cache serial
    volumes = cache_volumes(records, transform, threads=4)
    assert [v["case"] for v in volumes] == [r["case"] for r in records]
    assert set(threads) == {threading.get_ident()}
    assert not any("read" in r for r in records)  # the transform gets a copy of each record
    assert cache_volumes([], transform) == []


def test_nifti_volumes_decode_in_threads_and_keep_their_order() -> None:
    threads: set[int] = set()

    def transform(record: dict[str, Any]) -> dict[str, Any]:
        threads.add(threading.get_ident())
        time.sleep(0.02 * (8 - int(record["case"][1:])))  # later cases finish first
        return {"case": record["case"]}

    volumes = cache_volumes(_records("nifti", 8), transform, threads=4)
    assert [v["case"] for v in volumes] == [f"c{i}" for i in range(8)]
    assert threading.get_ident() not in threads


@pytest.mark.parametrize("file_format", ["h5", "nifti"])
def test_an_error_is_raised_as_the_transform_raised_it(file_format: str) -> None:
    def transform(record: dict[str, Any]) -> dict[str, Any]:
        if record["case"] == "c2":
            raise MedlitError("c2: cannot read volume")
        return record

    with pytest.raises(MedlitError, match="^c2: cannot read volume$"):
        cache_volumes(_records(file_format, 5), transform, threads=3)
