"""The one command-line entry shared by both tasks: LightningCLI plus run directories.

``python -m lesion_cls fit --config experiments/cls_ce.yaml`` (and ``volume_seg``) parse with jsonargparse,
so every constructor argument of the model, datamodule and trainer is a config key and a ``--key value``
override. On top of LightningCLI this adds:

* a ``run`` group (experiment name, runs root, W&B mode, test after fit),
* one directory per run, ``<run.root>/<run.experiment>/<timestamp>/``, that holds the resolved
  ``config.yaml``, ``checkpoints/``, ``logs/metrics.csv``, W&B files, metrics and figures,
* the house callbacks (checkpoint on the module's validation monitor, progress bar, history curves,
  split and timing export, random states) and the task's ``outputs`` callback (configurable under ``outputs:``),
* ``check``: the same keys as ``fit``; builds only the datamodule and prints its dataset check
  (:mod:`common.check`); ``fit``, ``validate`` and ``test`` run the cheap part of it before anything reads the
  data or a run dir is made,
* ``fit --ckpt_path last`` (or a checkpoint of an unfinished run) continues that run in its own directory
  (:mod:`common.rundir`); every other run gets a fresh one,
* ``test``/``predict --ensemble RUN_OR_CHECKPOINT ...``: the members' class probabilities averaged
  (:mod:`common.ensemble`), written as an ordinary run dir whose ``run_info.json`` lists the members,
* expected mistakes (:class:`~common.errors.MedlitError`) printed as one ``error:`` line, exit status 2,
* ``run_dir: <path>`` as the last line printed.

The CLI knows a task only through its classes: the module and datamodule are checked against the contracts
of :mod:`common.contracts` once, at start; values a module needs from the data reach it through
:class:`Link` s (config keys copied, or attributes of the built datamodule), never by reading the datamodule.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from jsonargparse import namespace_to_dict
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import (
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    RichProgressBar,
)
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only

from common.callbacks import MetricHistory, RngState, RunTimer, SplitExport
from common.check import DataCheck
from common.contracts import EnsembleModule, TaskDataModule, TaskModule, check_contract
from common.ensemble import Member, find_members, load_members, stored_settings
from common.errors import MedlitError, find_medlit_error, first_line
from common.files import unwritable_reason
from common.loggers import WandbMode, build_loggers, finish_wandb, new_wandb_id
from common.rundir import (
    LAST_CHECKPOINT_STEM,
    RUN_DIR_ENV,
    WANDB_ID_ENV,
    changed_settings,
    check_max_time,
    prepare_resumed_dir,
    read_run_info,
    resolve_run_dir,
    resume_target,
    update_run_info,
)

__all__ = ["Link", "MedlitCLI", "RunOptions", "run_cli"]

_DESCRIPTION = "train, test and predict with one run dir per run; check a dataset before training"
_CHECK_HELP = "Check the dataset: every problem (file, row, what, hint) and a summary; takes the keys of fit."
_READS_LABELLED_DATA = ("fit", "validate", "test")
"""The subcommands that read the labelled dataset (``predict`` reads only its own folder)."""
_LIGHTNING_CHECKPOINT_NAMES = ("last", "best", "hpc", "registry")
"""``ckpt_path`` values that name a checkpoint Lightning finds itself (``fit``'s ``last``: resume the newest run)."""
_ENSEMBLE_HELP = (
    "Average the class probabilities of these runs (their tested checkpoints) or checkpoint files, each after its "
    "test-time augmentation, then apply the decision rule; settings from the first member, --model.* flags apply"
)

_ONE_AT_A_TIME_HELP = (
    "With --ensemble: keep the members in host memory and move each to the accelerator for its turn (one member's "
    "weights there at a time, for members that do not fit together; each is copied there and back for every batch)"
)


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


class _CheckDoneSignal(Exception):  # noqa: N818 (a signal, not an error)
    """Raised inside LightningCLI's set-up once ``check`` has checked the data: nothing else is built."""


def check_config_files(args: Sequence[str]) -> None:
    """Each ``--config`` file exists and holds a YAML mapping; one line naming the file (and the line of a YAML
    mistake) instead of jsonargparse's unnamed, multi-line message."""
    paths = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in paths:
        if path.lstrip().startswith(("{", "[")) or "\n" in path:
            continue  # a config given inline, not a file
        if not Path(path).is_file():
            raise MedlitError(f"--config {path}: file not found")
        try:
            content = yaml.safe_load(Path(path).read_text())
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise MedlitError(f"--config {path}: not valid YAML ({where}{problem})") from None
        except (OSError, UnicodeDecodeError) as err:
            raise MedlitError(f"--config {path}: cannot be read ({err})") from None
        if content is not None and not isinstance(content, dict):
            raise MedlitError(f"--config {path}: holds a {type(content).__name__}, not a mapping of keys")


def given_model_keys(args: Sequence[str]) -> set[str]:
    """The ``model.*`` keys that command-line flags set (``--model.key value``, ``--model.key=value``; for a nested
    ``--model.key.sub`` the top-level ``key``). ``--config`` files do not count: a generic config (``cls_ce.yaml``)
    must not replace the network a checkpoint was trained with."""
    return {
        arg.removeprefix("--model.").split("=", 1)[0].split(".", 1)[0] for arg in args if arg.startswith("--model.")
    }


class MedlitCLI(LightningCLI):
    """LightningCLI with run directories, house loggers/callbacks and one-line errors.

    Args:
        model_class: The task's LightningModule; it names its checkpoint monitor in the class attributes
            ``monitor`` (a logged key) and ``monitor_mode`` (``min`` or ``max``).
        datamodule_class: The task's LightningDataModule.
        outputs_callback_class: The task's callback that writes test/predict outputs (``outputs:`` key).
        links: Values set in one place and passed on (:class:`Link`).
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
        self._building: str | None = None
        self.run_dir: Path | None = None
        self.resuming = False
        self.loggers: list[Logger] = []
        self.error: MedlitError | None = None
        self.members: list[Member] = []
        self.check_only = bool(args and args[0] == "check") or (args is None and sys.argv[1:2] == ["check"])
        self.check_result: DataCheck | None = None
        if self.check_only:  # parsed as fit (same keys); stops once the datamodule is built and checked
            args = ["fit", *(args[1:] if args else sys.argv[2:])]
        self._cli_args = list(args) if args is not None else sys.argv[1:]
        try:
            check_contract(model_class, TaskModule, "model class")
            check_contract(datamodule_class, TaskDataModule, "datamodule class")
            check_config_files(self._cli_args)
            self._init_lightning_cli(model_class, datamodule_class, args)
        except _CheckDoneSignal:
            pass
        except Exception as err:  # an expected mistake may reach here wrapped by a library (see find_medlit_error)
            self.error = find_medlit_error(err)
            if self.error is None:
                raise

    def _init_lightning_cli(
        self, model_class: type[LightningModule], datamodule_class: type[LightningDataModule], args: list[str] | None
    ) -> None:
        with warnings.catch_warnings():
            if self.check_only:  # args given while sys.argv says "check": intended, not a mistake
                warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            program = f"python -m {model_class.__module__.split('.')[0]}"
            super().__init__(
                model_class,
                datamodule_class,
                parser_kwargs={"prog": program, "description": f"{program}: {_DESCRIPTION}"},
                save_config_callback=None,  # written by before_instantiate_classes, before anything can fail
                seed_everything_default=42,
                trainer_defaults={"log_every_n_steps": 10},
                auto_configure_optimizers=False,  # the modules own their optimizer and schedule (common.optim)
                args=args,
            )

    # --- parser -----------------------------------------------------------------------------------
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_class_arguments(RunOptions, "run")
        parser.add_lightning_class_args(self.outputs_callback_class, "outputs")
        for link in self.links:
            if link.subcommands is not None and self._building not in link.subcommands:
                continue
            apply_on = "instantiate" if link.on_instantiate else "parse"
            parser.link_arguments(link.source, link.target, compute_fn=link.compute, apply_on=apply_on)
        if self._building in ("test", "predict"):
            parser.add_argument("--ensemble", nargs="+", default=None, metavar="RUN_OR_CHECKPOINT", help=_ENSEMBLE_HELP)
            parser.add_argument("--ensemble_one_at_a_time", type=bool, default=False, help=_ONE_AT_A_TIME_HELP)

    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        super()._add_subcommands(parser, **kwargs)
        # `check` is parsed as `fit` (the command line is rewritten first); this entry only lists it in --help
        parser._subcommands_action.add_subcommand("check", self.parser_class(), help=_CHECK_HELP)

    def _prepare_subcommand_parser(self, klass: type, subcommand: str, **kwargs: Any) -> LightningArgumentParser:
        self._building = subcommand  # which subcommand's parser add_arguments_to_parser is filling
        return super()._prepare_subcommand_parser(klass, subcommand, **kwargs)

    def _parse_ckpt_path(self) -> None:
        """Lightning's step that loads a checkpoint's ``hyper_parameters`` over the model's config, keeping the
        model settings given as ``--model.*`` flags: ``test --ckpt_path X --model.tta_flips false`` must not be
        turned back into the training run's ``true``. Everything else (the network, values of ``--config`` files)
        comes from the checkpoint, as in Lightning."""
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        if config.get("ensemble_one_at_a_time") and not config.get("ensemble"):
            raise MedlitError("--ensemble_one_at_a_time: it only applies with --ensemble RUN_OR_CHECKPOINT ...")
        if config.get("ensemble"):  # the ensemble module is built from the first member's settings
            if config.get("ckpt_path"):
                raise MedlitError("--ckpt_path and --ensemble: give one (an ensemble of one is --ensemble RUN)")
            check_contract(self.model_class, EnsembleModule, "model class (for --ensemble)")
            self.members = find_members(config["ensemble"], self.model_class)
            config["ckpt_path"] = str(self.members[0].checkpoint)
        if not config.get("ckpt_path"):
            return
        if not self.members:
            self._check_checkpoint(str(config["ckpt_path"]))
        model = config.get("model")
        given = {key: model[key] for key in given_model_keys(self._cli_args) if model is not None and key in model}
        super()._parse_ckpt_path()
        for key, value in given.items():
            self.config[subcommand]["model"][key] = value
        if self.members:
            self.config[subcommand]["ckpt_path"] = None  # the members' weights, not the first one's alone

    def _check_checkpoint(self, path: str) -> None:
        """A checkpoint file that is missing, damaged, not Lightning's or another task's: one line, before anything
        reads it (Lightning's own names and remote URLs are left to Lightning)."""
        if path in _LIGHTNING_CHECKPOINT_NAMES or path.startswith("registry:") or "://" in path:
            return
        if not Path(path).is_file():
            hint = "; a run dir is given as --ensemble RUN, or by its checkpoints/*.ckpt" if Path(path).is_dir() else ""
            raise MedlitError(f"--ckpt_path {path}: no such checkpoint file{hint}")
        stored_settings(f"--ckpt_path {path}: ", Path(path), self.model_class)

    # --- run dir, config, trainer -------------------------------------------------------------------
    def _run_options(self) -> RunOptions:
        return RunOptions(**dict(self._get(self.config, "run")))

    def _check_settings(self, config: Any, options: RunOptions) -> None:
        """Values typed on the command line that would fail later with a library's traceback: one line each."""
        check_max_time(config["trainer"].get("max_time"))
        key, folder = ("run.dir", Path(options.dir)) if options.dir else ("run.root", Path(options.root))
        reason = unwritable_reason(folder if options.dir else folder / options.experiment)
        if reason:
            raise MedlitError(f"{key} {folder}: {reason}; choose another --{key}")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        if self.check_only:
            self.check_result = self._unlinked_datamodule().check_data(full=True)
            raise _CheckDoneSignal
        if self.subcommand in _READS_LABELLED_DATA and self._run_options().check_data:
            # before anything reads the data (links computed from the built datamodule, e.g. class weights) and
            # before a run dir exists: a broken dataset is reported once, by the check, and leaves nothing behind
            self._check_dataset(self._unlinked_datamodule())
        if "weights_only" in config and config["weights_only"] is None:
            config["weights_only"] = True  # our checkpoints hold tensors and plain values only: no pickled code
        if config.get("ckpt_path") or self.members:
            # weights come from the checkpoint: skip e.g. hub downloads of pretrained weights
            for key, value in self.model_class.checkpoint_overrides.items():
                config["model"][key] = value
        options = self._run_options()
        self._check_settings(config, options)
        target = None
        if self.subcommand == "fit" and config.get("ckpt_path"):
            target = resume_target(str(config["ckpt_path"]), Path(options.root) / options.experiment)
        if target is not None:  # an unfinished run: continue it in its own dir
            self.run_dir, checkpoint = target
            config["ckpt_path"] = str(checkpoint)
            self.resuming = True
        else:
            self.run_dir = resolve_run_dir(options.root, options.experiment, options.dir)
        if self.resuming:
            changed = changed_settings(self.run_dir, self._parser(self.subcommand).dump(config, skip_none=False))
            if changed:
                raise MedlitError(
                    f"{self.run_dir / 'config.yaml'}: a resumed run keeps its settings, but "
                    f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} differ; resume with the same "
                    "arguments (only run.*, trainer.max_epochs/max_steps/max_time may change)"
                )
        if rank_zero_only.rank == 0:
            os.environ[RUN_DIR_ENV] = str(self.run_dir)
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
            except OSError as err:  # what the check above cannot foresee (a full disk, a quota)
                raise MedlitError(f"{self.run_dir}: cannot make the run dir ({err.strerror})") from None
            config_path = prepare_resumed_dir(self.run_dir) if self.resuming else self.run_dir / "config.yaml"
            self._parser(self.subcommand).save(config, config_path, skip_none=False, overwrite=True)

    def _unlinked_datamodule(self) -> Any:
        """The datamodule built from the ``data`` config alone (no data read yet), for the dataset check."""
        return self.datamodule_class(**namespace_to_dict(self.config[self.subcommand]["data"]))

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        assert self.run_dir is not None
        if self.members:  # the model is built; its members join it before the run is recorded
            one_at_a_time = bool(self.config[self.subcommand].get("ensemble_one_at_a_time"))
            self.model.use_ensemble(load_members(self.members, self.model_class), one_at_a_time)
        options = self._run_options()
        trainer_config = dict(self._get(self.config_init, "trainer", default={}))
        user_logger = trainer_config.get("logger")
        if user_logger is False:
            self.loggers = []
        else:
            self.loggers = build_loggers(
                self.run_dir, options.experiment, options.wandb, options.wandb_project, self._wandb_id()
            )
            if isinstance(user_logger, Logger):
                self.loggers.append(user_logger)
            elif isinstance(user_logger, list):
                self.loggers.extend(user_logger)
        trainer_config.update(default_root_dir=str(self.run_dir), logger=self.loggers or False, **kwargs)
        callbacks = [self._get(self.config_init, key) for key in self._parser(self.subcommand).callback_keys]
        callbacks += self._house_callbacks(trainer_config)
        if self.resuming:
            self._record_resume()
        else:
            self._write_first_run_info(options)
        if options.compile:
            self.model.compile()  # nn.Module.compile: the module's __call__, not a wrapper with renamed weights
        try:
            return self._instantiate_trainer(trainer_config, callbacks)
        except (MisconfigurationException, ValueError) as err:  # Lightning's word on a trainer setting
            raise MedlitError(f"trainer settings: {first_line(err)}") from None

    def _wandb_id(self) -> str:
        """The run's W&B id: kept in ``run_info.json``, so that a resumed run continues the same W&B run."""
        info = self._run_info()
        if "wandb_id" not in info:
            info["wandb_id"] = os.environ.get(WANDB_ID_ENV) or new_wandb_id()
            os.environ[WANDB_ID_ENV] = info["wandb_id"]  # DDP workers started by Lightning use the same
            self._write_run_info(wandb_id=info["wandb_id"])
        return str(info["wandb_id"])

    def _record_resume(self) -> None:
        resumes = self._run_info().get("resumes", [])
        entry = {"at": time.strftime("%Y-%m-%d %H:%M:%S"), "ckpt_path": self.config[self.subcommand]["ckpt_path"]}
        self._write_run_info(resumes=[*resumes, {**entry, "argv": sys.argv}])

    def _write_first_run_info(self, options: RunOptions) -> None:
        self._write_run_info(
            experiment=options.experiment,
            task=self.model.task,
            report_module=self.report_module,
            subcommand=self.subcommand,
            model_class=f"{type(self.model).__module__}.{type(self.model).__qualname__}",
            datamodule_class=f"{type(self.datamodule).__module__}.{type(self.datamodule).__qualname__}",
            monitor=self.model.monitor,
            monitor_mode=self.model.monitor_mode,
            parameters=sum(p.numel() for p in self._counted_parameters()),
            trainable_parameters=sum(p.numel() for p in self._counted_parameters() if p.requires_grad),
            started=time.strftime("%Y-%m-%d %H:%M:%S"),
            argv=sys.argv,
            **({"ensemble": [m.record() for m in self.members]} if self.members else {}),
        )

    def _counted_parameters(self) -> list[Any]:
        """The model's parameters, or its ensemble members' (the ensemble's own network is not used)."""
        members = getattr(self.model, "members", None)
        if self.members and members is not None:
            return list(members.member_parameters())
        return list(self.model.parameters())

    def _run_info(self) -> dict[str, Any]:
        assert self.run_dir is not None
        return read_run_info(self.run_dir)

    def _write_run_info(self, **values: Any) -> None:
        """Merge ``values`` into ``run_info.json`` (rank 0 only): what the report needs to know about the run."""
        assert self.run_dir is not None
        if rank_zero_only.rank == 0:
            update_run_info(self.run_dir, **values)

    def _house_callbacks(self, trainer_config: dict[str, Any]) -> list[Callback]:
        assert self.run_dir is not None
        configured = trainer_config.get("callbacks") or []
        callbacks: list[Callback] = [MetricHistory(self.model.metric_labels), SplitExport(), RunTimer(), RngState()]
        if not any(isinstance(c, ModelCheckpoint) for c in configured):
            callbacks.append(
                ModelCheckpoint(
                    dirpath=self.run_dir / "checkpoints",
                    filename="best-epoch{epoch:03d}",
                    monitor=self.model.monitor,
                    mode=self.model.monitor_mode,
                    auto_insert_metric_name=False,
                )
            )
            # last.ckpt by a checkpoint of its own, rewritten every epoch: Lightning's save_last only rewrites it
            # when the best one improves, so it held the best epoch's weights (a resume went back to them)
            callbacks.append(
                ModelCheckpoint(
                    dirpath=self.run_dir / "checkpoints", filename=LAST_CHECKPOINT_STEM, enable_version_counter=False
                )
            )
        if trainer_config.get("enable_progress_bar", True) and not any(isinstance(c, ProgressBar) for c in configured):
            callbacks.append(RichProgressBar())
        if self.loggers:
            callbacks.append(LearningRateMonitor(logging_interval="epoch"))
        return callbacks

    def _check_dataset(self, datamodule: Any) -> None:
        """Raise the first problem the cheap check finds, saying how many more there are."""
        result = datamodule.check_data(full=False)
        if len(result.problems) == 1:
            raise MedlitError(str(result.problems[0]))
        if result.problems:
            command = f"python -m {self.model_class.__module__.split('.')[0]} check"
            raise MedlitError(
                f"{result.problems[0]}; and {len(result.problems) - 1} more problem(s): `{command}` with the same "
                "arguments lists them all (run.check_data=false skips this check)"
            )

    def after_fit(self) -> None:
        """Record the best checkpoint (chosen on validation data) and test the one ``run.test_checkpoint`` names,
        in the same run dir."""
        checkpoints = [c for c in self.trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        checkpoint = next((c for c in checkpoints if c.monitor), None)  # the one that selects on validation
        best = checkpoint.best_model_path if checkpoint is not None else ""
        self._write_run_info(fit_finished=time.strftime("%Y-%m-%d %H:%M:%S"))  # a later resume starts a new run
        if best:
            self._write_run_info(best_checkpoint=best, best_score=float(checkpoint.best_model_score))
        options = self._run_options()
        tested = best
        if options.test_checkpoint == "last":
            # the house's last.ckpt (rewritten every epoch), else the weights in memory: a configured callback's
            # save_last file is only rewritten when its best improves
            paths = [c.best_model_path for c in checkpoints if Path(c.best_model_path).stem == LAST_CHECKPOINT_STEM]
            tested = paths[0] if paths else ""
        self._write_run_info(test_checkpoint=options.test_checkpoint, tested_checkpoint=tested)
        if not options.test_after_fit or not self.datamodule.has_test_data:
            return
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=tested or None, weights_only=True)


def run_cli(
    model_class: type[LightningModule],
    datamodule_class: type[LightningDataModule],
    outputs_callback_class: type[Callback],
    links: Sequence[Link] = (),
    report_module: str | None = None,
    args: list[str] | None = None,
) -> Path | None:
    """Run the CLI; print ``error: ...`` and exit 2 on expected mistakes, else print ``run_dir: <path>``.

    Arguments as :class:`MedlitCLI`'s.

    Returns:
        The run directory (also when called from Python, e.g. by tests and the sweep runner).
    """
    cli = MedlitCLI(model_class, datamodule_class, outputs_callback_class, links, report_module, args)
    finish_wandb(cli.loggers, exit_code=2 if cli.error else 0)
    if cli.check_result is not None and cli.error is None:
        print(cli.check_result.render())
        sys.exit(0 if cli.check_result.ok else 1)
    if cli.error is not None:
        if rank_zero_only.rank == 0:
            if cli.run_dir is not None and cli.run_dir.is_dir():
                (cli.run_dir / "error.txt").write_text(f"{cli.error}\n")
            print(f"error: {cli.error}", file=sys.stderr)
        else:  # a worker's own mistake must not go unsaid; the same one as rank 0's is marked as a repeat
            print(f"[rank {rank_zero_only.rank}] {cli.error}", file=sys.stderr)
        sys.exit(2)
    if rank_zero_only.rank == 0:
        print(f"run_dir: {cli.run_dir}", flush=True)
    return cli.run_dir
