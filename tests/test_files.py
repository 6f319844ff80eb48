"""``common.files``: JSON without NaN, and files that appear whole or not at all."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from common.files import atomic_path, write_json


def test_write_json_nan_is_null(tmp_path: Path) -> None:
    data = {"a": math.nan, "b": [1.0, math.inf, {"c": -math.inf}], "d": (math.nan, 2), "e": "nan", "f": 0.5}
    write_json(tmp_path / "sub" / "x.json", data)
    text = (tmp_path / "sub" / "x.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None, {"c": None}], "d": [None, 2], "e": "nan", "f": 0.5}
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["x.json"]


def test_atomic_path(tmp_path: Path) -> None:
    target = tmp_path / "a" / "table.csv.gz"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".csv.gz") and tmp != target
        tmp.write_text("new")
        assert not target.exists()  # nothing visible until the body finishes
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "new"  # the old file is untouched
    assert [p.name for p in target.parent.iterdir()] == ["table.csv.gz"]  # no temporary file left
