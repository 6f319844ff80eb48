"""Run directories: where a run is written, its ``run_info.json``, and continuing a killed ``fit`` in place.

This is the writing side of what :mod:`common.studies.runs` reads. Every run gets
``<run.root>/<run.experiment>/<timestamp>/`` (:func:`resolve_run_dir`); ``run_info.json`` (:func:`update_run_info`)
records what the report needs to know about it (task, report module, monitor, checkpoints, resumes).

Resume: ``fit --ckpt_path last`` or ``--ckpt_path <run>/checkpoints/x``. A run whose fit has not finished
(``run_info.json`` has no ``fit_finished``) is continued where it stopped: same run dir, same history (kept in the
checkpoint), same W&B run (its id is in ``run_info.json``), same settings (:func:`changed_settings`: only where it
is recorded and how long it trains may change). Nothing earlier is overwritten: the resumed invocation's
configuration is saved as ``config.resume-N.yaml`` and the earlier CSV log is kept as
``logs/metrics.before-resume-N.csv`` (Lightning's CSV logger starts a new file). A finished run is never changed:
continuing it (e.g. to train longer) starts a new run dir from its checkpoint.

Under a W&B sweep agent (``WANDB_SWEEP_ID`` and ``WANDB_RUN_ID`` set), ``fit`` continues the unfinished run dir of
the agent's run id when there is one (:func:`agent_resume_target`): a run killed and started again by the agent with
its old id is the same run dir and the same W&B run.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from common.distributed import agreed_by_ranks, external_job_id
from common.errors import MedlitError
from common.files import unwritable_reason, write_json

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

__all__ = [
    "LAST_CHECKPOINT_STEM",
    "MAY_CHANGE",
    "RESUME_LATEST",
    "RUN_DIR_ENV",
    "RUN_INFO",
    "TIMING",
    "WANDB_ID_ENV",
    "agent_resume_target",
    "changed_settings",
    "check_max_time",
    "choose_run_dir",
    "derived_run_dir",
    "make_run_dir",
    "prepare_resumed_dir",
    "read_run_info",
    "read_timing",
    "refuse_changed_settings",
    "resolve_run_dir",
    "resume_target",
    "resumes_so_far",
    "run_dir_of",
    "run_environment",
    "update_run_info",
]

RUN_DIR_ENV = "MEDLIT_RUN_DIR"
"""Set by rank 0, so that the DDP worker processes Lightning launches write into the same run dir."""
WANDB_ID_ENV = "MEDLIT_WANDB_ID"
"""Set by rank 0, so that those workers log to the same W&B run."""
AGENT_ENV = ("WANDB_SWEEP_ID", "WANDB_RUN_ID")
"""Set by ``wandb agent`` for each run it starts: the sweep, and the W&B run id the run must use."""
RUN_INFO = "run_info.json"
"""What the report needs to know about a run (task, report module, monitor, checkpoints, resumes)."""
TIMING = "timing.json"
"""Wall seconds of fit/test/predict and the epochs run (:class:`common.callbacks.RunTimer` writes it)."""
LAST_CHECKPOINT_STEM = "last"
"""``checkpoints/last.ckpt``: the weights at the end of the latest epoch (resumes and ``run.test_checkpoint=last``)."""
RESUME_LATEST = "last"
"""The ``--ckpt_path`` value that continues the newest unfinished run of the experiment."""
MAY_CHANGE = ("ckpt_path", "run", "trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
"""Settings a resumed run may change (where it is recorded, and how long it trains); all others must match."""


def resolve_run_dir(root: str | Path, experiment: str, exact: str | Path | None = None) -> Path:
    """Pick this run's directory (does not create it).

    Rank 0 takes a new timestamped folder under ``<root>/<experiment>``; DDP workers launched by Lightning inherit
    rank 0's choice through :data:`RUN_DIR_ENV`; processes started externally (SLURM, torchrun) agree on a job-id
    name.

    Args:
        root: Folder that holds all experiments' runs (``run.root``).
        experiment: The experiment's name (``run.experiment``).
        exact: An exact run dir instead (``run.dir``); it must not already hold a run.
    """
    from lightning.pytorch.utilities import rank_zero_only  # here: readers of run dirs need no Lightning

    if exact:
        run_dir = Path(exact)
        if rank_zero_only.rank == 0 and (run_dir / "config.yaml").exists():
            raise MedlitError(
                f"run.dir {run_dir} already holds a run (config.yaml); choose another run.dir, or --run.dir null for "
                "a time-stamped one (a sweep's or cross-validation's config.yaml names its own run.dir)"
            )
        return run_dir
    inherited = os.environ.get(RUN_DIR_ENV)
    if inherited and rank_zero_only.rank > 0:
        return Path(inherited)
    base = Path(root) / experiment
    job_id = external_job_id()
    if job_id:
        return base / job_id

    def stamped() -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        run_dir, n = base / stamp, 1
        while run_dir.exists():
            run_dir, n = base / f"{stamp}-{n}", n + 1
        return str(run_dir)

    return Path(agreed_by_ranks("run_dir", stamped) or stamped())


def check_max_time(value: Any) -> None:
    """``trainer.max_time`` as Lightning reads it: ``DD:HH:MM:SS``, or a mapping of ``timedelta`` fields; one
    error line (with an example) for anything else, before Lightning's traceback."""
    if value is None or isinstance(value, timedelta):
        return
    example = "e.g. 00:01:30:00 for 90 minutes, or {minutes: 90} in a config file"
    try:
        if isinstance(value, str):
            parts = value.split(":")
            if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
                raise ValueError
            duration = timedelta(**dict(zip(("days", "hours", "minutes", "seconds"), map(int, parts), strict=True)))
        else:
            duration = timedelta(**dict(value))
    except (ValueError, TypeError):
        raise MedlitError(
            f"trainer.max_time {value!r}: not DD:HH:MM:SS (days:hours:minutes:seconds; {example})"
        ) from None
    if duration.total_seconds() <= 0:
        raise MedlitError(f"trainer.max_time {value!r}: the training budget must be longer than zero ({example})")


