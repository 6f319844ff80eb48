"""The one list of Lightning's private members that the CLI and its loggers rely on, and the check that a new
Lightning still has them.

The CLI uses Lightning's public hooks (``subcommands``, ``init_parser``, ``setup_parser``, ``parse_arguments``,
``add_arguments_to_parser``, ``before_instantiate_classes``, ``instantiate_classes``, ``instantiate_trainer``,
``after_fit``) and calls or overrides no private method. What it still relies on is what two private methods do
and when, and one private attribute: :data:`PRIVATE_MEMBERS`. Two uses of public hooks rest on behaviour that
Lightning does not document:

* each subcommand's ``parser_kwargs`` reach :meth:`LightningCLI.init_parser` for that subcommand's parser, which
  :meth:`LightningCLI.add_arguments_to_parser` then fills (the CLI passes the subcommand's name that way);
* ``LightningCLI.__init__`` runs no subcommand when ``instantiate_classes`` sets ``subcommand`` to ``None``
  (``check`` builds the datamodule alone and stops there).

``tests/test_lightning_private.py`` runs :func:`check_private_members` and checks each relied-on behaviour with
a tiny LightningCLI, so that a Lightning upgrade that changes one fails there with the member's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import lightning
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger

__all__ = ["PRIVATE_MEMBERS", "PrivateMember", "check_private_members"]


@dataclass(frozen=True)
class PrivateMember:
    """A private member of a Lightning class that medlit relies on.

    Args:
        owner: The class that defines it.
        name: Its name.
        parameters: A method's parameter names, in order; ``None`` for an attribute its ``__init__`` sets.
        why: What medlit needs it for.
        relied_on: What medlit relies on it doing.
    """

    owner: type
    name: str
    parameters: tuple[str, ...] | None
    why: str
    relied_on: str

    @property
    def label(self) -> str:
        return f"{self.owner.__module__}.{self.owner.__qualname__}.{self.name}"


PRIVATE_MEMBERS = (
    PrivateMember(
        LightningCLI,
        "_parse_ckpt_path",
        ("self",),
        why="a checkpoint's model settings replace the config's, but --model.* flags win (common.cli checks the "
        "checkpoint and the --ensemble members in parse_arguments and puts the flags back in "
        "before_instantiate_classes)",
        relied_on="LightningCLI.__init__ calls it after parse_arguments and before before_instantiate_classes, and "
        "it loads the checkpoint's hyper_parameters over config[subcommand].model",
    ),
    PrivateMember(
        LightningCLI,
        "_instantiate_trainer",
        ("self", "config", "callbacks"),
        why="the house callbacks (common.callbacks.house_callbacks) run after the configured ones and the task's "
        "outputs callback, as they always did",
        relied_on="the public instantiate_trainer calls it, and it adds trainer_defaults['callbacks'] after the "
        "configured callbacks and those of the callback keys (outputs)",
    ),
    PrivateMember(
        WandbLogger,
        "_experiment",
        None,
        why="common.loggers.finish_wandb closes only a W&B run the logger started (the public experiment "
        "property would start one)",
        relied_on="the logger's W&B run, None until it starts",
    ),
)
"""Every private Lightning member medlit relies on (none is called or overridden by the CLI)."""


def _problem(member: PrivateMember) -> str | None:
    where = f"lightning {lightning.__version__}"
    found = inspect.getattr_static(member.owner, member.name, None)
    if member.parameters is None:
        init = inspect.getsource(member.owner.__init__)  # an attribute: set by the class's __init__
        if f"self.{member.name} =" not in init and f"self.{member.name}:" not in init:
            return f"{member.label}: not set by {member.owner.__qualname__}.__init__ in {where}"
        return None
    if found is None:
        return f"{member.label}: not in {where}"
    parameters = tuple(inspect.signature(getattr(member.owner, member.name)).parameters)
    if parameters != member.parameters:
        return f"{member.label}: takes ({', '.join(parameters)}) in {where}, not ({', '.join(member.parameters)})"
    return None


def check_private_members(members: Sequence[PrivateMember] = PRIVATE_MEMBERS) -> list[str]:
    """One line per member the installed Lightning lacks or has changed, naming it and what medlit relies on
    (empty when all are as expected)."""
    problems = []
    for member in members:
        problem = _problem(member)
        if problem is not None:
            problems.append(f"{problem}; medlit relies on it: {member.relied_on} (needed because {member.why})")
    return problems
