"""Properties of the RLMR advantage (recipe/rlmr/advantage.py), checked on random batches.

Each example is a batch of 1..10 groups of 2..16 samples, shuffled so groups interleave, with
scores drawn at magnitudes from 1e-3 to 1e6 and frequent ties.
"""

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

from recipe.rlmr.advantage import (
    compute_rlmr_outcome_advantage,
    group_penalty,
    rlmr_penalized_scores,
)
from recipe.rlmr.schema import ConfigError, RLMRConfig
from recipe.rlmr.verdicts import rlmr_estimator, supply_verdicts

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def groups(draw, min_size=2, max_size=16, verdicts=None):
    """One group: (scores, constraints_ok). ``verdicts`` forces all-True/all-False when given."""
    n = draw(st.integers(min_size, max_size))
    scale = draw(st.sampled_from([1e-3, 1.0, 10.0, 1e3, 1e6]))
    offset = draw(st.floats(-10, 10)) * scale
    if draw(st.booleans()):  # ties: draw from a small pool of values
        pool = draw(st.lists(st.floats(-1, 1), min_size=1, max_size=3))
        raw = draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n))
    else:
        raw = draw(st.lists(st.floats(-1, 1), min_size=n, max_size=n))
    scores = [offset + scale * x for x in raw]
    ok = [verdicts] * n if verdicts is not None else draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return scores, ok


@st.composite
def batches(draw, verdicts=None, min_size=2):
    """Interleaved batch: (scores [B], ok [B], index [B] of str uids, response length T, lengths [B])."""
    drawn = draw(st.lists(groups(min_size=min_size, verdicts=verdicts), min_size=1, max_size=10))
    rows = [
        (score, ok, f"uid{g}") for g, (scores, oks) in enumerate(drawn) for score, ok in zip(scores, oks, strict=False)
    ]
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    width = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(1, width), min_size=len(rows), max_size=len(rows)))
    scores = np.array([r[0] for r in rows])
    ok = np.array([r[1] for r in rows])
    index = np.array([r[2] for r in rows], dtype=object)
    return scores, ok, index, width, lengths


def token_tensors(scores, width, lengths, dtype=torch.float64):
    """verl layout: the outcome reward sits on the last response token; mask covers the response."""
    batch = len(scores)
    mask = torch.zeros(batch, width, dtype=torch.int64)
    rewards = torch.zeros(batch, width, dtype=dtype)
    for i, length in enumerate(lengths):
        mask[i, :length] = 1
        rewards[i, length - 1] = scores[i]
    return rewards, mask


def per_sample(advantages, lengths):
    return torch.stack([advantages[i, 0] for i in range(len(lengths))]).double().numpy()


def reference_group(scores, ok, gamma):
    """Plain-Python transcription of the paper's rule for one group, for cross-checking."""
    n, violators = len(scores), [s for s, o in zip(scores, ok, strict=False) if not o]
    k = len(violators)
    if k in (0, n):
        return list(scores), 0.0
    delta = max(0.0, (n * max(violators) + n * gamma - sum(scores)) / (n - k))
    return [s - (0.0 if o else delta) for s, o in zip(scores, ok, strict=False)], delta


def tolerance(scores):
    return 1e-12 * (1.0 + float(np.max(np.abs(scores)))) * 16


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.01, 10.0), norm=st.booleans())
def test_every_violator_in_a_mixed_group_ends_negative_and_gamma_below_the_mean(batch, gamma, norm):
    scores, ok, index, width, lengths = batch
    rewards, mask = token_tensors(scores, width, lengths)
    penalized = rlmr_penalized_scores(rewards.sum(-1), ok, index, gamma).numpy()
    advantages, returns = compute_rlmr_outcome_advantage(
        rewards, mask, index, ok, RLMRConfig(gamma=gamma), norm_adv_by_std_in_grpo=norm
    )
    adv = per_sample(advantages, lengths)
    tol = tolerance(scores)
    for uid in set(index):
        rows = index == uid
        n, k = rows.sum(), (~ok[rows]).sum()
        if 0 < k < n:
            group_mean = penalized[rows].mean()
            assert np.all(penalized[rows & ~ok] <= group_mean - gamma + tol)
            assert np.all(adv[rows & ~ok] < 0), (scores[rows], ok[rows], adv[rows])
    assert torch.equal(advantages, returns)


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.0, 10.0))
def test_penalty_matches_the_paper_rule_group_by_group(batch, gamma):
    scores, ok, index, _, _ = batch
    penalty = group_penalty(torch.tensor(scores), ok, index, gamma)
    for uid in set(index):
        rows = np.flatnonzero(index == uid)
        expected, expected_delta = reference_group(scores[rows].tolist(), ok[rows].tolist(), gamma)
        np.testing.assert_allclose(penalty.penalized.numpy()[rows], expected, rtol=1e-12, atol=tolerance(scores))
        group_id = int(penalty.group[rows[0]])
        assert math.isclose(float(penalty.delta[group_id]), expected_delta, rel_tol=1e-9, abs_tol=tolerance(scores))


