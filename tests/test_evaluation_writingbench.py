"""`python -m evaluation writingbench` against a scripted critic with known answers: parsing,
retries, invalid accounting and WritingBench's aggregation."""

import json
import re

import pytest

from evaluation.cli import main
from evaluation.files import read_prompts
from evaluation.writingbench import parse_score
from recipe.rlmr.dev.servers.chat import ScriptedChatServer

# (query, criterion) -> the critic's answers, in the order of the attempts; the last one repeats
ANSWERS = {
    (1, "Clarity"): ['{"score": 8, "reason": "clear"}'],
    (1, "Depth"): ['```json\n{"score": 6, "reason": "fenced"}\n```'],
    (1, "Accuracy"): ["HTTP 503", '{"score": 7, "reason": "after a 5xx"}'],
    (2, "Clarity"): ['{"score": 11, "reason": "out of range"}'],
    (2, "Depth"): ['{"score": 4, "reason": "weak"}'],
    (2, "Style"): ["Score: 9", '{"score": 9, "reason": "after prose"}'],
    (3, "Clarity"): ['{"score": "7", "reason": "a string"}'],
    (3, "Depth"): ['{"score": 7.5, "reason": "not an integer"}'],
    (4, "Clarity"): ['{"score": 10, "reason": "top"}'],
    (4, "Depth"): ['{"score": 0, "reason": "below the scale"}'],
    (4, "Tone"): ['{"score": 1, "reason": "bottom"}'],
}
DOMAINS = {1: ("Education", "Lesson Plans", "en"), 2: ("Education", "Lesson Plans", "en")}
DOMAINS |= {3: ("Finance & Business", "Reports", "zh"), 4: ("Finance & Business", "Reports", "en")}


def _criterion(name):
    return {"name": name, "criteria_description": f"How good the {name.lower()} is.", "1-2": "bad", "9-10": "great"}


@pytest.fixture
def case(tmp_path):
    queries, responses = tmp_path / "queries.jsonl", tmp_path / "responses.jsonl"
    with open(queries, "w") as q, open(responses, "w") as r:
        for index, (domain1, domain2, lang) in DOMAINS.items():
            names = [name for (i, name) in ANSWERS if i == index]
            record = {"index": index, "domain1": domain1, "domain2": domain2, "lang": lang}
            record |= {"query": f"QUERY-{index}: write something", "checklist": [_criterion(n) for n in names]}
            q.write(json.dumps(record) + "\n")
            r.write(json.dumps({"id": index, "prompt": record["query"], "response": f"response {index}"}) + "\n")
    return queries, responses


def _critic():
    attempts = {}

    def fault(body):
        key = _key(body)
        answers = ANSWERS[key]
        return "status_5xx" if answers[min(attempts.get(key, 0), len(answers) - 1)] == "HTTP 503" else None

    def answer(body):
        key = _key(body)
        answers = ANSWERS[key]
        return answers[min(attempts.get(key, 0), len(answers) - 1)]

    def count(body):
        key = _key(body)
        attempts[key] = attempts.get(key, 0) + 1

    server = ScriptedChatServer(lambda body: (answer(body), count(body))[0])
    # a 5xx is an attempt too
    server.fault_for = lambda body: (fault(body), count(body))[0] if fault(body) else None
    return server


def _key(body):
    text = body["messages"][-1]["content"]
    return int(re.search(r"QUERY-(\d)", text).group(1)), re.search(r'"name": "([^"]+)"', text).group(1)


