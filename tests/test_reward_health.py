"""The failure budget's rule (``recipe.rlmr.reward_health``), against a plain reference of it."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recipe.rlmr.reward_health import RewardHealth, RewardsKeepFailingError, StepRewards
from rewards.config import FailureBudgetConfig

RM_DOWN = "writing_rm: http://127.0.0.1:9/classify: ClientConnectorError: Cannot connect to host 127.0.0.1:9"
JUDGE_5XX = "judge: http://127.0.0.1:7/v1/chat/completions: HTTP 503: scripted failure"


def infos(valid: int, invalid: int, error: str = RM_DOWN) -> list[dict]:
    return [{"reward_valid": 1, "reward_error": ""}] * valid + [{"reward_valid": 0, "reward_error": error}] * invalid


def budget(fraction=0.5, steps=3, enable=True) -> RewardHealth:
    return RewardHealth(FailureBudgetConfig(enable=enable, max_invalid_fraction=fraction, consecutive_steps=steps))


def test_stops_after_the_configured_failing_steps_naming_the_backend():
    health = budget(0.5, 2)
    assert health.observe(1, infos(2, 14))["rlmr/reward_health/failing_steps"] == 1
    with pytest.raises(RewardsKeepFailingError) as caught:
        health.observe(2, infos(0, 16))
    message = str(caught.value)
    assert message.startswith("rewards keep failing (writing RM)")
    assert "step 1: 14/16, step 2: 16/16" in message
    assert "writing RM: 30 failed trajectories" in message and "Cannot connect to host 127.0.0.1:9" in message
    assert "more than 50%" in message and "reward.rlmr.failure_budget" in message


def test_exactly_the_fraction_is_within_budget():
    health = budget(0.5, 1)
    metrics = health.observe(1, infos(8, 8))
    assert metrics["rlmr/reward_health/invalid_fraction"] == 0.5 and metrics["rlmr/reward_health/failing_steps"] == 0
    with pytest.raises(RewardsKeepFailingError):
        health.observe(2, infos(7, 9))


def test_a_good_step_resets_the_count_and_an_empty_one_does_not():
    health = budget(0.5, 2)
    health.observe(1, infos(0, 4))
    health.observe(2, infos(4, 0))  # recovered
    health.observe(3, infos(0, 4))
    assert health.observe(4, [])["rlmr/reward_health/failing_steps"] == 1  # nothing scored: no verdict
    with pytest.raises(RewardsKeepFailingError, match="step 3: 4/4, step 5: 4/4"):
        health.observe(5, infos(0, 4))


def test_every_failing_backend_is_named_with_its_errors():
    health = budget(0.25, 1)
    both = "judge: http://127.0.0.1:7/v1/chat/completions: no answer within 2.0s; " + RM_DOWN
    with pytest.raises(RewardsKeepFailingError) as caught:
        health.observe(1, infos(1, 2, JUDGE_5XX) + infos(0, 1, both) + infos(0, 1, "sample not scored within 5 s"))
    message = str(caught.value)
    assert message.startswith("rewards keep failing (judge, sample not scored within 5 s, writing RM)")
    assert "judge: 3 failed trajectories, e.g. 2 x " + JUDGE_5XX in message
    assert "writing RM: 1 failed trajectories" in message


def test_disabled_budget_reports_but_never_stops():
    health = budget(0.1, 1, enable=False)
    for step in range(1, 5):
        assert health.observe(step, infos(0, 4))["rlmr/reward_health/failing_steps"] == step


def test_missing_flags_count_as_valid():
    assert StepRewards.of(1, [None, {}, {"reward_valid": True}, {"reward_valid": None}]).invalid == 0


def reference_stop_step(steps: list[tuple[int, int]], fraction: float, needed: int) -> int | None:
    """The rule written plainly: the first step index at which `needed` failing steps ran in a row."""
    run = 0
    for index, (valid, invalid) in enumerate(steps):
        scored = valid + invalid
        if scored == 0:
            continue
        run = run + 1 if invalid / scored > fraction else 0
        if run >= needed:
            return index
    return None


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), min_size=1, max_size=12),
    fraction=st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.99]),
    needed=st.integers(1, 4),
)
def test_stops_exactly_where_the_plain_rule_says(steps, fraction, needed):
    health = budget(fraction, needed)
    stopped_at = None
    for index, (valid, invalid) in enumerate(steps):
        try:
            health.observe(index + 1, infos(valid, invalid))
        except RewardsKeepFailingError:
            stopped_at = index
            break
    assert stopped_at == reference_stop_step(steps, fraction, needed)