def bisect_penalty(scores, ok, gamma, iterations=200):
    """The smallest delta >= 0 that puts the best violator gamma below the penalised mean, found by
    bisection on the margin itself (no closed form): an oracle independent of the implementation."""
    scores, violates = np.asarray(scores, dtype=np.float64), ~np.asarray(ok, dtype=bool)

    def shortfall(delta):  # > 0 while the best violator is still above mean(r') - gamma
        penalized = scores - delta * violates
        return penalized[violates].max() - (penalized.mean() - gamma)

    if shortfall(0.0) <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while shortfall(high) > 0:
        high *= 2.0
    for _ in range(iterations):
        middle = (low + high) / 2
        low, high = (middle, high) if shortfall(middle) > 0 else (low, middle)
    return high


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.0, 10.0))
def test_delta_equals_the_bisection_oracle(batch, gamma):
    scores, ok, index, _, _ = batch
    penalty = group_penalty(torch.tensor(scores), ok, index, gamma)
    for uid in set(index):
        rows = np.flatnonzero(index == uid)
        delta = float(penalty.delta[int(penalty.group[rows[0]])])
        k, n = int((~ok[rows]).sum()), len(rows)
        if 0 < k < n:
            scale = 1.0 + float(np.abs(scores[rows]).max()) + gamma
            assert math.isclose(
                delta, bisect_penalty(scores[rows], ok[rows], gamma), rel_tol=1e-9, abs_tol=1e-9 * scale
            )
        else:
            assert delta == 0.0


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.01, 10.0))
def test_delta_is_the_smallest_penalty_that_keeps_the_margin(batch, gamma):
    """Where delta > 0 the best violator sits exactly gamma below the mean: no over-penalising."""
    scores, ok, index, _, _ = batch
    penalty = group_penalty(torch.tensor(scores), ok, index, gamma)
    penalized = penalty.penalized.numpy()
    for uid in set(index):
        rows = index == uid
        group_id = int(penalty.group[np.flatnonzero(rows)[0]])
        if float(penalty.delta[group_id]) > 0:
            best_violator = penalized[rows & ~ok].max()
            assert math.isclose(best_violator, penalized[rows].mean() - gamma, rel_tol=1e-9, abs_tol=tolerance(scores))


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.01, 10.0), norm=st.booleans())
def test_compliant_samples_keep_their_order(batch, gamma, norm):
    scores, ok, index, width, lengths = batch
    rewards, mask = token_tensors(scores, width, lengths)
    adv = per_sample(
        compute_rlmr_outcome_advantage(rewards, mask, index, ok, RLMRConfig(gamma=gamma), norm_adv_by_std_in_grpo=norm)[
            0
        ],
        lengths,
    )
    for uid in set(index):
        rows = np.flatnonzero((index == uid) & ok)
        for i in rows:
            for j in rows:
                if scores[i] > scores[j]:
                    assert adv[i] >= adv[j]
                elif scores[i] == scores[j]:
                    assert adv[i] == pytest.approx(adv[j], abs=1e-9)


@SETTINGS
@given(batch=batches(verdicts=True, min_size=1), norm=st.booleans())
def test_all_compliant_equals_verl_grpo(batch, norm):
    """k = 0 everywhere (singleton groups included): verl's own GRPO on the same inputs.

    float64 inputs, so both run at full precision: in float32, verl's GRPO turns the rounding
    error of an all-tied group into noise of size ulp/epsilon, which is not a property to match.
    """
    scores, ok, index, width, lengths = batch
    rewards, mask = token_tensors(scores, width, lengths)
    ours, _ = compute_rlmr_outcome_advantage(rewards, mask, index, ok, norm_adv_by_std_in_grpo=norm)
    verls, _ = compute_grpo_outcome_advantage(rewards.clone(), mask, index, norm_adv_by_std_in_grpo=norm)
    # All-tied groups have std 0, so rounding in either mean is divided by epsilon (1e-6).
    rounding = 64 * np.finfo(np.float64).eps * (1.0 + float(np.abs(scores).max()))
    torch.testing.assert_close(ours, verls, rtol=1e-7, atol=rounding / 1e-6 if norm else rounding)


