"""Helpers for the tasks' report sections, so that every task picks runs, builds tables and writes intervals the
same way.

"Better" and "best" are chosen on the validation metric that selected each run's checkpoint (:func:`best_run`),
never on test data; :func:`no_best_run` says why no run is named when the runs were selected on different
metrics. :func:`table` lays runs out as columns, :func:`tested_weights` and :func:`training_rows` describe a run's
weights and training budget, :func:`mean_std` and :func:`with_interval` write a test metric. Numbers are written
by :mod:`common.text` (``fmt``, ``show``), which the tasks import from there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from common.studies.paired import run_interval
from common.studies.runs import RunResult
from common.text import fmt, format_interval, show

__all__ = ["best_run", "mean_std", "no_best_run", "table", "tested_weights", "training_rows", "with_interval"]


def mean_std(summary: dict[str, Any], digits: int = 3) -> str:
    """``mean ± std`` of a per-case summary (``{"mean": ..., "std": ...}``)."""
    return f"{fmt(summary.get('mean'), digits)} ± {fmt(summary.get('std'), digits)}"


def with_interval(run: RunResult, metric: str, digits: int = 3) -> str:
    """A headline test metric with its 95% interval: ``0.599 (0.571-0.627)`` (:func:`common.text.format_interval`
    of the value and :func:`~common.studies.paired.run_interval`)."""
    return format_interval(run.headline()[metric], run_interval(run, metric), digits)


def table(rows: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """Columns = runs, rows = quantities (the seed's layout); cells not yet text are configuration values."""
    return pd.DataFrame(rows).map(lambda v: v if isinstance(v, str) else show(v))


def best_run(runs: Sequence[RunResult]) -> RunResult | None:
    """The run whose checkpoint has the best validation monitor (never a test metric); ``None`` when the runs'
    checkpoints were selected on different metrics, whose values are on different scales (see :func:`no_best_run`)."""
    runs = [run for run in runs if math.isfinite(run.validation_score)]  # a run of test alone was not validated
    if not runs or len({(run.monitor, run.monitor_mode) for run in runs}) > 1:
        return None
    return max(runs, key=lambda r: r.validation_score if r.monitor_mode == "max" else -r.validation_score)


def no_best_run(runs: Sequence[RunResult], labels: dict[str, str]) -> str:
    """What a report says when :func:`best_run` names no run: each run's selection metric (``labels`` names the
    monitors, e.g. ``val/bal_acc`` -> ``balanced accuracy``)."""
    chosen = ", ".join(f"{run.experiment} on {labels.get(run.monitor, run.monitor)}" for run in runs)
    return (
        f"No run is named better: their checkpoints were selected on different validation metrics ({chosen}), "
        "whose values do not compare."
    )


def tested_weights(run: RunResult) -> str:
    """Which weights the run's test used: ``best epoch N`` (on validation), ``last epoch N``, or an ensemble's
    members."""
    if run.info.get("ensemble"):
        return f"ensemble of {len(run.info['ensemble'])} members (run_info.json)"
    best = run.best_epoch()
    if "epoch" not in best:
        return str(run.metrics.get("checkpoint", "–"))
    epoch = int(best["epoch"]) + 1
    return f"last epoch {epoch}" if run.info.get("test_checkpoint") == "last" else f"best epoch {epoch} (validation)"


def _duration(value: Any) -> str:
    """Lightning's ``max_time`` (``"DD:HH:MM:SS"`` or a mapping of ``timedelta`` fields) in minutes."""
    try:
        if isinstance(value, dict):
            units = (("days", 86400), ("hours", 3600), ("minutes", 60), ("seconds", 1))
            seconds = sum(float(value.get(name, 0)) * factor for name, factor in units)
        else:
            days, hours, minutes, secs = (float(part) for part in str(value).split(":"))
            seconds = days * 86400 + hours * 3600 + minutes * 60 + secs
    except (TypeError, ValueError):
        return str(value)
    return f"{show(seconds / 60)} min"


def training_rows(run: RunResult) -> dict[str, str]:
    """The training budget the configuration set (steps, epochs, time: whichever ends first) and what the run
    used of it: epochs and optimizer steps (``history.csv``), fit wall time (``timing.json``), precision."""
    limits = []
    if run.cfg("trainer.max_steps") not in (None, -1):
        limits.append(f"{run.cfg('trainer.max_steps')} steps")
    if run.cfg("trainer.max_epochs") is not None:
        limits.append(f"{run.cfg('trainer.max_epochs')} epochs")
    if run.cfg("trainer.max_time"):
        limits.append(_duration(run.cfg("trainer.max_time")))
    budget = " or ".join(limits) + (" (whichever ends first)" if len(limits) > 1 else "")
    done = []
    epochs = run.timing.get("epochs", int(run.history["epoch"].max()) + 1 if len(run.history) else None)
    if epochs is not None:
        done.append(f"{epochs} epochs")
    if "step" in run.history and run.history["step"].notna().any():
        done.append(f"{int(run.history['step'].max())} steps")
    if "fit_s" in run.timing:
        done.append(f"{float(run.timing['fit_s']) / 60:.1f} min")
    return {
        "training budget": budget or "–",
        "trained": ", ".join(done) or "–",
        "precision": show(run.cfg("trainer.precision") or "32-true"),  # Lightning's default when unset
    }
