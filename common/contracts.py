"""The written contracts between the shared pieces and a task: what the CLI and the report need from it.

A task (``lesion_cls``, ``volume_seg``, or a third one) provides

* a LightningModule class that satisfies :class:`TaskModule` (its task name, the checkpoint monitor, labels
  for its logged metrics, init arguments to override when weights come from a checkpoint),
* a LightningDataModule class that satisfies :class:`TaskDataModule` (whether it has test data, its split, a
  dataset check),
* for ensembles and cross-validation (optional): a module class that also satisfies :class:`EnsembleModule`, and a
  ``<task>.ensemble`` module that satisfies :class:`TaskEnsemble`,
* a report module that registers a :class:`~common.studies.task_reports.TaskReport` for its task name
  (``register_report``; that contract lives with the studies, which are its only readers).

:func:`check_contract` checks a class against a contract once, when the CLI starts, and names each missing
member, so that a misspelt attribute is an error rather than a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from common.errors import MedlitError

if TYPE_CHECKING:
    import pandas as pd

    from common.check import DataCheck

__all__ = ["EnsembleModule", "TaskDataModule", "TaskEnsemble", "TaskModule", "check_contract", "contract_members"]


@runtime_checkable
class TaskModule(Protocol):
    """What the CLI needs from a task's LightningModule class (class attributes)."""

    task: ClassVar[str]
    """The task name, written to ``run_info.json``; the report looks its sections up under it."""
    monitor: ClassVar[str]
    """The logged validation key that selects the checkpoint (e.g. ``val/<metric>``); an instance may set its own
    from its init arguments (the CLI reads the instance's)."""
    monitor_mode: ClassVar[str]
    """``max`` or ``min``."""
    metric_labels: ClassVar[Mapping[str, str]]
    """Axis labels of the logged metrics by short name (``train/<name>``, ``val/<name>``) for the curves."""
    checkpoint_overrides: ClassVar[Mapping[str, Any]]
    """Init arguments set when the weights come from a checkpoint (e.g. no hub download)."""


@runtime_checkable
class EnsembleModule(Protocol):
    """What ``test``/``predict --ensemble`` needs from a task's LightningModule class (checked when it is used)."""

    ensemble_keys: ClassVar[Sequence[str]]
    """Settings the members of an ensemble must share, as stored in their checkpoints: ``model.<key>`` or
    ``data.<key>`` (classes, patch or image size); :mod:`common.ensemble`."""

    def use_ensemble(self, members: Sequence[Any], one_at_a_time: bool = False) -> None:
        """From now on, test and predict with the mean of these modules' class probabilities (each after its
        test-time augmentation) instead of the module's own network; the decision rule stays the module's. The
        members are held in ``self.members``, a :class:`common.ensemble.EnsembleMembers` (``one_at_a_time``: one
        member on the accelerator at a time)."""
        ...


@runtime_checkable
class TaskDataModule(Protocol):
    """What the CLI and the house callbacks need from a task's LightningDataModule."""

    @property
    def has_test_data(self) -> bool:
        """Whether ``fit`` is followed by a test (the CLI's ``run.test_after_fit``)."""
        ...

    def split_table(self) -> pd.DataFrame:
        """One row per sample or case with its split (saved as ``split.csv`` once set up)."""
        ...

    def check_data(self, full: bool = True) -> DataCheck:
        """Every problem of the dataset and a summary; ``full=False``: only what is cheap (no decoding)."""
        ...


@runtime_checkable
class TaskEnsemble(Protocol):
    """What cross-validation (:mod:`common.studies.cv`) needs from a task's ``<task>.ensemble`` module."""

    OUT_OF_FOLD_ARGS: Sequence[str]
    """Test arguments of the out-of-fold runs: raw probabilities saved, no decision rule or post-processing (they
    are chosen on the pooled predictions)."""

    def pool_out_of_fold(self, test_dirs: Sequence[Path], out: Path) -> dict[str, Any]:
        """Pool the out-of-fold test runs into ``out`` (every item once), choose the decisions on them, write the
        pooled metrics under those decisions and ``decisions.json``; return ``{"values": {setting: value},
        "args": [test arguments applying them], "chosen_on": "what chose them"}``."""
        ...


def contract_members(protocol: type) -> list[str]:
    """The public members a protocol asks for: its annotations, methods and properties."""
    names = [n for n in getattr(protocol, "__annotations__", {}) if not n.startswith("_")]
    names += [
        n for n, v in vars(protocol).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))
    ]
    return list(dict.fromkeys(names))


def check_contract(cls: type, protocol: type, role: str) -> None:
    """Raise a :class:`MedlitError` naming every member of ``protocol`` that ``cls`` lacks.

    Args:
        cls: The class (or object) to check.
        protocol: One of this module's protocols.
        role: What ``cls`` is for, in the message (e.g. ``model class``).
    """
    missing = [name for name in contract_members(protocol) if not hasattr(cls, name)]
    if missing:
        name = getattr(cls, "__qualname__", type(cls).__qualname__)
        module = getattr(cls, "__module__", "")
        raise MedlitError(
            f"{module}.{name}: the {role} does not satisfy {protocol.__name__}; missing "
            + ", ".join(f"'{m}'" for m in missing)
            + " (see common/contracts.py)"
        )
