"""Decision rules: the validation τ search, the class offsets, cross-fitting and the out-of-fold choice, each scored
again with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score

from common.errors import MedlitError
from lesion_cls.decisions import (
    CLASS_OFFSET_GRID,
    DECISION_TAUS,
    OFFSETS_RULE,
    SELECTION_METRICS,
    TAU_RULE,
    DecisionSearch,
    choose_on_pool,
    class_log_frequencies,
    cross_fitted_decisions,
    decided_probabilities,
    decision_settings,
    fit_class_offsets,
)

FREQUENCIES = [0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02]


def _over_balanced(seed: int, n: int = 700) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HAM-like class frequencies and logits pushed towards the rare classes, as a balanced sampler leaves them."""
    rng = np.random.default_rng(seed)
    frequencies = np.array([0.11, 0.67, 0.05, 0.03, 0.11, 0.01, 0.02])
    target = rng.choice(7, size=n, p=frequencies)
    logits = rng.normal(0.0, 1.0, (n, 7))
    logits[np.arange(n), target] += 1.5
    return logits - 0.8 * np.log(frequencies), target, frequencies


@pytest.mark.parametrize("selection_metric", SELECTION_METRICS)
def test_decision_search_scores_every_tau_as_sklearn(selection_metric: str) -> None:
    logits, target, frequencies = _over_balanced(0)
    log_f = torch.log(torch.tensor(frequencies, dtype=torch.float32))
    search = DecisionSearch(log_f, selection_metric=selection_metric)
    for rows in np.array_split(np.arange(len(target)), 6):  # one update per validation batch
        search.update(torch.tensor(logits[rows], dtype=torch.float32), torch.tensor(target[rows]))
    chosen = search.compute()
    by_sklearn = {}
    for tau in DECISION_TAUS:
        pred = (logits - tau * log_f.double().numpy()).argmax(axis=1)
        acc, bal_acc = accuracy_score(target, pred), balanced_accuracy_score(target, pred)
        by_sklearn[tau] = {"acc": acc, "bal_acc": bal_acc, "acc_bal_mean": (acc + bal_acc) / 2}
    best = max(scores[selection_metric] for scores in by_sklearn.values())
    assert by_sklearn[chosen["decision_tau"]][selection_metric] == pytest.approx(best, abs=1e-6)
    for name in ("acc", "bal_acc", "acc_bal_mean"):
        assert chosen[name] == pytest.approx(by_sklearn[chosen["decision_tau"]][name], abs=1e-6)
    # shifting decisions changes the scores: the search is not a no-op on these logits
    assert chosen[selection_metric] > by_sklearn[0.0][selection_metric] + 0.01


