"""mode=gdpo against verl's own GDPO estimator, and non-finite scores never becoming advantages.

The batches are those of tests/test_advantage.py (interleaved groups, scores from 1e-3 to 1e6 in
magnitude, frequent ties, ragged response lengths).
"""

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from verl.trainer.ppo.core_algos import compute_gdpo_outcome_advantage

from recipe.rlmr.advantage import compute_rlmr_outcome_advantage
from recipe.rlmr.metrics import advantage_metrics
from recipe.rlmr.schema import MODES, RLMRConfig

_spec = importlib.util.spec_from_file_location("_advantage_cases", Path(__file__).with_name("test_advantage.py"))
_cases = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _cases
_spec.loader.exec_module(_cases)
batches, token_tensors, per_sample = _cases.batches, _cases.token_tensors, _cases.per_sample

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def verl_gdpo(scores, ok, index, width, lengths, weights, norm):
    """verl's ``compute_gdpo_outcome_advantage`` fed the two components as per-sample reward keys."""
    rewards, mask = token_tensors(scores, width, lengths, dtype=torch.float32)
    prompt_len = 2
    attention = torch.cat([torch.ones(len(scores), prompt_len, dtype=torch.int64), mask], dim=1)
    batch = {"prompts": torch.zeros(len(scores), prompt_len, dtype=torch.int64), "attention_mask": attention}
    non_tensor = {"writing": np.asarray(scores, dtype=np.float64), "verdict": np.asarray(ok, dtype=np.float64)}
    config = {"gdpo_reward_keys": ["writing", "verdict"], "gdpo_reward_weights": list(weights)}
    adv, _ = compute_gdpo_outcome_advantage(
        token_level_rewards=rewards,
        response_mask=mask,
        index=index,
        norm_adv_by_std_in_grpo=norm,
        config=config,
        non_tensor_batch=non_tensor,
        batch=batch,
    )
    return adv, mask


def float32_is_enough(scores, ok, index) -> bool:
    """verl's GDPO runs in float32 and its whitening divides by sqrt(var + 1e-8): compare only batches where
    float32 resolves every group's spread and the summed signal is not ~0 (whitening would amplify round-off)."""
    if np.abs(scores).max() > 1e3:  # float32 mean of tied scores is off by an ulp, which norm=False keeps
        return False
    mixed = False
    for uid in set(index.tolist()):
        group, verdicts = scores[index == uid], ok[index == uid]
        spread = float(group.std())
        if spread != 0 and spread < 1e-3 * max(1.0, float(np.abs(group).max())):
            return False
        mixed |= 0 < int(verdicts.sum()) < len(verdicts)
    return mixed


def ours(scores, ok, index, width, lengths, weights, norm, valid=None):
    rewards, mask = token_tensors(scores, width, lengths)
    cfg = RLMRConfig(mode="gdpo", gdpo_weights=list(weights))
    adv, _ = compute_rlmr_outcome_advantage(rewards, mask, index, ok, cfg, norm, reward_valid=valid)
    return adv, mask


@st.composite
def float32_batches(draw):
    """Batches whose scores float32 resolves (|r| <= 100, ties exact) with at least one mixed-verdict group."""
    rows = []
    for g in range(draw(st.integers(1, 8))):
        n = draw(st.integers(2, 12))
        if draw(st.booleans()):
            scores = [draw(st.integers(-400, 400)) / 4] * n  # dyadic: float32 sums of ties are exact
        else:
            scores = draw(st.lists(st.floats(-100, 100), min_size=n, max_size=n))
        ok = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        if g == 0:
            ok[0], ok[-1] = True, False
        rows += [(s, o, f"uid{g}") for s, o in zip(scores, ok, strict=True)]
    rows = [rows[i] for i in draw(st.permutations(range(len(rows))))]
    width = draw(st.integers(1, 6))
    lengths = draw(st.lists(st.integers(1, width), min_size=len(rows), max_size=len(rows)))
    scores = np.array([r[0] for r in rows])
    return scores, np.array([r[1] for r in rows]), np.array([r[2] for r in rows], dtype=object), width, lengths


