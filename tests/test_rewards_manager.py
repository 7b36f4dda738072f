"""The `rlmr` reward manager, loaded by name through verl's own loader, on real DataProto rows,
against real loopback servers: `rewards.serve_rm` serving a tiny locally built reward model, and
a scripted OpenAI-compatible judge that can fail on cue."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from verl.trainer.ppo.reward import load_reward_manager

import recipe.rlmr
from recipe.rlmr.dev.reward_rows import trajectory_row
from recipe.rlmr.dev.servers.reward import FakeJudge
from recipe.rlmr.dry_run import compose_recipe
from recipe.rlmr.verdicts import rlmr_estimator, supply_verdicts, verdicts_from_extra_infos
from rewards.reward_info import KEYS as EXTRA_INFO_KEYS
from rewards.spec import ConstraintSpec, JudgeConstraint, RuleConstraint

CONFIG_DIR = Path(recipe.rlmr.__file__).parent / "config"


@pytest.fixture
def judge():
    with FakeJudge(keep_bodies=True) as server:
        yield server


def manager_for(rm_server, rm_dir, judge_url=None, raw=(), **rlmr_overrides):
    overrides = [
        f"reward.rlmr.writing_rm.url={rm_server}",
        "reward.rlmr.writing_rm.model=tiny-rm",
        f"reward.rlmr.writing_rm.tokenizer={rm_dir}",
        "reward.rlmr.writing_rm.backoff_s=0.01",
        "reward.rlmr.judge.backoff_s=0.01",
        "reward.rlmr.judge.timeout_s=2",
        "reward.rlmr.judge.model=judge",
    ]
    if judge_url:
        overrides.append(f"reward.rlmr.judge.url={judge_url}")
    overrides += [f"reward.rlmr.{key}={value}" for key, value in rlmr_overrides.items()] + list(raw)
    config = compose_recipe(overrides)
    from transformers import AutoTokenizer

    policy_tokenizer = AutoTokenizer.from_pretrained(str(rm_dir))
    return load_reward_manager(config, policy_tokenizer), policy_tokenizer


def rows(tokenizer, samples):
    """DataProto rows as verl's agent loop hands them to a reward manager, one per sample.

    ``spec`` is a ConstraintSpec, or a dict used as the row's ``reward_model`` as it is."""
    # right padding on the response, as in verl's batches
    return [
        trajectory_row(tokenizer, task, response, spec, data_source="rlmr-test", pad=4)
        for task, response, spec in samples
    ]


def run(manager, data_rows):
    async def all_rows():
        import asyncio

        return await asyncio.gather(*(manager.run_single(row) for row in data_rows))

    return manager.loop.run_until_complete(all_rows())


POEM = "Write a poem about the sea in at most 12 words, and mention 'lantern'."
SPEC = ConstraintSpec(
    constraints=[
        RuleConstraint(instruction_id="rlmr:word_range", kwargs={"max_words": 12}),
        JudgeConstraint(text="The poem mentions 'lantern'."),
    ]
)
GOOD = "A lantern sways above the grey and patient sea."
LONG = "The sea the sea the sea, a lantern, " * 6
NO_LANTERN = "Grey waves fold into the patient evening sea."


def test_manager_scores_and_verifies_each_sample(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    results = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC), (POEM, LONG, SPEC), (POEM, NO_LANTERN, SPEC)]))
    for result in results:
        assert set(result["reward_extra_info"]) == set(EXTRA_INFO_KEYS)
        assert result["reward_extra_info"]["reward_valid"] == 1, result
        assert result["reward_score"] == result["reward_extra_info"]["writing_score"]
    good, long, no_lantern = (r["reward_extra_info"] for r in results)
    assert (good["constraints_ok"], good["rule_ok"], good["judge_ok"]) == (1, 1, 1)
    assert (long["constraints_ok"], long["rule_ok"], long["failed_constraints"]) == (0, 0, "rlmr:word_range")
    assert long["judge_calls"] == 0 and long["judge_calls_saved"] == 1  # short circuit: rules already failed
    assert (no_lantern["constraints_ok"], no_lantern["judge_ok"], no_lantern["failed_constraints"]) == (0, 0, "judge:1")
    assert judge.log.answered["ok"] == 2
    # the served model's real scores, not constants: different responses, different scores
    assert len({r["reward_score"] for r in results}) == 3


