"""The writing-RM client against real loopback servers: `rewards.serve_rm` (tiny built model,
all three wire formats) and the scripted FakeRM for faults."""

import asyncio

import pytest
import requests
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rewards.config import WritingRMConfig
from rewards.fake_servers import FakeRM
from rewards.http import RewardCallError
from rewards.writing_rm import WritingRMClient

MESSAGES = [{"role": "user", "content": "Write one line about the sea."}]
RESPONSES = ["The sea is grey.", "Waves fold like letters.", "Salt, wind, and a lantern.", "Blue."]


@pytest.fixture(scope="module")
def tokenizer(rm_dir):
    return AutoTokenizer.from_pretrained(str(rm_dir))


def client(url, tokenizer, backend="vllm_classify", model="tiny-rm", **settings):
    settings = {"timeout_s": 5.0, "backoff_s": 0.01, **settings.pop("http", {}), **settings}
    return WritingRMClient(WritingRMConfig(url=url, model=model, backend=backend, **settings), tokenizer)


def score_all(rm, texts):
    async def run():
        try:
            return await asyncio.gather(*(rm.score(MESSAGES, text) for text in texts), return_exceptions=True)
        finally:
            await rm.close()

    return asyncio.run(run())


def direct_scores(rm_dir, tokenizer, responses):
    model = AutoModelForSequenceClassification.from_pretrained(str(rm_dir)).eval()
    out = []
    for response in responses:
        text = tokenizer.apply_chat_template(MESSAGES + [{"role": "assistant", "content": response}], tokenize=False)
        with torch.no_grad():
            out.append(model(**tokenizer(text, return_tensors="pt", add_special_tokens=False)).logits[0, -1].item())
    return out


@pytest.mark.parametrize("backend", ["vllm_classify", "vllm_pooling", "sglang"])
def test_each_wire_format_gives_the_model_scores(rm_server, rm_dir, tokenizer, backend):
    scores = score_all(client(rm_server, tokenizer, backend), RESPONSES)
    assert scores == pytest.approx(direct_scores(rm_dir, tokenizer, RESPONSES), abs=1e-4)


def test_concurrent_calls_travel_in_micro_batches():
    with FakeRM(keep_bodies=True) as server:
        texts = [f"response number {i}" for i in range(20)]
        rm = client(server.url, _IdentityTokenizer(), micro_batch_size=8, micro_batch_wait_ms=20)
        scores = score_all(rm, texts)
    sizes = sorted(len(body["input"]) for body in server.log.bodies)
    assert sizes == [4, 8, 8] and server.log.requests == 3
    assert scores == pytest.approx([FakeRM.answer({"input": t})["data"][0]["probs"][0] for t in texts])


@pytest.mark.parametrize("fault", ["status_5xx", "malformed", "truncated"])
def test_faults_are_retried_with_backoff(fault):
    with FakeRM() as server:
        server.inject(**{fault: 2})
        [score] = score_all(client(server.url, _IdentityTokenizer(), http={"max_retries": 3}), ["hello"])
    assert score == pytest.approx(len("hello") / 100)
    assert server.log.requests == 3


def test_persistent_failure_raises_after_bounded_retries():
    with FakeRM() as server:
        server.inject(status_5xx=100)
        results = score_all(client(server.url, _IdentityTokenizer(), http={"max_retries": 2}), ["a", "b"])
    assert all(isinstance(r, RewardCallError) for r in results)
    assert server.log.requests == 3  # both texts rode in one micro-batch: 1 + 2 retries


def test_hang_is_cut_by_the_timeout():
    with FakeRM() as server:
        server.inject(hang=1)
        [score] = score_all(client(server.url, _IdentityTokenizer(), http={"timeout_s": 0.3, "max_retries": 1}), ["x"])
    assert score == pytest.approx(0.01)


def test_wrong_model_name_is_not_retried(rm_server, tokenizer):
    [result] = score_all(client(rm_server, tokenizer, model="other-model"), ["x"])
    assert isinstance(result, RewardCallError) and "404" in str(result)


def test_long_inputs_keep_their_end(rm_server, tokenizer):
    rm = client(rm_server, tokenizer, max_input_tokens=32)
    text = rm.format(MESSAGES, "word " * 200 + "THE END")
    assert rm.truncated == 1 and text.endswith("<|im_end|>\n") and "END" in text
    assert len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= 34


def test_server_batches_what_arrives_together_and_reports_errors(rm_server, tokenizer):
    before = requests.get(f"{rm_server}/stats", timeout=5).json()
    score_all(client(rm_server, tokenizer, micro_batch_size=1), [f"line {i}" for i in range(12)])
    after = requests.get(f"{rm_server}/stats", timeout=5).json()
    assert after["texts"] - before["texts"] == 12
    assert after["batches"] - before["batches"] < 12  # concurrent single-text requests were batched
    assert requests.get(f"{rm_server}/v1/models", timeout=5).json()["data"][0]["id"] == "tiny-rm"
    assert requests.post(f"{rm_server}/classify", data="{oops", timeout=5).status_code == 400
    assert requests.post(f"{rm_server}/classify", json={"input": []}, timeout=5).status_code == 400


class _IdentityTokenizer:
    """For FakeRM tests: the formatted input is the response itself."""

    bos_token = None

    def apply_chat_template(self, chat, tokenize=False, add_generation_prompt=False):
        return chat[-1]["content"]

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}
