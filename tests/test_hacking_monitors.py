"""The reward-hacking monitors (rlmr/score_length_corr, rlmr/violations/<id>) on batches with known answers."""

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from recipe.rlmr.metrics import group_of, reward_metrics, score_length_corr
from rewards.reward_info import RewardInfo


def info(score, words, failed="", rules="", valid=1, judge_calls=0, judge_ok=1):
    return RewardInfo(
        writing_score=score,
        response_words=words,
        failed_constraints=failed,
        rule_ids=rules,
        reward_valid=valid,
        judge_calls=judge_calls,
        judge_ok=judge_ok,
        constraints_ok=int(not failed),
    ).to_dict()


def test_a_length_biased_rm_shows_a_correlation_of_one():
    # two prompts; within each, the score is an increasing function of the length (different scales)
    infos = [info(0.1 * w, w) for w in (10, 20, 40)] + [info(5.0 + 3 * w, w) for w in (7, 8, 30)]
    keys = [f"p1_0_{i}" for i in range(3)] + [f"p2_0_{i}" for i in range(3)]
    metrics = reward_metrics(infos, keys)
    assert math.isclose(metrics["rlmr/score_length_corr"], 1.0, abs_tol=1e-12)


def test_correlation_is_within_groups_not_across_them():
    # across the batch score and length correlate perfectly, inside each group they anti-correlate
    infos = [info(s, w) for s, w in ((1.0, 12), (0.0, 14), (11.0, 102), (10.0, 104))]
    keys = ["a_0_0", "a_0_1", "b_0_0", "b_0_1"]
    assert math.isclose(reward_metrics(infos, keys)["rlmr/score_length_corr"], -1.0, abs_tol=1e-12)


def test_groups_without_variation_and_invalid_scores_are_left_out():
    infos = [info(1.0, 5), info(1.0, 9)] + [info(0.2, 3), info(0.4, 6), info(99.0, 1, valid=0)]
    keys = ["same_0_0", "same_0_1", "g_0_0", "g_0_1", "g_0_2"]
    assert math.isclose(reward_metrics(infos, keys)["rlmr/score_length_corr"], 1.0, abs_tol=1e-12)
    assert math.isnan(score_length_corr(np.array([1.0, 1.0]), np.array([3.0, 4.0]), ["x", "x"]))


@given(
    st.lists(st.tuples(st.integers(-20, 20).map(lambda q: q / 4), st.integers(1, 300)), min_size=2, max_size=12),
    st.floats(0.1, 10),
    st.floats(-5, 5),
)
def test_correlation_ignores_score_scale_and_offset(rows, scale, offset):
    scores = np.array([r[0] for r in rows])
    words = np.array([float(r[1]) for r in rows])
    groups = ["g"] * len(rows)
    base = score_length_corr(scores, words, groups)
    moved = score_length_corr(offset + scale * scores, words, groups)
    assert (math.isnan(base) and math.isnan(moved)) or math.isclose(base, moved, abs_tol=1e-6)


def test_violation_rate_per_rule_counts_only_prompts_that_carry_it():
    words = "length_constraints:number_words"
    comma = "punctuation:no_comma"
    infos = [
        info(0.0, 10, failed=words, rules=f"{words};{comma}"),
        info(0.0, 10, failed=f"{words};{comma}", rules=f"{words};{comma}"),
        info(0.0, 10, failed="", rules=words),
        info(0.0, 10, failed="", rules=comma),
        info(0.0, 10, failed="", rules=""),  # no rules: counts for no type
        info(0.0, 10, failed=words, rules=words, valid=0),  # invalid: left out
    ]
    metrics = reward_metrics(infos)
    assert math.isclose(metrics[f"rlmr/violations/{words}"], 2 / 3)
    assert math.isclose(metrics[f"rlmr/violations/{comma}"], 1 / 3)


def test_judge_violation_rate_counts_answered_judge_calls_only():
    infos = [
        info(0.0, 1, failed="judge:1", judge_calls=1, judge_ok=0),
        info(0.0, 1, failed="", judge_calls=1, judge_ok=1),
        info(0.0, 1, failed="", judge_calls=0, judge_ok=1),  # no free-text constraint: not asked
        info(0.0, 1, failed="", judge_calls=0, judge_ok=-1),  # short-circuited or failed
    ]
    assert reward_metrics(infos)["rlmr/violations/judge"] == 0.5


def test_group_of_reads_the_uid_of_a_transfer_queue_key():
    assert group_of("3f2a9c_0_7") == "3f2a9c"
