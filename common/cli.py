"""LightningCLI with run directories: the parser, the run dir and its records, the trainer, test after fit.

``python -m lesion_cls fit --config experiments/cls_ce.yaml`` (and ``volume_seg``) parse with jsonargparse,
so every constructor argument of the model, datamodule and trainer is a config key and a ``--key value``
override. On top of LightningCLI this adds:

* a ``run`` group (:class:`~common.run_options.RunOptions`: experiment name, runs root, W&B mode, test after fit),
* one directory per run, ``<run.root>/<run.experiment>/<timestamp>/``, that holds the resolved
  ``config.yaml``, ``checkpoints/``, ``logs/metrics.csv``, W&B files, metrics and figures,
* the house callbacks (:func:`~common.callbacks.house_callbacks`) and the task's ``outputs`` callback
  (configurable under ``outputs:``),
* ``check``: the same keys as ``fit``; builds only the datamodule and keeps its dataset check
  (:mod:`common.check`); ``fit``, ``validate`` and ``test`` run the cheap part of it before anything reads the
  data or a run dir is made,
* ``fit --ckpt_path last`` (or a checkpoint of an unfinished run) continues that run in its own directory
  (:mod:`common.rundir`); every other run gets a fresh one,
* ``test``/``predict --ensemble RUN_OR_CHECKPOINT ...``: the members' class probabilities averaged
  (:mod:`common.ensemble`), written as an ordinary run dir whose ``run_info.json`` lists the members,
* expected mistakes (:class:`~common.errors.MedlitError`) kept in :attr:`MedlitCLI.error`, for
  :func:`common.entry.run_cli` to print as one line.

The CLI knows a task only through its classes: the module and datamodule are checked against the contracts
of :mod:`common.contracts` once, at start; values a module needs from the data reach it through
:class:`~common.run_options.Link` s (config keys copied, or attributes of the built datamodule), never by reading
the datamodule. It uses Lightning's public hooks; what it relies on beyond them is listed in
:mod:`common.lightning_private`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jsonargparse import ActionSubCommands, namespace_to_dict
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from common.arguments import (
    CHECK_HELP,
    add_ensemble_arguments,
    check_checkpoint,
    check_config_files,
    check_settings,
    ensemble_members,
    expand_data_root,
    given_model_keys,
    program_of,
    stop_at_first_problem,
)
from common.callbacks import house_callbacks
from common.check import DataCheck
from common.contracts import TaskDataModule, TaskModule, check_contract
from common.ensemble import Member, load_members
from common.errors import MedlitError, find_medlit_error, first_line
from common.loggers import run_loggers
from common.precision import precision_for_this_machine
from common.run_options import Link, RunOptions
from common.run_record import record_device, record_fit_end, record_resume, record_start
from common.rundir import choose_run_dir, make_run_dir, refuse_changed_settings
from common.wandb_config import WandbRunConfig

__all__ = ["CHECK", "MedlitCLI"]

CHECK = "check"
"""The subcommand that checks the dataset; it takes the keys (and links) of ``fit``."""
_DESCRIPTION = "train, test and predict with one run dir per run; check a dataset before training"
_READS_LABELLED_DATA = ("fit", "validate", "test")
"""The subcommands that read the labelled dataset (``predict`` reads only its own folder)."""
_SUBCOMMAND_KWARG = "medlit_subcommand"
"""Passed in each subcommand's ``parser_kwargs`` to :meth:`MedlitCLI.init_parser`: which subcommand a parser is."""


class _ArgumentParser(LightningArgumentParser):
    """Keeps the subcommands action it makes, so that ``check`` can join Lightning's subcommands."""

    subcommands_action: ActionSubCommands | None = None

    def add_subcommands(self, required: bool = True, dest: str = "subcommand", **kwargs: Any) -> ActionSubCommands:
        self.subcommands_action = super().add_subcommands(required, dest, **kwargs)
        return self.subcommands_action


def _precision_for_this_machine(trainer: Any) -> None:
    """A bf16 precision on a CPU without bf16 instructions runs as ``32-true`` (:mod:`common.precision`)."""
    precision, warning = precision_for_this_machine(trainer["precision"], trainer["accelerator"])
    if warning:
        trainer["precision"] = precision
        if rank_zero_only.rank == 0:
            print(warning, file=sys.stderr)