def run_dir_of(trainer: Trainer) -> Path:
    """The run directory of a trainer (the CLI sets ``default_root_dir`` to it)."""
    return Path(trainer.default_root_dir)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run's ``run_info.json`` so far (empty before it is first written)."""
    path = run_dir / RUN_INFO
    return json.loads(path.read_text()) if path.exists() else {}


def read_timing(run_dir: Path) -> dict[str, Any]:
    """The run's ``timing.json`` (wall seconds of fit/test, epochs; empty for a run that has none)."""
    path = run_dir / TIMING
    return json.loads(path.read_text()) if path.exists() else {}


def update_run_info(run_dir: Path, **values: Any) -> None:
    """Merge ``values`` into the run's ``run_info.json`` (written atomically; call it from rank 0)."""
    write_json(run_dir / RUN_INFO, {**read_run_info(run_dir), **values})


_DERIVED_KEYS = ("experiment", "task", "report_module", "model_class", "datamodule_class", "monitor", "monitor_mode")
"""What a run dir derived from others copies from the first one's ``run_info.json`` (what the report reads)."""


def derived_run_dir(out: Path, sources: Sequence[Path], **values: Any) -> Path:
    """A new run dir ``out`` for results computed from other runs (an ensemble of saved predictions, a pool of
    out-of-fold predictions): the first source's ``config.yaml`` and ``split.csv``, and a ``run_info.json`` with its
    task keys, its parameter counts (summed over the sources when ``values`` has ``ensemble``: the members) and
    ``values``, so that the
    report and comparisons read it as any run.

    Raises:
        MedlitError: ``out`` exists and is not empty (nothing is overwritten).
    """
    source = sources[0]
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MedlitError(f"{out}: exists and is not empty; choose a new output folder (nothing is overwritten)")
    reason = unwritable_reason(out)
    if reason:
        raise MedlitError(f"{out}: {reason}; choose another output folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.yaml", "split.csv"):
        if (source / name).is_file():
            (out / name).write_bytes((source / name).read_bytes())
    info = read_run_info(source)
    counts = {}
    for key in ("parameters", "trainable_parameters"):
        counted = [read_run_info(s).get(key) for s in (sources if "ensemble" in values else sources[:1])]
        if None not in counted:
            counts[key] = sum(counted)
    update_run_info(out, **{**{k: info[k] for k in _DERIVED_KEYS if k in info}, **counts, **values})
    return out


def _unfinished(run_dir: Path) -> bool:
    """A run dir whose ``fit`` started but did not end (the CLI records ``fit_finished`` when it ends)."""
    if not (run_dir / "config.yaml").is_file() or (run_dir / "metrics.json").is_file():
        return False
    return not read_run_info(run_dir).get("fit_finished")


def resume_target(ckpt_path: str, experiment_dir: Path) -> tuple[Path, Path] | None:
    """``(run dir, checkpoint)`` to continue in place, or ``None`` when ``fit`` should start a new run dir.

    Args:
        ckpt_path: :data:`RESUME_LATEST` or a checkpoint path.
        experiment_dir: ``<run.root>/<run.experiment>``, searched for the newest unfinished run.
    """
    if ckpt_path == RESUME_LATEST:
        pattern = f"*/checkpoints/{LAST_CHECKPOINT_STEM}.ckpt"
        candidates = sorted(experiment_dir.glob(pattern), key=lambda p: p.stat().st_mtime)
        unfinished = [c for c in candidates if _unfinished(c.parent.parent)]
        if not unfinished:
            raise MedlitError(
                f"ckpt_path: {RESUME_LATEST}: no unfinished run with checkpoints/{LAST_CHECKPOINT_STEM}.ckpt under "
                f"{experiment_dir} (to continue a finished run, pass its checkpoint path: a new run dir starts from it)"
            )
        return unfinished[-1].parent.parent, unfinished[-1]
    checkpoint = Path(ckpt_path)
    if not checkpoint.is_file():  # Lightning's own values (hpc, registry), remote paths, or a missing file
        return None
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and _unfinished(run_dir):
        return run_dir, checkpoint
    return None