def test_all_compliant_equals_verl_grpo_in_float32():
    generator = torch.Generator().manual_seed(0)
    rewards = torch.zeros(64, 5)
    rewards[:, -1] = torch.randn(64, generator=generator) * 3
    mask = torch.ones(64, 5, dtype=torch.int64)
    mask[::3, 3:] = 0
    index = np.repeat(np.arange(8), 8)
    ours, _ = compute_rlmr_outcome_advantage(rewards, mask, index, np.ones(64, dtype=bool))
    verls, _ = compute_grpo_outcome_advantage(rewards.clone(), mask, index)
    assert ours.dtype == verls.dtype == torch.float32
    torch.testing.assert_close(ours, verls)


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.01, 10.0), norm=st.booleans(), shift=st.floats(-1e3, 1e3))
def test_adding_a_constant_to_a_group_changes_nothing(batch, gamma, norm, shift):
    scores, ok, index, width, lengths = batch
    shifted = scores + np.where(index == index[0], shift, 0.0)  # shift one group only
    a, _ = compute_rlmr_outcome_advantage(
        *token_tensors(scores, width, lengths), index, ok, RLMRConfig(gamma=gamma), norm_adv_by_std_in_grpo=norm
    )
    b, _ = compute_rlmr_outcome_advantage(
        *token_tensors(shifted, width, lengths), index, ok, RLMRConfig(gamma=gamma), norm_adv_by_std_in_grpo=norm
    )
    magnitude = 1.0 if norm else 1.0 + float(np.abs(scores).max())
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9 * magnitude * (1 + abs(shift)))


@SETTINGS
@given(batch=batches(verdicts=False), gamma=st.floats(0.0, 10.0), norm=st.booleans())
def test_groups_where_everyone_violates_get_zero(batch, gamma, norm):
    scores, ok, index, width, lengths = batch
    advantages, _ = compute_rlmr_outcome_advantage(
        *token_tensors(scores, width, lengths), index, ok, RLMRConfig(gamma=gamma), norm_adv_by_std_in_grpo=norm
    )
    assert torch.count_nonzero(advantages) == 0


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.01, 10.0), norm=st.booleans())
def test_masked_tokens_are_zero_and_each_response_carries_one_value(batch, gamma, norm):
    scores, ok, index, width, lengths = batch
    rewards, mask = token_tensors(scores, width, lengths)
    advantages, _ = compute_rlmr_outcome_advantage(
        rewards, mask, index, ok, RLMRConfig(gamma=gamma), norm_adv_by_std_in_grpo=norm
    )
    assert torch.all(advantages[mask == 0] == 0)
    for i, length in enumerate(lengths):
        assert torch.all(advantages[i, :length] == advantages[i, 0])


def test_hand_computed_group():
    # n=3, violator scored 2 between compliant 1 and 3: delta = (3*2 + 3*1 - 6) / 2 = 1.5
    scores = torch.tensor([1.0, 2.0, 3.0])
    penalized = rlmr_penalized_scores(scores, [True, False, True], ["a", "a", "a"], gamma=1.0)
    torch.testing.assert_close(penalized, torch.tensor([1.0, 0.5, 3.0], dtype=torch.float64))
    rewards = torch.zeros(3, 2)
    rewards[:, -1] = scores
    adv, _ = compute_rlmr_outcome_advantage(
        rewards, torch.ones(3, 2), np.array(["a"] * 3, dtype=object), [1, 0, 1], norm_adv_by_std_in_grpo=False
    )
    torch.testing.assert_close(adv[:, 0], torch.tensor([-0.5, -1.0, 1.5]))


def test_a_violator_far_below_is_not_penalised():
    penalized = rlmr_penalized_scores(torch.tensor([5.0, 6.0, -10.0]), [1, 1, 0], [7, 7, 7], gamma=1.0)
    torch.testing.assert_close(penalized, torch.tensor([5.0, 6.0, -10.0], dtype=torch.float64))


def test_epsilon_is_added_to_the_group_std():
    """[0, 10], the 10 violates, gamma 3: r' = [0, -6] (hand-computed above), centred [3, -3], std sqrt(18)."""
    rewards = torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    for epsilon in (0.0, 1.0):
        settings = RLMRConfig(gamma=3.0, epsilon=epsilon)
        adv, _ = compute_rlmr_outcome_advantage(rewards, torch.ones(2, 1), ["u", "u"], [1, 0], settings)
        expected = 3.0 / (math.sqrt(18.0) + epsilon)
        torch.testing.assert_close(adv[:, 0], torch.tensor([expected, -expected], dtype=torch.float64))


def test_the_registered_estimator_reads_verls_algorithm_section():
    """verl hands registered estimators only ``config``: gamma, epsilon and the std switch come from it."""
    config = OmegaConf.create({"norm_adv_by_std_in_grpo": False, "rlmr": {"gamma": 3.0, "epsilon": 1e-3}})
    rewards = torch.zeros(2, 1)
    rewards[:, 0] = torch.tensor([0.0, 10.0])
    # violator scored 10 vs compliant 0, gamma 3: delta = (2*10 + 2*3 - 10) / 1 = 16 -> r' = [0, -6], mean -3
    with supply_verdicts([True, False]):
        adv, _ = rlmr_estimator(rewards, torch.ones(2, 1), np.array(["u", "u"], dtype=object), config)
    torch.testing.assert_close(adv[:, 0], torch.tensor([3.0, -3.0]))


