"""`python -m evaluation pairwise` against a scripted judge with a known preference: it prefers the
response that contains GOOD, always says "first" on BIASED prompts (a position bias), and never
answers usable JSON on GARBAGE prompts."""

import json
import math
import re

import pytest

from evaluation.cli import main
from evaluation.pairwise import combine, win_rate
from recipe.rlmr.dev.servers.chat import ScriptedChatServer

# id -> (domain, prompt, A's response, B's response)
CASES = {
    0: ("poetry", "poem 0", "GOOD a", "b"),
    1: ("poetry", "poem 1", "GOOD a", "b"),
    2: ("poetry", "poem 2", "GOOD a", "b"),
    3: ("poetry", "poem 3", "GOOD a", "b"),
    4: ("poetry", "poem 4", "a", "GOOD b"),
    5: ("essays", "essay 5", "GOOD a", "b"),
    6: ("essays", "essay 6", "GOOD a", "b"),
    7: ("essays", "essay 7", "a", "GOOD b"),
    8: ("essays", "essay 8 BIASED", "GOOD a", "b"),
    9: ("essays", "essay 9", "GOOD a", "GOOD b"),
    10: ("essays", "essay 10 GARBAGE", "GOOD a", "b"),
}


def _sections(text):
    match = re.search(r"## First response\n(.*)\n\n## Second response\n(.*)\n\nWhich", text, re.DOTALL)
    return match.group(1), match.group(2)


def _judge(body):
    text = body["messages"][-1]["content"]
    if "GARBAGE" in text:
        return "I prefer the first one."
    if "BIASED" in text:
        return '{"winner": "first", "reason": "it came first"}'
    first, second = _sections(text)
    if ("GOOD" in first) == ("GOOD" in second):
        return '{"winner": "tie", "reason": "same"}'
    return json.dumps({"winner": "first" if "GOOD" in first else "second", "reason": "has GOOD"})


def _files(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    rows_a = [{"id": i, "prompt": p, "response": ra, "domain1": d} for i, (d, p, ra, _) in CASES.items()]
    rows_a.append({"id": 11, "prompt": "only in A", "response": "x", "domain1": "essays"})
    rows_b = [{"id": i, "prompt": p, "response": rb} for i, (d, p, _, rb) in CASES.items()]
    a.write_text("".join(json.dumps(r) + "\n" for r in rows_a))
    b.write_text("".join(json.dumps(r) + "\n" for r in rows_b))
    return a, b


def test_pairwise_swaps_positions_and_counts_flips_as_ties(tmp_path):
    a, b = _files(tmp_path)
    output = tmp_path / "result.json"
    with ScriptedChatServer(_judge) as judge:
        args = ["pairwise", "--a", str(a), "--b", str(b), "--judge-url", judge.url, "--judge-model", "j"]
        assert main([*args, "--max-retries", "1", "--backoff", "0", "--output", str(output), "--no-progress"]) == 0
        bodies = judge.bodies
    result = json.loads(output.read_text())
    overall = result["overall"]
    assert (overall["wins"], overall["ties"], overall["losses"], overall["n"]) == (6, 2, 2, 10)
    assert overall["win_rate"] == pytest.approx(0.7)
    assert overall["ci95"][0] < 0.7 < overall["ci95"][1]
    assert (result["invalid"], result["position_flips"], result["only_in_a"], result["only_in_b"]) == (1, 1, 1, 0)
    poetry, essays = result["per_domain"]["poetry"], result["per_domain"]["essays"]
    assert (poetry["win_rate"], poetry["n"]) == (pytest.approx(0.8), 5)
    assert (essays["win_rate"], essays["wins"], essays["ties"], essays["losses"]) == (pytest.approx(0.6), 2, 2, 1)
    details = {d["id"]: d for d in result["details"]}
    assert (details[8]["a_first"], details[8]["b_first"], details[8]["outcome"]) == ("first", "first", "tie")
    assert details[10]["outcome"] is None and "not JSON" in details[10]["error"]
    # every pair was shown in both orders (the unusable one 1 + 1 times per order)
    for i, (_, prompt, ra, rb) in CASES.items():
        shown = [
            _sections(x["messages"][-1]["content"]) for x in bodies if f"\n{prompt}\n" in x["messages"][-1]["content"]
        ]
        expected = [(ra, rb), (rb, ra)] * (2 if i == 10 else 1)
        assert sorted(shown) == sorted(expected)


def test_combine_only_agreeing_verdicts_win():
    assert combine("first", "second") == "win"  # A first and preferred, then B first and A preferred
    assert combine("second", "first") == "loss"
    assert combine("first", "first") == "tie"  # flips with the position
    assert combine("second", "second") == "tie"
    assert combine("first", "tie") == "tie" and combine("tie", "tie") == "tie"


def test_win_rate_interval():
    rate = win_rate(["win"] * 70 + ["loss"] * 30, resamples=2000, seed=0)
    half = 1.96 * math.sqrt(0.7 * 0.3 / 100)  # the normal approximation the bootstrap should be close to
    assert rate["win_rate"] == pytest.approx(0.7)
    assert rate["ci95"][0] == pytest.approx(0.7 - half, abs=0.02)
    assert rate["ci95"][1] == pytest.approx(0.7 + half, abs=0.02)
    assert win_rate(["win"] * 5, 500, 0)["ci95"] == [1.0, 1.0]
    assert win_rate(["tie"] * 4, 500, 0) | {"ci95": None} == {
        "win_rate": 0.5,
        "ci95": None,
        "n": 4,
        "wins": 0,
        "ties": 4,
        "losses": 0,
    }
    assert win_rate(["win", "loss"] * 10, 500, 1) == win_rate(["win", "loss"] * 10, 500, 1)  # seeded


def test_pairwise_refuses_files_that_answer_different_prompts(tmp_path, capsys):
    a, b = _files(tmp_path)
    b.write_text(b.read_text().replace('"poem 3"', '"another poem"'))
    args = ["pairwise", "--a", str(a), "--b", str(b), "--judge-url", "http://127.0.0.1:9", "--judge-model", "j"]
    assert main(args) == 2
    assert f"id 3: {a} row 4 and {b} row 4 answer different prompts" in capsys.readouterr().err