@contextmanager
def run_environment() -> Iterator[None]:
    """What one run sets for its DDP workers (:data:`RUN_DIR_ENV`, :data:`WANDB_ID_ENV`) is unset again when it ends,
    so that the next run of the same process (a test, an in-process sweep) starts a run of its own."""
    before = {name: os.environ.get(name) for name in (RUN_DIR_ENV, WANDB_ID_ENV)}
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def agent_resume_target(experiment_dir: Path) -> tuple[Path, Path] | None:
    """Under a W&B agent: ``(run dir, last checkpoint)`` of the unfinished run whose ``run_info.json`` holds the
    agent's run id, else ``None`` (a new run dir)."""
    sweep_id, run_id = (os.environ.get(name) for name in AGENT_ENV)
    if not (sweep_id and run_id):
        return None
    for info in sorted(experiment_dir.glob(f"*/{RUN_INFO}")):
        run_dir, checkpoint = info.parent, info.parent / "checkpoints" / f"{LAST_CHECKPOINT_STEM}.ckpt"
        if read_run_info(run_dir).get("wandb_id") == run_id and _unfinished(run_dir) and checkpoint.is_file():
            return run_dir, checkpoint
    return None


def choose_run_dir(
    root: str | Path, experiment: str, exact: str | Path | None, resume_from: str | None, fit: bool = False
) -> tuple[Path, Path | None]:
    """This run's directory (not created yet), and the checkpoint it continues from when it resumes an unfinished
    run in place (``None`` for a new run dir).

    Args:
        root: Folder that holds all experiments' runs (``run.root``).
        experiment: The experiment's name (``run.experiment``).
        exact: An exact run dir instead (``run.dir``).
        resume_from: ``fit``'s ``ckpt_path`` (``None`` for other subcommands): :data:`RESUME_LATEST` or a
            checkpoint of an unfinished run continues that run.
        fit: This is ``fit``: under a W&B agent, the unfinished run of the agent's run id continues.
    """
    if resume_from:
        target = resume_target(resume_from, Path(root) / experiment)
    else:
        target = agent_resume_target(Path(root) / experiment) if fit and not exact else None
    if target is not None:
        return target
    return resolve_run_dir(root, experiment, exact), None


def make_run_dir(run_dir: Path, resuming: bool) -> Path:
    """Create the run dir and name it to the DDP workers Lightning starts (call it from rank 0); returns where this
    invocation's configuration is saved (``config.yaml``, or ``config.resume-N.yaml`` when resuming)."""
    os.environ[RUN_DIR_ENV] = str(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # what the CLI's check of the folder cannot foresee (a full disk, a quota)
        raise MedlitError(f"{run_dir}: cannot make the run dir ({err.strerror})") from None
    return prepare_resumed_dir(run_dir) if resuming else run_dir / "config.yaml"


def resumes_so_far(run_dir: Path) -> int:
    """How many times the run dir has been resumed before."""
    return len(list(run_dir.glob("config.resume-*.yaml")))


def prepare_resumed_dir(run_dir: Path) -> Path:
    """Keep the earlier CSV log aside; returns the path for this invocation's configuration."""
    n = resumes_so_far(run_dir) + 1
    log = run_dir / "logs" / "metrics.csv"
    if log.is_file():
        log.rename(log.with_name(f"metrics.before-resume-{n}.csv"))
    return run_dir / f"config.resume-{n}.yaml"


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict):
        return {prefix: node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def changed_settings(run_dir: Path, new_config_yaml: str) -> list[str]:
    """Config keys whose value in this invocation differs from the run's ``config.yaml`` (but for
    :data:`MAY_CHANGE`): a run must continue with the settings it started with."""
    old = _flat(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    new = _flat(yaml.safe_load(new_config_yaml) or {})
    return sorted(k for k in set(old) | set(new) if not k.startswith(MAY_CHANGE) and old.get(k) != new.get(k))


def refuse_changed_settings(run_dir: Path, new_config_yaml: str) -> None:
    """Raise a :class:`MedlitError` naming the settings (:func:`changed_settings`) a resumed run would change."""
    changed = changed_settings(run_dir, new_config_yaml)
    if changed:
        raise MedlitError(
            f"{run_dir / 'config.yaml'}: a resumed run keeps its settings, but "
            f"{', '.join(changed[:5])}{' ...' if len(changed) > 5 else ''} differ; resume with the same "
            "arguments (only run.*, trainer.max_epochs/max_steps/max_time may change)"
        )
