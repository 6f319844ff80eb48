"""The out-of-fold pool of cross-validation, the shape every task shares: the fold models' predictions of the items
they did not train on, the decisions chosen on them, and the pool's run dir.

A task (its ``<task>.ensemble.pool_out_of_fold``, :class:`common.contracts.TaskEnsemble`) reads and checks its
pooled predictions and chooses its decisions (a :class:`PoolDecisions`); :func:`write_pool` then makes the pool's run
dir the same way for every task: ``run_info.json`` with the decisions, the task's scored pool (a hook), ``folds.csv``
and ``decisions.json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from common.files import write_json
from common.rundir import derived_run_dir

__all__ = [
    "DECISIONS_FILE",
    "FOLDS_FILE",
    "PoolDecisions",
    "model_args",
    "pooled_checkpoint",
    "pooled_items",
    "write_pool",
]

DECISIONS_FILE = "decisions.json"
"""The decisions chosen on the pool (:meth:`PoolDecisions.as_json`), in its run dir."""
FOLDS_FILE = "folds.csv"
"""Which fold each pooled item came from, in the pool's run dir."""


def model_args(values: Mapping[str, Any]) -> list[str]:
    """Test arguments that apply ``values`` (model settings): ``--model.<name>=<value>``, booleans as ``true`` /
    ``false``; a ``None`` value is left out (the setting keeps its default)."""
    return [
        f"--model.{name}={str(value).lower() if isinstance(value, bool) else value}"
        for name, value in values.items()
        if value is not None
    ]


def pooled_items(n_items: int, item_name: str, n_folds: int) -> str:
    """``out-of-fold predictions of 120 images (5 folds)``: what the decisions were chosen on."""
    return f"out-of-fold predictions of {n_items} {item_name}s ({n_folds} folds)"


def pooled_checkpoint(item_name: str, n_folds: int) -> str:
    """What the pool's ``metrics.json`` says was tested: each item by the model that did not train on it."""
    return f"out-of-fold: each {item_name} by the model of the fold it validated ({n_folds} folds)"


@dataclass(frozen=True)
class PoolDecisions:
    """The decisions a task chose on its out-of-fold pool: ``decisions.json``, and what ``pool_out_of_fold``
    returns (:meth:`as_json`)."""

    values: dict[str, Any]
    """Each setting's chosen value (also written to the pool's ``run_info.json``)."""
    args: list[str]
    """Test arguments that apply them (e.g. :func:`model_args`)."""
    chosen_on: str
    """What chose them, for the reader (e.g. starting with :func:`pooled_items`)."""
    rule: str
    """The rule that chose them."""
    evidence: dict[str, Any] = field(default_factory=dict)
    """The task's own keys, written after the four above (the candidates' scores ...)."""

    def as_json(self) -> dict[str, Any]:
        """``{"values", "args", "chosen_on", "rule", **evidence}``, in that order."""
        chosen = {"values": self.values, "args": self.args, "chosen_on": self.chosen_on, "rule": self.rule}
        return chosen | self.evidence


def write_pool(
    out: Path,
    test_dirs: Sequence[Path],
    decisions: PoolDecisions,
    folds: pd.DataFrame,
    write_scored: Callable[[Path], Any],
) -> dict[str, Any]:
    """The pool's run dir ``out`` (new): ``run_info.json`` of a run derived from ``test_dirs`` with the decisions'
    values, the task's scored pool (``write_scored(out)``: its metrics under the decisions), ``folds.csv``
    (``folds``: each item's fold) and ``decisions.json``; returns the decisions as written."""
    derived_run_dir(out, test_dirs, subcommand="pool", pooled=[str(d) for d in test_dirs], **decisions.values)
    write_scored(out)
    folds.to_csv(out / FOLDS_FILE, index=False)
    record = decisions.as_json()
    write_json(out / DECISIONS_FILE, record)
    return record
