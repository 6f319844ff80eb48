"""The classifier's decision rules: which class an image goes to, given its class probabilities.

* the decision τ (post-hoc logit adjustment, Menon et al., ICLR 2021): decisions from ``log p - tau * log f``, ``f``
  the training split's class frequencies; :class:`DecisionSearch` chooses τ among :data:`DECISION_TAUS` on validation
  logits;
* class offsets ``b`` added after the τ shift, ``log p - tau * log f + b``: :func:`fit_class_offsets` fits them on
  out-of-fold predictions (enough images for 7 numbers), and :func:`cross_fitted_decisions` says whether they
  generalise across folds; :func:`choose_on_pool` makes the whole choice on an out-of-fold pool.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_f1_score, multiclass_recall
from torchmetrics.utilities import dim_zero_cat

from common.errors import MedlitError

__all__ = [
    "CLASS_OFFSET_GRID",
    "DECISION_TAUS",
    "OFFSETS_RULE",
    "SELECTION_METRICS",
    "TAU_RULE",
    "DecisionSearch",
    "DecisionSettings",
    "PoolChoice",
    "best_decision",
    "choose_on_pool",
    "class_log_frequencies",
    "cross_fitted_decisions",
    "decided_probabilities",
    "decision_candidates",
    "decision_scores",
    "decision_settings",
    "fit_class_offsets",
    "shift_decisions",
    "shifted_probabilities",
    "tau_and_offsets_rule",
    "tau_rule",
]

DECISION_TAUS: tuple[float, ...] = tuple(step / 8 for step in range(-8, 9))
"""The decision τ a validation search tries: -1 (the training prior counted twice: towards common classes) to 1
(the training prior divided out: the balanced-error rule), in steps of 0.125."""

SELECTION_METRICS = ("bal_acc", "acc", "acc_bal_mean")
"""What validation maximises: balanced accuracy, accuracy, or the mean of the two."""


def shift_decisions(
    logits: torch.Tensor, tau: float, log_frequencies: torch.Tensor | None, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """``logits - tau * log(f) + offsets`` (post-hoc logit adjustment, Menon et al., ICLR 2021): ``tau > 0`` moves
    decisions towards rare classes, ``tau < 0`` towards common ones; ``offsets`` (``[C]``, optional) move each class
    on its own; the logits as they are for ``tau`` 0 and no offsets."""
    if tau and log_frequencies is not None:
        logits = logits - tau * log_frequencies.to(logits)
    return logits if offsets is None else logits + offsets.to(logits)


def decision_scores(logits: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """Accuracy, balanced accuracy (macro recall), macro F1 and the mean of the first two, of arg-max decisions."""
    c = logits.shape[1]
    acc = multiclass_accuracy(logits, target, c, average="micro").item()
    bal_acc = multiclass_recall(logits, target, c, average="macro").item()
    f1 = multiclass_f1_score(logits, target, c, average="macro").item()
    return {"acc": acc, "bal_acc": bal_acc, "f1_macro": f1, "acc_bal_mean": (acc + bal_acc) / 2}


def shifted_probabilities(
    probs: torch.Tensor, tau: float, log_frequencies: torch.Tensor | None, offsets: torch.Tensor | None = None
) -> torch.Tensor:
    """Probabilities ``[N, C]`` whose decisions are shifted by the decision τ and the class offsets
    (:func:`shift_decisions` of their logarithm, renormalised); as they are for τ 0 and no offsets."""
    if (not tau or log_frequencies is None) and offsets is None:
        return probs
    log_probs = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    return shift_decisions(log_probs, tau, log_frequencies, offsets).softmax(dim=1)


def decision_candidates(
    logits: torch.Tensor, target: torch.Tensor, taus: Sequence[float], log_frequencies: torch.Tensor | None
) -> dict[float, dict[str, float]]:
    """:func:`decision_scores` of the decisions at each τ, smallest ``|τ|`` first (so that the first maximum of a
    metric is the smallest shift that reaches it)."""
    ordered = sorted(taus, key=abs)
    return {tau: decision_scores(shift_decisions(logits, tau, log_frequencies), target) for tau in ordered}


def best_decision(candidates: dict[float, dict[str, float]], metric: str) -> float:
    """The τ of :func:`decision_candidates` that maximises ``metric`` (ties: the smallest ``|τ|``)."""
    return max(candidates, key=lambda tau: candidates[tau][metric])


CLASS_OFFSET_GRID: tuple[float, ...] = tuple(step / 20 for step in range(-80, 81))
"""The values :func:`fit_class_offsets` tries for each class's offset: -4 to 4 in steps of 0.05 (natural log units:
a factor of e^4 ~ 55 on a class's odds at most)."""


