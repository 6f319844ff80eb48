"""The records the CLI is configured with: :class:`RunOptions` (the ``run:`` group) and :class:`Link` (a value set
in one place and passed to another)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from common.loggers import WandbMode

__all__ = ["Link", "RunOptions"]


@dataclass
class RunOptions:
    """Where and how a run is recorded.

    Args:
        experiment: Name of the experiment; runs go to ``<root>/<experiment>/<timestamp>/``.
        root: Folder that holds all experiments' runs.
        dir: Exact run directory instead of a timestamped one (used by the sweep runner); it must not
            already hold a run.
        wandb: ``auto`` (online when a W&B key is configured, offline into the run dir otherwise),
            ``online``, ``offline`` or ``off``.
        wandb_project: W&B project name.
        test_after_fit: After ``fit``, run ``test`` on the checkpoint ``test_checkpoint`` names, in the same
            run dir.
        test_checkpoint: Which weights the test after ``fit`` uses: ``best`` (the epoch with the best validation
            monitor) or ``last`` (the weights when training ended, nnU-Net's choice: with a schedule that anneals
            to zero they are the settled ones, and a validation set of a few cases is too noisy to pick an
            epoch). Either way no test case takes part in the choice.
        check_data: Before ``fit``, ``validate`` or ``test`` read the data, run the cheap part of the dataset check
            (files listed, metadata read) and stop with the first problem found (``python -m <task> check`` lists
            them all).
        compile: Compile the module's forward with ``torch.compile`` (in place, so checkpoints keep their keys and
            load without it). Pays off on GPUs for long runs; the first steps of each input shape are slow while
            it compiles, and on CPU it needs a C++ compiler.
    """

    experiment: str = "default"
    root: str = "runs"
    dir: str | None = None
    wandb: WandbMode = "auto"
    wandb_project: str = "medlit"
    test_after_fit: bool = True
    test_checkpoint: Literal["best", "last"] = "best"
    check_data: bool = True
    compile: bool = False


@dataclass(frozen=True)
class Link:
    """A value set in one place and passed to another (jsonargparse's ``link_arguments``).

    Args:
        source: The config key the value comes from (``data.num_classes``), or ``data`` for the built
            datamodule when ``compute`` derives the value from it.
        target: The init argument that receives it (``model.num_classes``); it is no longer a config key.
        compute: Turns the source into the value (required for ``source="data"``).
        on_instantiate: Apply once the source object is built (for values the datamodule computes, e.g. class
            weights) rather than when the config is parsed.
        subcommands: The subcommands it applies to (default: all); elsewhere the target stays a config key
            (e.g. ``predict`` needs no training data for class weights).
    """

    source: str
    target: str
    compute: Callable[[Any], Any] | None = None
    on_instantiate: bool = False
    subcommands: tuple[str, ...] | None = None