def test_writing_score_matches_the_model_run_directly(rm_server, rm_dir, judge):
    from transformers import AutoModelForSequenceClassification

    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    model = AutoModelForSequenceClassification.from_pretrained(str(rm_dir)).eval()
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": POEM}, {"role": "assistant", "content": GOOD}], tokenize=False
    )
    with torch.no_grad():
        expected = model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1].item()
    assert result["reward_score"] == pytest.approx(expected, abs=1e-4)


def test_short_circuit_off_still_asks_the_judge(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, short_circuit="false")
    [result] = run(manager, rows(tokenizer, [(POEM, LONG, SPEC)]))
    assert result["reward_extra_info"]["judge_calls"] == 1 and result["reward_extra_info"]["judge_ok"] == 1


@pytest.mark.parametrize("fault", ["status_5xx", "malformed", "truncated"])
def test_judge_faults_are_retried(rm_server, rm_dir, judge, fault):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    judge.inject(**{fault: 2})
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert info["reward_valid"] == 1 and info["constraints_ok"] == 1
    assert judge.log.requests == 3


def test_judge_failing_for_good_is_invalid_not_zero(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    judge.inject(status_5xx=10)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert info["reward_valid"] == 0 and info["constraints_ok"] == 0 and "judge" in info["reward_error"]
    assert judge.log.requests == 4  # 1 + max_retries
    assert not math.isnan(info["writing_score"])  # the RM still answered; the sample is invalid anyway


def test_hanging_judge_is_time_boxed(rm_server, rm_dir, judge):
    # sample_timeout_s is a backstop far above judge.timeout_s=2, so a judge without its own timeout fails fast
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, sample_timeout_s=30, **{"judge.max_retries": 0})
    judge.inject(hang=1)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    assert result["reward_extra_info"]["reward_valid"] == 0
    # cut by the judge's own per-attempt timeout (judge.timeout_s=2), not by the sample timeout
    assert "judge: http://" in result["reward_extra_info"]["reward_error"]
    assert "no answer within 2.0s" in result["reward_extra_info"]["reward_error"]


def test_unreachable_reward_model_is_invalid(rm_dir, judge, closed_port):
    manager, tokenizer = manager_for(
        f"http://127.0.0.1:{closed_port}", rm_dir, judge.url, **{"writing_rm.max_retries": 1}
    )
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert info["reward_valid"] == 0 and math.isnan(info["writing_score"]) and "writing_rm" in info["reward_error"]
    assert info["constraints_ok"] == 1  # the verdict itself was reached


def test_sample_timeout_bounds_everything(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, sample_timeout_s=0.5, **{"judge.timeout_s": 30})
    judge.inject(hang=1)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    assert result["reward_extra_info"]["reward_valid"] == 0
    assert "sample_timeout_s" in result["reward_extra_info"]["reward_error"]
    assert set(result["reward_extra_info"]) == set(EXTRA_INFO_KEYS)


def test_judge_prompt_puts_the_shared_part_first(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, short_circuit="false")
    run(manager, rows(tokenizer, [(POEM, GOOD, SPEC), (POEM, NO_LANTERN, SPEC)]))
    first, second = (body["messages"] for body in judge.log.bodies)
    assert first[0] == second[0]
    shared = first[1]["content"].split("## Response")[0]
    assert second[1]["content"].startswith(shared) and POEM in shared


def test_missing_judge_with_judge_constraints_is_invalid(rm_server, rm_dir):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge_url=None)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    assert result["reward_extra_info"]["reward_valid"] == 0
    assert "reward.rlmr.judge.url" in result["reward_extra_info"]["reward_error"]


def test_misspelled_setting_is_a_clear_error(rm_server, rm_dir):
    with pytest.raises(ValueError, match="reward.rlmr"):
        manager_for(rm_server, rm_dir, raw=["+reward.rlmr.writing_rm.timeout=3"])