def _scores_over_offsets(
    margin: np.ndarray, target: np.ndarray, c: int, others_right: np.ndarray, values: np.ndarray
) -> dict[str, np.ndarray]:
    """Accuracy, balanced accuracy (mean recall over the classes in ``target``, as scikit-learn's; the reported macro
    recall whenever every class occurs among the items, as in an out-of-fold pool) and their mean of the decisions
    with class ``c``'s offset at each of ``values``, the other offsets fixed. An item goes to ``c`` exactly when the
    offset exceeds its ``margin`` (the best other class's logit minus its own ``c`` logit), else to the best other
    class (right for the items in ``others_right``): counted on sorted margins, without a [G, N] table."""
    classes = np.unique(target)
    recalls = []
    for k in classes:
        members = target == k
        if k == c:  # right when c wins: margin below the offset
            count = np.searchsorted(np.sort(margin[members]), values, side="left")
        else:  # right when c does not win and the best other class is k
            kept = np.sort(margin[members & others_right])
            count = len(kept) - np.searchsorted(kept, values, side="left")
        recalls.append(count / members.sum())
    recall = np.stack(recalls, axis=1)  # [G, classes present]
    acc = recall @ np.bincount(target)[classes] / len(target)
    bal_acc = recall.mean(axis=1)
    return {"acc": acc, "bal_acc": bal_acc, "acc_bal_mean": (acc + bal_acc) / 2}


def fit_class_offsets(
    log_probs: np.ndarray,
    target: np.ndarray,
    metric: str,
    start: np.ndarray,
    grid: Sequence[float] = CLASS_OFFSET_GRID,
    max_sweeps: int = 100,
) -> np.ndarray:
    """Offsets ``b`` ``[C]`` whose decisions ``argmax(log p + b)`` maximise ``metric`` (``acc``, ``bal_acc`` or
    ``acc_bal_mean``) on the items, by coordinate ascent from ``start``: each class in turn tries every value of
    ``grid`` with the others fixed and moves only for a strict gain (to the best value nearest its current one),
    until a sweep over the classes changes nothing. The most frequent class of ``target`` keeps its start value
    (adding one number to every offset changes no decision). The score never falls below that of ``start``."""
    offsets = np.array(start, dtype=np.float64)
    log_probs = np.asarray(log_probs, dtype=np.float64)
    reference = int(np.bincount(target, minlength=log_probs.shape[1]).argmax())
    values = np.asarray(grid, dtype=np.float64)
    for _ in range(max_sweeps):
        moved = False
        for c in range(log_probs.shape[1]):
            if c == reference:
                continue
            others = log_probs + offsets
            others[:, c] = -np.inf
            margin = others.max(axis=1) - log_probs[:, c]
            candidates = np.append(values, offsets[c])
            score = _scores_over_offsets(margin, target, c, others.argmax(axis=1) == target, candidates)[metric]
            ties = np.flatnonzero(score >= score.max() - 1e-12)
            pick = candidates[ties[np.argmin(np.abs(candidates[ties] - offsets[c]))]]
            moved |= pick != offsets[c]
            offsets[c] = pick
        if not moved:
            break
    return offsets


def cross_fitted_decisions(
    log_probs: np.ndarray, target: np.ndarray, groups: np.ndarray, fit: Callable[[np.ndarray, np.ndarray], np.ndarray]
) -> np.ndarray:
    """Arg-max decisions ``argmax(log p + b)`` of each group's items (e.g. a fold's out-of-fold images) under the
    offsets ``b = fit(log_probs, target)`` fitted on the other groups' items alone: what a decision rule gives on
    items it was not chosen on."""
    predicted = np.empty(len(target), dtype=np.int64)
    for group in np.unique(groups):
        held = groups == group
        predicted[held] = (log_probs[held] + fit(log_probs[~held], target[~held])).argmax(axis=1)
    return predicted


