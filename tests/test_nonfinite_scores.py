"""A non-finite number from a served model is a failure of that sample, never a score: the writing-RM
client (all three wire formats, against real loopback servers answering NaN / Infinity / -Infinity /
1e999 / "NaN", and `rewards.serve_rm` serving a model whose scores are NaN), the judge's verdict parser,
and the preflight. The manager-level outcome (reward_valid = 0, reward_error naming the backend) is in
tests/test_rewards_manager.py; the estimator's side in tests/test_advantage_gdpo_nonfinite.py."""

import asyncio
import math
import shutil
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import recipe.rlmr
from recipe.rlmr.dev.servers.base import serve_in_subprocess
from recipe.rlmr.dev.servers.faulty import NON_FINITE, FaultyJudge, FaultyRM
from recipe.rlmr.dry_run import compose_recipe
from rewards.config import JudgeConfig, WritingRMConfig
from rewards.http import HTTPCallError, loads_finite
from rewards.judge import ConstraintJudge, parse_verdict
from rewards.preflight import PreflightError, preflight
from rewards.writing_rm import WritingRMClient

MESSAGES = [{"role": "user", "content": "Write one line about the sea."}]
CONFIG_DIR = Path(recipe.rlmr.__file__).parent / "config"
BACKENDS = ["vllm_classify", "vllm_pooling", "sglang"]


class _IdentityTokenizer:
    """The RM input is the response itself (the wire, not the template, is under test here)."""

    bos_token = None

    def apply_chat_template(self, chat, tokenize=False, add_generation_prompt=False):
        return chat[-1]["content"]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text)))}


def rm_client(url, backend="vllm_classify", tokenizer=None, **settings):
    settings = {"timeout_s": 5.0, "backoff_s": 0.01, "max_retries": 2, **settings}
    config = WritingRMConfig(url=url, model="tiny-rm", backend=backend, **settings)
    return WritingRMClient(config, tokenizer or _IdentityTokenizer())


def score_all(client, texts):
    async def run():
        try:
            return await asyncio.gather(*(client.score(MESSAGES, text) for text in texts), return_exceptions=True)
        finally:
            await client.close()

    return asyncio.run(run())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fault", sorted(NON_FINITE))
def test_non_finite_rm_answer_is_retried_then_a_failure(backend, fault):
    with FaultyRM(script=[fault] * 3) as server:
        results = score_all(rm_client(server.url, backend), ["a", "bb"])
    assert server.log.requests == 3  # first attempt + max_retries=2, like a malformed answer
    for result in results:
        assert isinstance(result, HTTPCallError), result
        assert "non-finite" in str(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_non_finite_then_a_good_answer_gives_the_real_score(backend):
    with FaultyRM(script=["nan", "inf"]) as server:
        [score] = score_all(rm_client(server.url, backend), ["hello"])
    assert score == pytest.approx(len("hello") / 100) and server.log.requests == 3


@pytest.fixture(scope="module")
def nan_rm_dir(rm_dir, tmp_path_factory):
    """The tiny RM with its score head set to NaN: served by rewards.serve_rm, every score is NaN."""
    out = tmp_path_factory.mktemp("nan-rm")
    for item in rm_dir.iterdir():
        if item.is_file():
            shutil.copy(item, out / item.name)
    model = AutoModelForSequenceClassification.from_pretrained(str(rm_dir))
    with torch.no_grad():
        model.score.weight.fill_(float("nan"))
    model.save_pretrained(str(out))
    return out


def test_serve_rm_scoring_nan_is_a_failure_not_a_score(nan_rm_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(nan_rm_dir))
    with serve_in_subprocess(nan_rm_dir, served_model_name="tiny-rm") as port:
        for backend in BACKENDS:
            [result] = score_all(rm_client(f"http://127.0.0.1:{port}", backend, tokenizer, max_retries=0), ["x"])
            assert isinstance(result, HTTPCallError) and "non-finite" in str(result), (backend, result)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
def test_strict_json_reader_refuses_non_finite_numbers(literal):
    with pytest.raises(ValueError, match="non-finite"):
        loads_finite(f'{{"x": [1.5, {literal}]}}')
    assert loads_finite('{"x": [1.5, 2, -3e5]}') == {"x": [1.5, 2, -3e5]}


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "1e999"])
def test_judge_verdict_with_a_non_finite_number_is_refused(literal):
    with pytest.raises(ValueError, match="non-finite"):
        parse_verdict(f'{{"verdicts": [{{"id": {literal}, "satisfied": true, "reason": "r"}}]}}', 1)


def test_judge_answering_non_finite_is_retried_then_a_failure():
    settings = JudgeConfig(url="", model="judge", backoff_s=0.01, max_retries=2, timeout_s=5.0)
    with FaultyJudge(script=["nan", "inf", "overflow"]) as server:
        judge = ConstraintJudge(settings.model_copy(update={"url": server.url}))

        async def run():
            try:
                return await judge.verify("task", ["one", "two"], "response")
            finally:
                await judge.close()

        with pytest.raises(HTTPCallError, match="non-finite"):
            asyncio.run(run())
    assert server.log.requests == 3


def rm_config(rm_url, rm_dir, judge_url):
    overrides = [
        f"reward.rlmr.writing_rm.url={rm_url}",
        "reward.rlmr.writing_rm.model=tiny-rm",
        f"reward.rlmr.writing_rm.tokenizer={rm_dir}",
        "reward.rlmr.writing_rm.max_retries=1",
        "reward.rlmr.writing_rm.backoff_s=0.01",
        f"reward.rlmr.judge.url={judge_url}",
        "reward.rlmr.judge.model=judge-model",
        "reward.rlmr.preflight.timeout_s=20",
    ]
    return compose_recipe(overrides)


def test_preflight_refuses_an_rm_answering_nan(rm_dir):
    with FaultyRM(mix={"nan": 1.0}) as rm, FaultyJudge() as judge:
        with pytest.raises(PreflightError) as caught:
            preflight(rm_config(rm.url, rm_dir, judge.url), log=None)
    assert f"writing RM at {rm.url}" in str(caught.value) and "non-finite" in str(caught.value)


def test_preflight_own_finite_check_catches_a_client_that_lets_nan_through(rm_dir, monkeypatch):
    """The preflight checks the probe score itself, whatever the client does: a client returning NaN
    (as it did before it refused non-finite answers) still stops the launch."""

    async def nan_score(self, messages, response):
        return math.nan

    monkeypatch.setattr(WritingRMClient, "score", nan_score)
    with FaultyRM() as rm, FaultyJudge() as judge:
        with pytest.raises(PreflightError, match="non-finite score nan"):
            preflight(rm_config(rm.url, rm_dir, judge.url), log=None)