def test_decision_search_directions_and_ties() -> None:
    logits, target, frequencies = _over_balanced(1)
    log_f = torch.log(torch.tensor(frequencies, dtype=torch.float32))
    chosen = {}
    for metric in ("acc", "bal_acc"):
        search = DecisionSearch(log_f, selection_metric=metric)
        search.update(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
        chosen[metric] = search.compute()["decision_tau"]
    # accuracy favours the common classes more than balanced accuracy does
    assert chosen["acc"] < chosen["bal_acc"]
    # decisions that no tau in the grid can change: every tau ties, the smallest |tau| (0) wins
    certain = torch.nn.functional.one_hot(torch.tensor(target), 7).float() * 100.0
    search = DecisionSearch(log_f)
    search.update(certain, torch.tensor(target))
    assert search.compute() == {"acc": 1.0, "bal_acc": 1.0, "f1_macro": 1.0, "acc_bal_mean": 1.0, "decision_tau": 0.0}
    # one candidate: a plain metric of the decisions at that tau
    fixed = DecisionSearch(log_f, taus=(0.5,))
    fixed.update(torch.tensor(logits, dtype=torch.float32), torch.tensor(target))
    pred = (logits - 0.5 * log_f.double().numpy()).argmax(axis=1)
    result = fixed.compute()
    assert result["decision_tau"] == 0.5
    assert result["bal_acc"] == pytest.approx(balanced_accuracy_score(target, pred), abs=1e-6)


def _sklearn_score(metric: str, target: np.ndarray, predicted: np.ndarray) -> float:
    acc, bal = accuracy_score(target, predicted), balanced_accuracy_score(target, predicted)
    return {"acc": acc, "bal_acc": bal, "acc_bal_mean": (acc + bal) / 2}[metric]


@pytest.mark.parametrize("metric", SELECTION_METRICS)
def test_class_offsets_are_a_coordinate_optimum_scored_as_sklearn(metric: str) -> None:
    """No single class moved to any other grid value scores higher (re-scored with scikit-learn), the score is at
    least that of the start, and the most frequent class keeps its start value."""
    logits, target, frequencies = _over_balanced(3, n=600)
    log_p = torch.tensor(logits).log_softmax(dim=1).numpy()
    start = 0.25 * np.log(frequencies)  # a decision τ of -0.25, as the out-of-fold pool starts from
    offsets = fit_class_offsets(log_p, target, metric, start)
    fitted = _sklearn_score(metric, target, (log_p + offsets).argmax(axis=1))
    assert fitted >= _sklearn_score(metric, target, (log_p + start).argmax(axis=1))
    assert offsets[1] == start[1]  # NV, the most frequent class here
    assert not np.allclose(offsets, start)  # the fit moved something on these logits
    for c in (0, 2, 3, 4, 5, 6):
        for value in CLASS_OFFSET_GRID[::4]:
            moved = offsets.copy()
            moved[c] = value
            assert _sklearn_score(metric, target, (log_p + moved).argmax(axis=1)) <= fitted + 1e-12, (c, value)


def test_class_offsets_find_a_class_the_network_underrates() -> None:
    """A class whose logits are lowered by 2 for every image: balanced accuracy gets it back with an offset near 2."""
    rng = np.random.default_rng(4)
    target = rng.choice(7, size=2000, p=[0.2, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1])
    logits = rng.normal(0.0, 1.0, (2000, 7))
    logits[np.arange(2000), target] += 2.0
    logits[:, 5] -= 2.0
    log_p = torch.tensor(logits).log_softmax(dim=1).numpy()
    offsets = fit_class_offsets(log_p, target, "bal_acc", np.zeros(7))
    assert 1.2 < offsets[5] - np.median(offsets) < 2.8
    plain = balanced_accuracy_score(target, log_p.argmax(axis=1))
    assert balanced_accuracy_score(target, (log_p + offsets).argmax(axis=1)) > plain + 0.05


def test_cross_fitted_decisions_decide_each_group_by_a_fit_on_the_others() -> None:
    rng = np.random.default_rng(5)
    log_p, target = rng.normal(size=(30, 7)), rng.integers(0, 7, 30)
    groups = np.repeat([2, 0, 1], 10)
    seen: list[np.ndarray] = []

    def fit(lp: np.ndarray, t: np.ndarray) -> np.ndarray:  # a different shift for every fit, by what it saw
        seen.append(lp)
        offsets = np.zeros(7)
        offsets[len(seen) % 7] = 5.0
        return offsets

    predicted = cross_fitted_decisions(log_p, target, groups, fit)
    for k, group in enumerate(np.unique(groups)):
        held = groups == group
        np.testing.assert_array_equal(seen[k], log_p[~held])  # fitted without the group's own items
        shift = np.zeros(7)
        shift[(k + 1) % 7] = 5.0
        np.testing.assert_array_equal(predicted[held], (log_p[held] + shift).argmax(axis=1))


def test_class_log_frequencies_are_normalised_and_checked() -> None:
    assert class_log_frequencies(None, 7, 0.0) is None  # no τ: no frequencies needed
    torch.testing.assert_close(class_log_frequencies([2.0, 6.0], 2, 0.5), torch.log(torch.tensor([0.25, 0.75])))
    with pytest.raises(MedlitError, match=r"decision_tau needs model.class_frequencies \(7 numbers"):
        class_log_frequencies([1.0, 2.0], 7, None)
    with pytest.raises(MedlitError, match=r"class_frequencies must be positive .*got \[1.0, 0.0\]"):
        class_log_frequencies([1.0, 0.0], 2, 1.0)


def test_decision_settings_search_every_tau_only_when_tau_is_null() -> None:
    searched = decision_settings(None, None, "acc", FREQUENCIES, 7)
    assert searched.tau == 0.0 and searched.search.taus == list(DECISION_TAUS) and searched.offsets is None
    assert searched.search.selection_metric == "acc"
    fixed = decision_settings(-0.25, [0.5] * 7, "bal_acc", FREQUENCIES, 7)
    assert fixed.tau == -0.25 and fixed.search.taus == [-0.25]
    assert fixed.offsets.dtype == torch.float32 and fixed.offsets.tolist() == [0.5] * 7
    torch.testing.assert_close(fixed.log_frequencies, torch.log(torch.tensor(FREQUENCIES) / sum(FREQUENCIES)))
    with pytest.raises(MedlitError, match="decision_offsets needs 7 numbers, got 2"):
        decision_settings(0.0, [1.0, 2.0], "bal_acc", None, 7)


def test_decided_probabilities_are_the_shifted_softmax() -> None:
    rng = np.random.default_rng(6)
    probs = torch.tensor(rng.normal(size=(5, 7))).softmax(dim=1).numpy()
    offsets = [0.3, 0.0, -0.2, 0.5, 0.1, 1.5, -1.0]
    decided = decided_probabilities(probs, 0.5, FREQUENCIES, offsets)
    by_hand = np.exp(np.log(probs) - 0.5 * np.log(FREQUENCIES) + offsets)
    np.testing.assert_allclose(decided, by_hand / by_hand.sum(axis=1, keepdims=True), rtol=1e-5)
    assert decided.dtype == np.float32  # as the model shifts them
    assert decided_probabilities(probs, 0.0, FREQUENCIES) is probs  # no τ, no offsets: as they are


def _pool(seed: int, n: int = 900) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Out-of-fold probabilities of three folds whose network underrates DF (class 5) on every image."""
    logits, target, _ = _over_balanced(seed, n)
    logits[:, 5] -= 2.0
    return torch.tensor(logits).softmax(dim=1).numpy(), target, np.arange(n) % 3


def test_the_pool_tau_is_the_first_best_candidate_scored_as_sklearn() -> None:
    probs, target, groups = _pool(7)
    choice = choose_on_pool(probs, target, groups, FREQUENCIES, "bal_acc")
    assert list(choice.candidates) == sorted(DECISION_TAUS, key=abs)  # smallest shift first: it wins ties
    log_f = np.log(FREQUENCIES)
    for tau, scores in choice.candidates.items():
        predicted = (np.log(probs) - tau * log_f).argmax(axis=1)
        assert scores["bal_acc"] == pytest.approx(balanced_accuracy_score(target, predicted), abs=1e-6), tau
        assert scores["acc"] == pytest.approx(accuracy_score(target, predicted), abs=1e-6), tau
    best = max(scores["bal_acc"] for scores in choice.candidates.values())
    first_best = next(tau for tau, scores in choice.candidates.items() if scores["bal_acc"] == best)
    assert choice.values["decision_tau"] == first_best


def test_the_pool_takes_class_offsets_only_when_they_win_cross_fitted() -> None:
    probs, target, groups = _pool(8)
    choice = choose_on_pool(probs, target, groups, FREQUENCIES, "bal_acc")
    assert set(choice.cross_fitted) == {TAU_RULE, OFFSETS_RULE}
    assert choice.cross_fitted[OFFSETS_RULE]["bal_acc"] > choice.cross_fitted[TAU_RULE]["bal_acc"]
    assert choice.rule == OFFSETS_RULE and len(choice.values["decision_offsets"]) == 7
    tau, offsets = choice.values["decision_tau"], np.array(choice.values["decision_offsets"])
    assert offsets[5] > 1.0  # DF's lowered logits are given back
    log_p, log_f = np.log(probs), np.log(FREQUENCIES)
    with_offsets = balanced_accuracy_score(target, (log_p - tau * log_f + offsets).argmax(axis=1))
    assert with_offsets > balanced_accuracy_score(target, (log_p - tau * log_f).argmax(axis=1))
    # a network that needs no offsets: the τ alone is kept unless offsets also win on folds they were not fitted on
    logits, target, _ = _over_balanced(9, 900)
    plain = choose_on_pool(torch.tensor(logits).softmax(dim=1).numpy(), target, groups, FREQUENCIES, "acc")
    offsets_won = plain.cross_fitted[OFFSETS_RULE]["acc"] > plain.cross_fitted[TAU_RULE]["acc"]
    assert (plain.rule == OFFSETS_RULE) == offsets_won
    assert (plain.values["decision_offsets"] is None) == (plain.rule == TAU_RULE)
