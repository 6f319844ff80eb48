"""How numbers and tables are written, the same everywhere: run files, the report, sweep and CV summaries.

One formatter family (:func:`fmt` for a value, :func:`show` for a configuration value, :func:`signed` for a
difference, :func:`format_interval` for a value with its 95% interval) and one markdown-table writer
(:func:`markdown_table`).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["fmt", "format_interval", "markdown_table", "show", "signed"]


def fmt(value: Any, digits: int = 3) -> str:
    """A value as tables show it: floats with ``digits`` decimals, ``n/a`` for missing or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def show(value: Any) -> str:
    """A configuration value as written (``1e-05``, ``2.0``), lists as ``a×b×c``, booleans as yes/no."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return "×".join(show(v) for v in value)
    return str(value)


def signed(value: float, digits: int = 3) -> str:
    """A difference with its sign: ``+0.012``, ``-0.340`` (never ``-0.000``)."""
    return f"{round(value, digits) + 0.0:+.{digits}f}"


def signed_interval(delta: float, low: float, high: float, digits: int = 3) -> str:
    """A difference with its interval: ``+0.012 (-0.005 to +0.028)``; the difference alone when the interval is
    not finite (an exact test's row)."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return signed(delta, digits)
    return f"{signed(delta, digits)} ({signed(low, digits)} to {signed(high, digits)})"


def format_interval(value: float | None, interval: tuple[float, float] | None, digits: int = 3) -> str:
    """``0.599 (0.571-0.627)``; the value alone without an interval, ``n/a`` for a missing value."""
    if value is None or not math.isfinite(value):
        return "n/a"
    if interval is None or not all(math.isfinite(v) for v in interval):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} ({interval[0]:.{digits}f}-{interval[1]:.{digits}f})"


def markdown_table(table: pd.DataFrame, index: str | None = None) -> str:
    """A table as GitHub markdown (without the optional ``tabulate`` package); ``index``: also write the row index
    as the first column, under this header."""
    columns = [*([index] if index is not None else []), *map(str, table.columns)]
    rows = [
        [*([name] if index is not None else []), *row]
        for name, row in zip(table.index, table.itertuples(index=False), strict=True)
    ]
    header = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    body = "\n".join("| " + " | ".join(str(v) for v in row) + " |" for row in rows)
    return header + body + "\n"