@SETTINGS
@given(
    batch=float32_batches(),
    norm=st.booleans(),
    weights=st.tuples(st.sampled_from([0.5, 1.0, 2.0]), st.sampled_from([0.5, 1.0, 3.0])),
)
def test_gdpo_equals_verls_gdpo_fed_the_same_two_rewards(batch, norm, weights):
    scores, ok, index, width, lengths = batch
    assume(float32_is_enough(scores, ok, index))
    expected, mask = verl_gdpo(scores, ok, index, width, lengths, weights, norm)
    got, _ = ours(scores, ok, index, width, lengths, weights, norm)
    assume(float(mask.sum()) > 1)
    # verl's float32 per-group std (eps 1e-6) vs our float64: compare relative to the whitened scale (~1)
    assert torch.allclose(got.float(), expected, atol=2e-3, rtol=2e-3), (got, expected)


def test_gdpo_can_leave_a_violator_positive_where_rlmr_cannot():
    """k = n - 1: the verdict term of a violator is only -1/sqrt(n); a top writing score outweighs it."""
    scores = np.array([10.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    ok = np.array([False, False, False, True, False, False, False, False])  # 1 compliant, 7 violators
    ok[3] = True
    index = np.array(["a"] * 4 + ["b"] * 4, dtype=object)
    ok[4:] = [True, True, False, False]
    lengths = [3] * 8
    gdpo, _ = ours(scores, ok, index, 3, lengths, (1.0, 1.0), True)
    assert per_sample(gdpo, lengths)[0] > 0  # the well-written violator of group a is pushed up
    rewards, mask = token_tensors(scores, 3, lengths)
    rlmr, _ = compute_rlmr_outcome_advantage(rewards, mask, index, ok, RLMRConfig(mode="rlmr"))
    assert per_sample(rlmr, lengths)[0] < 0


def _with_poison(batch, data):
    scores, ok, index, width, lengths = batch
    scores = scores.astype(np.float64).copy()
    victim = data.draw(st.integers(0, len(scores) - 1))
    scores[victim] = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    return scores, ok, index, width, lengths, victim


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(), data=st.data(), mode=st.sampled_from(MODES), norm=st.booleans())
def test_a_nonfinite_score_silences_its_group_and_nothing_else(batch, data, mode, norm):
    scores, ok, index, width, lengths, victim = _with_poison(batch, data)
    rewards, mask = token_tensors(scores, width, lengths)
    cfg = RLMRConfig(mode=mode)
    adv, returns = compute_rlmr_outcome_advantage(rewards, mask, index, ok, cfg, norm)
    assert torch.isfinite(adv).all() and torch.isfinite(returns).all()
    sample = per_sample(adv, lengths)
    in_group = index == index[victim]
    assert np.all(sample[in_group] == 0)
    if mode != "gdpo":  # group-local modes: the other groups are exactly what they are without the poisoned one
        keep = ~in_group
        if keep.any():
            r2, m2 = token_tensors(scores[keep], width, [lengths[i] for i in np.flatnonzero(keep)])
            clean, _ = compute_rlmr_outcome_advantage(r2, m2, index[keep], ok[keep], cfg, norm)
            assert np.allclose(sample[keep], per_sample(clean, list(np.asarray(lengths)[keep])))


def test_nonfinite_scores_are_counted_by_the_step_metrics():
    scores = np.array([1.0, math.nan, 0.5, 0.2, math.inf, 0.1])
    ok = np.array([True, False, True, False, True, False])
    index = np.array(["a", "a", "b", "b", "c", "c"], dtype=object)
    lengths = [2] * 6
    rewards, mask = token_tensors(scores, 2, lengths)
    adv, _ = compute_rlmr_outcome_advantage(rewards, mask, index, ok, RLMRConfig())
    metrics = advantage_metrics(rewards, adv, mask, ok, index, 1.0)
    assert metrics["rlmr/nonfinite_scores"] == 2
    assert metrics["rlmr/groups_nonfinite"] == 2
    assert metrics["rlmr/adv_nonfinite"] == 0
    assert metrics["rlmr/groups_mixed"] == 1  # only group b counts; a and c are silenced
    assert math.isfinite(metrics["rlmr/delta_mean"])
