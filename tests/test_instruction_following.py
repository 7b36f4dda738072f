"""IFEval's four figures during training: the per-sample counts the reward manager reports, turned
into per-data-source validation metrics (recipe/rlmr/metrics.py) the way IFEval aggregates them."""

import pytest

from recipe.rlmr.metrics import instruction_following_metrics


def infos(*samples):
    """Columns as verl's validation collects them: one list per reward_extra_info key."""
    keys = ("rule_ok", "rule_ok_loose", "num_rules", "rules_followed_strict", "rules_followed_loose", "reward_valid")
    return {key: [sample[i] for sample in samples] for i, key in enumerate(keys)}


def test_prompt_level_is_a_share_of_prompts_and_instruction_level_a_share_of_all_instructions():
    # ifeval: 3 prompts with 1, 3 and 2 instructions; strict follows 1, 1, 2; loose 1, 2, 2.
    # prompt level: strict 2/3 (first and third all followed), loose 2/3; instruction level: 4/6 and 5/6,
    # not the mean of per-prompt shares (which would be (1 + 1/3 + 1) / 3 = 7/9 for strict).
    columns = infos(
        (1, 1, 1, 1, 1, 1),
        (0, 0, 3, 1, 2, 1),
        (1, 1, 2, 2, 2, 1),
        (0, 0, 4, 0, 0, 0),  # reward_valid = 0: left out
        (1, 1, 0, 0, 0, 1),  # no rules (a judge-only prompt): left out
        (0, 1, 2, 1, 2, 1),  # another data source
    )
    sources = ["ifeval"] * 5 + ["writing"]
    metrics = instruction_following_metrics(sources, columns)
    assert metrics == {
        "val-core/ifeval/instruction_following/prompt_level_strict_acc": pytest.approx(2 / 3),
        "val-core/ifeval/instruction_following/prompt_level_loose_acc": pytest.approx(2 / 3),
        "val-core/ifeval/instruction_following/inst_level_strict_acc": pytest.approx(4 / 6),
        "val-core/ifeval/instruction_following/inst_level_loose_acc": pytest.approx(5 / 6),
        "val-core/writing/instruction_following/prompt_level_strict_acc": 0.0,
        "val-core/writing/instruction_following/prompt_level_loose_acc": 1.0,
        "val-core/writing/instruction_following/inst_level_strict_acc": 0.5,
        "val-core/writing/instruction_following/inst_level_loose_acc": 1.0,
    }


def test_nothing_is_reported_without_the_counts():
    """Another reward manager (or an older run) without the rule counts: no made-up figures."""
    columns = infos((1, 1, 1, 1, 1, 1))
    del columns["rules_followed_loose"]
    assert instruction_following_metrics(["ifeval"], columns) == {}
