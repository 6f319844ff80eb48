"""The one exception type for expected user mistakes (bad paths, malformed CSVs, unknown names).

The CLI prints a :class:`MedlitError` as a single ``error: ...`` line and exits with status 2, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["MedlitError", "check_choice"]


class MedlitError(Exception):
    """An expected mistake in the input: the message names the file, row or key and what is wrong."""


def check_choice(kind: str, name: str, choices: dict | list | tuple) -> None:
    """Raise a :class:`MedlitError` listing the valid names when ``name`` is not one of ``choices``."""
    if name not in choices:
        valid = ", ".join(sorted(map(str, choices)))
        raise MedlitError(f"unknown {kind} '{name}'; choose one of: {valid}")
