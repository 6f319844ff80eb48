"""The one formatter family and markdown-table writer (common.text), on cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.text import fmt, format_interval, markdown_table, show, signed


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [
        (2 / 3, 3, "0.667"),
        (0.5, 2, "0.50"),
        (np.float64(0.25), 3, "0.250"),  # numpy floats as floats
        (3, 3, "3"),  # an int is not a measured value: written as is
        ("best epoch 2", 3, "best epoch 2"),
        (None, 3, "n/a"),
        (float("nan"), 3, "n/a"),
    ],
)
def test_fmt_writes_floats_with_fixed_decimals_and_na_for_missing(value: object, digits: int, expected: str) -> None:
    assert fmt(value, digits) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "–"),
        (True, "yes"),
        (False, "no"),
        (1e-05, "1e-05"),
        (0.001, "0.001"),
        (2.0, "2"),
        ([16, 16, 16], "16×16×16"),
        (("a", 1.5), "a×1.5"),
        ("ce_focal", "ce_focal"),
        (16, "16"),
    ],
)
def test_show_writes_configuration_values_as_set(value: object, expected: str) -> None:
    assert show(value) == expected


@pytest.mark.parametrize(
    ("value", "digits", "expected"),
    [(0.0123, 3, "+0.012"), (-0.34, 3, "-0.340"), (-0.0001, 3, "+0.000"), (0.0, 3, "+0.000"), (1.23456, 2, "+1.23")],
)
def test_signed_always_has_a_sign_and_never_minus_zero(value: float, digits: int, expected: str) -> None:
    assert signed(value, digits) == expected


@pytest.mark.parametrize(
    ("value", "interval", "digits", "expected"),
    [
        (0.599, (0.571, 0.627), 3, "0.599 (0.571-0.627)"),
        (14.256, (10.1, 18.0), 2, "14.26 (10.10-18.00)"),
        (0.5, None, 3, "0.500"),
        (0.5, (float("nan"), 0.6), 3, "0.500"),  # an interval undefined on one side is left out
        (None, (0.1, 0.2), 3, "n/a"),
        (float("nan"), (0.1, 0.2), 3, "n/a"),
    ],
)
def test_format_interval(value: float | None, interval: tuple | None, digits: int, expected: str) -> None:
    assert format_interval(value, interval, digits) == expected


def test_markdown_table_without_index() -> None:
    table = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}, index=["r1", "r2"])
    assert markdown_table(table) == "| a | b |\n|---|---|\n| 1 | x |\n| 2 | y |\n"


def test_markdown_table_with_index_keeps_each_columns_type() -> None:
    """The index under its header as the first column; an int column beside a float column stays ``1``, not
    ``1.0`` (rows are not turned into one dtype)."""
    table = pd.DataFrame({"n": [1, 2], "v": [0.5, 1.5]}, index=["cls_ce", "cls_ce_focal"])
    assert markdown_table(table, index="run") == (
        "| run | n | v |\n|---|---|---|\n| cls_ce | 1 | 0.5 |\n| cls_ce_focal | 2 | 1.5 |\n"
    )


def test_markdown_table_of_no_rows_is_its_header() -> None:
    assert markdown_table(pd.DataFrame({"n": []})) == "| n |\n|---|\n\n"
