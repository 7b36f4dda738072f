"""`python -m evaluation generate` against real loopback servers: a chat server in front of a tiny
transformers policy, and scripted servers for faults, interruption and the concurrency bound."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evaluation.cli import main
from evaluation.files import read_prompts
from recipe.rlmr.dev.servers.chat import HFChatServer, ScriptedChatServer
from recipe.rlmr.dev.tiny_assets import build_policy_model

ROOT = Path(__file__).resolve().parents[1]


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _echo(body):
    return "answer to: " + body["messages"][-1]["content"]


def _ifeval_file(path, count):
    """The first ``count`` shipped IFEval prompts, as a user file."""
    items = read_prompts("ifeval")[:count]
    path.write_text("".join(json.dumps({"key": it.id, "prompt": it.prompt, **it.metadata}) + "\n" for it in items))
    return [it.id for it in items]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory):
    return build_policy_model(tmp_path_factory.mktemp("tiny-policy"))


def test_generate_with_a_tiny_policy_then_score_ifeval(policy_dir, tmp_path):
    output = tmp_path / "responses.jsonl"
    with HFChatServer(str(policy_dir), served_model_name="tiny") as server:
        args = ["generate", "--base-url", server.url + "/v1", "--model", "tiny", "--prompts", "ifeval"]
        args += ["--output", str(output), "--limit", "3", "--n", "2", "--temperature", "1.0", "--max-tokens", "8"]
        assert main([*args, "--seed", "1", "--no-progress"]) == 0
        assert server.requests == 6
        # a second run finds everything answered and asks nothing
        assert main([*args, "--no-progress"]) == 0
        assert server.requests == 6
    lines = _lines(output)
    shipped = read_prompts("ifeval")[:3]
    assert [(r["id"], r["sample"]) for r in lines] == [(it.id, s) for it in shipped for s in (0, 1)]
    for record, item in zip(lines[::2], shipped, strict=True):
        assert record["prompt"] == item.prompt
        assert record["instruction_id_list"] == item.metadata["instruction_id_list"]
        assert record["kwargs"] == item.metadata["kwargs"]
        assert isinstance(record["response"], str) and record["finish_reason"] in ("stop", "length")
    assert not (tmp_path / "responses.jsonl.partial").exists()
    assert json.loads((tmp_path / "responses.summary.json").read_text())["already_done"] == 6
    result = tmp_path / "ifeval.json"
    assert main(["ifeval", "--responses", str(output), "--output", str(result)]) == 0
    assert json.loads(result.read_text())["responses"] == 6


def test_generate_reads_our_parquet_and_sends_every_message(tmp_path):
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    table = pa.table(
        {
            "data_source": ["poems", "poems"],
            "prompt": [
                [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "A poem about rain."}],
                [{"role": "user", "content": "A poem about snow."}],
            ],
            "extra_info": [{"index": 0}, {"index": 1}],
        },
        schema=pa.schema(
            [
                ("data_source", pa.string()),
                ("prompt", pa.list_(message)),
                ("extra_info", pa.struct([("index", pa.int64())])),
            ]
        ),
    )
    prompts = tmp_path / "val.parquet"
    pq.write_table(table, prompts)
    output = tmp_path / "out.jsonl"
    with ScriptedChatServer(_echo) as server:
        args = ["generate", "--base-url", server.url, "--model", "m", "--prompts", str(prompts)]
        assert main([*args, "--output", str(output), "--no-progress"]) == 0
        sent = sorted((b["messages"] for b in server.bodies), key=len)
    assert sent == [table["prompt"][1].as_py(), table["prompt"][0].as_py()]
    lines = _lines(output)
    assert [(r["id"], r["prompt"], r["response"], r["data_source"]) for r in lines] == [
        (0, "A poem about rain.", "answer to: A poem about rain.", "poems"),
        (1, "A poem about snow.", "answer to: A poem about snow.", "poems"),
    ]
    assert lines[0]["messages"] == table["prompt"][0].as_py() and "messages" not in lines[1]


def test_generate_lists_failures_and_never_writes_them(tmp_path, capsys):
    ids = _ifeval_file(tmp_path / "p.jsonl", 5)
    always_down, refused = read_prompts(str(tmp_path / "p.jsonl"))[3:5]
    output, summary = tmp_path / "out.jsonl", tmp_path / "summary.json"
    first = read_prompts(str(tmp_path / "p.jsonl"))[0]
    # faults per prompt, in the order of its attempts: the first times out, then gets a body that is
    # not JSON, then an answer; one stays down (503); one is refused (400, not worth a retry)
    script = {
        first.prompt: ["hang", "not_json"],
        always_down.prompt: ["status_5xx"] * 9,
        refused.prompt: ["bad_request"],
    }
    with ScriptedChatServer(_echo) as server:
        server.fault_for = lambda body: (script.get(body["messages"][-1]["content"]) or [None]).pop(0)
        args = ["generate", "--base-url", server.url, "--model", "m", "--prompts", str(tmp_path / "p.jsonl")]
        args += ["--output", str(output), "--summary", str(summary), "--timeout", "1"]
        assert main([*args, "--max-retries", "2", "--backoff", "0", "--no-progress"]) == 1
        contents = [b["messages"][-1]["content"] for b in server.bodies]
    # 3 attempts for the first prompt and the one that stays down, 1 for the refused one (4xx: no retry)
    assert [contents.count(it.prompt) for it in read_prompts(str(tmp_path / "p.jsonl"))] == [3, 1, 1, 3, 1]
    assert [r["id"] for r in _lines(output)] == ids[:3]
    failed = json.loads(summary.read_text())["failed"]
    assert [(f["id"], f["sample"]) for f in failed] == [(ids[3], 0), (ids[4], 0)]
    assert "HTTP 503" in failed[0]["error"] and "HTTP 400" in failed[1]["error"]
    printed = capsys.readouterr().out
    assert f"id {ids[3]!r} sample 0: " in printed and f"id {ids[4]!r} sample 0: " in printed

    # the next run asks only for the two that failed
    with ScriptedChatServer(_echo) as server:
        args[2] = server.url
        assert main([*args, "--no-progress"]) == 0
        assert sorted(b["messages"][-1]["content"] for b in server.bodies) == sorted(
            [always_down.prompt, refused.prompt]
        )
    assert [r["id"] for r in _lines(output)] == ids


def test_generate_respects_the_concurrency_bound(tmp_path):
    _ifeval_file(tmp_path / "p.jsonl", 12)
    # the server holds each request until 4 are in flight, so the bound is reached, and would see more
    # than 4 at once if the client let more through
    with ScriptedChatServer(_echo, gate=4) as server:
        args = ["generate", "--base-url", server.url, "--model", "m", "--prompts", str(tmp_path / "p.jsonl")]
        assert main([*args, "--output", str(tmp_path / "out.jsonl"), "--concurrency", "4", "--no-progress"]) == 0
        assert server.max_in_flight == 4
        assert server.requests == 12
    assert len(_lines(tmp_path / "out.jsonl")) == 12


def test_generate_resumes_after_being_killed(tmp_path):
    ids = _ifeval_file(tmp_path / "p.jsonl", 6)
    prompts = read_prompts(str(tmp_path / "p.jsonl"))
    output = tmp_path / "out.jsonl"
    journal = tmp_path / "out.jsonl.partial"
    with ScriptedChatServer(_echo) as server:
        server.fault_for = lambda body: "hang" if server.requests > 3 else None  # the 4th request never returns
        command = [sys.executable, "-m", "evaluation", "generate", "--base-url", server.url, "--model", "m"]
        command += ["--prompts", str(tmp_path / "p.jsonl"), "--output", str(output), "--concurrency", "1"]
        process = subprocess.Popen([*command, "--no-progress"], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        try:
            deadline = time.monotonic() + 300
            while not (server.requests >= 4 and journal.exists() and len(journal.read_text().splitlines()) == 3):
                assert process.poll() is None and time.monotonic() < deadline, "generate did not get to its 4th prompt"
                time.sleep(0.1)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        assert not output.exists()
        server.fault_for = None
        before = server.requests
        args = ["generate", "--base-url", server.url, "--model", "m", "--prompts", str(tmp_path / "p.jsonl")]
        assert main([*args, "--output", str(output), "--summary", str(tmp_path / "s.json"), "--no-progress"]) == 0
        asked = [b["messages"][-1]["content"] for b in server.bodies[before:]]
    assert sorted(asked) == sorted(it.prompt for it in prompts[3:])
    assert json.loads((tmp_path / "s.json").read_text())["already_done"] == 3
    assert [r["id"] for r in _lines(output)] == ids
    assert [r["response"] for r in _lines(output)] == ["answer to: " + it.prompt for it in prompts]
    assert not journal.exists()


def test_generate_refuses_bad_prompt_files_naming_row_and_key(tmp_path, capsys):
    bad = tmp_path / "p.jsonl"
    bad.write_text(json.dumps({"key": 1, "prompt": "x", "instruction_id_list": [], "kwargs": []}) + "\n")
    bad.write_text(bad.read_text() + json.dumps({"key": 2, "instruction_id_list": [], "kwargs": []}) + "\n")
    args = ["generate", "--base-url", "http://127.0.0.1:9", "--model", "m", "--prompts", str(bad)]
    assert main([*args, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"{bad} row 2: missing key 'prompt'" in capsys.readouterr().err
    bad.write_text(json.dumps({"title": "no prompt here"}) + "\n")
    assert main([*args, "--output", str(tmp_path / "o.jsonl")]) == 2
    assert f"{bad} row 1: not a prompt this tool reads" in capsys.readouterr().err


def test_generate_ctrl_c_writes_the_answers_so_far(tmp_path):
    ids = _ifeval_file(tmp_path / "p.jsonl", 5)
    output = tmp_path / "out.jsonl"
    with ScriptedChatServer(_echo) as server:
        server.fault_for = lambda body: "hang" if server.requests > 2 else None  # the 3rd request never returns
        command = [sys.executable, "-m", "evaluation", "generate", "--base-url", server.url, "--model", "m"]
        command += ["--prompts", str(tmp_path / "p.jsonl"), "--output", str(output), "--concurrency", "1"]
        process = subprocess.Popen(
            [*command, "--no-progress"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stderr=subprocess.PIPE,
            # a shell's background job inherits SIGINT ignored, and the child would never see the Ctrl-C
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 300
        while server.requests < 3:
            assert process.poll() is None and time.monotonic() < deadline, "generate did not get to its 3rd prompt"
            time.sleep(0.1)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130
    assert f"the answers so far are in {output}" in stderr.decode()
    assert [r["id"] for r in _lines(output)] == ids[:2]
    assert not (tmp_path / "out.jsonl.partial").exists()
