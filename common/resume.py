"""Continuing a killed ``fit`` in its own run dir: ``fit --ckpt_path last`` or ``--ckpt_path <run>/checkpoints/x``.

A run that has not finished (no ``metrics.json``) is continued where it stopped: same run dir, same history
(kept in the checkpoint), same W&B run (its id is in ``run_info.json``). Nothing earlier is overwritten: the
resumed invocation's configuration is saved as ``config.resume-N.yaml`` and the earlier CSV log is kept as
``logs/metrics.before-resume-N.csv`` (Lightning's CSV logger starts a new file). A finished run is never
changed: continuing it (e.g. to train longer) starts a new run dir from its checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from common.errors import MedlitError

__all__ = ["LAST", "prepare_resumed_dir", "resume_target", "resumes_so_far"]

LAST = "last"
"""``--ckpt_path last``: the newest unfinished run of the experiment."""


def _unfinished(run_dir: Path) -> bool:
    return (run_dir / "config.yaml").is_file() and not (run_dir / "metrics.json").is_file()


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
    if not checkpoint.is_file():
        raise MedlitError(f"ckpt_path: {checkpoint} not found")
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
