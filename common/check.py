"""Dataset checks: every problem of a dataset listed at once, with a summary, before any training.

``python -m <task> check --config ... --data.root DIR`` takes the same configuration as ``fit`` and calls the
datamodule's ``check_data(full=True)``: every file is opened and decoded, every problem is listed (file, what is
wrong, a hint), then a summary table is printed; the exit status is 1 when there is a problem. ``fit`` runs the
cheap part first (``full=False``: files listed and metadata read, nothing decoded) unless
``--run.check_data false``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["DataCheck", "Problem"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the data: where (file, row or key), what, and how to fix it."""

    where: str
    what: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.what}" + (f" ({self.hint})" if self.hint else "")


@dataclass
class DataCheck:
    """The result of a dataset check: the problems found and a summary (label → value, in order)."""

    problems: list[Problem] = field(default_factory=list)
    summary: dict[str, str] = field(default_factory=dict)

    def add(self, where: object, what: str, hint: str = "") -> None:
        self.problems.append(Problem(str(where), what, hint))

    def add_error(self, error: Exception, where: object) -> None:
        """A problem from an error message ``<where>: <what>`` (``where`` when the message names no place)."""
        place, _, what = str(error).partition(": ")
        if what:
            self.add(place, what)
        else:
            self.add(where, str(error))

    def extend(self, problems: Iterable[Problem]) -> None:
        self.problems.extend(problems)

    @property
    def ok(self) -> bool:
        return not self.problems

    def render(self, limit: int | None = None) -> str:
        """The problems (``problem: ...`` lines, at most ``limit``), then the summary table."""
        shown = self.problems if limit is None else self.problems[:limit]
        lines = [f"problem: {p}" for p in shown]
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more problem(s)")
        width = max((len(k) for k in self.summary), default=0)
        lines += [f"{key:<{width}}  {value}" for key, value in self.summary.items()]
        verdict = "no problems found" if self.ok else f"{len(self.problems)} problem(s) found"
        return "\n".join([*lines, verdict])
