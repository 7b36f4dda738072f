"""``algorithm.rlmr.gamma_mode=relative``: the margin in units of the group's compliant-score spread (issue 31).

Properties on random groups: the guarantee (every violator of a mixed group negative, with and without
std normalisation, at least gamma * s_g below the penalised mean), the penalty equal to a plain-Python
oracle of the documented rule, scale invariance of the std-normalised advantages (which the absolute
margin lacks), and the degenerate groups (one compliant answer, compliant answers all equal, all equal).
"""

import statistics

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recipe.rlmr.advantage import compute_rlmr_outcome_advantage, group_penalty
from recipe.rlmr.schema import RLMRConfig

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mixed_batches(draw):
    """1..6 groups of 2..12 samples, each with at least one violator and one compliant answer, interleaved."""
    rows = []
    for g in range(draw(st.integers(1, 6))):
        n = draw(st.integers(2, 12))
        scale = draw(st.sampled_from([1e-2, 1.0, 100.0]))
        unit = st.floats(-1, 1).map(lambda x: round(x, 6))  # RM scores, not 1e-300 (whose squares underflow)
        pool = draw(st.lists(unit, min_size=1, max_size=3))
        values = st.sampled_from(pool) if draw(st.booleans()) else unit
        scores = [scale * x for x in draw(st.lists(values, min_size=n, max_size=n))]
        ok = draw(st.lists(st.booleans(), min_size=n - 2, max_size=n - 2)) + [True, False]
        rows += [(s, o, f"g{g}") for s, o in zip(scores, ok, strict=True)]
    order = draw(st.permutations(range(len(rows))))
    rows = [rows[i] for i in order]
    return (
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows], dtype=object),
    )


def oracle_unit(scores: list[float], ok: list[bool]) -> float:
    """s_g as docs/config.md states it, in plain Python."""
    compliant = [s for s, o in zip(scores, ok, strict=True) if o]
    floor = 1e-9 * max(abs(s) for s in scores)  # round-off of equal scores is no spread
    if len(compliant) >= 2 and statistics.stdev(compliant) > floor:
        return statistics.stdev(compliant)
    if len(scores) >= 2 and statistics.stdev(scores) > floor:
        return statistics.stdev(scores)
    return 1.0


def advantages(scores, ok, index, gamma, by_std=True, mode="relative", epsilon=1e-6):
    rewards = torch.tensor(scores, dtype=torch.float64)[:, None]
    settings_ = RLMRConfig(gamma=gamma, gamma_mode=mode, epsilon=epsilon)
    adv, _ = compute_rlmr_outcome_advantage(rewards, torch.ones_like(rewards), index, ok, settings_, by_std)
    return adv[:, 0].numpy()


@SETTINGS
@given(batch=mixed_batches(), gamma=st.sampled_from([0.1, 0.5, 1.0, 3.0]), by_std=st.booleans())
def test_every_violator_ends_gamma_spreads_below_the_mean_and_negative(batch, gamma, by_std):
    scores, ok, index = batch
    penalty = group_penalty(torch.tensor(scores), ok, index, gamma, "relative")
    penalized = penalty.penalized.numpy()
    for g in np.unique(index):
        members = index == g
        unit = oracle_unit(scores[members].tolist(), ok[members].tolist())
        mean = penalized[members].mean()
        worst = penalized[members & ~ok].max()
        assert worst <= mean - gamma * unit + 1e-9 * max(1.0, np.abs(scores[members]).max())
        # the penalty is the documented rule's, from the oracle's unit
        n, k = members.sum(), (members & ~ok).sum()
        expected = max(0.0, (n * scores[members & ~ok].max() + n * gamma * unit - scores[members].sum()) / (n - k))
        group_id = penalty.group[np.flatnonzero(members)[0]]
        assert float(penalty.delta[group_id]) == pytest.approx(expected, rel=1e-9, abs=1e-12)
    adv = advantages(scores, ok, index, gamma, by_std)
    assert (adv[~ok] < 0).all()


@SETTINGS
@given(batch=mixed_batches(), gamma=st.sampled_from([0.1, 1.0, 3.0]), scale=st.sampled_from([1e-3, 0.2, 5.0, 1e3]))
def test_scaling_every_score_leaves_relative_advantages_unchanged(batch, gamma, scale):
    scores, ok, index = batch
    before = advantages(scores, ok, index, gamma, epsilon=0.0)
    after = advantages(scores * scale, ok, index, gamma, epsilon=0.0)
    np.testing.assert_allclose(after, before, rtol=1e-7, atol=1e-9)


def test_the_absolute_margin_is_not_scale_free():
    scores, ok, index = np.array([1.0, 0.5, 0.9]), np.array([True, True, False]), np.array(["g"] * 3, dtype=object)
    small = advantages(scores * 0.01, ok, index, 1.0, mode="absolute", epsilon=0.0)
    large = advantages(scores * 100, ok, index, 1.0, mode="absolute", epsilon=0.0)
    assert not np.allclose(small, large)
    relative = [advantages(scores * c, ok, index, 1.0, epsilon=0.0) for c in (0.01, 100)]
    np.testing.assert_allclose(relative[0], relative[1], rtol=1e-9)


@pytest.mark.parametrize(
    "scores, ok, unit",
    [
        ([2.0, 1.0, 5.0], [True, False, False], statistics.stdev([2.0, 1.0, 5.0])),  # one compliant answer
        ([2.0, 2.0, 7.0], [True, True, False], statistics.stdev([2.0, 2.0, 7.0])),  # compliant answers alike
        ([3.0, 3.0, 3.0], [True, True, False], 1.0),  # every score equal
        ([1.0, 3.0, 9.0], [True, True, False], statistics.stdev([1.0, 3.0])),  # the plain case
    ],
)
def test_degenerate_groups_use_the_documented_floor(scores, ok, unit):
    index = np.array(["g"] * len(scores), dtype=object)
    penalty = group_penalty(torch.tensor(scores), np.array(ok), index, 1.0, "relative")
    assert float(penalty.margin[0]) == pytest.approx(unit)
    adv = advantages(np.array(scores), np.array(ok), index, 1.0)
    assert (adv[~np.array(ok)] < 0).all()


def test_an_unknown_gamma_mode_is_refused():
    with pytest.raises(ValueError, match="gamma_mode"):
        group_penalty(torch.tensor([1.0, 2.0]), [True, False], ["g", "g"], 1.0, "percent")
