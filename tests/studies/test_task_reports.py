"""The task-report contract, its registry, and the typed report blocks."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pandas as pd
import pytest

from common.errors import MedlitError
from common.studies.task_reports import (
    REPORTS,
    Heading,
    Image,
    Link,
    Paragraph,
    Plot,
    Table,
    register_report,
    report_for,
)


def test_a_report_missing_a_member_is_refused_by_name() -> None:
    class Partial:
        task = "partial"
        title = "partial"

        def sections(self, runs: list) -> list:
            return []

    with pytest.raises(MedlitError) as raised:
        register_report(Partial())
    message = str(raised.value)
    assert "does not satisfy TaskReport" in message
    for missing in ("headline_metrics", "metric_labels", "selection_statistics", "scored_items", "validation_units"):
        assert f"'{missing}'" in message
    assert "partial" not in REPORTS


def test_report_for_imports_the_module_a_run_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task whose report module was never imported: ``report_for`` imports it, which registers it."""
    import tests.toy_task.report  # noqa: F401  (registered, so that both entries below exist to take away)

    monkeypatch.delitem(REPORTS, "toy_regression")
    monkeypatch.delitem(sys.modules, "tests.toy_task.report")
    report = report_for("toy_regression", "tests.toy_task.report")
    assert report.title == "toy regression" and REPORTS["toy_regression"] is report
    assert report_for("toy_regression") is report  # registered now: no module needed


def test_report_for_an_unknown_task_or_module_says_what_is_registered() -> None:
    import tests.toy_task.report  # noqa: F401  (registers the toy task)

    with pytest.raises(MedlitError, match=r"no report registered for task 'nothing' \(registered: .*toy_regression"):
        report_for("nothing")
    with pytest.raises(MedlitError, match="report module 'no.such.module' of task 'nothing' cannot be imported"):
        report_for("nothing", "no.such.module")


def test_blocks_are_frozen_records_with_named_fields() -> None:
    frame = pd.DataFrame({"run": ["1"]})
    blocks = [
        Heading("Title", 1),
        Paragraph("text"),
        Table(frame, "metric"),
        Image(Path("a.png"), "caption"),
        Plot("name", lambda path: path, "caption"),
        Link(Path("a.html"), "view"),
    ]
    assert [dataclasses.fields(b)[0].name for b in blocks] == ["text", "text", "frame", "path", "name", "path"]
    for block in blocks:
        with pytest.raises(dataclasses.FrozenInstanceError):
            block.caption = "changed"  # type: ignore[union-attr]
    assert Heading("a", 2) == Heading("a", 2) and Heading("a", 2) != Heading("a", 3)