class DecisionSearch(Metric):
    """An epoch's validation logits (all processes) scored at each candidate decision τ; ``compute`` returns the
    scores at the τ that maximises ``selection_metric`` (ties: the smallest ``|τ|``), with ``decision_tau``.

    With a single candidate it is a plain validation metric of the decisions at that τ.
    """

    full_state_update = False

    def __init__(
        self,
        log_frequencies: torch.Tensor | None,
        taus: Sequence[float] = DECISION_TAUS,
        selection_metric: str = "bal_acc",
    ) -> None:
        super().__init__()
        self.log_frequencies = log_frequencies
        self.taus = list(taus)
        self.selection_metric = selection_metric
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("target", default=[], dist_reduce_fx="cat")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        self.logits.append(logits.detach().float())
        self.target.append(target.detach())

    def compute(self) -> dict[str, float]:
        logits, target = dim_zero_cat(self.logits), dim_zero_cat(self.target)
        candidates = decision_candidates(logits, target, self.taus, self.log_frequencies)
        tau = best_decision(candidates, self.selection_metric)
        return {**candidates[tau], "decision_tau": tau}


def class_log_frequencies(
    frequencies: Sequence[float] | None, num_classes: int, decision_tau: float | None
) -> torch.Tensor | None:
    """``log(f / sum(f))`` for the decision τ (``None`` when no τ is used or none is given)."""
    if decision_tau == 0.0:
        return None
    if frequencies is None or len(frequencies) != num_classes:
        raise MedlitError(
            f"model.decision_tau needs model.class_frequencies ({num_classes} numbers; linked from the data)"
        )
    counts = torch.as_tensor(frequencies, dtype=torch.float32)
    if (counts <= 0).any():
        raise MedlitError(f"model.class_frequencies must be positive for model.decision_tau, got {list(frequencies)}")
    return torch.log(counts / counts.sum())


def decided_probabilities(
    probs: np.ndarray, tau: float, frequencies: Sequence[float], offsets: Sequence[float] | None = None
) -> np.ndarray:
    """Saved probabilities ``[N, C]`` shifted by the decision τ and the class offsets, as
    :meth:`~lesion_cls.model.LesionClassifier.decided` shifts them (in float32); as they are for τ 0 and no offsets."""
    if not tau and offsets is None:
        return probs
    log_frequencies = torch.log(torch.as_tensor(frequencies, dtype=torch.float32))
    shift = None if offsets is None else torch.as_tensor(offsets, dtype=torch.float32)
    return shifted_probabilities(torch.as_tensor(probs, dtype=torch.float32), tau, log_frequencies, shift).numpy()


@dataclass(frozen=True)
class DecisionSettings:
    """A classifier's decision rule as its settings give it (:func:`decision_settings`)."""

    tau: float
    """The τ decisions use until a validation chooses one: the setting, or 0 when τ is searched."""
    log_frequencies: torch.Tensor | None
    """:func:`class_log_frequencies` of the settings."""
    offsets: torch.Tensor | None
    """The class offsets ``[C]`` (float32), ``None`` = none."""
    search: DecisionSearch
    """The validation metric of the decisions: every τ of :data:`DECISION_TAUS` when τ is searched, else the one."""


def decision_settings(
    decision_tau: float | None,
    decision_offsets: Sequence[float] | None,
    selection_metric: str,
    class_frequencies: Sequence[float] | None,
    num_classes: int,
) -> DecisionSettings:
    """The decision rule of the model settings ``decision_tau`` (``None``: searched on validation),
    ``decision_offsets``, ``selection_metric`` and ``class_frequencies``; a :class:`MedlitError` names a bad one."""
    if decision_offsets is not None and len(decision_offsets) != num_classes:
        raise MedlitError(f"model.decision_offsets needs {num_classes} numbers, got {len(decision_offsets)}")
    offsets = None if decision_offsets is None else torch.as_tensor(decision_offsets, dtype=torch.float32)
    log_frequencies = class_log_frequencies(class_frequencies, num_classes, decision_tau)
    tau = 0.0 if decision_tau is None else float(decision_tau)
    taus = DECISION_TAUS if decision_tau is None else (tau,)
    return DecisionSettings(tau, log_frequencies, offsets, DecisionSearch(log_frequencies, taus, selection_metric))


# --- the rule chosen on an out-of-fold pool -----------------------------------------------------------------------
OFFSETS_RULE = "decision τ + class offsets"
"""The rule with class offsets fitted on top of the decision τ."""
TAU_RULE = "decision τ"
"""The rule with the decision τ alone."""