def test_writingbench_scores_retries_and_counts_invalid_answers(case, tmp_path):
    queries, responses = case
    output = tmp_path / "result.json"
    with _critic() as critic:
        args = ["writingbench", "--responses", str(responses), "--queries", str(queries), "--critic-url", critic.url]
        args += ["--critic-model", "critic", "--max-retries", "2", "--backoff", "0", "--output", str(output)]
        assert main([*args, "--no-progress"]) == 0
        requests = [_key(b) for b in critic.bodies]
        bodies = critic.bodies
    result = json.loads(output.read_text())
    assert result["overall"] == pytest.approx((8 + 6 + 7 + 4 + 9 + 10 + 1) / 7)  # every valid criterion score
    assert result["per_domain"] == {
        "Education": {"score": pytest.approx((7 + 6.5) / 2), "queries": 2},  # mean of query means
        "Finance & Business": {"score": pytest.approx(5.5), "queries": 1},  # query 3 had no valid score
    }
    assert (result["criteria"], result["criteria_invalid"]) == (11, 4)
    assert (result["queries"], result["queries_scored"], result["queries_without_valid_score"]) == (4, 3, 1)
    details = {d["id"]: d for d in result["details"]}
    assert details[2]["criteria"] == {"Clarity": None, "Depth": 4, "Style": 9}
    assert "outside 1-10" in details[2]["errors"]["Clarity"]
    assert details[3]["score"] is None and set(details[3]["errors"]) == {"Clarity", "Depth"}
    # invalid answers were tried 1 + 2 times; a 5xx or an unparseable answer once more, then scored
    tries = {key: requests.count(key) for key in ANSWERS}
    assert tries == {
        key: 3 if key in {(2, "Clarity"), (3, "Clarity"), (3, "Depth"), (4, "Depth")} else 1 for key in ANSWERS
    } | {
        (1, "Accuracy"): 2,
        (2, "Style"): 2,
    }
    # the critic saw the query, the response and the criterion, at temperature 0
    first = bodies[0]
    assert first["temperature"] == 0.0 and first["model"] == "critic"
    key = _key(first)
    assert f"How good the {key[1].lower()} is." in first["messages"][-1]["content"]
    assert f"response {key[0]}" in first["messages"][-1]["content"]


def test_writingbench_lang_filter_and_the_shipped_queries(tmp_path):
    shipped = [item for item in read_prompts("writingbench") if item.metadata["lang"] == "en"][:2]
    responses = tmp_path / "responses.jsonl"
    lines = [
        {"id": item.id, "prompt": item.prompt, "response": "an answer"} for item in read_prompts("writingbench")[:40]
    ]
    responses.write_text("".join(json.dumps(line) + "\n" for line in lines))
    output = tmp_path / "result.json"
    with ScriptedChatServer(lambda body: '{"score": 7, "reason": "fine"}') as critic:
        args = ["writingbench", "--responses", str(responses), "--critic-url", critic.url, "--critic-model", "c"]
        assert main([*args, "--lang", "en", "--limit", "2", "--output", str(output), "--no-progress"]) == 0
        assert critic.requests == sum(len(item.metadata["checklist"]) for item in shipped)
    result = json.loads(output.read_text())
    assert result["overall"] == 7.0 and result["queries"] == 2 and result["criteria_invalid"] == 0
    assert [d["id"] for d in result["details"]] == [item.id for item in shipped]
    assert set(result["per_domain"]) == {item.metadata["domain1"] for item in shipped}


def test_writingbench_refuses_a_response_to_an_unknown_query(case, tmp_path, capsys):
    queries, responses = case
    responses.write_text(responses.read_text() + json.dumps({"id": 99, "response": "x"}) + "\n")
    args = ["writingbench", "--responses", str(responses), "--queries", str(queries)]
    assert main([*args, "--critic-url", "http://127.0.0.1:9", "--critic-model", "c"]) == 2
    assert f"{responses} row 5: id 99 is not a query of {queries}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "score"),
    [('{"score": 3}', 3), ('Here:\n```json\n{"score": 10, "reason": "r"}\n```', 10), ('{"score": 1, "x": 2}', 1)],
)
def test_parse_score_accepts(text, score):
    assert parse_score(text) == score


@pytest.mark.parametrize(
    "text", ['{"score": true}', '{"score": 10.0}', '{"reason": "no score"}', "[7]", "7", '{"score": -1}', ""]
)
def test_parse_score_refuses(text):
    with pytest.raises(ValueError):
        parse_score(text)