def test_majority_vote_outvotes_a_wrong_answer(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, **{"judge.votes": 3, "judge.temperature": 0.7})
    judge.inject(wrong=1)  # one of the three answers says the lantern is missing
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert info["judge_calls"] == 3 and info["judge_ok"] == 1 and info["constraints_ok"] == 1
    assert judge.log.requests == 3 and {b["temperature"] for b in judge.log.bodies} == {0.7}


def test_single_vote_follows_the_answer_it_gets(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    judge.inject(wrong=1)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    assert (
        result["reward_extra_info"]["judge_ok"] == 0 and result["reward_extra_info"]["failed_constraints"] == "judge:1"
    )


def test_reward_model_served_by_verl_is_reached_through_the_router_address(rm_server_by_path, rm_dir, judge):
    from transformers import AutoTokenizer

    overrides = [
        "reward.reward_model.enable=true",
        f"reward.reward_model.model_path={rm_dir}",
        "reward.reward_model.rollout.name=vllm",
        f"reward.rlmr.judge.url={judge.url}",
        "reward.rlmr.judge.model=judge",
    ]
    config = compose_recipe(overrides)
    tokenizer = AutoTokenizer.from_pretrained(str(rm_dir))
    manager = load_reward_manager(
        config, tokenizer, reward_router_address=rm_server_by_path, reward_model_tokenizer=tokenizer
    )
    assert manager.writing_rm.settings.backend == "vllm_classify" and manager.writing_rm.settings.model == str(rm_dir)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    assert result["reward_extra_info"]["reward_valid"] == 1, result["reward_extra_info"]["reward_error"]


def test_judge_calls_saved_when_a_rule_already_failed(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, **{"judge.votes": 3, "judge.temperature": 0.7})
    [result] = run(manager, rows(tokenizer, [(POEM, LONG, SPEC)]))  # LONG breaks the word limit
    info = result["reward_extra_info"]
    assert info["judge_calls_saved"] == 3 and info["judge_calls"] == 0 and judge.log.requests == 0
    assert (info["reward_valid"], info["constraints_ok"], info["judge_ok"]) == (1, 0, -1)


def test_no_judge_calls_saved_when_the_rules_hold(rm_server, rm_dir, judge):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, **{"judge.votes": 3, "judge.temperature": 0.7})
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert info["judge_calls_saved"] == 0 and info["judge_calls"] == 3 and judge.log.requests == 3


@pytest.mark.parametrize(
    "reward_model, reason",
    [
        ({"style": "rule"}, "no usable constraint spec in reward_model.ground_truth: 'ground_truth'"),
        ({"style": "rule", "ground_truth": "{not json"}, "constraint spec is not valid JSON"),
        (
            {
                "style": "rule",
                "ground_truth": '{"constraints": [{"type": "rule", "instruction_id": "rlmr:no_such_check"}]}',
            },
            "unknown instruction id 'rlmr:no_such_check'",
        ),
    ],
    ids=["missing", "not-json", "unknown-instruction"],
)
def test_unusable_ground_truth_is_invalid_with_the_reason(rm_server, rm_dir, judge, reward_model, reason):
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    [result] = run(manager, rows(tokenizer, [(POEM, GOOD, reward_model)]))
    info = result["reward_extra_info"]
    assert set(info) == set(EXTRA_INFO_KEYS)
    assert info["reward_valid"] == 0 and info["constraints_ok"] == 0
    assert reason in info["reward_error"], info["reward_error"]
    assert judge.log.requests == 0


def test_unusable_spec_leaves_no_reward_model_call_behind(rm_server, rm_dir, judge):
    """The spec is parsed before the RM is asked: a row that is invalid anyway starts no RM call, so
    none is left unawaited ("coroutine ... was never awaited") or running unobserved."""
    manager, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    score, started = manager.writing_rm.score, []

    def recording_score(messages, response):
        started.append(response)
        return score(messages, response)

    manager.writing_rm.score = recording_score
    unusable = {"style": "rule", "ground_truth": "{not json"}
    [bad, good] = run(manager, rows(tokenizer, [(POEM, NO_LANTERN, unusable), (POEM, GOOD, SPEC)]))
    assert bad["reward_extra_info"]["reward_valid"] == 0 and good["reward_extra_info"]["reward_valid"] == 1
    assert started == [GOOD]


