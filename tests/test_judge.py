"""rewards.judge.ConstraintJudge against the scripted OpenAI-compatible judge: strict verdict
parsing, majority votes, and the API key."""

import asyncio
import json

import pytest

from recipe.rlmr.dev.servers.reward import FakeJudge
from rewards.config import JudgeConfig
from rewards.http import RewardCallError
from rewards.judge import ConstraintJudge, parse_verdict

TASK = "Write one line about the sea and mention 'lantern'."
CONSTRAINTS = ["The line mentions 'lantern'.", "The line mentions 'sea'."]
ANSWER = json.dumps(
    {"verdicts": [{"id": 1, "satisfied": True, "reason": "yes"}, {"id": 2, "satisfied": False, "reason": "no"}]}
)


def verify(url, response, constraints=CONSTRAINTS, **settings):
    settings = {"url": url, "model": "judge", "timeout_s": 5.0, "backoff_s": 0.001, **settings}
    judge = ConstraintJudge(JudgeConfig(**settings))

    async def run():
        try:
            return await judge.verify(TASK, constraints, response)
        except RewardCallError as err:
            return err
        finally:
            await judge.close()

    return asyncio.run(run())


@pytest.mark.parametrize("fenced", [f"```json\n{ANSWER}\n```", f"  ```json {ANSWER} ```\n"])
def test_json_fenced_answer_is_accepted(fenced):
    assert parse_verdict(fenced, 2) == ([True, False], ["yes", "no"])


@pytest.mark.parametrize(
    "wrapped",
    [
        f"Here is my verdict: {ANSWER}",
        f"{ANSWER}\nI hope this helps.",
        f"```python\n{ANSWER}\n```",
        f"<answer>{ANSWER}</answer>",
        f"```json\n{ANSWER}\n``` and that is all",
        f"json {ANSWER}",
    ],
)
def test_other_wrappers_are_refused(wrapped):
    with pytest.raises(ValueError, match="judge answer is not the verdict JSON"):
        parse_verdict(wrapped, 2)


def test_fenced_answer_from_the_server_is_one_call():
    with FakeJudge() as server:
        server.wrap_content = lambda content: f"```json\n{content}\n```"
        verdict = verify(server.url, "A lantern over the sea.")
    assert verdict.satisfied == [True, True] and verdict.calls == 1 and server.log.requests == 1


def test_wrapped_answer_from_the_server_is_retried_then_fails():
    with FakeJudge() as server:
        server.wrap_content = lambda content: f"Sure! {content}"
        error = verify(server.url, "A lantern over the sea.", max_retries=2)
    assert isinstance(error, RewardCallError) and "unusable judge answer" in str(error)
    assert server.log.requests == 3  # never accepted, only retried


def test_vote_tie_counts_as_not_satisfied():
    with FakeJudge() as server:
        server.inject(wrong=1)  # of the two votes one says satisfied, the other violated
        verdict = verify(server.url, "A lantern over the sea.", votes=2, temperature=0.7)
    assert server.log.requests == 2 and verdict.calls == 2
    assert verdict.satisfied == [False, False] and not verdict.ok


def test_unanimous_votes_are_satisfied():
    """The other side of the tie test: two agreeing votes do count as satisfied."""
    with FakeJudge() as server:
        verdict = verify(server.url, "A lantern over the sea.", votes=2, temperature=0.7)
    assert verdict.satisfied == [True, True] and verdict.ok and verdict.calls == 2


def test_api_key_env_is_sent_as_a_bearer_token(monkeypatch):
    monkeypatch.setenv("RLMR_TEST_JUDGE_KEY", "sk-test-1234")
    with FakeJudge(keep_bodies=True) as server:
        verdict = verify(server.url, "A lantern over the sea.", api_key_env="RLMR_TEST_JUDGE_KEY")
    assert verdict.ok
    [headers] = server.log.headers
    assert headers["Authorization"] == "Bearer sk-test-1234"


def test_no_api_key_env_sends_no_authorization():
    with FakeJudge(keep_bodies=True) as server:
        verify(server.url, "A lantern over the sea.")
    [headers] = server.log.headers
    assert "Authorization" not in headers


@pytest.mark.parametrize("value", [None, ""])
def test_unset_api_key_env_is_a_clear_error(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("RLMR_TEST_JUDGE_KEY", raising=False)
    else:
        monkeypatch.setenv("RLMR_TEST_JUDGE_KEY", value)
    settings = JudgeConfig(url="http://127.0.0.1:1", model="judge", api_key_env="RLMR_TEST_JUDGE_KEY")
    with pytest.raises(ValueError, match="api_key_env=RLMR_TEST_JUDGE_KEY, but that environment variable is not set"):
        ConstraintJudge(settings)
