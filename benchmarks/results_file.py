"""Where benchmarks record what they measured: ``benchmarks/results/<date>.md`` (one section per benchmark)."""

from __future__ import annotations

import platform
import time
from pathlib import Path

from common.loaders import available_cpus

RESULTS = Path(__file__).resolve().parent / "results"


def record(title: str, lines: list[str], command: str) -> Path:
    """Append a section (title, the command, the machine, the lines) to today's results file."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{time.strftime('%Y-%m-%d')}.md"
    cpu = platform.processor() or platform.machine()
    machine = f"{cpu}, {available_cpus()} CPU core(s), Python {platform.python_version()}"
    section = [f"## {title}", "", f"`{command}` at {time.strftime('%H:%M')}, {machine}", "", *lines, ""]
    with path.open("a") as file:
        file.write("\n".join(section) + "\n")
    return path
