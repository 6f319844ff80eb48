"""Continuing a killed ``fit`` in its own run dir: ``fit --ckpt_path last`` or ``--ckpt_path <run>/checkpoints/x``.

A run whose fit has not finished (``run_info.json`` has no ``fit_finished``) is continued where it stopped: same
run dir, same history (kept in the checkpoint), same W&B run (its id is in ``run_info.json``), same settings
(:func:`changed_settings`: only where it is recorded and how long it trains may change). Nothing earlier is
overwritten: the resumed invocation's configuration is saved as ``config.resume-N.yaml`` and the earlier CSV
log is kept as ``logs/metrics.before-resume-N.csv`` (Lightning's CSV logger starts a new file). A finished run
is never changed: continuing it (e.g. to train longer) starts a new run dir from its checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from common.errors import MedlitError

__all__ = ["LAST", "changed_settings", "prepare_resumed_dir", "resume_target", "resumes_so_far"]

MAY_CHANGE = ("ckpt_path", "run", "trainer.max_epochs", "trainer.max_steps", "trainer.max_time")
"""Settings a resumed run may change (where it is recorded, and how long it trains); all others must match."""

LAST = "last"
"""``--ckpt_path last``: the newest unfinished run of the experiment."""


def _unfinished(run_dir: Path) -> bool:
    """A run dir whose ``fit`` started but did not end (the CLI records ``fit_finished`` when it ends)."""
    info_path = run_dir / "run_info.json"
    if not (run_dir / "config.yaml").is_file() or (run_dir / "metrics.json").is_file():
        return False
    return not (info_path.is_file() and json.loads(info_path.read_text()).get("fit_finished"))


def resume_target(ckpt_path: str, experiment_dir: Path) -> tuple[Path, Path] | None:
    """``(run dir, checkpoint)`` to continue in place, or ``None`` when ``fit`` should start a new run dir.

    Args:
        ckpt_path: ``last`` or a checkpoint path.
        experiment_dir: ``<run.root>/<run.experiment>``, searched for ``last``.
    """
    if ckpt_path == LAST:
        candidates = sorted(experiment_dir.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        unfinished = [c for c in candidates if _unfinished(c.parent.parent)]
        if not unfinished:
            raise MedlitError(
                f"ckpt_path: last: no unfinished run with checkpoints/last.ckpt under {experiment_dir} "
                "(to continue a finished run, pass its checkpoint path: a new run dir starts from it)"
            )
        return unfinished[-1].parent.parent, unfinished[-1]
    checkpoint = Path(ckpt_path)
    if not checkpoint.is_file():  # Lightning's own values (hpc, registry), remote paths, or a missing file
        return None
    run_dir = checkpoint.parent.parent
    if checkpoint.parent.name == "checkpoints" and _unfinished(run_dir):
        return run_dir, checkpoint
    return None


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
    allowed = tuple(MAY_CHANGE)
    keys = sorted(k for k in set(old) | set(new) if not k.startswith(allowed) and old.get(k) != new.get(k))
    return keys
