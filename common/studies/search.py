"""The offline ``bayes`` search: one Optuna study (TPE) per sweep, shared by every worker of the sweep dir.

Each run is a trial: asked for when a worker claims the run, told its sweep metric when the run ends, failed when
the run fails or its worker dies (its configuration is then asked for again). The study lives in an Optuna storage,
by default a journal file in the sweep dir (the storage Optuna recommends for a shared filesystem).
"""

from __future__ import annotations

import math
from typing import Any

from common.errors import MedlitError, first_line
from common.studies.plan import SweepSpec, distribution_name

__all__ = ["ask", "fail_trial", "open_study", "tell"]


def open_study(spec: SweepSpec, storage: str, seed: int) -> Any:
    """The sweep's Optuna study in ``storage`` (an RDB URL, or a journal file path), shared by every worker."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        raise MedlitError("method bayes needs optuna (pip install optuna); grid and random need nothing more") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    direction = "maximize" if spec.metric.get("goal", "maximize") == "maximize" else "minimize"
    try:
        backend = storage if "://" in storage else JournalStorage(JournalFileBackend(storage))
        study = optuna.create_study(
            study_name=spec.name,
            storage=backend,
            load_if_exists=True,
            direction=direction,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
    except Exception as err:  # SQLAlchemy, its drivers and the filesystem raise many kinds
        raise MedlitError(f"--storage {storage}: cannot open the Optuna storage ({first_line(err)})") from None
    return study


def fail_trial(study: Any, run_id: str) -> None:
    """Mark the trial of an interrupted run failed (its configuration is asked for again)."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if trial.user_attrs.get("run_id") == run_id:
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)


def _optuna_distribution(name: str, param: dict[str, Any]) -> Any:
    """The Optuna distribution of a W&B parameter specification."""
    import optuna

    if "value" in param:
        return optuna.distributions.CategoricalDistribution([param["value"]])
    if "values" in param:
        return optuna.distributions.CategoricalDistribution(param["values"])
    kinds = {
        "int_uniform": lambda low, high: optuna.distributions.IntDistribution(low, high),
        "uniform": lambda low, high: optuna.distributions.FloatDistribution(low, high),
        "log_uniform_values": lambda low, high: optuna.distributions.FloatDistribution(low, high, log=True),
    }
    kind = distribution_name(param)
    if kind not in kinds:
        raise MedlitError(f"parameters.{name}: distribution '{kind}' is not supported by the offline bayes search")
    return kinds[kind](param["min"], param["max"])


def ask(study: Any, spec: SweepSpec, run_id: str, seed: int) -> Any:
    """A new trial for ``run_id``, sampled with ``seed`` (the sweep's seed + the run's position: workers asking at
    the same time get different configurations, and one worker's sequence is reproducible). ``constant_liar``:
    TPE treats the trials still running in other workers as bad, so that they are not proposed again."""
    import optuna

    study.sampler = optuna.samplers.TPESampler(seed=seed, constant_liar=True)
    trial = study.ask({n: _optuna_distribution(n, p) for n, p in spec.parameters.items()})
    trial.set_user_attr("run_id", run_id)
    return trial


def tell(study: Any, trial: Any, metric: float, finished: bool) -> None:
    """Tell the study a run's sweep metric; a failed run, or one with no finite metric, is a failed trial."""
    import optuna

    if finished and math.isfinite(metric):
        study.tell(trial, metric)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)