def token_level_rewards(results, length=4):
    """verl's [B, T] token-level rewards: each reward_score on its last response token."""
    rewards = torch.zeros(len(results), length)
    rewards[:, -1] = torch.tensor([r["reward_score"] for r in results])
    return rewards


@pytest.mark.parametrize("failing", ["writing_rm", "judge"])
def test_placeholder_score_of_an_invalid_sample_never_reaches_an_advantage(
    rm_server, rm_dir, judge, closed_port, failing
):
    working, tokenizer = manager_for(rm_server, rm_dir, judge.url)
    samples = [(POEM, GOOD, SPEC), (POEM, LONG, SPEC), (POEM, NO_LANTERN, SPEC)]
    group_a = run(working, rows(tokenizer, samples))  # all three valid
    group_b = run(working, rows(tokenizer, samples))
    if failing == "writing_rm":  # nothing listens: the score is a 0.0 placeholder
        broken, _ = manager_for(f"http://127.0.0.1:{closed_port}", rm_dir, judge.url, **{"writing_rm.max_retries": 0})
    else:  # the judge fails for good: the score is real, the verdict unknown
        broken, _ = manager_for(rm_server, rm_dir, judge.url, **{"judge.max_retries": 0})
        judge.inject(status_5xx=1)
    [invalid] = run(broken, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    assert invalid["reward_extra_info"]["reward_valid"] == 0 and failing in invalid["reward_extra_info"]["reward_error"]
    assert all(r["reward_extra_info"]["reward_valid"] == 1 for r in group_a + group_b)

    results = group_a + [invalid] + group_b
    uids = ["a"] * 4 + ["b"] * 3
    keys = [f"{uid}_0_{i}" for i, uid in enumerate(uids)]
    constraints_ok, reward_valid = verdicts_from_extra_infos([r["reward_extra_info"] for r in results], keys)
    rewards = token_level_rewards(results)
    with supply_verdicts(constraints_ok, reward_valid):
        advantages, _ = rlmr_estimator(rewards, torch.ones_like(rewards), index=np.array(uids, dtype=object))
    assert torch.count_nonzero(advantages[:4]) == 0  # the whole group of the invalid sample: exactly 0
    assert torch.count_nonzero(advantages[4:, -1]) == 3  # the valid group does learn


@pytest.mark.parametrize("fault", ["nan", "inf", "neg_inf", "overflow", "nan_string"])
def test_non_finite_writing_score_is_an_invalid_sample_not_a_number(rm_dir, judge, fault):
    """An RM answering NaN / Infinity (a bf16 RM overflowing) is retried like a malformed answer, then the
    sample is reward_valid = 0 with the writing RM named, never a score of 0.0 or inf trained on."""
    from recipe.rlmr.dev.servers.faulty import FaultyRM

    with FaultyRM(mix={fault: 1.0}) as rm:
        manager, tokenizer = manager_for(rm.url, rm_dir, judge.url, raw=["reward.rlmr.writing_rm.max_retries=1"])
        [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert rm.log.requests == 2 and info["reward_valid"] == 0
    assert info["reward_error"].startswith("writing_rm: ") and "non-finite" in info["reward_error"]
    assert math.isfinite(result["reward_score"])


def test_non_finite_judge_answer_is_an_invalid_sample(rm_server, rm_dir):
    from recipe.rlmr.dev.servers.faulty import FaultyJudge

    with FaultyJudge(mix={"nan": 1.0}) as judge:
        manager, tokenizer = manager_for(rm_server, rm_dir, judge.url, raw=["reward.rlmr.judge.max_retries=1"])
        [result] = run(manager, rows(tokenizer, [(POEM, GOOD, SPEC)]))
    info = result["reward_extra_info"]
    assert judge.log.requests == 2 and info["reward_valid"] == 0
    assert info["reward_error"].startswith("judge: ") and "non-finite" in info["reward_error"]