def tau_rule(metric: str, log_frequencies: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A rule for :func:`cross_fitted_decisions`: the offsets ``-tau * log f`` of the τ of :data:`DECISION_TAUS` that
    maximises ``metric`` on the items it is fitted on."""

    def fit(lp: np.ndarray, t: np.ndarray) -> np.ndarray:
        lp_t, f_t = torch.as_tensor(lp, dtype=torch.float32), torch.as_tensor(log_frequencies, dtype=torch.float32)
        return (
            -best_decision(decision_candidates(lp_t, torch.as_tensor(t), DECISION_TAUS, f_t), metric) * log_frequencies
        )

    return fit


def tau_and_offsets_rule(metric: str, log_frequencies: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A rule for :func:`cross_fitted_decisions`: class offsets fitted for ``metric`` on top of :func:`tau_rule`'s."""
    tau_offsets = tau_rule(metric, log_frequencies)
    return lambda lp, t: fit_class_offsets(lp, t, metric, tau_offsets(lp, t))


def _decision_rules(
    log_probs: np.ndarray,
    target: np.ndarray,
    groups: np.ndarray,
    log_frequencies: np.ndarray,
    metric: str,
    tau: float,
) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """The class offsets fitted on all the items on top of their decision ``tau`` (chosen on all of them), and both
    rules' cross-fitted scores (each group's items decided by the rule fitted on the other groups)."""
    rules = (
        (TAU_RULE, tau_rule(metric, log_frequencies)),
        (OFFSETS_RULE, tau_and_offsets_rule(metric, log_frequencies)),
    )
    cross_fitted = {}
    for name, fit in rules:
        predicted = cross_fitted_decisions(log_probs, target, groups, fit)
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(predicted), log_probs.shape[1]).float()
        cross_fitted[name] = decision_scores(one_hot, torch.as_tensor(target))
    # the offsets as the model adds them: on top of the τ shift
    residual = fit_class_offsets(log_probs, target, metric, -tau * log_frequencies) + tau * log_frequencies
    use_offsets = cross_fitted[OFFSETS_RULE][metric] > cross_fitted[TAU_RULE][metric]
    values = {"decision_tau": tau, "decision_offsets": [round(float(v), 6) for v in residual] if use_offsets else None}
    return values, cross_fitted


@dataclass(frozen=True)
class PoolChoice:
    """The decision rule chosen on an out-of-fold pool, and what chose it."""

    values: dict[str, Any]
    """``decision_tau`` and ``decision_offsets`` (``None`` unless the offsets won), as the model takes them."""
    rule: str
    """:data:`TAU_RULE` or :data:`OFFSETS_RULE`."""
    candidates: dict[float, dict[str, float]]
    """:func:`decision_scores` of the pool at each τ of :data:`DECISION_TAUS` (smallest ``|τ|`` first)."""
    cross_fitted: dict[str, dict[str, float]]
    """Each rule's :func:`decision_scores` with each group decided by the rule fitted on the other groups."""


def choose_on_pool(
    probs: np.ndarray, target: np.ndarray, groups: np.ndarray, frequencies: Sequence[float], metric: str
) -> PoolChoice:
    """The decision rule of an out-of-fold pool (probabilities ``[N, C]`` before any τ; ``groups``: each item's
    fold): the τ of :data:`DECISION_TAUS` that maximises ``metric`` on the pool (ties: the smallest ``|τ|``), plus
    class offsets fitted on top of it only where they also score higher cross-fitted (each fold's items decided by a
    rule fitted on the other folds' items alone)."""
    log_probs = torch.as_tensor(probs, dtype=torch.float32).clamp_min(torch.finfo(torch.float32).tiny).log()
    log_frequencies = torch.log(torch.as_tensor(frequencies, dtype=torch.float32))
    candidates = decision_candidates(log_probs, torch.as_tensor(target), DECISION_TAUS, log_frequencies)
    values, cross_fitted = _decision_rules(
        log_probs.numpy().astype(np.float64),
        target,
        groups,
        log_frequencies.numpy().astype(np.float64),
        metric,
        best_decision(candidates, metric),
    )
    rule = OFFSETS_RULE if values["decision_offsets"] is not None else TAU_RULE
    return PoolChoice(values, rule, candidates, cross_fitted)
