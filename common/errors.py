"""The one exception type for expected user mistakes (bad paths, malformed CSVs, unknown names).

The CLI prints a :class:`MedlitError` as a single ``error: ...`` line and exits with status 2, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["MedlitError", "check_choice", "exit_on_error", "find_medlit_error", "first_line"]


class MedlitError(Exception):
    """An expected mistake in the input: the message names the file, row or key and what is wrong."""


def check_choice(kind: str, name: str, choices: dict | list | tuple) -> None:
    """Raise a :class:`MedlitError` listing the valid names when ``name`` is not one of ``choices``."""
    if name not in choices:
        valid = ", ".join(sorted(map(str, choices)))
        raise MedlitError(f"unknown {kind} '{name}'; choose one of: {valid}")


_WORKER_MARK = "MedlitError: "


def find_medlit_error(error: BaseException) -> MedlitError | None:
    """The :class:`MedlitError` behind ``error``, also when a library re-raised it wrapped.

    MONAI's ``Compose`` raises ``RuntimeError`` from it (``__cause__``); a DataLoader worker process re-creates
    it with the worker's traceback as its message, whose last ``MedlitError:`` line is the original message.
    Only explicit causes are followed: an error raised while handling a ``MedlitError`` is a bug and keeps its
    traceback.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MedlitError):
            text = str(current)
            if "Traceback (most recent call last)" in text and _WORKER_MARK in text:
                return MedlitError(text.rsplit(_WORKER_MARK, 1)[1].strip())
            return current
        current = current.__cause__
    return None


def first_line(error: BaseException) -> str:
    """The first line of a library's error message (its class name when the message is empty), for one-line errors."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@contextmanager
def exit_on_error() -> Iterator[None]:
    """The one error exit of every entry point: an expected mistake is printed as one ``error: ...`` line on stderr and
    the process exits with status 2; anything else keeps its traceback."""
    try:
        yield
    except MedlitError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