@pytest.mark.parametrize(
    "constraints_ok, message",
    [([1, 0], "3 samples"), ([1, 0, 2], "0/1"), ([True, None, False], "bool or 0/1"), (None, "needs constraints_ok")],
)
def test_bad_verdicts_are_refused(constraints_ok, message):
    with pytest.raises(ValueError, match=message):
        compute_rlmr_outcome_advantage(torch.ones(3, 2), torch.ones(3, 2), [0, 0, 0], constraints_ok)


def test_negative_gamma_is_refused():
    with pytest.raises(ConfigError, match=r"algorithm\.rlmr\.gamma: Input should be greater than or equal to 0"):
        RLMRConfig.from_algorithm({"rlmr": {"gamma": -1.0}})
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        group_penalty(torch.ones(2), [1, 0], [0, 0], gamma=-1.0)


@SETTINGS
@given(batch=batches(), gamma=st.floats(0.01, 10.0), data=st.data())
def test_groups_with_an_invalid_reward_get_zero_and_others_are_untouched(batch, gamma, data):
    scores, ok, index, width, lengths = batch
    valid = np.array(data.draw(st.lists(st.booleans(), min_size=len(scores), max_size=len(scores))))
    rewards, mask = token_tensors(scores, width, lengths)
    with_flags, _ = compute_rlmr_outcome_advantage(
        rewards, mask, index, ok, RLMRConfig(gamma=gamma), reward_valid=valid
    )
    without, _ = compute_rlmr_outcome_advantage(rewards, mask, index, ok, RLMRConfig(gamma=gamma))
    for uid in set(index):
        rows = index == uid
        expected = torch.zeros_like(without[rows]) if not valid[rows].all() else without[rows]
        torch.testing.assert_close(with_flags[rows], expected)


def _mode_config(mode, weight=1.0):
    return RLMRConfig.from_algorithm({"rlmr": {"gamma": 1.0, "mode": mode, "fixed_weight": weight}})


# group "a": a violator with the best writing score; group "b": everyone violates
MODE_SCORES = [10.0, 1.0, 2.0, 3.0, 5.0, 6.0]
MODE_OK = [0, 1, 1, 1, 0, 0]
MODE_INDEX = ["a", "a", "a", "a", "b", "b"]


def _mode_advantages(mode, weight=1.0, valid=None):
    rewards = torch.zeros(6, 1)
    rewards[:, 0] = torch.tensor(MODE_SCORES)
    adv, _ = compute_rlmr_outcome_advantage(
        rewards, torch.ones(6, 1), MODE_INDEX, MODE_OK, _mode_config(mode, weight), reward_valid=valid
    )
    return adv[:, 0]


def test_modes_give_the_advantages_they_promise():
    rlmr = _mode_advantages("rlmr")
    assert rlmr[0] < 0 and torch.all(rlmr[4:] == 0)  # RLMR: the well-written violator is pushed down
    writing = _mode_advantages("writing_only")
    assert writing[0] == writing[:4].max() > 0 and writing[4] < 0 < writing[5]  # verdicts ignored
    verifier = _mode_advantages("verifier_only")
    assert verifier[0] < 0 and torch.allclose(verifier[1:4], verifier[1].expand(3)) and torch.all(verifier[4:] == 0)
    fixed = _mode_advantages("fixed_weight", weight=1.0)
    assert fixed[0] > 0  # a fixed weight cannot promise anything: the violator keeps a positive advantage
    assert _mode_advantages("fixed_weight", weight=100.0)[0] < 0  # unless the weight dwarfs the score range
    torch.testing.assert_close(_mode_advantages("writing_only"), get_grpo(MODE_SCORES, MODE_INDEX))


def get_grpo(scores, index):
    rewards = torch.zeros(len(scores), 1)
    rewards[:, 0] = torch.tensor(scores)
    return compute_grpo_outcome_advantage(rewards, torch.ones(len(scores), 1), np.array(index, dtype=object))[0][:, 0]


@pytest.mark.parametrize("mode", ["rlmr", "writing_only", "verifier_only", "fixed_weight"])
def test_every_mode_silences_groups_with_an_invalid_reward(mode):
    advantages = _mode_advantages(mode, valid=[1, 0, 1, 1, 1, 1])
    assert torch.all(advantages[:4] == 0)


def test_unknown_mode_is_refused():
    with pytest.raises(ConfigError, match=r"algorithm\.rlmr\.mode: Input should be 'rlmr'"):
        _mode_advantages("vibes")
