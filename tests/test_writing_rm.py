"""The writing-RM client against real loopback servers: `rewards.serve_rm` (tiny built model,
all three wire formats) and the scripted FakeRM for faults."""

import asyncio

import pytest
import requests
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from recipe.rlmr.dev.servers.reward import FakeRM
from recipe.rlmr.dev.tiny_assets import CHATML_TEMPLATE
from rewards.config import WritingRMConfig
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


@pytest.mark.parametrize("reverse_rows", [False, True], ids=["rows-in-order", "rows-reversed"])
def test_concurrent_calls_travel_in_micro_batches(reverse_rows):
    """FakeRM scores a text by its length (len / 100); every text here has its own length, so a
    score handed to the wrong caller inside a micro-batch shows. Expected values come from the texts."""
    texts = [f"r{'.' * i}" for i in (7, 0, 19, 3, 11, 5, 16, 1, 9, 14, 2, 18, 6, 12, 4, 17, 8, 13, 10, 15)]
    assert len({len(t) for t in texts}) == len(texts)
    with FakeRM(keep_bodies=True) as server:
        server.reverse_rows = reverse_rows  # rows answered last first, each with its index
        rm = client(server.url, _IdentityTokenizer(), micro_batch_size=8, micro_batch_wait_ms=20)
        scores = score_all(rm, texts)
    batches = sorted((body["input"] for body in server.log.bodies), key=lambda batch: texts.index(batch[0]))
    assert [len(batch) for batch in batches] == [8, 8, 4] and server.log.requests == 3
    assert [text for batch in batches for text in batch] == texts  # each batch in call order
    assert scores == [pytest.approx(len(t) / 100.0, abs=1e-9) for t in texts]


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
        [score] = score_all(client(server.url, _IdentityTokenizer(), http={"timeout_s": 1.0, "max_retries": 1}), ["x"])
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


BOS = "<|endoftext|>"
PLAIN = "<|im_start|>user\nWrite one line about the sea.<|im_end|>\n<|im_start|>assistant\n{}<|im_end|>\n"


def bos_tokenizer(rm_dir, template_prefix):
    """The tiny RM's tokenizer with a BOS token, its chat template prefixed by ``template_prefix``."""
    tokenizer = AutoTokenizer.from_pretrained(str(rm_dir), bos_token=BOS)
    tokenizer.chat_template = template_prefix + CHATML_TEMPLATE
    return tokenizer


def test_leading_bos_is_stripped_once_and_nothing_else(rm_dir):
    one = client("http://127.0.0.1:1", bos_tokenizer(rm_dir, "{{ bos_token }}"))
    assert one.format(MESSAGES, "The sea.") == PLAIN.format("The sea.")
    # a BOS string inside the text is the text's own and stays
    assert one.format(MESSAGES, f"{BOS}The sea.{BOS}") == PLAIN.format(f"{BOS}The sea.{BOS}")
    two = client("http://127.0.0.1:1", bos_tokenizer(rm_dir, "{{ bos_token }}{{ bos_token }}"))
    assert two.format(MESSAGES, "The sea.") == BOS + PLAIN.format("The sea.")  # only the first is removed


def test_text_without_a_leading_bos_is_left_alone(rm_dir):
    rm = client("http://127.0.0.1:1", bos_tokenizer(rm_dir, ""))
    assert rm.format(MESSAGES, "The sea.") == PLAIN.format("The sea.")