class MedlitCLI(LightningCLI):
    """LightningCLI with run directories, house loggers/callbacks, ``check`` and one-line errors.

    Args:
        model_class: The task's LightningModule; it names its checkpoint monitor in the class attributes
            ``monitor`` (a logged key) and ``monitor_mode`` (``min`` or ``max``).
        datamodule_class: The task's LightningDataModule.
        outputs_callback_class: The task's callback that writes test/predict outputs (``outputs:`` key).
        links: Values set in one place and passed on (:class:`~common.run_options.Link`).
        report_module: The module that registers the task's report sections (written to ``run_info.json``,
            so that the report can find them).
        args: Command-line arguments (``None`` reads ``sys.argv``).
    """

    def __init__(
        self,
        model_class: type[LightningModule],
        datamodule_class: type[LightningDataModule],
        outputs_callback_class: type[Callback],
        links: Sequence[Link] = (),
        report_module: str | None = None,
        args: list[str] | None = None,
    ) -> None:
        self.outputs_callback_class = outputs_callback_class
        self.links = links
        self.report_module = report_module
        self.subcommand_parsers: dict[str, LightningArgumentParser] = {}
        self.run_dir: Path | None = None
        self.resuming = False
        self.loggers: list[Logger] = []
        self.error: MedlitError | None = None
        self.members: list[Member] = []
        self.check_result: DataCheck | None = None
        self._given_model: dict[str, Any] = {}
        self._cli_args = list(args) if args is not None else sys.argv[1:]
        try:
            check_contract(model_class, TaskModule, "model class")
            check_contract(datamodule_class, TaskDataModule, "datamodule class")
            check_config_files(self._cli_args)
            program = program_of(model_class)
            super().__init__(
                model_class,
                datamodule_class,
                parser_class=_ArgumentParser,
                parser_kwargs={
                    "prog": program,
                    "description": f"{program}: {_DESCRIPTION}",
                    **{name: {_SUBCOMMAND_KWARG: name} for name in self.subcommands()},
                },
                save_config_callback=None,  # written by before_instantiate_classes, before anything can fail
                seed_everything_default=42,
                trainer_defaults={"log_every_n_steps": 10},
                auto_configure_optimizers=False,  # the modules own their optimizer and schedule (common.optim)
                args=args,
            )
        except Exception as err:  # an expected mistake may reach here wrapped by a library (see find_medlit_error)
            self.error = find_medlit_error(err)
            if self.error is None:
                raise

    # --- parser -----------------------------------------------------------------------------------
    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        subcommand = kwargs.pop(_SUBCOMMAND_KWARG, None)
        parser = super().init_parser(**kwargs)
        if subcommand is not None:
            self.subcommand_parsers[subcommand] = parser
        return parser

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        if not add_subcommands:
            return
        # `check`: fit's arguments, as LightningCLI builds a subcommand's parser; no Trainer method runs it
        parser = self.init_parser(description=CHECK_HELP, **{_SUBCOMMAND_KWARG: CHECK})
        self.add_default_arguments_to_parser(parser)
        self.add_core_arguments_to_parser(parser)
        self.add_arguments_to_parser(parser)
        self.link_optimizers_and_lr_schedulers(parser)
        parser.add_method_arguments(self.trainer_class, "fit", skip=set(self.subcommands()["fit"]))
        assert isinstance(self.parser, _ArgumentParser) and self.parser.subcommands_action is not None
        self.parser.subcommands_action.add_subcommand(CHECK, parser, help=CHECK_HELP)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        subcommand = next((name for name, known in self.subcommand_parsers.items() if known is parser), None)
        parser.add_class_arguments(RunOptions, "run")
        parser.add_lightning_class_args(self.outputs_callback_class, "outputs")
        linked_as = "fit" if subcommand == CHECK else subcommand
        for link in self.links:
            if link.subcommands is not None and linked_as not in link.subcommands:
                continue
            apply_on = "instantiate" if link.on_instantiate else "parse"
            parser.link_arguments(link.source, link.target, compute_fn=link.compute, apply_on=apply_on)
        if subcommand in ("test", "predict"):
            add_ensemble_arguments(parser)

    def parse_arguments(self, parser: LightningArgumentParser, args: ArgsType) -> None:
        super().parse_arguments(parser, args)
        self._given_model = self._check_checkpoint_arguments()

    def _check_checkpoint_arguments(self) -> dict[str, Any]:
        """Before Lightning loads a checkpoint's ``hyper_parameters`` over the model's config: the ensemble's members
        (the first one's checkpoint is the one loaded), the checkpoint checked, and the model settings given as
        ``--model.*`` flags, which :meth:`before_instantiate_classes` puts back: ``test --ckpt_path X
        --model.tta_flips false`` must not be turned back into the training run's ``true``. Everything else (the
        network, values of ``--config`` files) comes from the checkpoint, as in Lightning."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return {}
        config = self.config[subcommand]
        self.members = ensemble_members(config, self.model_class)
        if self.members:  # the ensemble module is built from the first member's settings
            config["ckpt_path"] = str(self.members[0].checkpoint)
        if not config.get("ckpt_path"):
            return {}
        if not self.members:
            check_checkpoint(str(config["ckpt_path"]), self.model_class)
        model = config.get("model")
        return {key: model[key] for key in given_model_keys(self._cli_args) if model is not None and key in model}

    # --- run dir, config, trainer -------------------------------------------------------------------
    def _run_options(self) -> RunOptions:
        return RunOptions(**dict(self.config[self.subcommand]["run"]))

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        for key, value in self._given_model.items():  # over the checkpoint's (see _check_checkpoint_arguments)
            config["model"][key] = value
        if self.members:
            config["ckpt_path"] = None  # the members' weights, not the first one's alone
        expand_data_root(config)
        if self.subcommand == CHECK:
            return
        _precision_for_this_machine(config["trainer"])
        if self.subcommand in _READS_LABELLED_DATA and self._run_options().check_data:
            # before anything reads the data (links computed from the built datamodule, e.g. class weights) and
            # before a run dir exists: a broken dataset is reported once, by the check, and leaves nothing behind
            stop_at_first_problem(self._unlinked_datamodule().check_data(full=False), program_of(self.model_class))
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True  # our checkpoints hold tensors and plain values only: no pickled code
        if config.get("ckpt_path") or self.members:
            # weights come from the checkpoint: skip e.g. hub downloads of pretrained weights
            for key, value in self.model_class.checkpoint_overrides.items():
                config["model"][key] = value
        options = self._run_options()
        check_settings(config, options)
        resume_from = str(config["ckpt_path"]) if self.subcommand == "fit" and config.get("ckpt_path") else None
        self.run_dir, resumed = choose_run_dir(
            options.root, options.experiment, options.dir, resume_from, fit=self.subcommand == "fit"
        )
        if resumed is not None:  # an unfinished run: continue it in its own dir
            config["ckpt_path"] = str(resumed)
            self.resuming = True
            refuse_changed_settings(
                self.run_dir, self.subcommand_parsers[self.subcommand].dump(config, skip_none=False)
            )
        if rank_zero_only.rank == 0:
            config_path = make_run_dir(self.run_dir, self.resuming)
            self.subcommand_parsers[self.subcommand].save(config, config_path, skip_none=False, overwrite=True)

    def _unlinked_datamodule(self) -> Any:
        """The datamodule built from the ``data`` config alone (no data read yet), for the dataset check."""
        return self.datamodule_class(**namespace_to_dict(self.config[self.subcommand]["data"]))

    def instantiate_classes(self) -> None:
        if self.subcommand != CHECK:
            super().instantiate_classes()
            return
        self.check_result = self._unlinked_datamodule().check_data(full=True)
        self.subcommand = None  # nothing to run: LightningCLI runs no subcommand then (common.lightning_private)

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        assert self.run_dir is not None
        if self.members:  # the model is built; its members join it before the run is recorded
            one_at_a_time = bool(self.config[self.subcommand].get("ensemble_one_at_a_time"))
            self.model.use_ensemble(load_members(self.members, self.model_class), one_at_a_time)
        options = self._run_options()
        trainer_config = dict(self.config_init[self.subcommand].get("trainer") or {})
        self.loggers = run_loggers(
            self.run_dir, options.experiment, options.wandb, options.wandb_project, trainer_config.get("logger")
        )
        # after the configured callbacks and the `outputs` one: LightningCLI adds trainer_defaults' callbacks last
        callbacks = house_callbacks(self.run_dir, self.model, trainer_config, with_loggers=bool(self.loggers))
        if any(isinstance(logger, WandbLogger) for logger in self.loggers):  # after SplitExport: split.csv is there
            settings = {**namespace_to_dict(self.config[self.subcommand]), "subcommand": self.subcommand}
            callbacks.append(WandbRunConfig(settings))
        self.trainer_defaults = {**self.trainer_defaults, "callbacks": callbacks}
        if self.resuming:
            record_resume(self.run_dir, self.config[self.subcommand]["ckpt_path"])
        else:
            record_start(
                self.run_dir, options, self.subcommand, self.model, self.datamodule, self.report_module, self.members
            )
        if options.compile:
            self.model.compile()  # nn.Module.compile: the module's __call__, not a wrapper with renamed weights
        try:
            trainer = super().instantiate_trainer(
                default_root_dir=str(self.run_dir), logger=self.loggers or False, **kwargs
            )
        except (MisconfigurationException, ValueError) as err:  # Lightning's word on a trainer setting
            raise MedlitError(f"trainer settings: {first_line(err)}") from None
        record_device(self.run_dir, trainer)
        return trainer

    def after_fit(self) -> None:
        """Record the end of fit and the checkpoint to test; test it in the same run dir (``run.test_after_fit``)."""
        assert self.run_dir is not None
        checkpoints = [c for c in self.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        options = self._run_options()
        tested = record_fit_end(self.run_dir, checkpoints, options.test_checkpoint)
        if not options.test_after_fit or not self.datamodule.has_test_data:
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=tested or None, weights_only=True)
