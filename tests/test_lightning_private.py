"""What the CLI relies on in Lightning beyond its public API (common.lightning_private): the private members are
there with their signatures, and the behaviour relied on holds, each checked with a tiny LightningCLI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from lightning.pytorch import Callback
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import WandbLogger

from common.lightning_private import PRIVATE_MEMBERS, PrivateMember, check_private_members


class WideModel(BoringModel):
    """A BoringModel with one setting, stored as its checkpoint's ``hyper_parameters``."""

    def __init__(self, width: int = 2) -> None:
        super().__init__()
        self.save_hyperparameters()


class ConfiguredCallback(Callback):
    """Given as ``--trainer.callbacks``."""


class OutputsCallback(Callback):
    """Added under a callback key (``outputs``), as the task's outputs callback is."""


class DefaultsCallback(Callback):
    """Given in ``trainer_defaults``, as the house callbacks are."""


class _NothingRuns(LightningCLI):
    """Builds what it is asked to, then sets ``subcommand`` to ``None``: no subcommand may run."""

    build = True

    def instantiate_classes(self) -> None:
        if self.build:
            super().instantiate_classes()
        self.subcommand = None


def _quiet(tmp_path: Path) -> list[str]:
    return ["--trainer.logger", "false", "--trainer.default_root_dir", str(tmp_path)]


def test_the_installed_lightning_has_every_private_member_relied_on() -> None:
    problems = check_private_members()
    assert not problems, "\n".join(problems)
    assert {m.name for m in PRIVATE_MEMBERS} == {"_parse_ckpt_path", "_instantiate_trainer", "_experiment"}


@pytest.mark.parametrize(
    ("member", "expected"),
    [
        (PrivateMember(LightningCLI, "_gone", ("self",), "why", "what"), "LightningCLI._gone: not in lightning "),
        (
            PrivateMember(LightningCLI, "_parse_ckpt_path", ("self", "config"), "why", "what"),
            "LightningCLI._parse_ckpt_path: takes (self) in lightning ",
        ),
        (
            PrivateMember(WandbLogger, "_gone", None, "why", "what"),
            "WandbLogger._gone: not set by WandbLogger.__init__",
        ),
    ],
)
def test_a_missing_or_changed_member_is_named_with_what_relies_on_it(member: PrivateMember, expected: str) -> None:
    (problem,) = check_private_members([member])
    assert expected in problem and problem.endswith("medlit relies on it: what (needed because why)")
    if member.parameters == ("self", "config"):
        assert ", not (self, config);" in problem


def test_checkpoint_settings_replace_the_parsed_ones_before_before_instantiate_classes(tmp_path: Path) -> None:
    """_parse_ckpt_path runs after parse_arguments and before before_instantiate_classes."""
    checkpoint = tmp_path / "wide.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"width": 7}}, checkpoint)
    seen: list[tuple[str, int]] = []

    class Spy(_NothingRuns):
        build = False

        def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
            super().parse_arguments(parser, args)
            seen.append(("parse_arguments", self.config.fit.model.width))

        def before_instantiate_classes(self) -> None:
            seen.append(("before_instantiate_classes", self.config.fit.model.width))

    Spy(WideModel, args=["fit", "--model.width", "3", "--ckpt_path", str(checkpoint), *_quiet(tmp_path)])
    assert seen == [("parse_arguments", 3), ("before_instantiate_classes", 7)]


def test_no_subcommand_runs_when_instantiate_classes_sets_it_to_none(tmp_path: Path) -> None:
    ran: list[str] = []

    class Watched(_NothingRuns):
        build = False

        def before_fit(self) -> None:
            ran.append("fit")

    cli = Watched(WideModel, args=["fit", *_quiet(tmp_path)])  # running fit would need the trainer it did not build
    assert cli.subcommand is None and not hasattr(cli, "trainer") and ran == []


def test_trainer_defaults_callbacks_come_after_configured_and_callback_key_ones(tmp_path: Path) -> None:
    class WithOutputs(_NothingRuns):
        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            parser.add_lightning_class_args(OutputsCallback, "outputs")

    configured = f"{__name__}.ConfiguredCallback"
    cli = WithOutputs(
        WideModel,
        trainer_defaults={"callbacks": [DefaultsCallback()]},
        args=["fit", "--trainer.callbacks", configured, *_quiet(tmp_path)],
    )
    ours = [
        type(c) for c in cli.trainer.callbacks if isinstance(c, ConfiguredCallback | OutputsCallback | DefaultsCallback)
    ]
    assert ours == [ConfiguredCallback, OutputsCallback, DefaultsCallback]


def test_each_subcommand_parser_is_made_with_its_parser_kwargs_and_then_filled(tmp_path: Path) -> None:
    made: dict[int, str] = {}
    filled: list[str] = []

    class Named(_NothingRuns):
        build = False

        def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
            name = kwargs.pop("name", None)
            parser = super().init_parser(**kwargs)
            if name is not None:
                made[id(parser)] = name
            return parser

        def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
            filled.append(made[id(parser)])

    names = list(LightningCLI.subcommands())
    Named(WideModel, parser_kwargs={name: {"name": name} for name in names}, args=["fit", *_quiet(tmp_path)])
    assert filled == names
