"""The local chat server batches concurrent requests and seeds each sample on its own, and
``evaluation generate --n K --seed S`` asks for K different samples (issue 30's seams)."""

import asyncio
import json
from pathlib import Path

import aiohttp
import pytest

from evaluation.cli import main
from recipe.rlmr.dev.servers.chat import HFChatServer
from recipe.rlmr.dev.tiny_assets import build_policy_model


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return str(build_policy_model(tmp_path_factory.mktemp("tiny-policy")))


async def _ask(url, bodies):
    async with aiohttp.ClientSession() as session:

        async def one(body):
            async with session.post(f"{url}/v1/chat/completions", json=body) as response:
                assert response.status == 200, await response.text()
                return (await response.json())["choices"][0]["message"]["content"]

        return await asyncio.gather(*(one(b) for b in bodies))


def _body(i, seed=None, prompt="Write a poem.", max_tokens=12, temperature=1.0):
    body = {"model": "m", "messages": [{"role": "user", "content": f"{prompt} {i % 3}"}]}
    body.update(max_tokens=max_tokens, temperature=temperature)
    if seed is not None:
        body["seed"] = seed
    return body


def test_concurrent_requests_run_as_one_batch_and_answer_as_alone(policy_dir):
    bodies = [_body(i, seed=i) for i in range(12)]
    with HFChatServer(policy_dir, max_batch_size=32) as batched:
        together = asyncio.run(_ask(batched.url, bodies))
        reversed_order = asyncio.run(_ask(batched.url, bodies[::-1]))[::-1]
        assert batched.stats["max_rows"] > 1  # they really shared a batch
    with HFChatServer(policy_dir, max_batch_size=1) as single:
        alone = asyncio.run(_ask(single.url, bodies))
        assert single.stats["max_rows"] == 1
    assert together == alone == reversed_order  # seeded per request: batching and order change nothing


def test_a_seed_reproduces_and_no_seed_draws_anew(policy_dir):
    with HFChatServer(policy_dir) as server:
        same = asyncio.run(_ask(server.url, [_body(0, seed=7, max_tokens=24)] * 4))
        unseeded = asyncio.run(_ask(server.url, [_body(0, max_tokens=24)] * 4))
        other_seeds = asyncio.run(_ask(server.url, [_body(0, seed=s, max_tokens=24) for s in range(4)]))
        greedy = asyncio.run(_ask(server.url, [_body(0, temperature=0.0)] * 3))
    assert len(set(same)) == 1
    assert len(set(unseeded)) > 1
    assert len(set(other_seeds)) > 1
    assert len(set(greedy)) == 1


def test_generate_n_samples_with_one_seed_are_not_copies(policy_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    rows = [
        {"key": f"k{i}", "prompt": f"Write about {w}.", "instruction_id_list": [], "kwargs": []}
        for i, w in enumerate("ab")
    ]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs = []
    for run in range(2):
        output = tmp_path / f"out{run}.jsonl"
        with HFChatServer(policy_dir, served_model_name="tiny") as server:
            argv = ["generate", "--base-url", server.url, "--model", "tiny", "--prompts", str(prompts)]
            argv += ["--output", str(output), "--n", "4", "--temperature", "1.0", "--max-tokens", "16", "--seed", "3"]
            assert main([*argv, "--no-progress"]) == 0
        lines = [json.loads(line) for line in Path(output).read_text().splitlines()]
        outputs.append([r["response"] for r in lines])
        for key in ("k0", "k1"):
            answers = [r["response"] for r in lines if r["id"] == key]
            assert len(answers) == 4 and len(set(answers)) > 1, answers  # one seed n times would give n copies
    assert outputs[0] == outputs[1]  # the same --seed reproduces the run
